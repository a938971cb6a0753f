"""vgjax model directories: `model.json` + `variables/` (orbax).

    <dir>/model.json   {"format": "vgjax-model", "model": {...model config...},
                        "descriptor_dim": D, "image_size": [H, W]}
    <dir>/variables/   {'params', 'batch_stats'} written by orbax

Training, evaluation, `vgjax.describe` and `scripts/convert_torch_weights.py` all read and
write this one layout. A training run keeps it at `RUN/checkpoints/{best,last}/model`, so
`load_model` also accepts a run folder or a checkpoint folder.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import jax
import ml_collections
import numpy as np

from vgjax.models.network import abstract_variables, descriptor_dim, validate_model_config

FORMAT = "vgjax-model"
MODEL_JSON = "model.json"
VARIABLES = "variables"


class ModelDirError(ValueError):
    """A path that is not (or no longer) a readable vgjax model directory."""


def _is_model_dir(path: Path) -> bool:
    return (path / MODEL_JSON).is_file()


def resolve_model_dir(path: str | os.PathLike) -> Path:
    """Model dir for a model dir, a checkpoint folder (`<ckpt>/model`) or a run folder
    (`RUN/checkpoints/best/model`, else `RUN/checkpoints/last/model`)."""
    p = Path(path)
    if not p.exists():
        raise ModelDirError(f"{p}: no such file or directory")
    candidates = [p, p / "model", p / "checkpoints" / "best" / "model",
                  p / "checkpoints" / "last" / "model"]
    for c in candidates:
        if _is_model_dir(c):
            return c
    raise ModelDirError(
        f"{p}: not a vgjax model: none of {', '.join(str(c / MODEL_JSON) for c in candidates)} "
        "exists (expected a model dir with model.json + variables/, a checkpoint folder with "
        "model/, or a run folder with checkpoints/best or checkpoints/last)")


def read_model_info(path: str | os.PathLike) -> dict:
    """The parsed `model.json` of a model dir / checkpoint / run folder (plus `dir`)."""
    d = resolve_model_dir(path)
    try:
        info = json.loads((d / MODEL_JSON).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ModelDirError(f"{d / MODEL_JSON}: cannot be read as JSON ({e})") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT or "model" not in info:
        raise ModelDirError(f"{d / MODEL_JSON}: not a vgjax model description "
                            f"(expected \"format\": \"{FORMAT}\" and a \"model\" section)")
    info["dir"] = str(d)
    return info


def _process_local_checkpointer():
    """An orbax checkpointer that reads or writes with this process alone: a model dir holds
    host arrays, and in a multi-process run only process 0 writes it (no cross-process
    barriers, which the other processes would never reach)."""
    import orbax.checkpoint as ocp
    if jax.process_count() == 1:
        return ocp.StandardCheckpointer()
    i = jax.process_index()
    options = ocp.options.MultiprocessingOptions(
        primary_host=i, active_processes={i}, barrier_sync_key_prefix=f"model-dir-{i}")
    # synchronous: orbax's asynchronous saves signal "directory created" through the
    # coordination service under keys numbered per process but shared by all processes, so
    # two processes' local saves of the same number would read (and delete) each other's
    return ocp.Checkpointer(ocp.StandardCheckpointHandler(multiprocessing_options=options),
                            multiprocessing_options=options)


def save_model(directory: str | os.PathLike, model_cfg, variables,
               image_size=(480, 640), extra: dict | None = None) -> Path:
    """Writes a model dir (replacing an existing one); returns its path.

    `image_size` (H, W) is the input size the model was trained/converted for; it becomes
    the default resize of `vgjax.describe`. `extra` (JSON-able) is stored beside it.
    """
    validate_model_config(model_cfg)
    d = Path(directory).absolute()
    d.mkdir(parents=True, exist_ok=True)
    cfg = model_cfg.to_dict() if hasattr(model_cfg, "to_dict") else dict(model_cfg)
    info = {"format": FORMAT, "model": cfg, "descriptor_dim": descriptor_dim(model_cfg),
            "image_size": [int(s) for s in image_size]}
    if extra:
        info["extra"] = extra
    tree = {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}
    tree = jax.tree_util.tree_map(lambda x: np.asarray(jax.device_get(x)), tree)

    # model.json goes last and is removed first, so a half-written dir is never loadable.
    (d / MODEL_JSON).unlink(missing_ok=True)
    if (d / VARIABLES).exists():
        shutil.rmtree(d / VARIABLES)
    with _process_local_checkpointer() as ckptr:
        ckptr.save(d / VARIABLES, tree)
    tmp = d / (MODEL_JSON + ".tmp")
    tmp.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    tmp.replace(d / MODEL_JSON)
    return d


def load_model(path: str | os.PathLike, device_put: bool = True):
    """(model_cfg ConfigDict, variables) from a model dir, checkpoint folder or run folder.

    The stored variables are checked against the architecture in `model.json`.
    """
    info = read_model_info(path)
    d = Path(info["dir"])
    model_cfg = ml_collections.ConfigDict(info["model"])
    try:
        validate_model_config(model_cfg)
    except ValueError as e:
        raise ModelDirError(f"{d / MODEL_JSON}: {e}") from None
    target = abstract_variables(model_cfg)
    if not (d / VARIABLES).is_dir():
        raise ModelDirError(f"{d / VARIABLES}: missing (the model dir is incomplete)")
    try:
        with _process_local_checkpointer() as ckptr:
            variables = ckptr.restore(d.absolute() / VARIABLES, target)
    except Exception as e:  # noqa: BLE001 - orbax raises many kinds; keep the reason
        raise ModelDirError(f"{d / VARIABLES}: cannot restore variables for "
                            f"{model_cfg.backbone} + {model_cfg.aggregation}: {e}") from None
    variables = {"params": variables["params"], "batch_stats": variables["batch_stats"]}
    wrong = [f"{jax.tree_util.keystr(p)}: stored {np.shape(v)}, model needs {t.shape}"
             for (p, v), t in zip(jax.tree_util.tree_leaves_with_path(variables),
                                  jax.tree_util.tree_leaves(target))
             if tuple(np.shape(v)) != tuple(t.shape)]
    if wrong:
        raise ModelDirError(f"{d / VARIABLES}: cannot restore variables for "
                            f"{model_cfg.backbone} + {model_cfg.aggregation} described in "
                            f"{MODEL_JSON}: shape mismatches: " + "; ".join(wrong[:5]))
    if device_put:
        variables = jax.device_put(variables)
    return model_cfg, variables


def merge_pretrained(variables, pretrained) -> tuple[dict, list[str]]:
    """Copies every leaf of `pretrained` whose path and shape exist in `variables`.

    Returns (new variables, paths copied). For starting training from a converted model
    with another head or cut (e.g. ImageNet conv5 weights into a conv4 + GeM network).
    """
    flat_pre = {jax.tree_util.keystr(p): v
                for p, v in jax.tree_util.tree_flatten_with_path(pretrained)[0]}
    copied = []

    def pick(path, leaf):
        key = jax.tree_util.keystr(path)
        src = flat_pre.get(key)
        if src is not None and np.shape(src) == np.shape(leaf):
            copied.append(key)
            return jax.numpy.asarray(src, dtype=leaf.dtype)
        return leaf

    return jax.tree_util.tree_map_with_path(pick, variables), copied
