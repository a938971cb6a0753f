"""TensorBoard event files of a training run, in `RUN/tensorboard/` beside `metrics.jsonl`.

The same numbers as `metrics.jsonl`, as scalars against the global train step (tags below
as named in metrics.jsonl; in TensorBoard, '@' and other characters it does not take in a
tag become '_': `val/R@5` is `val/R_5`):
- per train step, every scalar of the step's metrics dict as `train/<key>` (`train/loss`,
  `train/loss/<term>`, `train/lr`, `train/domain_acc`, ...);
- per epoch (at its last step), each evaluator's recalls under the names of `train.best_metric`
  (`val/R@5`; `<entry>/<dataset>/R@5` for several datasets), `epoch/train_loss`,
  `epoch/lr`, `epoch/time_s` and `epoch/best_value`;
- the `before` evaluations at step 0 under the same names as the epochs' (the start of each
  curve), and the `end` evaluations of the best model at the last step;
- the pictures of queries beside their top-K that an evaluation renders (`test.num_pictures`)
  as images, `<entry>/<dataset>/pictures`.
A resumed run appends a new event file (files are named by time, host, process and writer,
so none replaces another) and hides the events of the stopped run after its
checkpoint (TensorBoard's purge step), as `metrics.jsonl` drops those records.
"""
from __future__ import annotations

import itertools
import os
import re
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

FOLDER = "tensorboard"
_WRITERS = itertools.count()  # this process's event files, for their names
NOT_IN_TAGS = re.compile(r"[^-/\w.]")  # characters TensorBoard does not take in a tag
STEP_COUNTERS = ("type", "step", "epoch", "round", "batch")  # step record fields, not scalars
EPOCH_SCALARS = {"train_loss": "epoch/train_loss", "lr": "epoch/lr",
                 "epoch_time_s": "epoch/time_s", "best_value": "epoch/best_value"}


def legal_tag(name: str) -> str:
    """`name` with each character TensorBoard refuses replaced by '_' (`val/R@5` -> `val/R_5`)."""
    return NOT_IN_TAGS.sub("_", name)


def recall_tags(name: str, results: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """An evaluator's {dataset: {"R@N": value}} as tags named as its metrics are:
    `<name>/R@N` for one dataset, `<name>/<dataset>/R@N` for several."""
    out = {}
    for dataset, recalls in results.items():
        prefix = name if len(results) == 1 else f"{name}/{dataset}"
        out.update({f"{prefix}/{k}": float(v) for k, v in recalls.items()})
    return out


def scalar_tags(record: Mapping) -> dict[str, float]:
    """The scalars of one `metrics.jsonl` record (see vgjax.train.run_dir) as {tag: value}."""
    kind = record.get("type")
    if kind == "step":
        return {f"train/{k}": float(v) for k, v in record.items()
                if k not in STEP_COUNTERS and isinstance(v, (int, float))}
    if kind == "epoch":
        out = {tag: float(record[k]) for k, tag in EPOCH_SCALARS.items() if k in record}
        out.update({k: float(v) for k, v in record.get("metrics", {}).items()})
        return out
    if isinstance(kind, str) and kind.startswith("initial_"):
        return recall_tags(kind.removeprefix("initial_"), record.get("results", {}))
    return {}


def summary_writer_class():
    """tensorboardX's SummaryWriter, imported without torch: tensorboardX imports torch when
    it is installed (5-8 s on a 2-core CPU) only to accept torch tensors, which a run never
    passes (its numbers are floats and NumPy arrays). Where torch is already imported, or
    tensorboardX is, the plain import costs nothing more."""
    if "tensorboardX" in sys.modules or "torch" in sys.modules:
        from tensorboardX import SummaryWriter
        return SummaryWriter
    sys.modules["torch"] = None  # `import torch` raises ImportError meanwhile
    try:
        from tensorboardX import SummaryWriter
    finally:
        del sys.modules["torch"]  # a later `import torch` works as usual
    return SummaryWriter


def clear(run: Path) -> None:
    """Removes the event files of an earlier attempt that never saved a round (a fresh
    start), as its `metrics.jsonl` is removed."""
    shutil.rmtree(Path(run) / FOLDER, ignore_errors=True)


class EventLog:
    """A tensorboardX writer of `RUN/tensorboard/`. `resume_step`: the step of the checkpoint
    a run resumes from; events the stopped run wrote after it are hidden."""

    def __init__(self, run: Path, resume_step: int | None = None):
        purge = resume_step + 1 if resume_step else None
        # tensorboardX names a file by the second and the host alone: a second writer in the
        # same second (a run resumed at once) would overwrite the first's file
        suffix = f".{os.getpid()}.{next(_WRITERS)}"
        self.writer = summary_writer_class()(logdir=str(Path(run) / FOLDER), purge_step=purge,
                                             filename_suffix=suffix)

    def scalars(self, tags: Mapping[str, float], step: int) -> None:
        for tag, value in tags.items():
            self.writer.add_scalar(legal_tag(tag), value, global_step=int(step))

    def pictures(self, tag: str, paths: Sequence[Path], step: int) -> None:
        """PNG files as one image each, `tag/<file stem>`."""
        for path in paths:
            with Image.open(path) as img:
                pixels = np.asarray(img.convert("RGB"))
            self.writer.add_image(legal_tag(f"{tag}/{Path(path).stem}"), pixels, global_step=int(step),
                                  dataformats="HWC")

    def close(self) -> None:
        self.writer.close()
