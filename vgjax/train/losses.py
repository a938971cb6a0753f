"""Metric-learning losses on (query, positive, negatives) descriptor groups.

Shapes: `query` (B, D), `positive` (B, D), `negatives` (B, N, D). Every loss returns a
scalar normalised by the number of triplets B * N, as the reference protocol does.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

PAIRWISE_EPS = 1e-6  # torch's pairwise_distance adds it to the difference (finite gradients)


def _l2(a, b):
    return jnp.sqrt(jnp.sum(jnp.square(a - b + PAIRWISE_EPS), axis=-1))


def triplet_loss(query, positive, negatives, margin: float = 0.1):
    """Mean over the B * N triplets of max(0, d(q, p) - d(q, n) + margin), d = L2 (not squared)."""
    d_pos = _l2(query, positive)[:, None]                 # (B, 1)
    d_neg = _l2(query[:, None, :], negatives)             # (B, N)
    return jnp.mean(jax.nn.relu(d_pos - d_neg + margin))


def _sq_dists(query, positive, negatives):
    d_pos = jnp.sum(jnp.square(query - positive), axis=-1)               # (B,)
    d_neg = jnp.sum(jnp.square(query[:, None, :] - negatives), axis=-1)  # (B, N)
    return d_pos, d_neg


def sare_ind_loss(query, positive, negatives):
    """SARE, one softmax per triplet: -log softmax(-[d_p^2, d_n^2])[0], mean over B * N."""
    d_pos, d_neg = _sq_dists(query, positive, negatives)
    # -log(e^-dp / (e^-dp + e^-dn)) = softplus(dp - dn)
    return jnp.mean(jax.nn.softplus(d_pos[:, None] - d_neg))


def sare_joint_loss(query, positive, negatives):
    """SARE, one softmax per query over its positive and all negatives.

    Summed over queries and divided by B * N (the reference's normalisation).
    """
    d_pos, d_neg = _sq_dists(query, positive, negatives)
    logits = -jnp.concatenate([d_pos[:, None], d_neg], axis=1)     # (B, 1 + N)
    per_query = -jax.nn.log_softmax(logits, axis=1)[:, 0]
    return jnp.sum(per_query) / negatives.shape[0] / negatives.shape[1]


LOSSES = {"triplet": triplet_loss, "sare_ind": sare_ind_loss, "sare_joint": sare_joint_loss}


def get_loss(name: str, margin: float = 0.1):
    """`fn(query, positive, negatives) -> scalar` for config `train.loss`."""
    if name not in LOSSES:
        raise ValueError(f"train.loss: unknown loss {name!r}; choose one of {sorted(LOSSES)}")
    if name == "triplet":
        return lambda q, p, n: triplet_loss(q, p, n, margin)
    return LOSSES[name]


def split_groups(descriptors, negatives_per_query: int):
    """Descriptors of a training batch laid out query by query as [q, p, n_1 .. n_N] ->

    query (B, D), positive (B, D), negatives (B, N, D). Whole groups stay contiguous, so a
    batch sharded over devices keeps each query with its positive and negatives.
    """
    groups = descriptors.reshape(-1, 2 + negatives_per_query, descriptors.shape[-1])
    return groups[:, 0], groups[:, 1], groups[:, 2:]
