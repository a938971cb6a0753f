"""DINOv2 state_dicts -> vgjax variables: the torch hub's layout and timm's.

- the hub's (`dinov2_vits14_pretrain.pth`, ...): `cls_token`, `pos_embed` (1, 1 + M * M, C),
  `register_tokens` (1, R, C) with registers, `mask_token` (dropped: a training-only token),
  `patch_embed.proj.*`, `blocks.<i>.{norm1, attn.qkv, attn.proj, ls1.gamma, norm2, mlp.fc1,
  mlp.fc2, ls2.gamma}.*` (ViT-g: `mlp.w12`, `mlp.w3`), `norm.*`;
- timm's `vit_*_patch14_dinov2` (the hub's names without `mask_token`; ViT-g's packed SwiGLU
  as `mlp.fc1` (2 * hidden outputs) and `mlp.fc2`) and `vit_*_patch14_reg4_dinov2`, whose
  registers are `reg_token` and whose position embeddings have no CLS entry (`pos_embed`
  (1, M * M, C)): timm adds the CLS position embedding into `cls_token` instead, which is the
  same sum, so it reads back with a zero CLS entry. A classifier `head.*` is dropped.

- the published SALAD model (`dino_salad.ckpt`): the hub's DINOv2 under `backbone.model.`
  and the head under `aggregator.`: `token_features.{0,2}` (Linear, ReLU, Linear),
  `cluster_features.{0,3}` and `score.{0,3}` (1x1 Conv, Dropout, ReLU, 1x1 Conv), `dust_bin`;
  read as `salad` with its options from the shapes (`iters` is the published 3);
- BoQ's published DINOv2 model (`dinov2_12288.pth`): the hub's DINOv2 under `backbone.dino.`,
  whose final norm BoQ does not apply (read as the `_prenorm` backbone, `norm.*` dropped), and
  the BoQ head under `aggregator.` (as BoQ's ResNet-50 model names it).

Depth, width, registers, FFN and the position grid come from the shapes; the heads do not
show in them: 64-wide heads are assumed (every published size), other sizes need a
`dinov2_custom_..._h<heads>...` backbone name. A head the file does not hold is freshly
initialised.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping

import numpy as np

from vgjax.models.torch_keys import CheckpointError, short_list
from vgjax.models.vit import HEAD_DIM, PRENORM, ViTSpec, custom_name, parse_vit

DROPPED = ("mask_token", "head.weight", "head.bias")
SALAD_BACKBONE, SALAD_HEAD = "backbone.model.", "aggregator."
BOQ_BACKBONE = "backbone.dino."
# a published model's backbone prefix -> its head (aggregation)
PUBLISHED_BACKBONES = {SALAD_BACKBONE: "salad", BOQ_BACKBONE: "boq"}
# SALAD's MLPs: vgjax layer -> index in the published nn.Sequential
SALAD_LAYERS = {"token_features": {"fc1": 0, "fc2": 2}, "cluster_features": {"fc1": 0, "fc2": 3},
                "score": {"fc1": 0, "fc2": 3}}
_LEAF = {"kernel": "weight", "scale": "weight", "bias": "bias"}


def is_dinov2(state_dict: Mapping) -> bool:
    """True for a DINOv2 ViT state_dict (the hub's or timm's layout, or SALAD's model)."""
    return ("cls_token" in state_dict and "blocks.0.attn.qkv.weight" in state_dict) or \
        any(prefix + "cls_token" in state_dict for prefix in PUBLISHED_BACKBONES)


def split_published(state_dict: Mapping[str, np.ndarray]) -> tuple[dict, dict, str | None]:
    """(backbone state_dict, head state_dict, 'salad' | 'boq' | None): SALAD's or BoQ's
    model split at its prefixes (BoQ's unused final norm dropped); any other file is all
    backbone."""
    prefix = next((p for p in PUBLISHED_BACKBONES if p + "cls_token" in state_dict), None)
    if prefix is None:
        return dict(state_dict), {}, None
    published = PUBLISHED_BACKBONES[prefix]
    backbone = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    head = {k[len(SALAD_HEAD):]: v for k, v in state_dict.items() if k.startswith(SALAD_HEAD)}
    other = [k for k in state_dict if not k.startswith((prefix, SALAD_HEAD))]
    if other:
        raise CheckpointError(f"{published} checkpoint: unexpected keys {short_list(other)}")
    if published == "boq":
        backbone.pop("norm.weight", None)
        backbone.pop("norm.bias", None)
    return backbone, head, published


def salad_options(head: Mapping[str, np.ndarray]) -> dict:
    """model.salad options read from the published head's shapes."""
    try:
        return {"hidden_dim": int(np.shape(head["token_features.0.weight"])[0]),
                "token_dim": int(np.shape(head["token_features.2.weight"])[0]),
                "cluster_dim": int(np.shape(head["cluster_features.3.weight"])[0]),
                "num_clusters": int(np.shape(head["score.3.weight"])[0]), "iters": 3}
    except KeyError as e:
        raise CheckpointError(f"SALAD checkpoint: missing key {SALAD_HEAD}{e.args[0]}") from None


def salad_values(head: Mapping[str, np.ndarray], abstract: Mapping) -> tuple[dict, list]:
    """The `salad` head's variables from the published head (1x1 convolutions read as
    Linear layers), and the problems (missing, unexpected, mis-shaped keys)."""
    used, problems, values = set(), [], {}
    for group, tree in abstract.items():
        if group == "dust_bin":
            names = {(): "dust_bin"}
        elif group in SALAD_LAYERS:
            names = {(layer, leaf): f"{group}.{i}.{_LEAF[leaf]}"
                     for layer, i in SALAD_LAYERS[group].items() for leaf in ("kernel", "bias")}
        else:
            problems.append(f"no published key for aggregation/{group}")
            continue
        out = {}
        for path, name in names.items():
            if name not in head:
                problems.append(f"missing key {SALAD_HEAD}{name}")
                continue
            used.add(name)
            value = np.asarray(head[name], np.float32)
            if path and path[1] == "kernel":
                value = value.reshape(value.shape[0], -1).T  # (out, in[, 1, 1]) -> (in, out)
            leaf = tree[path[0]][path[1]] if path else tree
            if value.shape != tuple(leaf.shape):
                problems.append(f"{SALAD_HEAD}{name}: shape {np.shape(head[name])}")
            if path:
                out.setdefault(path[0], {})[path[1]] = value
            else:
                out = value
        values[group] = out
    unused = [SALAD_HEAD + k for k in head if k not in used]
    if unused:
        problems.append(f"unexpected keys: {short_list(unused)}")
    return values, problems


def to_hub_layout(state_dict: Mapping[str, np.ndarray]) -> tuple[dict, str, list[str]]:
    """(state_dict in the hub's names, 'dinov2' or 'timm', notes)."""
    sd = dict(state_dict)
    notes = []
    dropped = [k for k in DROPPED if sd.pop(k, None) is not None]
    timm = "mask_token" not in dropped
    if dropped:
        notes.append(f"dropped {', '.join(dropped)} (not used to describe images)")
    if "reg_token" in sd:
        sd["register_tokens"] = sd.pop("reg_token")
    pos = np.asarray(sd["pos_embed"])
    if math.isqrt(pos.shape[1]) ** 2 == pos.shape[1]:  # timm's no_embed_class layout
        sd["pos_embed"] = np.concatenate([np.zeros_like(pos[:, :1]), pos], axis=1)
        notes.append("position embeddings without a CLS entry (timm's reg4 layout; its "
                     "cls_token already holds that entry)")
    for key in [k for k in sd if re.fullmatch(r"blocks\.\d+\.mlp\.fc1\.weight", k)]:
        fc2 = key.replace("fc1", "fc2")
        if fc2 in sd and np.shape(sd[key])[0] == 2 * np.shape(sd[fc2])[1]:  # packed SwiGLU
            for leaf in ("weight", "bias"):
                for old, new in (("fc1", "w12"), ("fc2", "w3")):
                    name = key.replace("fc1.weight", f"{old}.{leaf}")
                    if name in sd:
                        sd[name.replace(old, new)] = sd.pop(name)
    return sd, "timm" if timm else "dinov2", notes


def infer_vit(sd: Mapping[str, np.ndarray], heads: int | None = None) -> str:
    """The backbone name of a hub-layout state_dict (depth, width, registers, FFN and grid
    from the shapes; `heads`, when not given, from 64-wide heads)."""
    width = int(np.shape(sd["cls_token"])[-1])
    depth = 0
    while f"blocks.{depth}.norm1.weight" in sd:
        depth += 1
    grid_tokens = int(np.shape(sd["pos_embed"])[1]) - 1
    grid = math.isqrt(grid_tokens)
    if grid * grid != grid_tokens:
        raise CheckpointError(f"pos_embed {tuple(np.shape(sd['pos_embed']))}: not a square "
                              "grid of patches plus the CLS entry")
    registers = int(np.shape(sd["register_tokens"])[1]) if "register_tokens" in sd else 0
    ffn = "swiglu" if "blocks.0.mlp.w12.weight" in sd else "mlp"
    if heads is None:
        if width % HEAD_DIM:
            raise CheckpointError(f"a {width}-wide ViT: its heads do not show in the weights; "
                                  f"pass --backbone dinov2_custom_d{depth}_w{width}_h<heads>"
                                  f"_g{grid}{f'_reg{registers}' if registers else ''}")
        heads = width // HEAD_DIM
    name = custom_name(depth, width, heads, grid, registers, ffn)
    spec = parse_vit(name)
    fc1 = sd.get("blocks.0.mlp.w12.weight" if ffn == "swiglu" else "blocks.0.mlp.fc1.weight")
    expected = 2 * spec.ffn_hidden if ffn == "swiglu" else spec.ffn_hidden
    if fc1 is not None and np.shape(fc1)[0] != expected:
        raise CheckpointError(f"blocks.0.mlp: {np.shape(fc1)[0]} hidden outputs, DINOv2's "
                              f"{spec.ffn} FFN of width {width} has {expected}")
    return name


def resolve_backbone(sd: Mapping[str, np.ndarray], backbone: str | None,
                     final_norm: bool = True) -> str:
    """The backbone of a hub-layout state_dict: `backbone` when it fits the shapes (its heads
    taken as given), else the inferred one (`_prenorm` without `final_norm`);
    CheckpointError when they disagree."""
    requested = parse_vit(backbone) if backbone else None
    width = int(np.shape(sd["cls_token"])[-1])
    if backbone and (requested is None or requested.width != width):
        found = infer_vit(sd) if width % HEAD_DIM == 0 else f"a {width}-wide ViT"
        raise CheckpointError(f"the checkpoint's backbone is {found}, not {backbone}")
    found = infer_vit(sd, requested.heads if requested else None)
    if not final_norm:
        found += PRENORM
    if requested is not None and _size(parse_vit(found)) != _size(requested):
        raise CheckpointError(f"the checkpoint's backbone is {found}, not {backbone}")
    return backbone or found


def _size(spec: ViTSpec):
    return (spec.depth, spec.width, spec.heads, spec.grid, spec.registers, spec.ffn,
            spec.final_norm)


def torch_name(path: tuple[str, ...]) -> tuple[str, str]:
    """A backbone variable path (below `backbone`) -> (hub key, how: conv | linear | copy)."""
    *mods, leaf = path
    mods = [m.replace("blocks_", "blocks.", 1) if m.startswith("blocks_") else m for m in mods]
    how = "copy"
    if leaf == "kernel":
        how = "conv" if mods[-1] == "proj" and mods[0] == "patch_embed" else "linear"
    return ".".join([*mods, _LEAF.get(leaf, leaf)]), how


def backbone_values(sd: Mapping[str, np.ndarray], abstract: Mapping) -> tuple[dict, list]:
    """The backbone's variables (the tree of `abstract`, its ShapeDtypeStruct leaves) read from
    a hub-layout state_dict, and the problems (missing, unexpected, mis-shaped keys)."""
    used, missing, bad = set(), [], []

    def fill(tree, path):
        if isinstance(tree, Mapping):
            return {k: fill(v, (*path, k)) for k, v in tree.items()}
        name, how = torch_name(path)
        if name not in sd:
            missing.append(name)
            return None
        used.add(name)
        value = np.asarray(sd[name], np.float32)
        value = (value.transpose(2, 3, 1, 0) if how == "conv"
                 else value.T if how == "linear" else value)
        if value.shape != tuple(tree.shape):
            bad.append(f"{name}: checkpoint {np.shape(sd[name])}, model needs "
                       f"{tuple(tree.shape)}{' (transposed)' if how != 'copy' else ''}")
        return value

    values = fill(abstract, ())
    problems = []
    if missing:
        problems.append(f"missing keys: {short_list(missing)}")
    unused = [k for k in sd if k not in used]
    if unused:
        problems.append(f"unexpected keys: {short_list(unused)}")
    if bad:
        problems.append("shape mismatches: " + "; ".join(bad[:5]))
    return values, problems
