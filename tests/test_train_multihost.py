"""Multi-process data-parallel training: two local CPU processes (one device each, joined by
`jax.distributed` over 127.0.0.1) train, resume and test exactly like one process with two
(simulated) devices; plus the per-process batch slicing helpers."""
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
TIMEOUT_S = 600


# Batch slicing -------------------------------------------------------------------------------

class _Sharding:
    """Stands in for a NamedSharding of which this process holds some devices' rows."""

    def __init__(self, device_rows):
        self.device_rows = device_rows

    def addressable_devices_indices_map(self, shape):
        return {d: (slice(a, b),) for d, (a, b) in enumerate(self.device_rows)}


def test_process_rows_are_this_process_devices_rows():
    import jax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from vgjax.train.multihost import process_rows

    mesh = Mesh(np.array(jax.devices()[:1]), ("data",))
    assert process_rows(NamedSharding(mesh, P("data")), 10) == slice(0, 10)
    # process 1 of 2 with 2 devices each, global batch 20: devices 2 and 3 hold rows 10..19
    assert process_rows(_Sharding([(15, 20), (10, 15)]), 20) == slice(10, 20)
    with pytest.raises(ValueError, match="contiguous"):
        process_rows(_Sharding([(0, 5), (10, 15)]), 20)


def test_local_batch_paths_takes_rows_of_each_padded_batch():
    from vgjax.train.multihost import local_batch_paths
    paths = np.array([f"p{i}" for i in range(7)])
    # batches of 4: [p0..p3], [p4, p5, p6, p6 (padding)]
    assert list(local_batch_paths(paths, 4, slice(0, 2))) == ["p0", "p1", "p4", "p5"]
    assert list(local_batch_paths(paths, 4, slice(2, 4))) == ["p2", "p3", "p6", "p6"]
    assert list(local_batch_paths(paths, 4, slice(0, 4))) == [*paths, "p6"]


# Two processes -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    from vgjax.synthetic import generate
    root = tmp_path_factory.mktemp("synthetic")
    generate(root, "tiny", seed=0, workers=1, datasets=("pitts30k",))
    return root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train_args(root, workdir, epochs):
    return ["-m", "vgjax.train", "--config", str(REPO / "configs" / "smoke.py"),
            "--workdir", str(workdir), f"--config.data.root={root}",
            "--config.data.test_datasets=pitts30k", "--config.train.queries_per_epoch=8",
            f"--config.train.epochs={epochs}", "--config.test.save_predictions=false",
            "--config.model.netvlad_init.enabled=false", "--config.data.num_workers=1"]


def _env(devices: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
    if devices > 1:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return env


def _run_processes(commands, env, log_dir: Path, tag: str) -> list[str]:
    """Runs the commands side by side; returns their outputs; kills all if one fails."""
    paths = [log_dir / f"{tag}.{i}.log" for i in range(len(commands))]
    procs = []
    try:
        for cmd, path in zip(commands, paths):
            with open(path, "w") as out:
                procs.append(subprocess.Popen([sys.executable, *cmd], env=env, cwd=REPO,
                                              stdout=out, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            codes = [p.poll() for p in procs]
            if all(c is not None for c in codes) or any(c not in (None, 0) for c in codes):
                break
            time.sleep(0.2)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    codes = [p.returncode for p in procs]
    texts = [path.read_text() for path in paths]
    # every process's output: the one that failed first may be waiting on another
    assert all(code == 0 for code in codes), "\n".join(
        f"{tag} process {i} exited with {code} (negative: killed after {TIMEOUT_S} s or after "
        f"another process failed):\n{text[-2000:]}" for i, (code, text) in
        enumerate(zip(codes, texts)))
    return texts


def _distributed(root, workdir, epochs, log_dir, tag) -> list[str]:
    coordinator = f"127.0.0.1:{_free_port()}"
    commands = [[*_train_args(root, workdir, epochs), "--distributed",
                 "--coordinator_address", coordinator, "--num_processes", "2",
                 "--process_id", str(i)] for i in range(2)]
    return _run_processes(commands, _env(1), log_dir, tag)


def _records(run):
    recs = [json.loads(l) for l in (Path(run) / "metrics.jsonl").read_text().splitlines()]
    return ([(r["step"], r["loss"]) for r in recs if r["type"] == "step"],
            [r["val"] for r in recs if r["type"] == "epoch"])


def test_two_processes_train_like_two_devices_of_one(synthetic_root, tmp_path):
    # two processes: epoch 0, then a second invocation resumes for epoch 1
    multi = tmp_path / "multi"
    first = _distributed(synthetic_root, multi, 1, tmp_path, "epoch0")
    second = _distributed(synthetic_root, multi, 2, tmp_path, "epoch1")
    for i, text in enumerate(first):
        assert f"process {i} of 2 (1 of the 2 devices) loads rows [{5 * i}, {5 * i + 5}) " \
               "of every train batch of 10 images" in text
    assert all("Resuming from" in text for text in second)

    # one process, two devices, both epochs in one go
    single = tmp_path / "single"
    _run_processes([_train_args(synthetic_root, single, 2)], _env(2), tmp_path, "single")

    losses_multi, val_multi = _records(multi)
    losses_single, val_single = _records(single)
    assert [s for s, _ in losses_multi] == [s for s, _ in losses_single] == list(range(1, 9))
    np.testing.assert_allclose([l for _, l in losses_multi], [l for _, l in losses_single],
                               rtol=1e-4)
    assert val_multi == val_single
    results = json.loads((single / "results.json").read_text())
    assert json.loads((multi / "results.json").read_text()) == results
    # the run folder is written by process 0 alone
    log = (multi / "train.log").read_text()
    assert "process 0 of 2" in log and "process 1 of 2" not in log
    assert (multi / "checkpoints" / "best" / "model" / "model.json").exists()


def test_processes_sharing_a_run_folder_prove_it_writable_side_by_side(tmp_path):
    # each process writes and deletes its own probe file: with one shared name, one process
    # could delete the probe the other is about to delete, and fail before training starts
    code = ("import sys; from pathlib import Path; from vgjax.train.run_dir import "
            "check_writable\nfor _ in range(400): check_writable(Path(sys.argv[1]))")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "run")], cwd=REPO,
                              env={**os.environ, "PYTHONPATH": str(REPO)},
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    assert list((tmp_path / "run").iterdir()) == []


_LOCAL_SAVES = """
import random, sys, time
from pathlib import Path
import numpy as np, jax
pid, out = int(sys.argv[1]), Path(sys.argv[2])
jax.distributed.initialize(sys.argv[3], num_processes=2, process_id=pid)
from vgjax.models.io import _process_local_checkpointer
random.seed(pid)
tree = {"a": np.arange(20000, dtype=np.float32) + pid}
for k in range(int(sys.argv[4])):
    time.sleep(random.random() * 0.03)   # the processes drift apart, as in training
    with _process_local_checkpointer() as ckptr:
        ckptr.save(out / f"p{pid}" / f"s{k}", tree)
if pid == 0:   # orbax writes numpy arrays from process 0 only: the others' saves are empty
    with _process_local_checkpointer() as ckptr:
        back = ckptr.restore(out / "p0" / f"s{k}")
    assert np.array_equal(back["a"], tree["a"])
print("saved", k + 1)
"""


def test_process_local_saves_of_two_processes_do_not_interfere(tmp_path):
    # a model dir is written by process 0 alone, while the other writes the same number of
    # (scratch) saves elsewhere: orbax's asynchronous saves pair processes' signals by save
    # number and made these unrelated saves wait on (or delete) each other's, at random
    coordinator = f"127.0.0.1:{_free_port()}"
    commands = [["-c", _LOCAL_SAVES, str(i), str(tmp_path / "out"), coordinator, "40"]
                for i in range(2)]
    texts = _run_processes(commands, _env(1), tmp_path, "local")
    assert all("saved 40" in text for text in texts)
