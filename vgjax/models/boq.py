"""BoQ, Bag-of-Queries (Ali-bey et al., CVPR 2024): learnable queries read the local features
through cross-attention.

As the published code (`src/boq.py`, the ResNet-50 and DINOv2 models of its `hubconf.py`):

1. A `proj_kernel` x `proj_kernel` convolution (3 x 3, padding 1, with bias) C -> `proj_channels`
   (the published models use it on both backbones: 1024 -> 512 on ResNet-50 cut after layer3,
   768 -> 384 on DINOv2 patch tokens). `proj_kernel=0` skips it: the tokens are the C input
   channels as they come (the token width d is then C, not `proj_channels`).
2. The map is flattened row by row to hw tokens (N, hw, d) (torch's NCHW `flatten(2)`
   transposed, batch first), then LayerNorm (`norm_input`).
3. `num_layers` BoQ blocks. Each block:
   - a transformer encoder layer on the tokens, torch's `TransformerEncoderLayer` with
     `batch_first=True`, dropout 0 and its defaults: post-norm (norm_first=False), ReLU,
     feed-forward width 4d, LayerNorm eps 1e-5:
     x = norm1(x + SA(x)); x = norm2(x + linear2(relu(linear1(x))));
   - `num_queries` learnable queries (1, Q, d) (standard normal init), shared by the batch:
     q = norm_q(q + SA(q)) (self-attention among the queries, with a residual);
   - cross-attention of the queries to the block's encoded tokens, then LayerNorm, with no
     residual: out = norm_out(CA(q, x, x));
   - the next block continues from the encoded tokens x; each block's `out` (N, Q, d) is kept.
   Every attention is torch's `MultiheadAttention` (batch first): separate q/k/v projections
   d -> d with bias (torch packs them in one `in_proj`), `num_heads` heads of width d / heads,
   softmax(q k^T / sqrt(d / heads)), an output projection d -> d with bias. The number of
   heads is d // 64 in the published code (8 for d = 512); `num_heads=0` keeps that rule, a
   positive value sets it (it must divide d).
4. The blocks' outputs are concatenated along the query axis (N, L*Q, d), transposed to
   (N, d, L*Q), a Linear(L*Q -> `row_dim`) with bias mixes the queries of each channel, and the
   (N, d, row_dim) result is flattened channel-major (index c * row_dim + r) and L2-normalised:
   d * row_dim values (16384 = 512 * 32 by default).

The attention maps the published module also returns (for visualisation) are not computed.
Any feature size works (attention does not depend on hw). Parameters: `proj/{kernel (k, k,
C, d), bias}`, `norm_input`, `block_<i>/{encoder/{self_attn, linear1, linear2, norm1, norm2},
queries (1, Q, d), self_attn, norm_q, cross_attn, norm_out}` with each attention's
`{query, key, value, out}/{kernel (d, d), bias}`, and `fc/{kernel (L*Q, row_dim), bias}`;
initialised as torch initialises them; float32 throughout.
"""
from __future__ import annotations

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from vgjax.config.settings import Settings
from vgjax.models.aggregation import (AGGREGATIONS, Aggregation, TorchLinear, l2_normalize,
                                      read_options, require_options, torch_uniform)

HIGHEST = jax.lax.Precision.HIGHEST
LN_EPS = 1e-5  # torch's LayerNorm and TransformerEncoderLayer default


@dataclasses.dataclass(frozen=True)
class BoQSettings(Settings):
    """`model.boq`: the published ResNet-50 configuration (16384-dim descriptors)."""
    proj_channels: int = 512
    proj_kernel: int = 3
    num_queries: int = 64
    num_layers: int = 2
    row_dim: int = 32
    num_heads: int = 0

    def width(self, channels: int) -> int:
        """The token width d on `channels`-dim local features."""
        return channels if self.proj_kernel == 0 else self.proj_channels

    def heads(self, width: int) -> int:
        return self.num_heads if self.num_heads > 0 else width // 64


class Linear(nn.Module):
    """x @ kernel + bias with given initialisers (kernel (in, out)), float32, full precision."""
    features: int
    kernel_init: object = None
    bias_init: object = nn.initializers.zeros

    @nn.compact
    def __call__(self, x):
        init = self.kernel_init or torch_uniform(x.shape[-1])
        kernel = self.param("kernel", init, (x.shape[-1], self.features), jnp.float32)
        return (jnp.dot(x, kernel, precision=HIGHEST)
                + self.param("bias", self.bias_init, (self.features,), jnp.float32))


class MultiheadAttention(nn.Module):
    """torch's `nn.MultiheadAttention(d, heads, batch_first=True)` output (no dropout, no
    mask). Initialised as torch: q/k/v kernels from the Xavier-uniform packed (3d, d) matrix
    (bound sqrt(6 / 4d)), zero biases, the output kernel as a Linear's, zero bias."""
    heads: int

    @nn.compact
    def __call__(self, q, kv):  # (N, Lq, d), (N, Lk, d)
        d = q.shape[-1]
        hd = d // self.heads
        bound = math.sqrt(6.0 / (4 * d))

        def xavier(key, shape, dtype=jnp.float32):
            return jax.random.uniform(key, shape, dtype, -bound, bound)

        def split(x):  # (N, L, d) -> (N, heads, L, hd)
            return x.reshape(*x.shape[:2], self.heads, hd).transpose(0, 2, 1, 3)

        query = split(Linear(d, xavier, name="query")(q))
        key = split(Linear(d, xavier, name="key")(kv))
        value = split(Linear(d, xavier, name="value")(kv))
        scores = jnp.einsum("nhqe,nhke->nhqk", query / math.sqrt(hd), key, precision=HIGHEST)
        out = jnp.einsum("nhqk,nhke->nhqe", jax.nn.softmax(scores, axis=-1), value,
                         precision=HIGHEST)
        out = out.transpose(0, 2, 1, 3).reshape(q.shape)
        return Linear(d, torch_uniform(d), name="out")(out)


def layer_norm(name: str):
    return nn.LayerNorm(epsilon=LN_EPS, dtype=jnp.float32, name=name)


class EncoderLayer(nn.Module):
    """torch's `TransformerEncoderLayer(d, heads, 4d, dropout=0, batch_first=True)`: post-norm,
    ReLU."""
    heads: int

    @nn.compact
    def __call__(self, x):  # (N, L, d)
        d = x.shape[-1]
        x = layer_norm("norm1")(x + MultiheadAttention(self.heads, name="self_attn")(x, x))
        y = TorchLinear(d, name="linear2")(jax.nn.relu(TorchLinear(4 * d, name="linear1")(x)))
        return layer_norm("norm2")(x + y)


class BoQBlock(nn.Module):
    """Tokens (N, L, d) -> (encoded tokens, the queries' read-out (N, Q, d))."""
    num_queries: int
    heads: int

    @nn.compact
    def __call__(self, x):
        x = EncoderLayer(self.heads, name="encoder")(x)
        queries = self.param("queries", nn.initializers.normal(1.0),
                             (1, self.num_queries, x.shape[-1]), jnp.float32)
        q = jnp.broadcast_to(queries, (x.shape[0], *queries.shape[1:]))
        q = layer_norm("norm_q")(q + MultiheadAttention(self.heads, name="self_attn")(q, q))
        out = layer_norm("norm_out")(MultiheadAttention(self.heads, name="cross_attn")(q, x))
        return x, out


class BoQ(nn.Module):
    options: BoQSettings = BoQSettings()

    @nn.compact
    def __call__(self, x):  # (N, h, w, C)
        o = self.options
        n, c = x.shape[0], x.shape[-1]
        x = x.astype(jnp.float32)
        d = o.width(c)
        check_width(d, o)
        if o.proj_kernel > 0:
            init = torch_uniform(c * o.proj_kernel ** 2)  # torch's Conv2d fan_in
            x = nn.Conv(d, (o.proj_kernel,) * 2, padding="SAME", dtype=jnp.float32,
                        param_dtype=jnp.float32, precision=HIGHEST, kernel_init=init,
                        bias_init=init, name="proj")(x)
        x = layer_norm("norm_input")(x.reshape(n, -1, d))  # (N, hw, d), row by row
        outs = []
        for i in range(o.num_layers):
            x, out = BoQBlock(o.num_queries, o.heads(d), name=f"block_{i}")(x)
            outs.append(out)
        out = jnp.concatenate(outs, axis=1).transpose(0, 2, 1)  # (N, d, L*Q)
        out = TorchLinear(o.row_dim, name="fc")(out)             # (N, d, row_dim)
        return l2_normalize(out.reshape(n, -1), axis=-1)         # channel-major


def check_width(d: int, o: BoQSettings) -> None:
    """The attention heads must split the token width d evenly."""
    heads = o.heads(d)
    if heads < 1:
        raise ValueError(f"model.boq.num_heads=0 takes d // 64 heads, none for the token width "
                         f"d = {d}; set model.boq.num_heads")
    if d % heads:
        raise ValueError(f"model.boq.num_heads: {heads} heads do not divide the token width "
                         f"d = {d}")


def check_settings(get) -> None:
    o = read_options(BoQSettings, get("boq"))
    positive = (lambda v: v >= 1, ">= 1")
    require_options(o, "model.boq", [
        *((name, *positive) for name in ("proj_channels", "num_queries", "num_layers",
                                         "row_dim")),
        ("proj_kernel", lambda v: v == 0 or (v >= 1 and v % 2 == 1),
         "0 (no projection) or an odd size >= 1"),
        ("num_heads", lambda v: v >= 0, ">= 0 (0 = proj_channels // 64)")])
    if o.proj_kernel > 0:
        check_width(o.proj_channels, o)


AGGREGATIONS.register("boq")(Aggregation(
    module=lambda s: BoQ(s.head_options or BoQSettings()),
    dim=lambda c, k, o: o.width(c) * o.row_dim, uses_l2=False,
    check_settings=check_settings, options=BoQSettings))
