"""The key layouts of PyTorch checkpoints (dialects) and reading `.pth` files without torch.

- torchvision ImageNet ResNets (`conv1`, `bn1`, `layer1.0.conv1`, ...; `fc.*` dropped), VGG-16
  and AlexNet (`features.<i>.*`; `classifier.*` dropped);
- EfficientNet-Lite in efficientnet_pytorch's layout (`_conv_stem`, `_bn0`, `_blocks.<i>.*`,
  `_conv_head`, `_bn1`; `_fc.*` dropped) or timm's (`from_timm` renames it);
- the reference benchmark's checkpoints (`backbone.<i>.*`, `aggregation.*`);
- Radenović's cirtorch networks (`from_cirtorch` renames them to the reference's layout);
- CosPlace's and EigenPlaces' networks: the reference's layout (`backbone.<i>.*`) with their
  head `aggregation.{1.p, 3.weight, 3.bias}` (L2Norm, GeM, Flatten, Linear, L2Norm);
- the published models of the GSV-Cities code (MixVPR, Conv-AP: `backbone.model.<torchvision
  name>`, `aggregator.*`) and of BoQ (`backbone.net.<i>.*` numbered as the reference's
  `backbone.<i>`, `aggregator.*`): `PUBLISHED_LAYOUTS`.

`canonical_keys` splits any of them into (format, backbone, aggregation) with torchvision /
efficientnet_pytorch backbone names; `vgjax.models.convert` maps those onto Flax variables.
"""
from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import NamedTuple

import ml_dtypes
import numpy as np

from vgjax.models import torch_pickle
from vgjax.models.torch_pickle import CheckpointError, Tensor

REFERENCE_BACKBONE = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3",
                      "7": "layer4"}
_TORCHVISION_HEAD = ("fc.weight", "fc.bias")
FEATURES = "features."  # torchvision VGG / AlexNet convolutions
_EFFICIENTNET = re.compile(r"(_conv_stem|_bn0|_blocks\.\d+|_conv_head|_bn1)\.")
BACKBONE_ONLY = ("torchvision", "efficientnet_pytorch", "timm")  # formats without a head
# timm's InvertedResidual / DepthwiseSeparableConv children -> efficientnet_pytorch's
_TIMM_BLOCK = {"conv_pw": "_expand_conv", "bn1": "_bn0", "conv_dw": "_depthwise_conv",
               "bn2": "_bn1", "conv_pwl": "_project_conv", "bn3": "_bn2"}
_TIMM_FIRST_BLOCK = {"conv_dw": "_depthwise_conv", "bn1": "_bn1", "conv_pw": "_project_conv",
                     "bn2": "_bn2"}
_TIMM_TOP = {"conv_stem": "_conv_stem", "bn1": "_bn0", "conv_head": "_conv_head",
             "bn2": "_bn1"}


class _Dialect(NamedTuple):
    """A backbone-only key layout: how it is recognised, which keys are its classifier
    (dropped) and which its backbone (kept); any other key is unexpected."""

    format: str
    detect: Callable[[Mapping], bool]
    dropped: Callable[[str], bool]
    kept: Callable[[str], bool]


_BACKBONE_DIALECTS = (
    _Dialect("torchvision", lambda sd: "conv1.weight" in sd,  # ResNets
             lambda k: k in _TORCHVISION_HEAD,
             lambda k: re.match(r"(conv1|bn1|layer[1-4])\.", k) is not None),
    _Dialect("torchvision", lambda sd: any(k.startswith(FEATURES) for k in sd),  # VGG, AlexNet
             lambda k: k.startswith("classifier."), lambda k: k.startswith(FEATURES)),
    _Dialect("efficientnet_pytorch", lambda sd: "_conv_stem.weight" in sd,
             lambda k: k.startswith("_fc."), lambda k: _EFFICIENTNET.match(k) is not None),
)


class Layout(NamedTuple):
    """A published model's key layout: its backbone under `backbone` (children named as
    torchvision's ResNet when `children` is None, else numbered as the `children` map says)
    and its head under `head`."""

    format: str
    backbone: str
    children: Mapping[str, str] | None
    head: str

    def detect(self, sd: Mapping) -> bool:
        return f"{self.backbone}{'conv1' if self.children is None else '0'}.weight" in sd

    def backbone_name(self, key: str) -> str | None:
        """The torchvision name of a key below `backbone`, None if it is no ResNet stage's."""
        if self.children is None:
            return key if re.match(r"(conv1|bn1|layer[1-4])\.", key) else None
        child, _, rest = key.partition(".")
        return f"{self.children[child]}.{rest}" if child in self.children and rest else None

    def display(self, name: str) -> str:
        """A torchvision backbone name as the checkpoint spells it."""
        if self.children is None:
            return self.backbone + name
        stage, rest = name.split(".", 1)
        index = {v: k for k, v in self.children.items()}[stage]
        return f"{self.backbone}{index}.{rest}"


PUBLISHED_LAYOUTS = (
    # GSV-Cities / MixVPR code: VPRModel(backbone=ResNet (its torchvision net as `model`,
    # layer4 None when cropped), aggregator=MixVPR | ConvAP | ...)
    Layout("gsv-cities", "backbone.model.", None, "aggregator."),
    # Bag-of-Queries: VPRModel(backbone=ResNet (`net` = Sequential(conv1, bn1, relu,
    # maxpool, layer1..3)), aggregator=BoQ)
    Layout("boq", "backbone.net.", REFERENCE_BACKBONE, "aggregator."),
)
PUBLISHED = {layout.format: layout for layout in PUBLISHED_LAYOUTS}


def _plain_reference(sd: Mapping[str, np.ndarray]) -> bool:
    """A reference checkpoint of VGG-16 / AlexNet: its `backbone.1` is a ReLU (no keys),
    where a ResNet's is bn1."""
    return np.ndim(sd.get("backbone.0.weight")) == 4 and not any(
        k.startswith("backbone.1.") for k in sd)


def short_list(keys, n=8) -> str:
    keys = sorted(keys)
    more = f", ... ({len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def from_cirtorch(state_dict: Mapping[str, np.ndarray]) -> tuple[dict, bool]:
    """Radenović's cirtorch retrieval networks (the reference's `--off_the_shelf
    radenovic_*`: `features.<i>` = torchvision's children up to layer4 (or VGG's features),
    `pool.p` = GeM, `whiten` = Linear; descriptor L2(whiten(L2(GeM)))) in the reference's key
    layout: the same network as its `--l2 after_pool --aggregation gem --fc_output_dim D`.
    Returns (state_dict, whether it was one)."""
    sd = {k.removeprefix("module."): v for k, v in state_dict.items()}
    if "pool.p" not in sd or not any(k.startswith(FEATURES) for k in sd):
        return dict(state_dict), False
    whiten = "whiten.weight" in sd
    out = {}
    for k, v in sd.items():
        if k.startswith(FEATURES):
            out["backbone." + k[len(FEATURES):]] = v
        elif k == "pool.p":
            out["aggregation.0.0.p" if whiten else "aggregation.0.p"] = v
        elif k in ("whiten.weight", "whiten.bias"):
            out["aggregation.1." + k.split(".")[1]] = v
        else:  # e.g. lwhiten (local whitening): no such layer here
            raise CheckpointError(f"unexpected key in the cirtorch checkpoint: {k} (supported: "
                                  "features.*, pool.p, whiten.*)")
    return out, True


def from_timm(state_dict: Mapping[str, np.ndarray]) -> tuple[dict, dict]:
    """timm's `tf_efficientnet_lite<n>` keys -> efficientnet_pytorch's. Returns (state_dict,
    {efficientnet_pytorch name: timm name}); the second is empty for other checkpoints.

    timm numbers blocks per stage (`blocks.<stage>.<i>`), efficientnet_pytorch globally
    (`_blocks.<j>`); the first stage's blocks (no expansion: `conv_dw`, `bn1`, `conv_pw`,
    `bn2`) name their batch norms differently from the others'."""
    sd = {k.removeprefix("module."): v for k, v in state_dict.items()}
    if "conv_stem.weight" not in sd:
        return dict(state_dict), {}
    blocks = sorted({(int(m.group(1)), int(m.group(2))) for k in sd
                     if (m := re.match(r"blocks\.(\d+)\.(\d+)\.", k))})
    index = {b: i for i, b in enumerate(blocks)}
    out, shown = {}, {}
    for k, v in sd.items():
        if k.startswith("classifier."):
            continue
        m = re.fullmatch(r"blocks\.(\d+)\.(\d+)\.(\w+)\.(\w+)", k)
        top = k.split(".", 1)
        if m:
            stage, i, child, leaf = int(m.group(1)), int(m.group(2)), m.group(3), m.group(4)
            expands = f"blocks.{stage}.{i}.conv_pwl.weight" in sd
            name = (_TIMM_BLOCK if expands else _TIMM_FIRST_BLOCK).get(child)
            new = f"_blocks.{index[stage, i]}.{name}.{leaf}" if name else k
        elif top[0] in _TIMM_TOP and len(top) == 2:
            new = f"{_TIMM_TOP[top[0]]}.{top[1]}"
        else:
            new = k  # not a timm EfficientNet-Lite key: reported as unexpected
        out[new] = v
        shown[new] = k
    return out, shown


def canonical_keys(state_dict: Mapping[str, np.ndarray],
                   source: str | None = None) -> tuple[str, dict, dict]:
    """Splits a state_dict into (format, backbone {torchvision / efficientnet_pytorch name:
    array}, aggregation {name below `aggregation.`: array}). Raises CheckpointError on
    foreign keys (`source` names the format in it when the keys were renamed on reading)."""
    sd = {}
    for k, v in state_dict.items():
        sd[k.removeprefix("module.")] = v
    backbone, agg, unexpected = {}, {}, []
    if (layout := next((lay for lay in PUBLISHED_LAYOUTS if lay.detect(sd)), None)):
        fmt = layout.format
        for k, v in sd.items():
            name = (layout.backbone_name(k[len(layout.backbone):])
                    if k.startswith(layout.backbone) else None)
            if name is not None:
                backbone[name] = v
            elif k.startswith(layout.head):
                agg[k[len(layout.head):]] = v
            else:
                unexpected.append(k)
    elif any(k.startswith("backbone.") for k in sd):
        fmt = "reference"
        plain = _plain_reference(sd)
        for k, v in sd.items():
            parts = k.split(".", 2)
            if parts[0] == "backbone" and len(parts) == 3 and plain and parts[1].isdigit():
                backbone[f"{FEATURES}{parts[1]}.{parts[2]}"] = v
            elif parts[0] == "backbone" and len(parts) == 3 and parts[1] in REFERENCE_BACKBONE:
                backbone[f"{REFERENCE_BACKBONE[parts[1]]}.{parts[2]}"] = v
            elif k.startswith("aggregation."):
                agg[k[len("aggregation."):]] = v
            else:
                unexpected.append(k)
    elif (dialect := next((d for d in _BACKBONE_DIALECTS if d.detect(sd)), None)):
        fmt = dialect.format
        for k, v in sd.items():
            if dialect.dropped(k):
                continue
            if dialect.kept(k):
                backbone[k] = v
            else:
                unexpected.append(k)
    else:
        raise CheckpointError(
            "not a ResNet, VGG-16, AlexNet or EfficientNet-Lite state_dict: neither "
            "'conv1.weight' nor 'features.0.weight' (torchvision) nor 'backbone.0.weight' "
            "(reference benchmark) nor '_conv_stem.weight' (efficientnet_pytorch) nor "
            f"'conv_stem.weight' (timm) is present; keys: {short_list(sd)}")
    if unexpected:
        raise CheckpointError(f"unexpected keys in the {source or fmt} checkpoint: "
                              f"{short_list(unexpected)}")
    backbone = {k: v for k, v in backbone.items() if not k.endswith("num_batches_tracked")}
    return fmt, backbone, agg


_REFERENCE_INDEX = {v: k for k, v in REFERENCE_BACKBONE.items()}


def display_name(name: str, fmt: str, aliases: Mapping[str, str] | None = None) -> str:
    """A torchvision-style backbone key as the checkpoint spells it (`aliases`: the
    checkpoint's own names of keys renamed on reading, e.g. timm's)."""
    if aliases and name in aliases:
        return aliases[name]
    if fmt in PUBLISHED:
        return PUBLISHED[fmt].display(name)
    if fmt != "reference":
        return name
    if name.startswith(FEATURES):
        return "backbone." + name[len(FEATURES):]
    stage, rest = name.split(".", 1)
    return f"backbone.{_REFERENCE_INDEX[stage]}.{rest}"



def load_torch_checkpoint(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A `.pth` file -> {name: numpy array}, floating tensors as float32.

    Accepts a bare state_dict or a dict holding `model_state_dict` (or `state_dict`). Read
    with `vgjax.models.torch_pickle` (no torch needed): tensors, numpy arrays (the reference
    stores `recalls` as one) and plain containers; any other pickled object is refused
    without running it, as `torch.load(weights_only=True)` does.
    """
    path = os.fspath(path)
    obj = torch_pickle.load(path)  # FileNotFoundError / CheckpointError naming the file
    if isinstance(obj, dict):
        for key in ("model_state_dict", "state_dict"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a state_dict (a dict of tensors) or a dict with "
                              f"'model_state_dict', got {type(obj).__name__}")
    out, not_tensors = {}, []
    for k, v in obj.items():
        if isinstance(v, Tensor):
            floating = v.dtype.kind == "f" or v.dtype == ml_dtypes.bfloat16
            out[str(k)] = np.asarray(v, np.float32) if floating else np.asarray(v)
        else:
            not_tensors.append(str(k))
    if not_tensors:
        raise CheckpointError(f"{path}: entries that are not tensors: {short_list(not_tensors)}")
    return out
