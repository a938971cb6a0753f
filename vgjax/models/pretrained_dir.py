"""`model.pretrained=<model dir>`: what of a saved model fits the configured network.

The backbone must be the same network (another cut is fine: conv4 weights in a conv5 network,
its layer4 then starting from random values, with a warning). A trained head must fit the
configured one: the same aggregation with the same array shapes, or a head the aggregation
starts from (CRN from a NetVLAD, as the reference). One that does not (another aggregation,
cluster count or fc size) is refused naming both shapes, unless `model.pretrained_partial`
allows loading only the arrays that fit. A converted backbone-only file lists its
placeholder head as "initialised" (`scripts/convert_torch_weights.py`): only its backbone
counts.
"""
from __future__ import annotations

import dataclasses

import jax
import numpy as np

from vgjax.config import ConfigError
from vgjax.models.aggregation import AGGREGATIONS
from vgjax.models.backbones import parse_backbone
from vgjax.models.io import load_model, read_model_info
from vgjax.models.network import abstract_variables

HEAD_MODULES = ("aggregation", "fc")  # the parameter groups after the backbone


def leaf_shapes(variables, modules) -> dict[str, tuple]:
    """{'group/a/b': shape} of the params under the top-level `modules`."""
    params = variables.get("params", {})
    return {"/".join(str(getattr(k, "key", k)) for k in path): tuple(np.shape(leaf))
            for path, leaf in jax.tree_util.tree_flatten_with_path(
                {m: params[m] for m in modules if m in params})[0]}


def _network(cfg) -> tuple:
    """(backbone family, width): another cut (conv4 / conv5, stride 16 / 32) of the same
    network fits, another depth or width does not (the width only where model.resnet_width
    scales the backbone)."""
    spec = parse_backbone(cfg.backbone)
    return spec.family, cfg.get("resnet_width", 64) if spec.uses_width else None


def head_mismatch(ours, theirs, same_aggregation: bool) -> list[str]:
    """How a trained head does not fit this network, one item per array: each of its head
    arrays must exist here with the same shape, and with the same aggregation every head
    array here must come from it (CRN's own filters start afresh on a NetVLAD)."""
    mine, its = leaf_shapes(ours, HEAD_MODULES), leaf_shapes(theirs, HEAD_MODULES)
    problems = [f"{k} {shape} there, {mine[k] if k in mine else 'absent'} here"
                for k, shape in its.items() if mine.get(k) != shape]
    if same_aggregation:
        problems += [f"{k} absent there, {shape} here" for k, shape in mine.items()
                     if k not in its]
    return problems


@dataclasses.dataclass(frozen=True)
class PretrainedDir:
    variables: dict         # the arrays to merge (a placeholder head left out)
    trained_head: bool      # a head that fits and is used as it is
    problems: tuple[str, ...]  # what does not fit (only with model.pretrained_partial)


def open_pretrained_dir(model_cfg, ours) -> PretrainedDir:
    """The model dir of `model_cfg.pretrained` checked against `ours` (variables or their
    abstract shapes); raises ConfigError naming the option and both shapes."""
    where = f"model.pretrained={model_cfg.pretrained}"
    loaded_cfg, loaded = load_model(model_cfg.pretrained, device_put=False)
    theirs, mine = _network(loaded_cfg), _network(model_cfg)
    if theirs != mine:
        def described(cfg, key):
            return cfg.backbone + ("" if key[1] is None else f" of width {key[1]}")
        raise ConfigError(f"{where} holds a {described(loaded_cfg, theirs)}, this config "
                          f"builds a {described(model_cfg, mine)}")
    initialised = read_model_info(model_cfg.pretrained).get("extra", {}).get("initialised", [])
    if any(str(k).startswith(HEAD_MODULES) for k in initialised):  # backbone-only file
        params = {k: v for k, v in loaded.get("params", {}).items() if k not in HEAD_MODULES}
        return PretrainedDir({**loaded, "params": params}, False, ())
    same = loaded_cfg.aggregation == model_cfg.aggregation
    fits = same or loaded_cfg.aggregation in AGGREGATIONS.get(model_cfg.aggregation).takes_head_of
    problems = (head_mismatch(ours, loaded, same) if fits else
                [f"a {loaded_cfg.aggregation} head there, {model_cfg.aggregation} here"])
    if problems and not model_cfg.get("pretrained_partial", False):
        shown = "; ".join(problems[:4]) + (f"; ... {len(problems) - 4} more"
                                           if len(problems) > 4 else "")
        raise ConfigError(f"{where}: its trained head does not fit model.aggregation="
                          f"{model_cfg.aggregation} ({shown}); set "
                          "model.pretrained_partial=true to load only the arrays that fit "
                          "(the head then starts afresh)")
    has_head = not problems and "aggregation" in loaded.get("params", {})
    return PretrainedDir(loaded, has_head, tuple(problems))


def check_pretrained_dir(model_cfg) -> None:
    """Refuses, before any work, a `model.pretrained` model dir that does not fit."""
    try:
        open_pretrained_dir(model_cfg, abstract_variables(model_cfg))
    except ConfigError:
        raise
    except (ValueError, OSError) as e:  # a missing or damaged model dir
        raise ConfigError(f"model.pretrained={model_cfg.pretrained}: {e}") from None
