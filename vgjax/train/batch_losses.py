"""Metric-learning losses and miners over a batch of places, registered by name.

A place batch holds P places x K images; `labels` (B,) are place ids and every pair of images
with the same id is a positive pair, every pair with different ids a negative one (an image
is never paired with itself). The functions follow pytorch-metric-learning's (PML)
semantics, default reducers included, and are pure, jittable JAX with static shapes:

- a miner `fn(descriptors (B, D), labels (B,), **args) -> Pairs`: boolean (B, B) masks of
  the anchor-positive and anchor-negative pairs it keeps (PML's `indices_tuple` as masks);
- a loss `fn(descriptors, labels, pairs=None, **args) -> (scalar, {name: scalar})`; the loss
  covers only the pairs in `pairs` (all pairs when None) and reports how many it used.

Descriptors are normalised again inside (as PML's distances do, `x / max(|x|, 1e-12)`), so
the value is unchanged for unit-norm inputs and the gradient is the one through that
normalisation (its radial component removed), as torch autograd gives through PML.

Cases where PML gives a zero loss (and a zero gradient), reproduced here:
- every loss is 0 when the pairs hold at most one positive and at most one negative pair;
- a loss whose reducer averages the non-zero terms (contrastive, supcon, circle) is 0 when
  no term is above zero;
- multi_similarity averages over all B anchors, those without a kept pair adding 0.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp

from vgjax.config import ConfigError
from vgjax.registry import Registry

BATCH_LOSSES = Registry("train.batch_loss", fixed=("descriptors", "labels", "pairs"))
BATCH_MINERS = Registry("train.batch_miner", fixed=("descriptors", "labels"))

NORM_EPS = 1e-12  # torch.nn.functional.normalize's default


class Pairs(NamedTuple):
    """Anchor-positive and anchor-negative pairs as (B, B) boolean masks (row = anchor)."""
    pos: jax.Array
    neg: jax.Array


def _check(name: str, value, cond: bool, what: str):
    """Refuses a Python-number argument outside its range (traced values are not checked)."""
    if isinstance(value, (int, float)) and not cond:
        raise ConfigError(f"{name}: must be {what}, got {value!r}")


def _normalize(x):
    norm = jnp.sqrt(jnp.sum(jnp.square(x), axis=-1, keepdims=True))
    return x / jnp.maximum(norm, NORM_EPS)


def _dot(a, b):
    return jnp.matmul(a, b.T, precision=jax.lax.Precision.HIGHEST)


def similarity_matrix(descriptors):
    """(B, B) cosine similarities: dot products of the normalised descriptors."""
    x = _normalize(descriptors)
    return _dot(x, x)


CDIST_DIRECT_MAX = 25  # torch.cdist subtracts directly up to 25 rows, else expands |a - b|^2


def distance_matrix(descriptors):
    """(B, B) L2 distances between the normalised descriptors, computed as torch.cdist does:
    from the differences for B <= 25 (exact for close pairs), else from |a|^2 + |b|^2 - 2 a.b
    (no (B, B, D) array). The gradient at a zero distance is 0, as torch.cdist's."""
    x = _normalize(descriptors)
    if x.shape[0] <= CDIST_DIRECT_MAX:
        d2 = jnp.sum(jnp.square(x[:, None, :] - x[None, :, :]), axis=-1)
    else:
        sq = jnp.sum(jnp.square(x), axis=-1)
        d2 = sq[:, None] + sq[None, :] - 2.0 * _dot(x, x)
    positive = d2 > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, d2, 1.0)), 0.0)


def all_pairs(labels) -> Pairs:
    """Every positive pair (same label, not the image itself) and every negative pair."""
    labels = jnp.asarray(labels)
    same = labels[:, None] == labels[None, :]
    eye = jnp.eye(labels.shape[0], dtype=bool)
    return Pairs(same & ~eye, ~same)


def _pairs(labels, pairs: Pairs | None) -> Pairs:
    if pairs is None:
        return all_pairs(labels)
    return Pairs(jnp.asarray(pairs[0], bool), jnp.asarray(pairs[1], bool))


def _min_value(dtype):
    return jnp.finfo(dtype).min


def _masked_logsumexp(x, keep, add_one: bool):
    """Row-wise log-sum-exp over the kept entries (plus a 0 term when `add_one`); rows that
    keep nothing give 0. Dropped entries are set to the dtype's lowest finite value, so no
    infinities reach the gradient."""
    x = jnp.where(keep, x, _min_value(x.dtype))
    if add_one:
        x = jnp.concatenate([x, jnp.zeros((x.shape[0], 1), x.dtype)], axis=1)
    out = jax.nn.logsumexp(x, axis=1)
    return jnp.where(jnp.any(keep, axis=1), out, 0.0)


def _too_few_pairs(pairs: Pairs):
    """PML returns a zero loss when there is at most one positive and one negative pair."""
    return (jnp.sum(pairs.pos) <= 1) & (jnp.sum(pairs.neg) <= 1)


def _mean_of_positive(losses, keep):
    """PML's AvgNonZeroReducer: the mean of the kept terms above 0; 0 when there is none."""
    active = keep & (losses > 0)
    count = jnp.sum(active)
    total = jnp.sum(jnp.where(active, losses, 0.0))
    return jnp.where(count > 0, total / jnp.maximum(count, 1), 0.0), count


def _stats(pairs: Pairs, active) -> dict:
    return {"pos_pairs": jnp.sum(pairs.pos), "neg_pairs": jnp.sum(pairs.neg),
            "active_terms": active}


# ---------------------------------------------------------------------------------- losses

@BATCH_LOSSES.register("multi_similarity")
def multi_similarity(descriptors, labels, pairs: Pairs | None = None, alpha: float = 2.0,
                     beta: float = 50.0, base: float = 0.5):
    """PML MultiSimilarityLoss. Per anchor with similarities s to its kept pairs:
    1/alpha log(1 + sum_pos exp(-alpha (s - base))) + 1/beta log(1 + sum_neg exp(beta (s - base))),
    a side without kept pairs adding 0; the loss is the mean over all B anchors (MeanReducer).
    s is the cosine similarity (PML's CosineSimilarity; its DotProductSimilarity normalises
    the descriptors too by default, so it gives the same loss)."""
    _check("alpha", alpha, alpha > 0, "> 0")
    _check("beta", beta, beta > 0, "> 0")
    pairs = _pairs(labels, pairs)
    s = similarity_matrix(descriptors)
    pos = (1.0 / alpha) * _masked_logsumexp(alpha * (base - s), pairs.pos, add_one=True)
    neg = (1.0 / beta) * _masked_logsumexp(beta * (s - base), pairs.neg, add_one=True)
    loss = jnp.where(_too_few_pairs(pairs), 0.0, jnp.mean(pos + neg))
    active = jnp.sum(jnp.any(pairs.pos | pairs.neg, axis=1))
    return loss, _stats(pairs, active)


@BATCH_LOSSES.register("contrastive")
def contrastive(descriptors, labels, pairs: Pairs | None = None, pos_margin: float = 0.0,
                neg_margin: float = 1.0):
    """PML ContrastiveLoss with its LpDistance (L2 between normalised descriptors, d):
    mean over the positive pairs with relu(d - pos_margin) > 0, plus the mean over the
    negative pairs with relu(neg_margin - d) > 0 (AvgNonZeroReducer on each side)."""
    pairs = _pairs(labels, pairs)
    d = distance_matrix(descriptors)
    pos, n_pos = _mean_of_positive(jax.nn.relu(d - pos_margin), pairs.pos)
    neg, n_neg = _mean_of_positive(jax.nn.relu(neg_margin - d), pairs.neg)
    loss = jnp.where(_too_few_pairs(pairs), 0.0, pos + neg)
    return loss, _stats(pairs, n_pos + n_neg)


@BATCH_LOSSES.register("supcon")
def supcon(descriptors, labels, pairs: Pairs | None = None, temperature: float = 0.1):
    """PML SupConLoss (cosine similarity / temperature): per anchor, minus the mean over its
    kept positives of log softmax over its kept positives and negatives; the mean over the
    anchors whose term is above 0 (AvgNonZeroReducer). 0 without any kept positive or any
    kept negative pair in the batch."""
    _check("temperature", temperature, temperature > 0, "> 0")
    pairs = _pairs(labels, pairs)
    s = similarity_matrix(descriptors) / temperature
    s = s - jax.lax.stop_gradient(jnp.max(s, axis=1, keepdims=True))
    log_prob = s - _masked_logsumexp(s, pairs.pos | pairs.neg, add_one=False)[:, None]
    pos = pairs.pos.astype(s.dtype)
    per_anchor = -(jnp.sum(pos * log_prob, axis=1)
                   / (jnp.sum(pos, axis=1) + jnp.finfo(s.dtype).tiny))
    value, active = _mean_of_positive(per_anchor, jnp.ones_like(pairs.pos[0]))
    usable = jnp.any(pairs.pos) & jnp.any(pairs.neg) & ~_too_few_pairs(pairs)
    return jnp.where(usable, value, 0.0), _stats(pairs, jnp.where(usable, active, 0))


def _softplus(x, threshold: float = 20.0):
    """torch.nn.Softplus(beta=1): linear above the threshold."""
    return jnp.where(x > threshold, x, jnp.log1p(jnp.exp(jnp.minimum(x, threshold))))


@BATCH_LOSSES.register("circle")
def circle(descriptors, labels, pairs: Pairs | None = None, m: float = 0.4,
           gamma: float = 80.0):
    """PML CircleLoss (cosine similarity s): per anchor with kept positives and negatives,
    softplus(logsumexp_pos(-gamma [1 + m - s]_+ (s - 1 + m))
             + logsumexp_neg(gamma [s + m]_+ (s - m))),
    the weights [.]_+ held constant in the gradient; anchors lacking either side add 0; the
    mean over the anchors whose term is above 0 (AvgNonZeroReducer)."""
    _check("gamma", gamma, gamma > 0, "> 0")
    pairs = _pairs(labels, pairs)
    s = similarity_matrix(descriptors)
    held = jax.lax.stop_gradient(s)
    logits = jnp.where(pairs.pos, -gamma * jax.nn.relu(1 + m - held) * (s - (1 - m)),
                       jnp.where(pairs.neg, gamma * jax.nn.relu(held - (-m)) * (s - m), 0.0))
    per_anchor = _softplus(_masked_logsumexp(logits, pairs.pos, add_one=False)
                           + _masked_logsumexp(logits, pairs.neg, add_one=False))
    both = jnp.any(pairs.pos, axis=1) & jnp.any(pairs.neg, axis=1)
    per_anchor = jnp.where(both, per_anchor, 0.0)
    value, active = _mean_of_positive(per_anchor, both)
    too_few = _too_few_pairs(pairs)
    return jnp.where(too_few, 0.0, value), _stats(pairs, jnp.where(too_few, 0, active))


# ---------------------------------------------------------------------------------- miners

@BATCH_MINERS.register("none")
def no_mining(descriptors, labels) -> Pairs:
    """All pairs of the batch."""
    del descriptors
    return all_pairs(labels)


@BATCH_MINERS.register("multi_similarity")
def multi_similarity_miner(descriptors, labels, epsilon: float = 0.1) -> Pairs:
    """PML MultiSimilarityMiner with cosine similarity s: keeps a positive pair (a, p) when
    s(a, p) - epsilon < the anchor's largest negative similarity, a negative pair (a, n) when
    s(a, n) + epsilon > its smallest positive similarity (strict comparisons; an anchor
    without negatives keeps no positive, one without positives no negative). No gradient."""
    pairs = all_pairs(labels)
    s = jax.lax.stop_gradient(similarity_matrix(descriptors))
    lowest, highest = jnp.finfo(s.dtype).min, jnp.finfo(s.dtype).max
    hardest_neg = jnp.max(jnp.where(pairs.neg, s, lowest), axis=1, keepdims=True)
    hardest_pos = jnp.min(jnp.where(pairs.pos, s, highest), axis=1, keepdims=True)
    return Pairs(pairs.pos & (s - epsilon < hardest_neg),
                 pairs.neg & (s + epsilon > hardest_pos))


def make_batch_loss(loss: str, loss_args: Mapping | None = None, miner: str = "none",
                    miner_args: Mapping | None = None):
    """`fn(descriptors, labels) -> (loss, stats)`: the miner's pairs fed to the loss, both
    from registered names or specs (`"multi_similarity(alpha=1.0, base=0.0)"`)."""
    loss_fn = BATCH_LOSSES.partial(loss, loss_args)
    miner_fn = BATCH_MINERS.partial(miner, miner_args)

    def fn(descriptors, labels):
        pairs = miner_fn(descriptors=descriptors, labels=labels)
        return loss_fn(descriptors=descriptors, labels=labels, pairs=pairs)

    return fn
