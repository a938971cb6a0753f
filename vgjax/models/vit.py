"""DINOv2 Vision Transformers (Oquab et al., 2023), NHWC, as the published models compute.

A 14 x 14 stride-14 conv embeds the patches (the remainder rows and columns of an image whose
sides are not multiples of 14 are dropped, as the conv drops them); a CLS token is put first
and the position embeddings are added (CLS first, then the patches'); with registers,
`registers` learnt tokens go between the CLS token and the patches, with no position
embedding. Then `depth` pre-norm blocks, each
`x + ls1 * attn(norm1(x))`, `x + ls2 * ffn(norm2(x))`: LayerNorm with eps 1e-6, attention
with a fused `qkv` Linear and an output `proj`, LayerScale `gamma` vectors, an FFN that is
Linear, exact (erf) GELU, Linear (`mlp`: `fc1`, `fc2`; ViT-g's `swiglu`: `w12`, `w3`, SiLU of
the first half of `w12`'s output times its second half); a final LayerNorm `norm`. The
backbone gives the normed patch tokens as local features (N, H // 14, W // 14, C) and the
normed CLS token (N, C) as its global token (registers are dropped).

The position embeddings of the weights are an M x M grid (37 x 37: 518 px training images),
resized to any other grid as DINOv2's `interpolate_pos_encoding` does: torch's bicubic
interpolation with the scale factor ((H // 14) + 0.1) / M (its "+0.1 offset"), not the target
size; without antialiasing (Keys' cubic a = -0.75, edge pixels repeated) for the models
without registers, with torch's antialiased bicubic (a = -0.5, window widened by the scale
when shrinking, weights renormalised at the borders, an axis of unchanged length left as it
is) for the `_reg` models, as the published
hub entries set `interpolate_antialias`. A square image of exactly M x M patches keeps the
grid untouched (DINOv2's shortcut; its interpolation with the offset is not the identity).
Both resizings are linear, so each is a pair of small matrices computed once per shape.

Names (`model.backbone`):

    dinov2_vits14[_reg]   384 wide, 12 blocks,  6 heads
    dinov2_vitb14[_reg]   768 wide, 12 blocks, 12 heads
    dinov2_vitl14[_reg]  1024 wide, 24 blocks, 16 heads
    dinov2_vitg14[_reg]  1536 wide, 40 blocks, 24 heads, SwiGLU FFN (4096 hidden)
    dinov2_custom_d<depth>_w<width>_h<heads>_g<grid>[_reg<n>][_swiglu]
                         any other size (e.g. converted small models, tests)

`_reg` models have 4 registers. Any name + `_prenorm` leaves out the final norm: the tokens
leave the last block as they are (BoQ's published DINOv2 backbone takes them so). Pixels are normalised with ImageNet's mean and std.
`model.trainable_from` names `embed` (patch conv, CLS, registers, position embeddings) or
`block<i>`: blocks from i on train, with the final norm; `auto` trains the last 4 blocks (as
SALAD trains DINOv2). `model.remat` recomputes each block's activations in the backward pass
(jax.checkpoint) instead of storing them.

Parameters map one-to-one onto the hub's keys: `patch_embed/proj` = `patch_embed.proj`,
`cls_token`, `pos_embed`, `register_tokens`, `blocks_<i>/{norm1, attn/qkv, attn/proj,
ls1/gamma, norm2, mlp/{fc1, fc2 | w12, w3}, ls2/gamma}` = `blocks.<i>.*`, `norm`.
"""
from __future__ import annotations

import dataclasses
import functools
import re
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vgjax.models import resnet

PATCH = 14
LN_EPS = 1e-6
POS_OFFSET = 0.1     # DINOv2's interpolate_offset
HUB_GRID = 37        # 518 / 14: the grid of the published position embeddings
HEAD_DIM = 64        # every published size has 64-wide heads
REFERENCE_TRAINED_BLOCKS = 4  # SALAD's DINOv2 trains its last 4 blocks
CUBIC_A = -0.75      # torch's bicubic
CUBIC_A_ANTIALIAS = -0.5  # torch's antialiased bicubic (as PIL)


@dataclasses.dataclass(frozen=True)
class ViTSpec:
    """A DINOv2 ViT: its size, registers and FFN."""
    name: str
    depth: int
    width: int
    heads: int
    grid: int = HUB_GRID       # side of the position-embedding grid of the weights
    registers: int = 0
    ffn: str = "mlp"           # "mlp" (GELU) or "swiglu" (ViT-g)
    final_norm: bool = True    # False: the `_prenorm` variant (no final LayerNorm)

    input_mean = resnet.IMAGENET_MEAN  # the weights' normalisation of [0, 1] RGB
    input_std = resnet.IMAGENET_STD
    uses_width = False                 # model.resnet_width does not apply
    imagenet_weights = None
    global_token = True                # the CLS token goes to the heads that take one
    supports_remat = True              # model.remat: jax.checkpoint per block

    @property
    def family(self) -> str:
        return self.name

    @property
    def antialias(self) -> bool:
        """The hub's models with registers resize their position embeddings antialiased."""
        return self.registers > 0

    @property
    def ffn_hidden(self) -> int:
        """Hidden width of the FFN: 4x, or SwiGLU's 2/3 of it rounded up to a multiple of 8."""
        hidden = 4 * self.width
        return (int(hidden * 2 / 3) + 7) // 8 * 8 if self.ffn == "swiglu" else hidden

    @property
    def stages(self) -> tuple[str, ...]:
        """What `model.trainable_from` can name, in order."""
        return ("embed", *(f"block{i}" for i in range(self.depth)))

    @property
    def reference_trainable_from(self) -> str:
        return f"block{max(self.depth - REFERENCE_TRAINED_BLOCKS, 0)}"

    def stage_of(self, param_key: str) -> int:
        """The stage of a backbone parameter group; the final norm goes with the last block."""
        if param_key.startswith("blocks_"):
            return int(param_key.removeprefix("blocks_")) + 1
        return self.depth if param_key == "norm" else 0

    def channels(self, width: int = 64) -> int:
        del width  # fixed by the weights
        return self.width

    def feature_size(self, h: int, w: int) -> tuple[int, int]:
        return h // PATCH, w // PATCH

    def module(self, width: int, num_frozen: int, freeze_bn_stats: bool, dtype,
               remat: bool = False):
        del width, freeze_bn_stats  # no BatchNorm
        return DinoViT(self, num_frozen, dtype, remat)


_SIZES = {"s": (12, 384, 6, "mlp"), "b": (12, 768, 12, "mlp"), "l": (24, 1024, 16, "mlp"),
          "g": (40, 1536, 24, "swiglu")}
HUB_REGISTERS = 4
VITS = {f"dinov2_vit{size}14{suffix}": ViTSpec(f"dinov2_vit{size}14{suffix}", d, w, h,
                                              registers=r, ffn=ffn)
        for size, (d, w, h, ffn) in _SIZES.items()
        for suffix, r in (("", 0), ("_reg", HUB_REGISTERS))}
_CUSTOM = re.compile(r"dinov2_custom_d(\d+)_w(\d+)_h(\d+)_g(\d+)(?:_reg(\d+))?(_swiglu)?")


PRENORM = "_prenorm"


def custom_name(depth: int, width: int, heads: int, grid: int, registers: int = 0,
                ffn: str = "mlp", final_norm: bool = True) -> str:
    """The `dinov2_custom_...` name of a size; a published size's own name if it is one."""
    spec = ViTSpec("", depth, width, heads, grid, registers, ffn)
    suffix = "" if final_norm else PRENORM
    for name, known in VITS.items():
        if dataclasses.replace(known, name="") == spec:
            return name + suffix
    return (f"dinov2_custom_d{depth}_w{width}_h{heads}_g{grid}"
            f"{f'_reg{registers}' if registers else ''}{'_swiglu' if ffn == 'swiglu' else ''}"
            f"{suffix}")


def parse_vit(name: str) -> ViTSpec | None:
    """A DINOv2 backbone name -> its spec, None if the name is no ViT's."""
    name = str(name)
    base = name.removesuffix(PRENORM)
    if base in VITS:
        spec = VITS[base]
    else:
        m = _CUSTOM.fullmatch(base)
        if m is None:
            return None
        depth, width, heads, grid = (int(g) for g in m.groups()[:4])
        if min(depth, width, heads, grid) < 1 or width % heads:
            raise ValueError(f"model.backbone: {name!r}: depth, width, heads and grid must be "
                             f">= 1 and the width a multiple of the heads")
        spec = ViTSpec(base, depth, width, heads, grid, int(m.group(5) or 0),
                       "swiglu" if m.group(6) else "mlp")
    return spec if base == name else dataclasses.replace(spec, name=name, final_norm=False)


def _cubic(x: np.ndarray, a: float) -> np.ndarray:
    """Keys' cubic convolution kernel with parameter a."""
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.where(x < 1, near, np.where(x < 2, far, 0.0))


def bicubic_matrix(n_in: int, n_out: int, scale_factor: float, antialias: bool) -> np.ndarray:
    """(n_out, n_in) float64: torch's 1-D bicubic resizing (align_corners=False) with an
    explicit `scale_factor` (output / input), as `F.interpolate(..., mode="bicubic",
    scale_factor=..., antialias=...)` applies it along one axis."""
    scale = 1.0 / scale_factor  # input pixels per output pixel
    out = np.zeros((n_out, n_in))
    rows = np.arange(n_out)
    if not antialias:
        src = scale * (rows + 0.5) - 0.5
        first = np.floor(src)
        t = src - first
        for offset in (-1, 0, 1, 2):
            idx = np.clip(first + offset, 0, n_in - 1).astype(int)
            np.add.at(out, (rows, idx), _cubic(t - offset, CUBIC_A))
        return out
    if n_in == n_out:  # torch's antialiased (separable) resizing skips an unchanged axis
        return np.eye(n_in)
    support = 2.0 * scale if scale >= 1.0 else 2.0
    inv = 1.0 / scale if scale >= 1.0 else 1.0
    for i in rows:
        center = scale * (i + 0.5)
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), n_in)
        w = _cubic((np.arange(lo, hi) - center + 0.5) * inv, CUBIC_A_ANTIALIAS)
        out[i, lo:hi] = w / w.sum() if w.sum() != 0 else w
    return out


@functools.lru_cache(maxsize=64)
def pos_resize_matrices(grid: int, h: int, w: int, antialias: bool):
    """(h, grid), (w, grid) float32: DINOv2's resizing of a grid x grid position embedding to
    h x w patches (scale factor (n + 0.1) / grid along each axis)."""
    return tuple(bicubic_matrix(grid, n, (n + POS_OFFSET) / grid, antialias).astype(np.float32)
                 for n in (h, w))


def resize_pos_embed(patch_pos, h: int, w: int, image_h: int, image_w: int,
                     antialias: bool):
    """Patch position embeddings (M * M, C) -> (h * w, C) as DINOv2 resizes them for an
    image_h x image_w image of h x w patches (kept as they are for a square M x M one)."""
    grid = int(round(np.sqrt(patch_pos.shape[0])))
    if h * w == grid * grid and image_h == image_w:
        return patch_pos
    wy, wx = pos_resize_matrices(grid, h, w, antialias)
    pos = patch_pos.astype(jnp.float32).reshape(grid, grid, -1)
    out = jnp.einsum("ym,mnc,xn->yxc", wy, pos, wx, precision=jax.lax.Precision.HIGHEST)
    return out.reshape(h * w, -1)


def _dense(features: int, dtype, name: str):
    return nn.Dense(features, dtype=dtype, param_dtype=jnp.float32,
                    kernel_init=nn.initializers.truncated_normal(0.02), name=name)


def _norm(dtype, name: str):
    return nn.LayerNorm(epsilon=LN_EPS, dtype=dtype, param_dtype=jnp.float32, name=name)


class LayerScale(nn.Module):
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        gamma = self.param("gamma", nn.initializers.constant(1e-5), (x.shape[-1],), jnp.float32)
        return x * gamma.astype(self.dtype)


class Attention(nn.Module):
    heads: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):  # (N, T, C)
        n, t, c = x.shape
        qkv = _dense(3 * c, self.dtype, "qkv")(x).reshape(n, t, 3, self.heads, c // self.heads)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]           # (N, T, heads, d)
        logits = jnp.einsum("nqhd,nkhd->nhqk", q, k) * (c // self.heads) ** -0.5
        attn = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(self.dtype)
        out = jnp.einsum("nhqk,nkhd->nqhd", attn, v).reshape(n, t, c)
        return _dense(c, self.dtype, "proj")(out)


class FFN(nn.Module):
    hidden: int
    kind: str = "mlp"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        c = x.shape[-1]
        if self.kind == "swiglu":
            x1, x2 = jnp.split(_dense(2 * self.hidden, self.dtype, "w12")(x), 2, axis=-1)
            return _dense(c, self.dtype, "w3")(jax.nn.silu(x1) * x2)
        h = jax.nn.gelu(_dense(self.hidden, self.dtype, "fc1")(x), approximate=False)
        return _dense(c, self.dtype, "fc2")(h)


class Block(nn.Module):
    """Pre-norm transformer block with LayerScale."""
    spec: ViTSpec
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        y = Attention(self.spec.heads, self.dtype, name="attn")(_norm(self.dtype, "norm1")(x))
        x = x + LayerScale(self.dtype, name="ls1")(y)
        y = FFN(self.spec.ffn_hidden, self.spec.ffn, self.dtype, name="mlp")(
            _norm(self.dtype, "norm2")(x))
        return x + LayerScale(self.dtype, name="ls2")(y)


class PatchEmbed(nn.Module):
    """14 x 14 patches -> `width` channels (a stride-14 conv; leftover pixels dropped)."""
    width: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        return nn.Conv(self.width, (PATCH, PATCH), (PATCH, PATCH), padding="VALID",
                       dtype=self.dtype, param_dtype=jnp.float32, name="proj")(
            x.astype(self.dtype))


class DinoViT(nn.Module):
    """(N, H, W, 3) normalised pixels -> (patch tokens (N, H // 14, W // 14, C), CLS token
    (N, C)), both after the final norm (`_prenorm`: without it), in the compute dtype.

    The `num_frozen` leading stages of `spec.stages` (`embed`, `block0`, ...) get no gradient:
    the tokens leaving the last frozen one pass through `stop_gradient`.
    """
    spec: ViTSpec
    num_frozen: int = 0
    dtype: Any = jnp.float32
    remat: bool = False

    @nn.compact
    def __call__(self, x, train: bool = False):
        del train  # no dropout, no stochastic depth, no BatchNorm
        s = self.spec
        n, image_h, image_w, _ = x.shape
        h, w = s.feature_size(image_h, image_w)
        x = PatchEmbed(s.width, self.dtype, name="patch_embed")(x).reshape(n, h * w, s.width)
        cls = self.param("cls_token", nn.initializers.normal(1e-6), (1, 1, s.width),
                         jnp.float32)
        pos = self.param("pos_embed", nn.initializers.truncated_normal(0.02),
                         (1, s.grid * s.grid + 1, s.width), jnp.float32)
        patch_pos = resize_pos_embed(pos[0, 1:], h, w, image_h, image_w, s.antialias)
        x = jnp.concatenate([jnp.broadcast_to(cls + pos[:, :1], (n, 1, s.width)),
                             x.astype(jnp.float32) + patch_pos[None]], axis=1)
        if s.registers:
            reg = self.param("register_tokens", nn.initializers.normal(1e-6),
                             (1, s.registers, s.width), jnp.float32)
            x = jnp.concatenate([x[:, :1], jnp.broadcast_to(reg, (n, s.registers, s.width)),
                                 x[:, 1:]], axis=1)
        x = x.astype(self.dtype)
        if self.num_frozen == 1:
            x = jax.lax.stop_gradient(x)
        block = nn.remat(Block) if self.remat else Block
        for i in range(s.depth):
            x = block(s, self.dtype, name=f"blocks_{i}")(x)
            if i + 2 == self.num_frozen:
                x = jax.lax.stop_gradient(x)
        if s.final_norm:
            x = _norm(self.dtype, "norm")(x)
        cls_out = x[:, 0]
        patches = x[:, 1 + s.registers:].reshape(n, h, w, s.width)
        return patches, cls_out
