"""The run folder's files other than checkpoints: `train.log`, `metrics.jsonl` (and its
TensorBoard copy, `tensorboard/`), `lr.png`, `config.json`.

`metrics.jsonl` holds one JSON object per line: `{"type": "step", "step": 12, "loss": ..,
"lr": .., ...}` per train step (whatever the step's metrics dict holds), `{"type": "epoch",
...}` after each epoch and `{"type": "<evaluator>", ...}` for evaluations outside epochs
(e.g. before training). Only process 0 writes.
"""
from __future__ import annotations

import json
import logging
import os
import socket
from pathlib import Path

from vgjax import quiet_library_logs
from vgjax.config import flatten, to_json
from vgjax.train import multihost, tensorboard

log = logging.getLogger("vgjax.train")


class MetricsWriter:
    """Appends JSON lines to `metrics.jsonl`, and their scalars to `events` (TensorBoard,
    vgjax.train.tensorboard) when given; writes nothing when not `enabled` (the other
    processes of a multi-process run). `step`: the global step of the state it starts from."""

    def __init__(self, path: Path, enabled: bool = True,
                 events: tensorboard.EventLog | None = None, step: int = 0):
        self.path = path
        self.file = open(path, "a", buffering=1) if enabled else None
        self.events = events if enabled else None
        self.step = int(step)

    def write(self, *, global_step: int | None = None, **record) -> None:
        """One record; its TensorBoard scalars go at `global_step`, by default its own
        `step` field, else the last step written."""
        if global_step is None:
            global_step = record.get("step", self.step)
        self.step = int(global_step)
        if self.file is not None:
            self.file.write(json.dumps(record) + "\n")
        if self.events is not None:
            self.events.scalars(tensorboard.scalar_tags(record), self.step)

    def measure(self, step: int, **scalars) -> None:
        """One train step's scalars (floats) as a `step` record."""
        self.write(type="step", step=int(step), **{k: _number(v) for k, v in scalars.items()})

    def evaluation(self, name: str, results: dict, out_dir: Path | None = None) -> None:
        """TensorBoard only (`results.json` holds them): the recalls {dataset: {"R@N": ..}}
        of evaluator `name` at the last step, and the pictures it rendered in `out_dir`."""
        if self.events is None:
            return
        self.events.scalars(tensorboard.recall_tags(name, results), self.step)
        if out_dir is not None:
            self.pictures(name, out_dir, list(results))

    def pictures(self, name: str, out_dir: Path, datasets) -> None:
        """The query pictures evaluator `name` rendered in `out_dir/pictures/<dataset>/`."""
        if self.events is None:
            return
        for dataset in datasets:
            files = sorted((Path(out_dir) / "pictures" / dataset).glob("query_*.png"))
            self.events.pictures(f"{name}/{dataset}/pictures", files, self.step)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
        if self.events is not None:
            self.events.close()
            self.events = None


def open_metrics(run: Path, events: bool, step: int = 0) -> MetricsWriter:
    """The run's `metrics.jsonl` writer (process 0 only), with TensorBoard event files in
    `RUN/tensorboard/` when `events` (train.tensorboard); `step`: the global step the run
    starts or resumes from."""
    primary = multihost.is_primary()
    log_events = tensorboard.EventLog(run, step) if events and primary else None
    return MetricsWriter(run / "metrics.jsonl", enabled=primary, events=log_events, step=step)


def _number(value):
    """A Python int or float (NaN stays NaN, as Python's json writes it)."""
    return value if isinstance(value, int) else float(value)


def read_metrics(path: Path) -> list[dict]:
    """The records of a `metrics.jsonl` (a line cut short by a crash is skipped)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def truncate_metrics(path: Path, step: int, epoch: int) -> None:
    """Drops records written after the checkpoint being resumed from (a killed run may have
    logged steps whose state was never saved)."""
    if not path.exists():
        return
    keep = []
    for r in read_metrics(path):
        if r.get("type") == "step" and r["step"] > step:
            continue
        if r.get("type") == "epoch" and r["epoch"] >= epoch:
            continue
        keep.append(json.dumps(r))
    path.write_text("".join(line + "\n" for line in keep))


def plot_steps(metrics_path: Path, out: Path, keys, log_scale: bool = False) -> None:
    """Step records' `keys` against the train step, one panel each -> a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    records = [r for r in read_metrics(metrics_path) if r.get("type") == "step"]
    fig = Figure(figsize=(6, 2.4 * len(keys)))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(keys), 1, squeeze=False)[:, 0]
    for ax, key in zip(axes, keys):
        points = [(r["step"], float(r[key])) for r in records if key in r]
        steps, values = [p[0] for p in points], [p[1] for p in points]
        ax.plot(steps, values)
        ax.set_ylabel(key)
        if log_scale and values and min(values) > 0:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("train step")
    fig.tight_layout()
    fig.savefig(out, dpi=100)


def plot_lr(metrics_path: Path, out: Path) -> None:
    """Learning rate per train step -> `lr.png`."""
    plot_steps(metrics_path, out, ("lr",), log_scale=True)


def check_writable(run: Path) -> None:
    """Creates the run folder and proves it writable before any work; a one-line error
    naming the path otherwise (a file in the way, no permission, a full disk)."""
    if run.exists() and not run.is_dir():
        raise OSError(f"--workdir {run}: is a file, not a folder")
    try:
        run.mkdir(parents=True, exist_ok=True)
        # one probe per process: processes of a multi-host run share the folder, and a shared
        # name lets one process delete the probe another is about to delete
        probe = run / f".write-test.{socket.gethostname()}.{os.getpid()}"
        probe.write_bytes(b"0" * 4096)
        probe.unlink()
    except OSError as e:
        raise OSError(f"--workdir {run}: cannot write there ({e.strerror or e})") from None


def setup_logging(run: Path) -> logging.Handler | None:
    """`train.log` (written by process 0 only) and a console handler if none is set."""
    root = logging.getLogger()
    handler = None
    if multihost.is_primary():
        handler = logging.FileHandler(run / "train.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    quiet_library_logs()
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    if not any(isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
               for h in root.handlers):
        stream = logging.StreamHandler()
        stream.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        root.addHandler(stream)
    return handler


def note_config_changes(path: Path, config) -> None:
    """A run resumed with other options: say which ones (the new values apply from now on)."""
    if not path.exists():
        return
    before = flatten(json.loads(path.read_text()))
    now = flatten(json.loads(to_json(config)))
    changed = {k: (before.get(k), now.get(k)) for k in sorted(set(before) | set(now))
               if before.get(k) != now.get(k)}
    if changed:
        log.warning("%s differs from this run's config: %s", path, "; ".join(
            f"{k}: {a!r} -> {b!r}" for k, (a, b) in changed.items()))


def write_config(run: Path, config) -> None:
    note_config_changes(run / "config.json", config)
    (run / "config.json").write_text(to_json(config))
