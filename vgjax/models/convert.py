"""PyTorch state_dicts -> vgjax variables.

Two sources are understood:
- torchvision ImageNet ResNets (`conv1.weight`, `bn1.*`, `layer1.0.conv1.weight`, ...;
  `fc.*` is the classifier and is dropped), VGG-16 and AlexNet (`features.<i>.*`;
  `classifier.*` is dropped);
- the reference benchmark's checkpoints (ResNets: `backbone.0` = conv1, `backbone.1` = bn1,
  `backbone.4..7` = layer1..layer4; VGG-16 / AlexNet: `backbone.<i>` = `features.<i>`;
  `aggregation.*`), optionally with a `module.` prefix;
- Radenović's cirtorch retrieval networks (`features.*`, `pool.p`, `whiten.*`), which the
  reference evaluates off the shelf (`from_cirtorch`).

`convert_state_dict` is a pure function on `{name: numpy array}`, so it is testable without
torch; only `load_torch_checkpoint` imports torch (CPU build: `pip install torch==2.13.0`).
Conv kernels go OIHW -> HWIO, Linear weights are transposed, BN running variances are
kept as they are (both sides store the unbiased estimate).
"""
from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from vgjax.models.network import (
    ARCH_DEFAULTS,
    VGNetwork,
    abstract_variables,
    build_network,
    feature_dim,
    init_key,
    validate_model_config,
)
from vgjax.models.backbones import parse_backbone
from vgjax.models.resnet import backbone_name
from vgjax.models.vgg import PLAIN, PlainSpec


class CheckpointError(ValueError):
    """A checkpoint that cannot be converted; the message names the keys involved."""


REFERENCE_BACKBONE = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3",
                      "7": "layer4"}
_TORCHVISION_HEAD = ("fc.weight", "fc.bias")
_FEATURES = "features."  # torchvision VGG / AlexNet convolutions


def _plain_reference(sd: Mapping[str, np.ndarray]) -> bool:
    """A reference checkpoint of VGG-16 / AlexNet: its `backbone.1` is a ReLU (no keys),
    where a ResNet's is bn1."""
    return np.ndim(sd.get("backbone.0.weight")) == 4 and not any(
        k.startswith("backbone.1.") for k in sd)


def _short(keys, n=8) -> str:
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
    if "pool.p" not in sd or not any(k.startswith(_FEATURES) for k in sd):
        return dict(state_dict), False
    whiten = "whiten.weight" in sd
    out = {}
    for k, v in sd.items():
        if k.startswith(_FEATURES):
            out["backbone." + k[len(_FEATURES):]] = v
        elif k == "pool.p":
            out["aggregation.0.0.p" if whiten else "aggregation.0.p"] = v
        elif k in ("whiten.weight", "whiten.bias"):
            out["aggregation.1." + k.split(".")[1]] = v
        else:  # e.g. lwhiten (local whitening): no such layer here
            raise CheckpointError(f"unexpected key in the cirtorch checkpoint: {k} (supported: "
                                  "features.*, pool.p, whiten.*)")
    return out, True


def canonical_keys(state_dict: Mapping[str, np.ndarray]) -> tuple[str, dict, dict]:
    """Splits a state_dict into (format, backbone {torchvision name: array}, aggregation
    {name below `aggregation.`: array}). Raises CheckpointError on foreign keys."""
    sd = {}
    for k, v in state_dict.items():
        sd[k.removeprefix("module.")] = v
    backbone, agg, unexpected = {}, {}, []
    if any(k.startswith("backbone.") for k in sd):
        fmt = "reference"
        plain = _plain_reference(sd)
        for k, v in sd.items():
            parts = k.split(".", 2)
            if parts[0] == "backbone" and len(parts) == 3 and plain and parts[1].isdigit():
                backbone[f"{_FEATURES}{parts[1]}.{parts[2]}"] = v
            elif parts[0] == "backbone" and len(parts) == 3 and parts[1] in REFERENCE_BACKBONE:
                backbone[f"{REFERENCE_BACKBONE[parts[1]]}.{parts[2]}"] = v
            elif k.startswith("aggregation."):
                agg[k[len("aggregation."):]] = v
            else:
                unexpected.append(k)
    elif "conv1.weight" in sd:
        fmt = "torchvision"
        for k, v in sd.items():
            if k in _TORCHVISION_HEAD:
                continue
            if re.match(r"(conv1|bn1|layer[1-4])\.", k):
                backbone[k] = v
            else:
                unexpected.append(k)
    elif any(k.startswith(_FEATURES) for k in sd):
        fmt = "torchvision"
        for k, v in sd.items():
            if k.startswith("classifier."):
                continue
            if k.startswith(_FEATURES):
                backbone[k] = v
            else:
                unexpected.append(k)
    else:
        raise CheckpointError(
            "not a ResNet, VGG-16 or AlexNet state_dict: neither 'conv1.weight' nor "
            "'features.0.weight' (torchvision) nor 'backbone.0.weight' (reference "
            f"benchmark) is present; keys: {_short(sd)}")
    if unexpected:
        raise CheckpointError(f"unexpected keys in the {fmt} checkpoint: {_short(unexpected)}")
    backbone = {k: v for k, v in backbone.items() if not k.endswith("num_batches_tracked")}
    return fmt, backbone, agg


def _infer_plain(backbone: Mapping[str, np.ndarray]) -> tuple[str, int]:
    """('vgg16' | 'alexnet', width) from the indices of the `features.<i>` convolutions."""
    convs = tuple(sorted({int(m.group(1)) for k in backbone
                          if (m := re.fullmatch(r"features\.(\d+)\.weight", k))}))
    for name, spec in PLAIN.items():
        if convs == spec.conv_indices():
            return name, int(np.shape(backbone[f"{_FEATURES}0.weight"])[0])
    raise CheckpointError(
        f"unsupported backbone: convolutions at features indices {list(convs)}, which is "
        "neither " + " nor ".join(f"{n} ({list(s.conv_indices())})" for n, s in PLAIN.items()))


def infer_backbone(backbone: Mapping[str, np.ndarray]) -> tuple[str, int]:
    """(name like 'resnet18conv5' for the layers present, or 'vgg16' / 'alexnet';
    resnet_width) from torchvision keys."""
    if any(k.startswith(_FEATURES) for k in backbone):
        return _infer_plain(backbone)
    if "conv1.weight" not in backbone:
        raise CheckpointError("missing key: conv1.weight (backbone.0.weight)")
    width = int(np.shape(backbone["conv1.weight"])[0])
    bottleneck = any(re.fullmatch(r"layer\d\.\d+\.conv3\.weight", k) for k in backbone)
    sizes = []
    for layer in range(1, 5):
        blocks = {int(m.group(1)) for k in backbone
                  if (m := re.match(rf"layer{layer}\.(\d+)\.", k))}
        if not blocks:
            break
        sizes.append(max(blocks) + 1)
    if len(sizes) < 3:
        raise CheckpointError(f"the checkpoint has only layer1..layer{len(sizes)}; a ResNet cut "
                              "at conv4 needs layer1..layer3 (missing keys: "
                              f"layer{len(sizes) + 1}.*)")
    try:
        name = backbone_name(bottleneck, sizes, len(sizes))
    except ValueError as e:
        raise CheckpointError(f"unsupported backbone: {e}") from None
    return name, width


def infer_head(agg: Mapping[str, np.ndarray]) -> dict:
    """Aggregation fields (aggregation, netvlad_clusters, l2, fc_output_dim) from the
    reference's `aggregation.*` keys; {} when there are none (MAC/SPoC have no parameters)."""
    out: dict = {}
    inner = dict(agg)
    w = agg.get("1.weight")
    if w is not None and np.ndim(w) == 2:  # Sequential(aggregation, Linear, L2Norm)
        out["fc_output_dim"] = int(np.shape(w)[0])
        inner = {k[2:]: v for k, v in agg.items() if k.startswith("0.")}
    if "ln1.weight" in inner:  # RRM
        out["aggregation"] = "rrm"
    elif "centroids" in inner or "conv.weight" in inner:
        out["aggregation"] = "crn" if "crn.acc_w.weight" in inner else "netvlad"
        out["netvlad_clusters"] = int(np.shape(inner.get("centroids",
                                                         inner.get("conv.weight")))[0])
    elif "1.p" in inner:  # Sequential(L2Norm, GeM, Flatten)
        out.update(aggregation="gem", l2="before_pool")
    elif "0.p" in inner:  # Sequential(GeM, L2Norm, Flatten) or Sequential(GeM, Flatten)
        out.update(aggregation="gem", l2="after_pool")
    elif "p" in inner:
        out["aggregation"] = "gem"
    return out


def _torch_name(path: tuple[str, ...], agg: Mapping[str, np.ndarray], fc_prefix: str):
    """Flax variable path -> (checkpoint key, how to transform), or None if unknown."""
    _, top, *rest = path
    leaf = rest[-1]
    if top == "backbone":
        mods = []
        for m in rest[:-1]:
            if m.startswith("block"):
                mods.append(m[len("block"):])
            elif m == "downsample_conv":
                mods.append("downsample.0")
            elif m == "downsample_bn":
                mods.append("downsample.1")
            elif m.startswith("features_"):
                mods.append(_FEATURES + m[len("features_"):])
            else:
                mods.append(m)
        name = {"kernel": "weight", "scale": "weight", "bias": "bias", "mean": "running_mean",
                "var": "running_var"}[leaf]
        return ".".join(mods + [name]), ("conv" if leaf == "kernel" else "copy")
    if top == "aggregation":
        if rest == ["centroids"]:
            return fc_prefix + "centroids", "copy"
        if rest == ["conv", "kernel"]:
            return fc_prefix + "conv.weight", "conv"
        if rest == ["p"]:
            for cand in ("1.p", "0.p", "p"):
                if fc_prefix + cand in agg:
                    return fc_prefix + cand, "copy"
            return fc_prefix + "1.p", "copy"
        if len(rest) == 3 and rest[0] == "crn":  # crn/<filter or acc_w>/<kernel or bias>
            return (f"{fc_prefix}crn.{rest[1]}.{'weight' if rest[2] == 'kernel' else 'bias'}",
                    "conv" if rest[2] == "kernel" else "copy")
        if len(rest) == 2 and rest[0] in _RRM_LAYERS:  # ln1, fc1, fc2, ln2
            leaf_name = {"scale": "weight", "kernel": "weight", "bias": "bias"}[rest[1]]
            return (f"{fc_prefix}{rest[0]}.{leaf_name}",
                    "linear" if rest[1] == "kernel" else "copy")
    if top == "fc":
        return {"kernel": "1.weight", "bias": "1.bias"}[leaf], ("linear" if leaf == "kernel"
                                                                 else "copy")
    return None


_REFERENCE_INDEX = {v: k for k, v in REFERENCE_BACKBONE.items()}
_RRM_LAYERS = ("ln1", "fc1", "fc2", "ln2")


def _display_name(name: str, fmt: str) -> str:
    """A torchvision-style backbone key as the checkpoint spells it."""
    if fmt != "reference":
        return name
    if name.startswith(_FEATURES):
        return "backbone." + name[len(_FEATURES):]
    stage, rest = name.split(".", 1)
    return f"backbone.{_REFERENCE_INDEX[stage]}.{rest}"


def _transform(value: np.ndarray, how: str) -> np.ndarray:
    value = np.asarray(value, np.float32)
    if how == "conv":
        return value.transpose(2, 3, 1, 0)  # OIHW -> HWIO
    if how == "linear":
        return value.T
    return value


def _head_init(model_cfg, seed: int) -> dict:
    """Fresh aggregation/fc variables (for checkpoints that have only a backbone)."""
    net = build_network(model_cfg)
    c = feature_dim(model_cfg)
    feats = jnp.zeros((1, 2, 2, c), jnp.float32)
    return net.init(init_key(seed), feats, method=VGNetwork.aggregate)


def convert_state_dict(state_dict: Mapping[str, np.ndarray], base_cfg=None, *,
                       backbone: str | None = None, aggregation: str | None = None,
                       netvlad_clusters: int | None = None, fc_output_dim: int | None = None,
                       l2: str | None = None, seed: int = 0):
    """{torch name: numpy array} -> (model_cfg ConfigDict, variables, report).

    The model config starts from `base_cfg` (the `model` section of a config; fields not
    about the architecture are kept), then takes what the keys reveal (depth, width, cut,
    head), then the explicit arguments. A torchvision file is cut at conv4 unless
    `backbone` says conv5. A head absent from the checkpoint is initialised from `seed`
    (`report['initialised']` lists those variables, e.g. a random NetVLAD head for
    torchvision weights: training should still run its k-means init). `report['format']`
    is 'torchvision' or 'reference', `report['notes']` says what was inferred or dropped.
    Raises CheckpointError naming missing, unexpected or mis-shaped keys.
    """
    state_dict, cirtorch = from_cirtorch(state_dict)
    fmt, bb, agg = canonical_keys(state_dict)
    notes: list[str] = []
    if cirtorch:
        notes.append("a cirtorch network (features / pool / whiten), read as the reference's "
                     "after_pool GeM + fc (its --off_the_shelf radenovic_*)")
    found_name, width = infer_backbone(bb)
    if base_cfg is None:
        cfg = ml_collections.ConfigDict()
    else:
        cfg = ml_collections.ConfigDict(copy.deepcopy(base_cfg.to_dict()
                                                      if hasattr(base_cfg, "to_dict")
                                                      else dict(base_cfg)))
    for k, v in ARCH_DEFAULTS.items():
        if k not in cfg:
            cfg[k] = v

    spec_found = parse_backbone(found_name)
    if isinstance(spec_found, PlainSpec):  # one cut only: the reference's
        if backbone not in (None, found_name):
            raise CheckpointError(f"the checkpoint's backbone is {found_name}, not "
                                  f"{backbone}")
        backbone = found_name
    elif backbone is None:
        conv = 5 if (fmt == "reference" and spec_found.num_layers == 4) else 4
        backbone = f"{found_name[:-len('conv4')]}conv{conv}"
    cfg.backbone = backbone
    cfg.resnet_width = width
    try:
        target = parse_backbone(backbone)
    except ValueError as e:
        raise CheckpointError(str(e)) from None
    if isinstance(target, PlainSpec) != isinstance(spec_found, PlainSpec):
        raise CheckpointError(f"the checkpoint's backbone is {found_name}, not {backbone}")
    if not isinstance(target, PlainSpec) and target.num_layers < spec_found.num_layers:
        dropped = [k for k in bb if k.startswith("layer4.")]
        bb = {k: v for k, v in bb.items() if not k.startswith("layer4.")}
        notes.append(f"layer4 dropped ({len(dropped)} tensors): backbone {backbone}")

    head = infer_head(agg) if fmt == "reference" else {}
    if fmt == "reference" and not head and agg:
        raise CheckpointError("unrecognised aggregation keys: "
                              + _short("aggregation." + k for k in agg))
    if fmt == "reference" and not head and aggregation is None:
        raise CheckpointError("the checkpoint has no aggregation parameters (MAC, SPoC and "
                              "R-MAC have none): pass the aggregation explicitly "
                              "(--aggregation mac|spoc|rmac)")
    if head.get("l2") == "after_pool" and l2 is None:
        notes.append("GeM is the first module of the head: l2 set to after_pool "
                     "(the reference's 'none' looks the same; override with --l2 none)")
    head.setdefault("fc_output_dim", 0 if fmt == "reference" else cfg.fc_output_dim)
    flags = {"aggregation": aggregation, "netvlad_clusters": netvlad_clusters,
             "fc_output_dim": fc_output_dim, "l2": l2}
    for k, v in flags.items():
        if v is not None:
            head[k] = v
    for k, v in head.items():
        cfg[k] = v
    try:
        validate_model_config(cfg)
    except ValueError as e:
        raise CheckpointError(str(e)) from None

    fc_prefix = "0." if cfg.fc_output_dim > 0 and fmt == "reference" and "1.weight" in agg else ""
    abstract = abstract_variables(cfg)
    flat, treedef = jax.tree_util.tree_flatten_with_path(abstract)
    values, missing, bad_shape, fresh = [], [], [], []
    used = set()
    head_fresh = None
    for path, leaf in flat:
        keys = tuple(p.key for p in path)
        collection, top = keys[0], keys[1]
        name, how = _torch_name(keys, agg, fc_prefix)
        source = bb if top == "backbone" else agg
        shown = _display_name(name, fmt) if top == "backbone" else "aggregation." + name
        if name in source:
            used.add((top == "backbone", name))
            value = _transform(source[name], how)
            if value.shape != tuple(leaf.shape):
                bad_shape.append(f"{shown}: checkpoint {tuple(np.shape(source[name]))}, "
                                 f"model needs {_torch_shape(leaf.shape, how)}")
            values.append(value)
        elif top != "backbone" and fmt == "torchvision":
            if head_fresh is None:
                head_fresh = _head_init(cfg, seed)
            value = head_fresh[collection]
            for k in keys[1:]:
                value = value[k]
            fresh.append("/".join(keys[1:]))
            values.append(np.asarray(value, np.float32))
        else:
            missing.append(shown)
            values.append(None)
    unused = [_display_name(k, fmt) for k in bb if (True, k) not in used]
    unused += ["aggregation." + k for k in agg if (False, k) not in used]
    problems = []
    if missing:
        problems.append(f"missing keys: {_short(missing)}")
    if unused:
        problems.append(f"unexpected keys: {_short(unused)}")
    if bad_shape:
        problems.append("shape mismatches: " + "; ".join(bad_shape[:5]))
    if problems:
        raise CheckpointError(f"checkpoint ({fmt}) does not fit {cfg.backbone} + "
                              f"{cfg.aggregation}: " + " | ".join(problems))
    if fresh:
        notes.append(f"not in the checkpoint, initialised with seed {seed}: {_short(fresh)}")
    variables = jax.tree_util.tree_unflatten(treedef, values)
    return cfg, variables, {"format": "cirtorch" if cirtorch else fmt, "initialised": fresh,
                            "notes": notes}


def _torch_shape(shape, how):
    if how == "conv":
        h, w, i, o = shape
        return (o, i, h, w)
    if how == "linear":
        return tuple(shape[::-1])
    return tuple(shape)


def _numpy_safe_globals():
    """Numpy objects that a pickled numpy array/scalar needs, under numpy 1 and 2 names."""
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray
    entries = [np.ndarray, np.dtype]
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        entries.append((multiarray._reconstruct, f"{mod}._reconstruct"))
        entries.append((multiarray.scalar, f"{mod}.scalar"))
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        entries += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType")]
    return entries


def load_torch_checkpoint(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A `.pth` file -> {name: float numpy array}, with `torch.load(weights_only=True)`.

    Accepts a bare state_dict or a dict holding `model_state_dict` (or `state_dict`).
    Numpy's array-reconstruction globals are allow-listed (the reference stores `recalls`
    as a numpy array); nothing else is unpickled.
    """
    try:
        import torch
    except ImportError:
        raise ImportError("reading .pth files needs PyTorch (CPU is enough): "
                          "pip install torch==2.13.0") from None
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: checkpoint file not found")
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds; keep the reason
        raise CheckpointError(f"{path}: cannot be read with torch.load(weights_only=True): "
                              f"{e}") from None
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
        if isinstance(v, torch.Tensor):
            out[str(k)] = v.detach().cpu().float().numpy() if v.is_floating_point() \
                else v.detach().cpu().numpy()
        else:
            not_tensors.append(str(k))
    if not_tensors:
        raise CheckpointError(f"{path}: entries that are not tensors: {_short(not_tensors)}")
    return out
