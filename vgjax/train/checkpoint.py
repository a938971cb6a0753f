"""Checkpoints of a run: `RUN/checkpoints/{last,last.prev,best}/`.

Each holds `state/` (orbax: params, batch stats, optimizer state, step, full mining's
negative cache), `progress.json` (epoch, mining round, best R@5, patience counter, scheduler
state, validation history, seed) and `model/` (the model alone, via
`vgjax.models.io.save_model`, what evaluation and `describe` load).

Writing is atomic: everything goes to a temporary folder that replaces the old checkpoint
by renames. Saving `last` keeps the `last` it replaces as `last.prev` (one earlier copy, so
a damaged `last` costs one mining round, not the run); a crash between the renames leaves
`last.prev`. Other names keep no copy; a crash between their renames leaves `<name>.old`.
A failed write (e.g. a full disk) leaves the previous checkpoint as it was.

Resuming: `restore_latest` tries `last`, `last.prev`, `last.old`, `best` in turn and says
what a fallback loses; a checkpoint of another model/optimizer config is refused, never
skipped.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np
import orbax.checkpoint as ocp

from vgjax.models.io import MODEL_JSON, VARIABLES, save_model
from vgjax.train import multihost
from vgjax.train.state import Progress, TrainState

log = logging.getLogger(__name__)

PROGRESS = "progress.json"
STATE = "state"
MODEL = "model"
# What `restore_latest` tries, newest first.
RESUME_ORDER = ("last", "last.prev", "last.old", "best", "best.old")


class CheckpointError(ValueError):
    """A run's checkpoints cannot be resumed from; the message names the files."""


class CheckpointDamagedError(CheckpointError):
    """A checkpoint folder with a missing or unreadable file (named in the message)."""


class CheckpointMismatchError(CheckpointError):
    """A readable checkpoint written by a run with another model/optimizer configuration."""


class Restored(NamedTuple):
    """What `restore_latest` resumed from."""
    state: TrainState
    progress: Progress
    negative_cache: np.ndarray
    path: Path                  # the checkpoint folder used
    warnings: tuple[str, ...]   # one line per newer checkpoint skipped (already logged)


def checkpoint_dir(run_dir, name: str) -> Path:
    return Path(run_dir) / "checkpoints" / name


def _sync(tag: str) -> None:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices(tag)


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2))


def _looks_complete(path: Path) -> bool:
    """Cheap check (no orbax read) that `path` is worth keeping as the earlier copy."""
    try:
        json.loads((path / PROGRESS).read_text())
    except (OSError, ValueError):
        return False
    return (path / STATE).is_dir() and (path / MODEL / MODEL_JSON).is_file()


def save(run_dir, name: str, state: TrainState, progress: Progress, model_cfg,
         negative_cache: np.ndarray | None = None, seed: int = 0,
         model_variables: dict | None = None, image_size=(480, 640)) -> Path:
    """Writes checkpoint `name` atomically; `model_variables` (default: the state's) go to
    `model/` (e.g. ASGD's averaged weights).

    For `last`, the replaced `last` becomes `last.prev` (unless it is visibly incomplete;
    then the existing `last.prev` is kept). An error while writing (e.g. OSError ENOSPC)
    removes the partial copy and is raised as it is; the previous checkpoint is untouched.
    """
    final = checkpoint_dir(run_dir, name)
    tmp = final.parent / f".{name}.tmp"
    old = final.parent / f"{name}.old"
    prev = final.parent / f"{name}.prev"
    primary = multihost.is_primary()
    if primary:
        final.parent.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
    _sync(f"ckpt-{name}-tmp")
    item = {"train_state": state,
            "negative_cache": np.full((1, 1), -1, np.int32) if negative_cache is None
            else np.asarray(negative_cache, np.int32)}
    try:
        with ocp.StandardCheckpointer() as ckptr:
            ckptr.save((tmp / STATE).resolve(), item)
            ckptr.wait_until_finished()
        variables = model_variables if model_variables is not None else state.variables
        if primary:
            save_model(tmp / MODEL, model_cfg, jax.device_get(variables),
                       image_size=image_size)
            meta = progress.to_dict() | {"seed": seed, "step": int(jax.device_get(state.step))}
            _write_json(tmp / PROGRESS, meta)  # last: its presence marks a complete copy
        else:
            # the same (process-local) orbax save, into a scratch folder: orbax numbers
            # every save of a process, and its multi-process saves pair the processes'
            # signals by that number, so every process must run the same saves
            with tempfile.TemporaryDirectory(prefix="vgjax-model-") as scratch:
                save_model(Path(scratch) / MODEL, model_cfg, jax.device_get(variables),
                           image_size=image_size)
    except BaseException:
        if primary:
            shutil.rmtree(tmp, ignore_errors=True)  # frees the space; never masks the error
        raise
    if primary:
        if name == "last":
            if final.exists():
                if _looks_complete(final):
                    if prev.exists():
                        shutil.rmtree(prev)
                    os.rename(final, prev)   # a crash here leaves last.prev
                else:
                    shutil.rmtree(final)
            os.rename(tmp, final)
        else:
            if final.exists():
                if old.exists():
                    shutil.rmtree(old)
                os.rename(final, old)        # a crash here leaves <name>.old
            os.rename(tmp, final)
        if old.exists():
            shutil.rmtree(old)
    _sync(f"ckpt-{name}-done")
    return final


def find(run_dir, name: str = "last") -> Path | None:
    """The folder of a complete-looking checkpoint `name` (or of its earlier copy
    `name.prev`, or of `name.old` left by an interrupted save), or None. Checks only that
    the files exist: `restore_latest` reads them and falls back past damaged ones."""
    for suffix in ("", ".prev", ".old"):
        path = checkpoint_dir(run_dir, name + suffix)
        if (path / PROGRESS).is_file() and (path / STATE).is_dir():
            return path
    return None


# Restoring --------------------------------------------------------------------------------

def _short(e: BaseException) -> str:
    """The first line of an error, without tensorstore's spec dump, at most 300 chars."""
    text = str(e).split("\n", 1)[0].split(" [tensorstore_spec=", 1)[0].strip()
    text = f"{type(e).__name__}: {text}" if text else type(e).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _key(entry) -> str:
    for attr in ("key", "idx", "name"):
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    return str(entry)


def _leaves(tree) -> dict[str, tuple]:
    """{dotted path: shape} of the arrays of a tree (or of orbax's metadata tree)."""
    flat, _ = jax.tree_util.tree_flatten_with_path(
        tree, is_leaf=lambda x: hasattr(x, "shape") and not isinstance(x, dict))
    return {".".join(_key(k) for k in path): tuple(x.shape) for path, x in flat}


def _stored_leaves(state_dir: Path) -> dict[str, tuple] | None:
    """{path: shape} that orbax's metadata records for `state_dir`; None if unreadable."""
    try:
        with ocp.StandardCheckpointer() as ckptr:
            meta = ckptr.metadata(state_dir.resolve())
    except Exception:  # noqa: BLE001 - any failure here means: cannot tell
        return None
    meta = getattr(meta, "item_metadata", meta)
    meta = getattr(meta, "tree", meta)
    if meta is None:
        return None
    try:
        return _leaves(meta)
    except Exception:  # noqa: BLE001
        return None


def _differences(stored: dict[str, tuple], wanted: dict[str, tuple]) -> str:
    diffs = [f"{k} is {stored[k]} there, {wanted[k]} here"
             for k in sorted(stored.keys() & wanted.keys()) if stored[k] != wanted[k]]
    diffs += [f"{k} only here" for k in sorted(wanted.keys() - stored.keys())]
    diffs += [f"{k} only there" for k in sorted(stored.keys() - wanted.keys())]
    more = f", and {len(diffs) - 3} more" if len(diffs) > 3 else ""
    return "; ".join(diffs[:3]) + more


def _read_json(file: Path, what: str) -> dict:
    if not file.is_file():
        raise CheckpointDamagedError(f"{file} is missing")
    try:
        meta = json.loads(file.read_text())
    except OSError as e:
        raise CheckpointDamagedError(f"{file} cannot be read ({_short(e)})") from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        raise CheckpointDamagedError(f"{file} is not valid JSON ({_short(e)})") from None
    if not isinstance(meta, dict):
        raise CheckpointDamagedError(f"{file} is not {what} (a JSON object)")
    return meta


def _load(path: Path, abstract_state, negative_cache_shape):
    """(state, progress, negative cache) of one checkpoint folder, every part read.

    Raises CheckpointDamagedError naming the damaged file, CheckpointMismatchError when
    the stored arrays do not fit `abstract_state` (another config)."""
    meta = _read_json(path / PROGRESS, "a progress record")
    try:
        progress = Progress.from_dict(meta)
    except (TypeError, ValueError, AttributeError) as e:
        raise CheckpointDamagedError(
            f"{path / PROGRESS} is not a progress record ({_short(e)})") from None
    _read_json(path / MODEL / MODEL_JSON, "a model description")
    if not (path / MODEL / VARIABLES).is_dir():
        raise CheckpointDamagedError(f"{path / MODEL / VARIABLES} is missing")
    state_dir = path / STATE
    if not state_dir.is_dir():
        raise CheckpointDamagedError(f"{state_dir} is missing")
    if (state_dir / "_METADATA").is_file():
        _read_json(state_dir / "_METADATA", "orbax metadata")
    cache_shape = tuple(negative_cache_shape) if negative_cache_shape is not None else (1, 1)
    target = {"train_state": abstract_state,
              "negative_cache": jax.ShapeDtypeStruct(cache_shape, np.int32)}
    stored, wanted = _stored_leaves(state_dir), _leaves(target)

    def mismatch():
        return CheckpointMismatchError(
            f"checkpoint {path} was written by a run with another model/optimizer "
            f"configuration ({_differences(stored, wanted)}): use a new --workdir or the "
            f"original config")

    if stored is not None and stored.keys() == wanted.keys() and stored != wanted:
        raise mismatch()  # same arrays, other shapes: no need to read them
    try:
        with ocp.StandardCheckpointer() as ckptr:
            item = ckptr.restore(state_dir.resolve(), target)
    except Exception as e:  # noqa: BLE001 - orbax/tensorstore raise many types
        # Other array names alone are not trusted (pytree naming may differ between
        # versions): a mismatch is when orbax refuses too.
        if stored is not None and stored != wanted:
            raise mismatch() from None
        raise CheckpointDamagedError(f"{state_dir} cannot be restored ({_short(e)})") from None
    return item["train_state"], progress, np.asarray(item["negative_cache"])


def restore(path, abstract_state: TrainState, negative_cache_shape=None):
    """-> (state, progress, negative_cache) from one checkpoint folder.

    `abstract_state` (jax.ShapeDtypeStruct leaves, with shardings) gives the tree structure,
    shapes and placement to restore into. Raises CheckpointDamagedError (naming the file)
    or CheckpointMismatchError (another model/optimizer config); both are ValueErrors.
    `restore_latest` is what a resume should call.
    """
    return _load(Path(path), abstract_state, negative_cache_shape)


def _position(progress: Progress, state) -> str:
    return (f"epoch {progress.epoch}, {progress.round} mining round(s) of it done, "
            f"step {int(jax.device_get(state.step))}")


def restore_latest(run_dir, abstract_state: TrainState,
                   negative_cache_shape=None) -> Restored | None:
    """Resumes a run from its newest usable checkpoint; None if it has none (a new run).

    Tries `RUN/checkpoints/` `last`, `last.prev`, `last.old`, `best`, `best.old` (those that
    exist), reading each fully (progress.json, model/, the orbax state into
    `abstract_state`, as `restore`), and returns the first that reads. For each newer one
    skipped, `Restored.warnings` holds (and the log shows) one line naming the damaged file
    and what is lost, e.g. "RUN/checkpoints/last/progress.json is not valid JSON (...);
    resuming from RUN/checkpoints/last.prev (epoch 2, ...): the last saved mining round is
    lost and will be redone".

    Raises CheckpointMismatchError as soon as a readable checkpoint does not fit
    `abstract_state` (a run with another model/optimizer: no fallback to an older one),
    and CheckpointError naming every damaged file when none is usable.

    The training loop's resume is

        restored = checkpoint.restore_latest(run, target, cache_shape)
        if restored is None: ...start from scratch...
        state, progress, cache, path, warnings = restored

    in place of `find(run, "last")` + `restore(found, target, cache_shape)`.
    """
    candidates = [checkpoint_dir(run_dir, name) for name in RESUME_ORDER]
    if not any(c.exists() for c in candidates):
        return None
    skipped: list[str] = []
    for path in candidates:
        if not path.exists():
            if path.name == "last":
                skipped.append(f"{path} is missing (a save was interrupted)")
            continue
        try:
            state, progress, cache = _load(path, abstract_state, negative_cache_shape)
        except CheckpointDamagedError as e:
            skipped.append(str(e))
            continue
        if path.name.startswith("last"):
            lost = "the last saved mining round is lost and will be redone"
        else:
            lost = "the mining rounds since are lost and will be redone"
        warnings = tuple(f"{problem}; resuming from {path} ({_position(progress, state)}): "
                         f"{lost}" for problem in skipped)
        for w in warnings:
            log.warning("%s", w)
        return Restored(state, progress, cache, path, warnings)
    folder = checkpoint_dir(run_dir, "")
    raise CheckpointError(
        f"no usable checkpoint in {folder}: {'; '.join(skipped)}. Delete {folder} to start "
        f"the run over, or use another --workdir")


def read_progress(path) -> dict:
    return json.loads((Path(path) / PROGRESS).read_text())
