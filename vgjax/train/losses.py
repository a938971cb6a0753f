"""Loss terms of the train step, registered by name.

A term is a function of what one train step computed (`StepOutputs`: the batch's
descriptors laid out query by query, and whatever else the step produced, e.g. a domain
classifier's logits) and returns a scalar, or `(scalar, {name: scalar})` with metrics of
its own. The step sums the configured terms with their weights and reports each of them.

The metric-learning losses work on (query, positive, negatives) groups: `query` (B, D),
`positive` (B, D), `negatives` (B, N, D). Each returns a scalar normalised by the number of
triplets B * N, as the reference protocol does.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from vgjax.registry import Registry

LOSS_TERMS = Registry("train.loss", fixed=("outputs",))

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


@dataclasses.dataclass(frozen=True)
class StepOutputs:
    """What a loss term sees: descriptors (B * (2 + N), D) laid out [q, p, n_1 .. n_N] per
    query, and `extra` arrays other parts of the step produced (e.g. domain logits)."""
    descriptors: Any
    negatives_per_query: int
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def groups(self):
        """(query (B, D), positive (B, D), negatives (B, N, D))."""
        return split_groups(self.descriptors, self.negatives_per_query)


@LOSS_TERMS.register("triplet")
def triplet(outputs: StepOutputs, margin: float = 0.1):
    return triplet_loss(*outputs.groups(), margin)


@LOSS_TERMS.register("sare_ind")
def sare_ind(outputs: StepOutputs):
    return sare_ind_loss(*outputs.groups())


@LOSS_TERMS.register("sare_joint")
def sare_joint(outputs: StepOutputs):
    return sare_joint_loss(*outputs.groups())


@dataclasses.dataclass(frozen=True)
class LossTerm:
    """One configured term: `fn(outputs) -> scalar | (scalar, metrics)`, times `weight`."""
    name: str
    fn: Callable
    weight: float = 1.0

    def __call__(self, outputs: StepOutputs):
        out = self.fn(outputs=outputs)
        value, metrics = out if isinstance(out, tuple) else (out, {})
        return value, metrics


def make_term(spec, kwargs=None, weight: float = 1.0, name: str | None = None) -> LossTerm:
    """A `LossTerm` from a registered name or spec (`"triplet(margin=0.2)"`)."""
    parsed = LOSS_TERMS.parse(spec, kwargs)
    return LossTerm(name or parsed.name, LOSS_TERMS.partial(parsed), float(weight))


def split_groups(descriptors, negatives_per_query: int):
    """Descriptors of a training batch laid out query by query as [q, p, n_1 .. n_N] ->

    query (B, D), positive (B, D), negatives (B, N, D). Whole groups stay contiguous, so a
    batch sharded over devices keeps each query with its positive and negatives.
    """
    groups = descriptors.reshape(-1, 2 + negatives_per_query, descriptors.shape[-1])
    return groups[:, 0], groups[:, 1], groups[:, 2:]
