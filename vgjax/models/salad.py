"""SALAD (Izquierdo & Civera, CVPR 2024): optimal-transport assignment of local features to
clusters, with a dustbin, plus a global token.

As the published code (`models/aggregators/salad.py`), on local features (N, h, w, C) seen as
n = hw positions:

- three MLPs, each Linear(C -> `hidden_dim`) (512 in the published code), ReLU, Linear, applied
  to every position (the published 1x1 convolutions) or to the global token:
  `cluster_features` (-> `cluster_dim`) gives f (N, n, l), `score` (-> `num_clusters` K)
  gives the score matrix S (N, K, n), `token_features` (-> `token_dim`) gives the token g;
- S gets one more row, the learnable dustbin score z (a scalar, 1.0 at start), for every
  position: S' (N, K+1, n). `iters` (3) log-domain Sinkhorn iterations (regularisation 1)
  with the published marginals: log a_k = -log(n + K) for each cluster, the dustbin's
  log a_K = -log(n + K) + log(n - K), log b_i = -log(n + K) for each position (both sides
  carry n / (n + K) of mass). From u = v = 0, each iteration sets
  u = log a - logsumexp_i(S' + v) then v = log b - logsumexp_k(S' + u); the plan is
  P = exp(S' + u + v + log(n + K)) (the published code undoes the normalisation), and the
  dustbin row is dropped: P (N, K, n). The marginals need n > K local features: fewer are
  refused (the published code fails on log(n - K) there);
- V[d, k] = sum_i f[i, d] P[k, i] (N, l, K), L2-normalised over d for every cluster, then
  flattened d-major (index d * K + k, torch's `flatten(1)` of (N, l, K));
- the descriptor is [L2(g), V] (g first) L2-normalised: `token_dim` + K * l values
  (256 + 64 * 128 = 8448 by default).

Departures from the published module:
- its global token is DINOv2's CLS token: a backbone with one (the `dinov2_*` ViTs) hands it
  over and it is used as published; CNN features have none, so there the token is GeM of the
  local features (learnable p `token_p`, starting at `model.gem_p`, clamp `model.gem_eps`),
  fed to `token_features` as the CLS token would be;
- its MLPs have dropout (0.3) after the first layer while training; heads here run the same
  in training and evaluation, so there is none (the published evaluation is the same).
Parameters: `cluster_features`, `score`, `token_features`, each `{fc1, fc2}/{kernel, bias}`
(torch's Linear / 1x1 Conv2d initialisation), `dust_bin` () and, without a backbone token,
`token_p` (1,); float32 throughout.
"""
from __future__ import annotations

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from vgjax.config.settings import Settings
from vgjax.models.aggregation import (AGGREGATIONS, Aggregation, TorchLinear, _check_gem,
                                      gem_pool, l2_normalize, read_options, require_options)


@dataclasses.dataclass(frozen=True)
class SALADSettings(Settings):
    """`model.salad`: the published configuration (8448-dim descriptors)."""
    num_clusters: int = 64
    cluster_dim: int = 128
    token_dim: int = 256
    hidden_dim: int = 512
    iters: int = 3


def check_feature_size(h: int, w: int, options: SALADSettings | None) -> None:
    k = (options or SALADSettings()).num_clusters
    if h * w <= k:
        raise ValueError(f"model.aggregation=salad: the local features are {h}x{w} = {h * w} "
                         f"positions, but the Sinkhorn marginals need more than "
                         f"model.salad.num_clusters = {k}; use larger images or fewer clusters")


class MLP(nn.Module):
    """Linear, ReLU, Linear over the last axis."""
    hidden: int
    features: int

    @nn.compact
    def __call__(self, x):
        return TorchLinear(self.features, name="fc2")(
            jax.nn.relu(TorchLinear(self.hidden, name="fc1")(x)))


def sinkhorn_plan(scores, dust_bin, iters: int):
    """The published SALAD's optimal transport plan of scores (N, K, n) with a dustbin row
    of score `dust_bin`: (N, K, n), the dustbin row dropped. Needs n > K."""
    batch, k, n = scores.shape
    s = jnp.concatenate([scores, jnp.broadcast_to(dust_bin, (batch, 1, n))], axis=1)
    norm = -math.log(n + k)
    log_a = jnp.full((k + 1,), norm, jnp.float32).at[k].add(math.log(n - k))
    log_b = jnp.full((n,), norm, jnp.float32)
    u = jnp.zeros((batch, k + 1), jnp.float32)
    v = jnp.zeros((batch, n), jnp.float32)
    for _ in range(iters):
        u = log_a - jax.nn.logsumexp(s + v[:, None, :], axis=2)
        v = log_b - jax.nn.logsumexp(s + u[:, :, None], axis=1)
    return jnp.exp(s + u[:, :, None] + v[:, None, :] - norm)[:, :k, :]


class SALAD(nn.Module):
    options: SALADSettings = SALADSettings()
    p_init: float = 3.0
    eps: float = 1e-6

    @nn.compact
    def __call__(self, x, token=None):  # x (N, h, w, C), token (N, C) or None
        o = self.options
        n_img, h, w, c = x.shape
        x = x.astype(jnp.float32)
        if self.is_initializing() and h * w <= o.num_clusters:
            x = jnp.zeros((n_img, 1, o.num_clusters + 1, c), jnp.float32)  # shapes only
        else:
            check_feature_size(h, w, o)
        if token is None:
            p = self.param("token_p", nn.initializers.constant(self.p_init), (1,), jnp.float32)
            token = gem_pool(x, p, self.eps)
        token = MLP(o.hidden_dim, o.token_dim, name="token_features")(
            token.astype(jnp.float32))                                       # (N, g)
        local = x.reshape(n_img, -1, c)                                      # (N, n, C)
        f = MLP(o.hidden_dim, o.cluster_dim, name="cluster_features")(local)  # (N, n, l)
        scores = MLP(o.hidden_dim, o.num_clusters, name="score")(local)      # (N, n, K)
        dust_bin = self.param("dust_bin", nn.initializers.constant(1.0), (), jnp.float32)
        plan = sinkhorn_plan(scores.transpose(0, 2, 1), dust_bin, o.iters)  # (N, K, n)
        v = jnp.einsum("nid,nki->ndk", f, plan, precision=jax.lax.Precision.HIGHEST)
        v = l2_normalize(v, axis=1).reshape(n_img, -1)  # per cluster; d-major
        return l2_normalize(jnp.concatenate([l2_normalize(token, axis=-1), v], axis=-1),
                            axis=-1)


def check_settings(get) -> None:
    _check_gem(get)
    o = read_options(SALADSettings, get("salad"))
    require_options(o, "model.salad", [
        *((name, lambda v: v >= 1, ">= 1")
          for name in ("num_clusters", "cluster_dim", "token_dim", "hidden_dim")),
        ("iters", lambda v: v >= 1, ">= 1 (Sinkhorn iterations)")])


AGGREGATIONS.register("salad")(Aggregation(
    module=lambda s: SALAD(s.head_options or SALADSettings(), s.gem_p, s.gem_eps),
    dim=lambda c, k, o: o.token_dim + o.num_clusters * o.cluster_dim, uses_l2=False,
    check_features=check_feature_size, check_settings=check_settings, options=SALADSettings,
    takes_token=True))
