"""Aggregations: local features (N, h, w, D) -> global descriptor (N, D_out), float32.

NetVLAD, GeM, MAC (global max), SPoC (global average), R-MAC (regional max, the
reference's `rmac`), RRM (the reference's residual retrieval module) and `cls` (a ViT's CLS
token, L2-normalised) here; CRN, MixVPR,
Conv-AP and CosPlace in their own modules, which register themselves the same way. All of
them compute in float32 whatever the backbone's compute dtype: they are a tiny share of the
FLOPs, and the softmax and the normalisations are where bfloat16 would lose precision.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vgjax.registry import Registry

AGGREGATIONS = Registry("model.aggregation")
# model.matmul_precision: how float32 matmuls of NetVLAD run. On A100/H100-class GPUs XLA's
# "default" rounds their inputs to TF32 (10 mantissa bits), "high" uses 3 bfloat16 passes,
# "highest" is full float32 (what the CPU always does).
PRECISIONS = {"default": jax.lax.Precision.DEFAULT, "high": jax.lax.Precision.HIGH,
              "highest": jax.lax.Precision.HIGHEST}
# model.l2 of the pooling heads: (normalise local features, normalise the pooled vector)
L2_MODES = {"before_pool": (True, False), "after_pool": (False, True), "none": (False, False)}


def matmul_precision(name: str) -> jax.lax.Precision:
    """`model.matmul_precision` ("default" | "high" | "highest") as a jax.lax.Precision."""
    try:
        return PRECISIONS[name]
    except KeyError:
        raise ValueError(f"model.matmul_precision: unknown value {name!r} (accepted: "
                         f"{', '.join(PRECISIONS)})") from None


def l2_normalize(x, axis=-1, eps: float = 1e-12):
    """x / max(||x||, eps) along `axis` (torch's F.normalize)."""
    norm = jnp.sqrt(jnp.sum(jnp.square(x), axis=axis, keepdims=True))
    return x / jnp.maximum(norm, eps)


class TorchLinear(nn.Module):
    """`nn.Dense` initialised as torch's `nn.Linear`: weight and bias uniform in
    +-1/sqrt(fan_in) (kernel (fan_in, features), bias (features,))."""
    features: int
    use_bias: bool = True

    @nn.compact
    def __call__(self, x):
        uniform = torch_uniform(x.shape[-1])
        kernel = self.param("kernel", uniform, (x.shape[-1], self.features), jnp.float32)
        y = jnp.dot(x.astype(jnp.float32), kernel, precision=jax.lax.Precision.HIGHEST)
        if self.use_bias:
            y = y + self.param("bias", uniform, (self.features,), jnp.float32)
        return y


def torch_uniform(fan_in: int):
    """Initialiser uniform in +-1/sqrt(fan_in): torch's default for Linear and Conv weights
    and biases."""
    bound = 1.0 / np.sqrt(fan_in)

    def uniform(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)
    return uniform


class NetVLAD(nn.Module):
    """NetVLAD with K clusters; output K * D, flattened K-major (index k * D + d).

    Parameters: `centroids` (K, D) and the soft-assignment 1x1 conv `conv/kernel`
    (1, 1, D, K), no bias. `netvlad_init` sets both from k-means. `precision` (a key of
    PRECISIONS) is that of the soft-assignment conv and of the aggregation einsum: with
    TF32 inputs ("default" on recent GPUs) a k-means-initialised NetVLAD's descriptors move
    by more than 1e-4 relative (the einsum's sum of a_k(x_i) x_i nearly cancels against
    (sum a_k) c_k; tests/test_eval_search.py simulates it), so it is "highest" unless asked
    otherwise (their FLOPs are a small share of the network's).
    """
    clusters: int = 64
    precision: str = "highest"

    @nn.compact
    def __call__(self, x):  # (N, h, w, D)
        return netvlad(self, l2_normalize(x.astype(jnp.float32), axis=-1), self.clusters,
                       self.precision)


def netvlad(module: nn.Module, x, clusters: int, precision: str, weights=None):
    """NetVLAD of L2-normalised local features x (N, h, w, D), with `module`'s `centroids`
    and soft-assignment `conv` (called inside its compact method); `weights` (N, h, w)
    scale each position's soft assignment (CRN's context mask)."""
    n, d = x.shape[0], x.shape[-1]
    precision = matmul_precision(precision)
    centroids = module.param("centroids", nn.initializers.uniform(1.0), (clusters, d),
                             jnp.float32)
    logits = nn.Conv(clusters, (1, 1), use_bias=False, dtype=jnp.float32,
                     param_dtype=jnp.float32, precision=precision,
                     name="conv")(x)  # (N, h, w, K)
    assign = jax.nn.softmax(logits.reshape(n, -1, clusters), axis=-1)  # (N, hw, K)
    if weights is not None:
        assign = assign * weights.reshape(n, -1, 1)
    x = x.reshape(n, -1, d)                                             # (N, hw, D)
    # V[k] = sum_i a_k(x_i) (x_i - c_k), for all clusters at once.
    vlad = (jnp.einsum("nik,nid->nkd", assign, x, precision=precision)
            - assign.sum(1)[:, :, None] * centroids)
    vlad = l2_normalize(vlad, axis=-1)  # intra-normalisation, (N, K, D)
    return l2_normalize(vlad.reshape(n, -1), axis=-1)


def gem_pool(x, p, eps: float):
    """(mean over h, w of clamp(x, eps)^p)^(1/p); x (N, h, w, D)."""
    return jnp.power(jnp.mean(jnp.power(jnp.maximum(x, eps), p), axis=(1, 2)), 1.0 / p)


class GlobalPool(nn.Module):
    """GeM / MAC / SPoC / R-MAC over (h, w), with the reference's `l2` placement.

    before_pool: L2 over channels of each local feature, then pool (the pooled vector is not
    normalised, as in the reference); after_pool: pool, then L2; none: pool only.
    GeM: (mean over h, w of clamp(x, eps)^p)^(1/p), p learnable (param `p`, shape (1,)).
    """
    kind: str = "gem"
    l2: str = "before_pool"
    p_init: float = 3.0
    eps: float = 1e-6

    @nn.compact
    def __call__(self, x):  # (N, h, w, D)
        before, after = L2_MODES[self.l2]
        x = x.astype(jnp.float32)
        if before:
            x = l2_normalize(x, axis=-1)
        pool = POOLS[self.kind]
        if pool is None:  # GeM: the learnable exponent
            p = self.param("p", nn.initializers.constant(self.p_init), (1,), jnp.float32)
            pooled = gem_pool(x, p, self.eps)
        else:
            pooled = pool(x)
        return l2_normalize(pooled, axis=-1) if after else pooled


RMAC_OVERLAP = 0.4          # desired overlap of neighbouring regions
RMAC_STEPS = (2, 3, 4, 5, 6, 7)  # candidate region counts along the long side


def rmac_regions(h: int, w: int, levels: int = 3) -> list[tuple[int, int, int]]:
    """The reference's R-MAC regions (`model/functional.py: rmac`) of an h x w map:
    (top, left, side) squares, `levels` scales; on the long side the count that makes
    neighbours overlap closest to 40%. float32 arithmetic, as the reference's tensors."""
    f32 = np.float32
    short = min(w, h)
    steps = np.asarray(RMAC_STEPS, f32)
    b = f32(max(h, w) - short) / (steps - f32(1))
    idx = int(np.argmin(np.abs((f32(short ** 2) - f32(short) * b) / f32(short ** 2)
                               - f32(RMAC_OVERLAP))))
    extra_w = idx + 1 if h < w else 0
    extra_h = idx + 1 if h > w else 0
    regions = []
    for level in range(1, levels + 1):
        side = math.floor(2 * short / (level + 1))
        half = math.floor(side / 2 - 1)
        if side == 0:
            continue

        def centres(size, extra):
            n = level + extra
            step = f32(0) if n == 1 else f32((size - side) / (n - 1))
            return np.floor(f32(half) + np.arange(n, dtype=f32) * step) - f32(half)

        for top in centres(h, extra_h):
            for left in centres(w, extra_w):
                regions.append((int(top), int(left), side))
    return regions


def rmac_pool(x, eps: float = 1e-6):
    """R-MAC of (N, h, w, D): the global max plus every region's max, each divided by
    (its L2 norm + eps), summed (the reference's `rmac(x, L=3, eps=1e-6)`)."""
    def unit(v):
        return v / (jnp.sqrt(jnp.sum(jnp.square(v), axis=-1, keepdims=True)) + eps)

    out = unit(jnp.max(x, axis=(1, 2)))
    for top, left, side in rmac_regions(x.shape[1], x.shape[2]):
        out = out + unit(jnp.max(x[:, top:top + side, left:left + side], axis=(1, 2)))
    return out


POOLS = {"gem": None, "mac": lambda x: jnp.max(x, axis=(1, 2)),
         "spoc": lambda x: jnp.mean(x, axis=(1, 2)), "rmac": rmac_pool}


class RRM(nn.Module):
    """The reference's residual retrieval module: global average, LayerNorm, a residual
    two-layer MLP (Linear, ReLU, Linear, all D wide), LayerNorm, L2. Parameters as torch
    names them: `ln1`, `fc1`, `fc2`, `ln2`."""

    @nn.compact
    def __call__(self, x):  # (N, h, w, D)
        d = x.shape[-1]
        x = nn.LayerNorm(epsilon=1e-5, dtype=jnp.float32, name="ln1")(
            jnp.mean(x.astype(jnp.float32), axis=(1, 2)))
        out = TorchLinear(d, name="fc2")(jax.nn.relu(TorchLinear(d, name="fc1")(x))) + x
        return l2_normalize(nn.LayerNorm(epsilon=1e-5, dtype=jnp.float32, name="ln2")(out),
                            axis=-1)


@dataclasses.dataclass(frozen=True)
class Aggregation:
    """A registered head.

    `module(network)` builds it from the network's fields (`netvlad_clusters`, `l2`, `gem_p`,
    `gem_eps`, and `head_options`: an instance of `options`, or None); `dim(channels,
    clusters, options)` is its output size. A head with its own options declares `options`, a
    frozen `vgjax.config.settings.Settings` class read from the section `model.<name>` (its
    defaults where a config or an older model.json lacks the section); `check_settings(get)`
    refuses bad values (`get(name)` reads `model.<name>`: an option, or a whole section).
    """
    module: Callable
    dim: Callable[[int, int, object], int]
    uses_clusters: bool = False   # model.netvlad_clusters matters (and model.netvlad_init)
    uses_l2: bool = True          # model.l2 matters
    frozen: tuple[str, ...] = ()  # its parameter groups that never train (e.g. "crn/acc_w")
    takes_head_of: tuple[str, ...] = ()  # pretrained heads it starts from (CRN: NetVLAD's)
    # refuses a local feature size: check_features(h, w, options)
    check_features: Callable[[int, int, object], None] | None = None
    lr_groups: tuple[tuple[str, str], ...] = ()  # (parameter group, train.<option>): its lr
    check_settings: Callable[[Callable[[str], object]], None] | None = None  # its options' ranges
    options: type | None = None   # its Settings class, read from model.<name>
    # the (h, w) local feature map its parameters are built for (None: any size)
    feature_size: Callable[[object], tuple[int, int]] | None = None
    # its module is called as module(features, token=global token (N, C) or None): a backbone
    # with a global token (DINOv2's CLS) hands it over; `needs_token`: it has no use without one
    takes_token: bool = False
    needs_token: bool = False


def read_options(cls, section):
    """`cls` (a Settings class) from a config section; its defaults for a missing one."""
    return cls() if section is None else cls.from_section(section)


def require_options(options, section: str, rules) -> None:
    """Raises ValueError naming `<section>.<field>` for the first of `rules`, (field, test,
    what it must be), whose test fails on the field's value."""
    for name, ok, must in rules:
        value = getattr(options, name)
        if not ok(value):
            raise ValueError(f"{section}.{name}: must be {must}, got {value}")


def _check_gem(get) -> None:
    """GeM's exponent and clamp: p <= 0 divides by zero (1 / p) or inverts the pooling, and
    eps <= 0 lets log(0) into p's gradient; both end in NaN losses."""
    p, eps = float(get("gem_p")), float(get("gem_eps"))
    if not p > 0:
        raise ValueError(f"model.gem_p: must be > 0 (3 is GeM's usual start), got {p}")
    if not eps > 0:
        raise ValueError(f"model.gem_eps: must be > 0 (the clamp before x^p), got {eps}")


AGGREGATIONS.register("netvlad")(Aggregation(
    module=lambda s: NetVLAD(s.netvlad_clusters,
                             precision=getattr(s, "matmul_precision", "highest")),
    dim=lambda c, k, o: k * c,
    uses_clusters=True, uses_l2=False))
for _kind in POOLS:
    AGGREGATIONS.register(_kind)(Aggregation(
        module=lambda s, kind=_kind: GlobalPool(kind, s.l2, s.gem_p, s.gem_eps),
        dim=lambda c, k, o: c, check_settings=_check_gem if POOLS[_kind] is None else None))
AGGREGATIONS.register("rrm")(Aggregation(module=lambda s: RRM(), dim=lambda c, k, o: c,
                                       uses_l2=False))


class ClassToken(nn.Module):
    """The backbone's global token (DINOv2's final-norm CLS token), L2-normalised; no
    parameters. The local features are not used."""

    @nn.compact
    def __call__(self, x, token=None):  # x (N, h, w, D), token (N, D)
        del x
        return l2_normalize(token.astype(jnp.float32), axis=-1)


AGGREGATIONS.register("cls")(Aggregation(module=lambda s: ClassToken(), dim=lambda c, k, o: c,
                                       uses_l2=False, takes_token=True, needs_token=True))


def uses_kmeans_init(model_cfg) -> bool:
    """True if `model.netvlad_init` applies: a clustering head with the init enabled."""
    init = model_cfg.get("netvlad_init")
    return bool(AGGREGATIONS.get(model_cfg.aggregation).uses_clusters and init and init.enabled)


def aggregation_dim(aggregation: str, channels: int, clusters: int, options=None) -> int:
    """Output size of an aggregation on `channels`-dim local features (before any fc);
    `options`: its options object (None: its defaults)."""
    entry = AGGREGATIONS.get(aggregation)
    if options is None and entry.options is not None:
        options = entry.options()
    return entry.dim(channels, clusters, options)
