"""What the trainings that read each step's images from their files share (place batches,
`vgjax.train.places_loop`; CosPlace, `vgjax.train.cosplace_loop`): the checks before the
first step and the loop over an epoch's steps."""
from __future__ import annotations

import dataclasses
import logging
import math
import time
from pathlib import Path

import jax
import numpy as np

from vgjax.data.dataset import check_evaluable
from vgjax.data.sources import FOLDER_READER
from vgjax.eval import evaluators
from vgjax.progress import bar as progress_bar
from vgjax.train import multihost, run_dir
from vgjax.train.state import Progress
from vgjax.train.step import NonFiniteLossError

log = logging.getLogger("vgjax.train")


@dataclasses.dataclass(frozen=True)
class _Images:
    paths: np.ndarray


@dataclasses.dataclass(frozen=True)
class TrainImages:
    """The training images where the model's initialisation looks for them (NetVLAD's
    k-means samples `database` and `queries`): every image in `database`."""
    database: _Images
    queries: _Images

    @classmethod
    def of(cls, paths) -> "TrainImages":
        return cls(_Images(np.asarray(paths)), _Images(np.array([], str)))


def prepare(config, run: Path, data, paths, where: str):
    """(image reader, evaluators) of a run, after writing its config and checking, before
    any work, the training images' files, every evaluator's files and the splits the epochs
    validate on."""
    if multihost.is_primary():
        run_dir.write_config(run, config)
    reader = FOLDER_READER if data.check_images else dataclasses.replace(FOLDER_READER,
                                                                         check=None)
    reader = reader.with_draft(data.jpeg_draft)
    evals = evaluators.build_all(config)
    if reader.check is not None:
        reader.check(list(paths), where)
    for e in evals.values():
        e.check_files()
    for e in evals.values():
        if "epoch" in e.when:
            for d in e.datasets:
                check_evaluable(e.open(d)[0], f"evals.{e.name}")
    return reader, evals


def check_multiples(mesh, sizes: dict[str, int]) -> None:
    """Each `train.<option>` value of `sizes` splits evenly over the mesh's devices."""
    for name, value in sizes.items():
        if value % mesh.devices.size:
            raise ValueError(f"train.{name}={value} must be a multiple of the "
                             f"{mesh.devices.size} devices used (set train.num_devices)")


def run_steps(config, t, run: Path, state, progress: Progress, loader, step_fn, *,
              total: int, images_per_step: int, metrics_writer, desc: str, context: str,
              fields: dict | None = None, lr=None):
    """The steps of what is left of epoch `progress.epoch` (`loader` yields its batches
    from step `progress.round` of `total`): `step_fn(state, i, x) -> (state, metrics)`
    runs the i-th of them. Each step's metrics go to `metrics_writer` (with `fields`) and
    to the epoch's loss in `progress`; `last` is saved every `train.checkpoint_steps`
    steps; a non-finite loss saves the state before it as `nan` and raises, naming
    `context` (e.g. "epoch 2, group 1"). Returns the state."""
    from vgjax.train.loop import _save

    epoch, start = progress.epoch, progress.round
    base_step = int(jax.device_get(state.step))
    t0 = time.perf_counter()

    def record(i, metrics, state):
        values = {k: float(v) for k, v in jax.device_get(metrics).items()}
        if not math.isfinite(values["loss"]):  # the state is the one before step i
            _save(config, t, run, "nan", state, progress, None)
            raise NonFiniteLossError(
                f"loss is not finite at step {base_step + i + 1} ({context}, batch "
                f"{start + i}; train.lr={lr}); the state before it is in "
                f"{run / 'checkpoints' / 'nan'}, and {run / 'checkpoints' / 'last'} holds the "
                "last checkpoint: lower train.lr and resume with the same --workdir")
        metrics_writer.measure(base_step + i + 1, epoch=epoch, batch=start + i,
                               **(fields or {}), **values)
        progress.round += 1
        progress.epoch_loss_sum += values["loss"]
        progress.epoch_loss_steps += 1

    pending = None
    for i, (x, _) in enumerate(progress_bar(loader, desc=desc, total=len(loader), unit="step",
                                            enabled=multihost.is_primary())):
        state, metrics = step_fn(state, i, x)
        if pending is not None:  # the host reads a step's loss while the next one runs
            record(*pending, state)
        pending = (i, metrics)
        done = start + i + 1
        if t.checkpoint_steps and done % t.checkpoint_steps == 0 and done < total:
            record(*pending, state)
            pending = None
            _save(config, t, run, "last", state, progress, None)
    if pending is not None:
        record(*pending, state)
    took = time.perf_counter() - t0
    n = total - start
    log.info("%s: %d steps in %.1f s (%.0f img/s), mean loss %.4f", desc, n, took,
             n * images_per_step / max(took, 1e-9),
             progress.epoch_loss_sum / max(progress.epoch_loss_steps, 1))
    return state


def train_then_test(config, t, run: Path, evals, describe, metrics_writer, state,
                    progress: Progress, train_epoch) -> dict:
    """`run_epochs` with `train_epoch`, then the `end` evaluators on the best model; the
    metrics writer is closed however it ends."""
    from vgjax.train.loop import _final, run_epochs
    try:
        run_epochs(config, t, run, evals, describe, metrics_writer, state, progress,
                   train_epoch)
        return _final(config, run, evals, describe, metrics_writer)
    finally:
        metrics_writer.close()
