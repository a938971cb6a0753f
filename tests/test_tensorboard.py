"""vgjax.train.tensorboard: metrics.jsonl records as TensorBoard scalars (the end-to-end check
is tests/test_train_loop.py::test_train_run_folder_and_resume_reproduces)."""
import os
import subprocess
import sys
from pathlib import Path

from vgjax.train.tensorboard import legal_tag, recall_tags, scalar_tags

REPO = Path(__file__).resolve().parent.parent


def test_records_become_tags():
    assert scalar_tags({"type": "step", "step": 3, "epoch": 0, "round": 1, "loss": 0.5,
                        "loss/domain": 0.25, "lr": 1e-5, "domain_acc": 0.75}) == {
        "train/loss": 0.5, "train/loss/domain": 0.25, "train/lr": 1e-5,
        "train/domain_acc": 0.75}
    epoch = {"type": "epoch", "epoch": 1, "epoch_time_s": 2.0, "train_loss": 0.1,
             "metrics": {"val/R@1": 50.0, "val/R@5": 75.0}, "lr": 1e-5, "next_lr": 5e-6,
             "best_value": 75.0, "val": {"R@1": 50.0, "R@5": 75.0}}
    assert scalar_tags(epoch) == {"epoch/train_loss": 0.1, "epoch/lr": 1e-5,
                                  "epoch/time_s": 2.0, "epoch/best_value": 75.0,
                                  "val/R@1": 50.0, "val/R@5": 75.0}
    assert scalar_tags({"type": "initial_val", "results": {"a": {"R@1": 1.0}},
                        "val": {"R@1": 1.0}}) == {"val/R@1": 1.0}
    assert recall_tags("test", {"a": {"R@1": 1.0}, "b": {"R@1": 2.0}}) == {
        "test/a/R@1": 1.0, "test/b/R@1": 2.0}
    assert scalar_tags({"type": "something else", "x": 1.0}) == {}
    assert legal_tag("test/sf-xs/R@5") == "test/sf-xs/R_5"


def test_events_are_written_without_importing_torch(tmp_path):
    code = ("import sys\n"
            "from vgjax.train.tensorboard import EventLog\n"
            "log = EventLog(sys.argv[1])\n"
            "log.scalars({'val/R@5': 75.0}, 4)\n"
            "log.close()\n"
            # neither imported nor left blocked (a None entry): `import torch` works later
            "assert 'torch' not in sys.modules\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *sys.path])}
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("val/R_5")] == [(4, 75.0)]


def test_two_writers_in_the_same_second_keep_two_files(tmp_path, monkeypatch):
    # tensorboardX names a file by the second and the host: without a suffix of its own, a
    # run resumed within the second of its stop would overwrite the stopped run's events
    import time
    from vgjax.train.tensorboard import FOLDER, EventLog
    monkeypatch.setattr(time, "time", lambda: 1_700_000_000.0)
    for resume_step, step in ((None, 1), (1, 2)):   # a run, then its resumption
        log = EventLog(tmp_path, resume_step=resume_step)
        log.scalars({"loss": float(step)}, step)
        log.close()
    files = sorted((tmp_path / FOLDER).iterdir())
    assert len(files) == 2 and all(f.stat().st_size > 0 for f in files), files
