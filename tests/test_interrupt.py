"""Interruptions and workdir faults: SIGINT / SIGTERM stop with one line and the signal's
exit code, the same command resumes; a bad --workdir is a one-line error before any work;
a restart after a death before the first checkpoint leaves no stale metrics."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def city(tiny_city):
    return tiny_city


def _cmd(root, run, *extra):
    return [sys.executable, "-m", "vgjax.train", "--config", str(REPO / "configs" / "smoke.py"),
            "--workdir", str(run), f"--config.data.root={root}",
            "--config.data.test_datasets=[pitts30k]", "--config.train.queries_per_epoch=16",
            "--config.test.save_predictions=false", *extra]


def _interrupt_after_first_round(cmd, sig, run):
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    progress = run / "checkpoints" / "last" / "progress.json"
    before = progress.stat().st_mtime_ns if progress.exists() else 0
    deadline = time.time() + 300

    def saved_now():
        try:
            return progress.stat().st_mtime_ns > before
        except FileNotFoundError:
            return False

    while not saved_now() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=300)
    return proc.returncode, err


def test_sigint_and_sigterm_stop_cleanly_and_resume(city, tmp_path):
    run = tmp_path / "run"
    cmd = _cmd(city, run)
    for sig in (signal.SIGINT, signal.SIGTERM):
        code, err = _interrupt_after_first_round(cmd, sig, run)
        if code == 0:  # finished before the signal landed: nothing left to check
            break
        assert code == 128 + int(sig), err[-2000:]
        assert "Traceback" not in err
        last = err.strip().splitlines()[-1]
        assert last.startswith(f"interrupted by {sig.name}: ") and "run the same command" in last
        assert "checkpoints/last holds the state after" in last
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    steps = [json.loads(l)["step"] for l in (run / "metrics.jsonl").read_text().splitlines()
             if json.loads(l)["type"] == "step"]
    assert steps == sorted(set(steps)) and len(steps) == 2 * 8   # no step twice, none lost
    # the event files of the stopped runs were closed whole; what they logged after their
    # checkpoint is hidden, so TensorBoard sees each step once, as metrics.jsonl does
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == steps


def test_bad_workdirs_are_one_line_errors(city, tmp_path):
    from vgjax.cli.train import main
    afile = tmp_path / "file"
    afile.write_text("x")
    readonly = tmp_path / "ro"
    readonly.mkdir()
    readonly.chmod(0o500)
    for workdir, match in [(afile, "is a file"), (readonly / "run", "cannot write")]:
        if match == "cannot write" and os.geteuid() == 0:
            continue  # root writes anywhere
        code = main(_cmd(city, workdir)[3:])
        assert code == 2
    assert main(_cmd(city, afile)[3:]) == 2


def test_restart_before_the_first_checkpoint_leaves_no_stale_records(city, tmp_path):
    from vgjax.cli.config import load_config
    from vgjax.train import loop
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text(json.dumps({"type": "step", "step": 1, "loss": 9.0})
                                       + "\n" + json.dumps({"type": "initial_val"}) + "\n")
    overrides = [a for a in _cmd(city, run) if a.startswith("--config.")]
    cfg = load_config(REPO / "configs" / "smoke.py", overrides + ["train.epochs=1"])
    loop.train_and_evaluate(cfg, run)
    records = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if r["type"] == "step"]
    assert steps == list(range(1, 9)) and all(r.get("loss") != 9.0 for r in records)


def test_background_thread_errors_after_a_signal_print_no_traceback():
    """Once a signal stops the run, a worker thread failing on its closed executor (orbax's
    save futures while the main thread unwinds) prints no traceback; before it, it does."""
    code = (
        "import logging, signal, sys, threading\n"
        "from vgjax.train import interrupt\n"
        "logging.basicConfig()\n"
        "interrupt.raise_on_sigterm()\n"
        "def fail():\n"
        "    try:\n"  # orbax logs its futures' errors with their traceback, then raises
        "        raise RuntimeError('cannot schedule new futures after shutdown')\n"
        "    except RuntimeError:\n"
        "        logging.exception('raised an exception')\n"
        "        raise\n"
        "def run():\n"
        "    t = threading.Thread(target=fail); t.start(); t.join()\n"
        "run()\n"
        "print('--- signal', file=sys.stderr, flush=True)\n"
        "try:\n"
        "    signal.raise_signal(signal.SIGTERM)\n"
        "except interrupt.Terminated:\n"
        "    pass\n"
        "run()\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    before, after = proc.stderr.split("--- signal")
    assert "Traceback" in before and "cannot schedule" in before
    assert "Traceback" not in after and "cannot schedule" not in after


def test_a_signal_inside_a_gc_callback_still_stops_the_run():
    """JAX runs a garbage-collector callback; a KeyboardInterrupt raised inside one would be
    printed as "Exception ignored" and lost. The handler sends the signal again after it."""
    code = (
        "import gc, signal, sys, time\n"
        "from vgjax.train import interrupt\n"
        "interrupt.raise_on_sigterm()\n"
        "fired = []\n"
        "def callback(phase, info):\n"
        "    if phase == 'start' and not fired:\n"
        "        fired.append(1)\n"
        "        signal.raise_signal(signal.SIGINT)\n"
        "        sum(range(1000))  # the handler runs here, inside the callback\n"
        "gc.callbacks.append(callback)\n"
        "try:\n"
        "    gc.collect()\n"
        "    time.sleep(5)\n"
        "    print('went on')\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted')\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout.strip() == "interrupted", (proc.stdout, proc.stderr)
    assert "Exception ignored" not in proc.stderr, proc.stderr
