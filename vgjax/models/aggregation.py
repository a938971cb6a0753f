"""Aggregations: local features (N, h, w, D) -> global descriptor (N, D_out), float32.

NetVLAD, GeM, MAC (global max) and SPoC (global average). All of them compute in float32
whatever the backbone's compute dtype: they are a tiny share of the FLOPs, and the softmax
and the normalisations are where bfloat16 would lose precision.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

AGGREGATIONS = ("netvlad", "gem", "mac", "spoc")
L2_MODES = ("before_pool", "after_pool", "none")


def l2_normalize(x, axis=-1, eps: float = 1e-12):
    """x / max(||x||, eps) along `axis` (torch's F.normalize)."""
    norm = jnp.sqrt(jnp.sum(jnp.square(x), axis=axis, keepdims=True))
    return x / jnp.maximum(norm, eps)


class NetVLAD(nn.Module):
    """NetVLAD with K clusters; output K * D, flattened K-major (index k * D + d).

    Parameters: `centroids` (K, D) and the soft-assignment 1x1 conv `conv/kernel`
    (1, 1, D, K), no bias. `netvlad_init` sets both from k-means.
    """
    clusters: int = 64

    @nn.compact
    def __call__(self, x):  # (N, h, w, D)
        n, d = x.shape[0], x.shape[-1]
        x = l2_normalize(x.astype(jnp.float32), axis=-1)
        centroids = self.param("centroids", nn.initializers.uniform(1.0), (self.clusters, d),
                               jnp.float32)
        logits = nn.Conv(self.clusters, (1, 1), use_bias=False, dtype=jnp.float32,
                         param_dtype=jnp.float32, name="conv")(x)  # (N, h, w, K)
        assign = jax.nn.softmax(logits.reshape(n, -1, self.clusters), axis=-1)  # (N, hw, K)
        x = x.reshape(n, -1, d)                                                  # (N, hw, D)
        # V[k] = sum_i a_k(x_i) (x_i - c_k), for all clusters at once.
        vlad = jnp.einsum("nik,nid->nkd", assign, x) - assign.sum(1)[:, :, None] * centroids
        vlad = l2_normalize(vlad, axis=-1)  # intra-normalisation, (N, K, D)
        return l2_normalize(vlad.reshape(n, -1), axis=-1)


class GlobalPool(nn.Module):
    """GeM / MAC / SPoC over (h, w), with the reference's `l2` placement.

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
        x = x.astype(jnp.float32)
        if self.l2 == "before_pool":
            x = l2_normalize(x, axis=-1)
        if self.kind == "gem":
            p = self.param("p", nn.initializers.constant(self.p_init), (1,), jnp.float32)
            pooled = jnp.mean(jnp.power(jnp.maximum(x, self.eps), p), axis=(1, 2))
            pooled = jnp.power(pooled, 1.0 / p)
        elif self.kind == "mac":
            pooled = jnp.max(x, axis=(1, 2))
        elif self.kind == "spoc":
            pooled = jnp.mean(x, axis=(1, 2))
        else:
            raise ValueError(f"model.aggregation: unknown pooling {self.kind!r}")
        if self.l2 == "after_pool":
            pooled = l2_normalize(pooled, axis=-1)
        return pooled


def aggregation_dim(aggregation: str, channels: int, clusters: int) -> int:
    """Output size of an aggregation on `channels`-dim local features (before any fc)."""
    return clusters * channels if aggregation == "netvlad" else channels
