"""Checkpoints of a run: `RUN/checkpoints/{last,best}/`.

Each holds `state/` (orbax: params, batch stats, optimizer state, step, full mining's
negative cache), `progress.json` (epoch, mining round, best R@5, patience counter, scheduler
state, validation history, seed) and `model/` (the model alone, via
`vgjax.models.io.save_model`, what evaluation and `describe` load).

Writing is atomic: everything goes to a temporary folder that replaces the old checkpoint
by two renames; a crash between them leaves `<name>.old`, which `restore` falls back to.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

from vgjax.models.io import save_model
from vgjax.train.state import Progress, TrainState

log = logging.getLogger(__name__)


def checkpoint_dir(run_dir, name: str) -> Path:
    return Path(run_dir) / "checkpoints" / name


def _sync(tag: str) -> None:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices(tag)


def save(run_dir, name: str, state: TrainState, progress: Progress, model_cfg,
         negative_cache: np.ndarray | None = None, seed: int = 0,
         model_variables: dict | None = None, image_size=(480, 640)) -> Path:
    """Writes checkpoint `name` atomically; `model_variables` (default: the state's) go to
    `model/` (e.g. ASGD's averaged weights)."""
    final = checkpoint_dir(run_dir, name)
    tmp = final.parent / f".{name}.tmp"
    old = final.parent / f"{name}.old"
    primary = jax.process_index() == 0
    if primary:
        final.parent.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
    _sync(f"ckpt-{name}-tmp")
    item = {"train_state": state,
            "negative_cache": np.full((1, 1), -1, np.int32) if negative_cache is None
            else np.asarray(negative_cache, np.int32)}
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save((tmp / "state").resolve(), item)
        ckptr.wait_until_finished()
    if primary:
        variables = model_variables if model_variables is not None else state.variables
        save_model(tmp / "model", model_cfg, jax.device_get(variables), image_size=image_size)
        meta = progress.to_dict() | {"seed": seed, "step": int(jax.device_get(state.step))}
        (tmp / "progress.json").write_text(json.dumps(meta, indent=2))
        if final.exists():
            if old.exists():
                shutil.rmtree(old)
            os.rename(final, old)
        os.rename(tmp, final)
        if old.exists():
            shutil.rmtree(old)
    _sync(f"ckpt-{name}-done")
    return final


def find(run_dir, name: str = "last") -> Path | None:
    """The folder of a complete checkpoint `name`, or None."""
    for path in (checkpoint_dir(run_dir, name), checkpoint_dir(run_dir, f"{name}.old")):
        if (path / "progress.json").is_file() and (path / "state").is_dir():
            return path
    return None


def restore(path, abstract_state: TrainState, negative_cache_shape=None):
    """-> (state, progress, negative_cache) from a checkpoint folder.

    `abstract_state` (jax.ShapeDtypeStruct leaves, with shardings) gives the tree structure,
    shapes and placement to restore into.
    """
    path = Path(path)
    abstract = abstract_state
    cache_shape = tuple(negative_cache_shape) if negative_cache_shape is not None else (1, 1)
    target = {"train_state": abstract,
              "negative_cache": jax.ShapeDtypeStruct(cache_shape, np.int32)}
    meta = json.loads((path / "progress.json").read_text())
    with ocp.StandardCheckpointer() as ckptr:
        try:
            item = ckptr.restore((path / "state").resolve(), target)
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"checkpoint {path} does not match this config's model/optimizer "
                             f"({type(e).__name__}: {e}); use a new --workdir") from e
    progress = Progress.from_dict(meta)
    return item["train_state"], progress, np.asarray(item["negative_cache"])


def read_progress(path) -> dict:
    return json.loads((Path(path) / "progress.json").read_text())
