"""End-to-end training on the tiny synthetic city: run folder, resume = uninterrupted run,
1 vs 2 (simulated) devices, NaN handling, config overrides."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def synthetic_root(tiny_city):
    return tiny_city


def _config(root, *overrides):
    from vgjax.checks import load_config
    return load_config(REPO / "configs" / "smoke.py", [
        f"data.root={root}", "data.test_datasets=pitts30k,sf-xs", "train.queries_per_epoch=16",
        "train.epochs=2", "test.save_predictions=false", *overrides])


def _step_losses(run):
    lines = (Path(run) / "metrics.jsonl").read_text().splitlines()
    recs = [json.loads(l) for l in lines]
    return ([(r["step"], r["loss"]) for r in recs if r["type"] == "step"],
            [r["val"] for r in recs if r["type"] == "epoch"])


class _Interrupt(Exception):
    pass


def test_train_run_folder_and_resume_reproduces(synthetic_root, tmp_path, monkeypatch):
    from vgjax.train import checkpoint, loop

    full = tmp_path / "full"
    # the full run also validates the untrained model; the resumed run below does not, and
    # must still take the same steps
    results = loop.train_and_evaluate(_config(synthetic_root, "evals.val.when=[before,epoch]"),
                                      full)
    assert set(results) == {"pitts30k", "sf-xs"}
    assert set(results["pitts30k"]) == {"R@1", "R@5", "R@10", "R@20"}
    for name in ("config.json", "train.log", "metrics.jsonl", "lr.png", "results.json",
                 "checkpoints/last/model/model.json", "checkpoints/best/model/model.json",
                 "checkpoints/last/progress.json"):
        assert (full / name).exists(), name
    losses_full, val_full = _step_losses(full)
    assert len(losses_full) == 2 * 2 * 4 and len(val_full) == 2   # epochs x rounds x steps
    epochs = [json.loads(l) for l in (full / "metrics.jsonl").read_text().splitlines()
              if json.loads(l)["type"] == "epoch"]
    for e in epochs:  # the mean training loss of each epoch, as the reference logs it
        assert e["train_loss"] == pytest.approx(np.mean([l for s, l in losses_full
                                                         if (s - 1) // 8 == e["epoch"]]))
    assert "mean loss" in (full / "train.log").read_text()
    initial = [json.loads(l) for l in (full / "metrics.jsonl").read_text().splitlines()
               if json.loads(l)["type"] == "initial_val"]
    assert len(initial) == 1   # the "before" evaluation writes its files in RUN/before/<entry>
    before = json.loads((full / "before" / "val" / "results.json").read_text())
    assert set(before) == set(initial[0]["results"]) == {"pitts30k"}
    assert before["pitts30k"] == pytest.approx(initial[0]["results"]["pitts30k"], abs=1e-3)
    assert not (full / "before" / "val" / "predictions").exists()  # test.save_predictions=false
    assert all(np.isfinite(l) for _, l in losses_full)

    # Interrupt after the first mining round of epoch 1, then resume in a new call.
    real_save = checkpoint.save
    calls = []

    def save_then_stop(run_dir, name, state, progress, *a, **kw):
        out = real_save(run_dir, name, state, progress, *a, **kw)
        calls.append((name, progress.epoch, progress.round))
        if (name, progress.epoch, progress.round) == ("last", 1, 1):
            raise _Interrupt()
        return out

    resumed = tmp_path / "resumed"
    monkeypatch.setattr(checkpoint, "save", save_then_stop)
    with pytest.raises(_Interrupt):
        loop.train_and_evaluate(_config(synthetic_root), resumed)
    monkeypatch.setattr(checkpoint, "save", real_save)
    results_resumed = loop.train_and_evaluate(_config(synthetic_root), resumed)
    assert "Resuming from" in (resumed / "train.log").read_text()
    losses_resumed, val_resumed = _step_losses(resumed)
    assert [s for s, _ in losses_resumed] == [s for s, _ in losses_full]   # no step repeated
    np.testing.assert_allclose([l for _, l in losses_resumed], [l for _, l in losses_full],
                               rtol=1e-5, atol=1e-7)
    assert val_resumed == val_full
    assert results_resumed == results


def test_nan_loss_saves_then_raises(synthetic_root, tmp_path):
    from vgjax.train import loop
    cfg = _config(synthetic_root, "train.lr=1e30", "train.optimizer=sgd", "train.epochs=1",
                  "model.aggregation=gem", "model.netvlad_init.enabled=false")
    with pytest.raises(loop.NonFiniteLossError, match="train.lr"):
        loop.train_and_evaluate(cfg, tmp_path / "nan")
    assert (tmp_path / "nan" / "checkpoints" / "nan" / "model" / "model.json").exists()


def test_config_overrides_and_errors():
    from vgjax.checks import load_config
    from vgjax.config import ConfigError
    smoke = REPO / "configs" / "smoke.py"
    cfg = load_config(smoke, ["--config.train.lr=1e-4", "data.resize=(32,48)",
                              "train.optimizer=sgd", "data.test_datasets=a,b"])
    assert cfg.train.lr == 1e-4 and tuple(cfg.data.resize) == (32, 48)
    assert list(cfg.data.test_datasets) == ["a", "b"] and cfg.train.optimizer == "sgd"
    for bad, match in [("train.optimiser=sgd", "optimizer"), ("train.optimizer=rmsprop", "train.optimizer"),
                       ("train.lr=abc", "train.lr"), ("train.neg_samples_num=2", "neg_samples_num")]:
        with pytest.raises(ConfigError, match=match):
            load_config(smoke, [bad])
    for path in ("resnet18_netvlad.py", "resnet18_gem.py"):
        cfg = load_config(REPO / "configs" / path)
        assert cfg.train.weight_decay == 1e-3 and len(cfg.data.test_datasets) == 4


TWO_DEVICES = r"""
import json, sys
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh
from vgjax.checks import load_config
from vgjax.models.network import build_network, init_variables, trainable_mask
from vgjax.train import optim
from vgjax.train.losses import make_term
from vgjax.train.step import make_train_step
from vgjax.train.state import TrainState
assert len(jax.devices()) == 2
cfg = load_config(sys.argv[1])
net = build_network(cfg.model)
variables = init_variables(cfg.model, jax.random.key(0), (48, 64))
tx = optim.make_optimizer(cfg.train, trainable_mask(variables["params"], cfg.model))
images = np.random.default_rng(0).integers(0, 256, (2 * 5, 48, 64, 3), dtype=np.uint8)
out = {}
for n in (1, 2):
    mesh = Mesh(np.array(jax.devices()[:n]), ("data",))
    step = make_train_step(net, tx, [make_term("triplet", {"margin": 0.1})], 3, mesh)
    fresh = jax.tree.map(np.array, variables)  # own buffers: the step donates its state
    state = jax.device_put(TrainState.create(fresh, tx),
                           jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
    losses = []
    for _ in range(4):
        state, metrics = step(state, images)
        losses.append(float(metrics["loss"]))
    out[n] = losses
print(json.dumps(out))
"""


def test_one_and_two_devices_give_the_same_losses(tmp_path):
    script = tmp_path / "two.py"
    script.write_text(TWO_DEVICES)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
               JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, str(script), str(REPO / "configs" / "smoke.py")],
                          env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["1"][-1] < out["1"][0]          # repeated steps on one batch lower its loss
    np.testing.assert_allclose(out["2"], out["1"], rtol=1e-4)
