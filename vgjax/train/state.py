"""The training state: device arrays in one pytree, host progress in a small dataclass."""
from __future__ import annotations

import dataclasses
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np


class TrainState(flax.struct.PyTreeNode):
    """Everything the jitted train step reads and writes."""
    step: jax.Array          # int32 scalar: train steps done
    params: Any
    batch_stats: Any
    opt_state: Any
    failed: jax.Array        # bool scalar: a step had a non-finite loss; later steps are no-ops
    # what a training trains beside the model with its own optimizer (CosPlace's per-group
    # classifiers and their Adam states: vgjax.train.cosplace); None for the others
    aux: Any = None

    @classmethod
    def create(cls, variables: dict, tx) -> "TrainState":
        params = variables["params"]
        return cls(step=jnp.zeros([], jnp.int32), params=params,
                   batch_stats=variables["batch_stats"], opt_state=tx.init(params),
                   failed=jnp.zeros([], bool))

    @property
    def variables(self) -> dict:
        return {"params": self.params, "batch_stats": self.batch_stats}


@dataclasses.dataclass
class Progress:
    """Host-side progress, saved as JSON beside the arrays of a checkpoint.

    `epoch` is the epoch in progress (0-based) and `round` the mining rounds of it already
    done: resuming continues with round `round` of epoch `epoch`, never repeating one (with
    place batches, `train.batching=places`: the steps of the epoch done).
    `best_value` is the best `train.best_metric` so far (val R@5 by default), reached at
    `best_epoch`. The learning rate is not here: it lives in the optimizer state.
    """
    epoch: int = 0
    round: int = 0
    best_value: float = -1.0
    best_epoch: int = -1
    not_improved: int = 0
    scheduler: dict = dataclasses.field(default_factory=dict)
    val_history: list = dataclasses.field(default_factory=list)  # per epoch: its metrics
    finished: bool = False
    epoch_loss_sum: float = 0.0   # losses of the epoch in progress, for its mean
    epoch_loss_steps: int = 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Progress":
        names = {f.name for f in dataclasses.fields(cls)}
        if "best_r5" in d and "best_value" not in d:  # written before best_metric existed
            d = dict(d, best_value=d["best_r5"])
        return cls(**{k: v for k, v in d.items() if k in names})


def round_rng(seed: int, epoch: int, round_: int) -> np.random.Generator:
    """The NumPy generator of one mining round: a function of (seed, epoch, round) only, so
    a resumed run draws exactly what the uninterrupted one would."""
    return np.random.default_rng([seed, epoch, round_])


def round_key(seed: int, epoch: int, round_: int) -> jax.Array:
    return jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), epoch), round_)


def epoch_queries(seed: int, epoch: int, num_queries: int, queries_per_epoch: int,
                  weights: np.ndarray | None = None, per_round: int = 0) -> np.ndarray:
    """The training queries of an epoch: a random subset (without repetition while the split
    is large enough), in the order they are used. With `weights` (a probability per query),
    each round of `per_round` queries is drawn without repetition with those probabilities,
    as the reference's msls_weighted draws its rounds."""
    rng = np.random.default_rng([seed, epoch, 1 << 20])
    if weights is not None:
        size = min(int(per_round), num_queries)
        rounds = -(-queries_per_epoch // size)
        return np.concatenate([rng.choice(num_queries, size=size, replace=False, p=weights)
                               for _ in range(rounds)])[:queries_per_epoch]
    if queries_per_epoch <= num_queries:
        return rng.choice(num_queries, size=queries_per_epoch, replace=False)
    reps = -(-queries_per_epoch // num_queries)
    return np.concatenate([rng.permutation(num_queries) for _ in range(reps)])[:queries_per_epoch]
