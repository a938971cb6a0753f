"""Optimizers (optax, torch semantics), registered by name for config `train.optimizer`.

- adam:  torch Adam with coupled L2 weight decay (wd * param added to the gradient).
- adamw: torch AdamW (decoupled: param -= lr * wd * param).
- sgd:   torch SGD with momentum (buffer = momentum * buffer + grad), coupled weight decay.
- asgd:  torch ASGD, including its averaged copy of the weights (`averaged_params`).
Keyword arguments other than the learning rate and `train.weight_decay` come from
`train.optimizer_args` (or the spec, `"sgd(momentum=0.5)"`). Frozen parameters (mask False)
get no update and no weight decay. The learning rate is a hyperparameter inside the
optimizer state (`optax.inject_hyperparams`): the one place it lives. Schedulers
(`vgjax.train.schedules`) read it there and set it between epochs without recompiling
(`set_learning_rate`); the train step reports it.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from vgjax.registry import Registry

OPTIMIZERS = Registry("train.optimizer", fixed=("learning_rate", "weight_decay"))


class ASGDState(NamedTuple):
    step: jax.Array   # int32 scalar: updates done
    eta: jax.Array    # float32 scalar: step size of the next update
    mu: jax.Array     # float32 scalar: averaging weight of the next update
    ax: Any           # averaged parameters (same tree as the params)


def asgd(learning_rate, lambd: float = 1e-4, alpha: float = 0.75, t0: float = 1e6,
         weight_decay: float = 0.0) -> optax.GradientTransformation:
    """torch.optim.ASGD (single-tensor path) as an optax transformation.

    Per step t (1-based), with g = grad + wd * p:
      p   <- p * (1 - lambd * eta) - eta * g     (eta from the previous step; lr at step 1)
      ax  <- p if mu == 1 else ax + mu * (p - ax)
      eta <- lr / (1 + lambd * lr * t) ** alpha ;  mu <- 1 / max(1, t - t0)
    so a learning-rate change takes effect one step later, exactly as in torch.
    """
    def init_fn(params):
        return ASGDState(step=jnp.zeros([], jnp.int32), eta=jnp.asarray(-1.0, jnp.float32),
                         mu=jnp.ones([], jnp.float32),
                         ax=jax.tree.map(jnp.zeros_like, params))

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("asgd needs the parameters in update()")
        lr = jnp.asarray(learning_rate, jnp.float32)
        eta = jnp.where(state.step == 0, lr, state.eta)   # torch initialises eta to lr
        step = state.step + 1

        def new_param(g, p):
            g = g + weight_decay * p if weight_decay else g
            return p * (1 - lambd * eta) - eta * g

        new_params = jax.tree.map(new_param, updates, params)
        ax = jax.tree.map(lambda a, p: jnp.where(state.mu == 1, p, a + (p - a) * state.mu),
                          state.ax, new_params)
        t = step.astype(jnp.float32)
        next_eta = lr / (1 + lambd * lr * t) ** alpha
        next_mu = 1.0 / jnp.maximum(1.0, t - t0)
        deltas = jax.tree.map(lambda n, p: n - p, new_params, params)
        return deltas, ASGDState(step=step, eta=next_eta, mu=next_mu, ax=ax)

    return optax.GradientTransformation(init_fn, update_fn)


@OPTIMIZERS.register("adam")
def adam(learning_rate, weight_decay: float = 0.0, b1: float = 0.9, b2: float = 0.999,
         eps: float = 1e-8):
    """torch Adam: coupled L2 weight decay (wd * param added to the gradient)."""
    parts = [optax.add_decayed_weights(weight_decay)] if weight_decay else []
    return optax.chain(*parts, optax.scale_by_adam(b1=b1, b2=b2, eps=eps),
                       optax.scale_by_learning_rate(learning_rate))


@OPTIMIZERS.register("adamw")
def adamw(learning_rate, weight_decay: float = 1e-2, b1: float = 0.9, b2: float = 0.999,
          eps: float = 1e-8):
    """torch AdamW: decoupled weight decay (param -= lr * wd * param)."""
    return optax.adamw(learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay)


@OPTIMIZERS.register("sgd")
def sgd(learning_rate, weight_decay: float = 0.0, momentum: float = 0.9):
    """torch SGD with momentum (buffer = momentum * buffer + grad) and coupled weight decay."""
    parts = [optax.add_decayed_weights(weight_decay)] if weight_decay else []
    if momentum:
        parts.append(optax.trace(decay=momentum))
    return optax.chain(*parts, optax.scale_by_learning_rate(learning_rate))


OPTIMIZERS.register("asgd")(asgd)
asgd.keeps_averaged_weights = True  # train.eval_with_averaged_weights can use them


def keeps_averaged_weights(train_cfg) -> bool:
    spec = OPTIMIZERS.check(train_cfg.optimizer, optimizer_kwargs(train_cfg))
    return bool(getattr(OPTIMIZERS.get(spec.name), "keeps_averaged_weights", False))


def make_optimizer(train_cfg, trainable=None) -> optax.GradientTransformation:
    """The optimizer of config section `train` (`optimizer`, `optimizer_args`, `lr`,
    `weight_decay`: None = the optimizer's torch default, Adam / SGD / ASGD 0, AdamW 1e-2;
    the scheduler's first rate and per-step warmup, `vgjax.train.schedules`);
    `trainable` is a tree like the params of bools (False = frozen: zero update, no
    optimizer state) or of learning-rate multipliers (0 = frozen; r: that parameter group
    trains at r * lr, as a torch param group with its own lr; `lr_scales`)."""
    spec = OPTIMIZERS.check(train_cfg.optimizer, optimizer_kwargs(train_cfg))

    wd = train_cfg.get("weight_decay")
    decay = {} if wd is None else {"weight_decay": float(wd)}  # None: the torch default

    from vgjax.config import ConfigError
    from vgjax.train.schedules import initial_lr, warmup_steps
    try:  # a section without a scheduler (e.g. built by hand): none, no warmup
        warmup, lr0 = ((warmup_steps(train_cfg), initial_lr(train_cfg))
                       if "scheduler" in train_cfg else (0, float(train_cfg.lr)))
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"train.scheduler_args: {e}") from None

    def build(learning_rate):
        tx = _build(learning_rate)
        if not warmup:
            return tx
        # the scheduler's linear warmup, per step: updates scaled by min(1, (s + 1) / warmup)
        return optax.chain(tx, optax.scale_by_schedule(
            lambda s: jnp.minimum(1.0, (s + 1.0) / warmup)))

    def _build(learning_rate):
        if trainable is None:
            return OPTIMIZERS.build(spec, learning_rate=learning_rate, **decay)
        scales = sorted({float(t) for t in jax.tree.leaves(trainable) if float(t) != 0.0})
        # one group keeps the name "train": the state layout of runs before groups existed
        name = (lambda r: "train") if scales == [1.0] else (lambda r: f"x{r!r}")
        groups = {name(r): OPTIMIZERS.build(spec, learning_rate=learning_rate * r, **decay)
                  for r in scales}
        labels = jax.tree.map(lambda t: name(float(t)) if float(t) else "frozen", trainable)
        return optax.multi_transform({**groups, "frozen": optax.set_to_zero()}, labels)

    return optax.inject_hyperparams(build)(learning_rate=lr0)


def lr_scales(trainable, model_cfg, train_cfg):
    """`trainable` (bools) as learning-rate multipliers: 0 frozen, 1 at `train.lr`, and the
    aggregation's own groups at their option over `train.lr` (CRN's context filters at
    `train.crn_lr`, as the reference trains them at its lr_crn_layer)."""
    from vgjax.models.aggregation import AGGREGATIONS
    scales = jax.tree.map(lambda t: 1.0 if t else 0.0, trainable)
    for group, option in AGGREGATIONS.get(model_cfg.aggregation).lr_groups:
        ratio = float(train_cfg[option]) / float(train_cfg.lr)
        agg = scales.get("aggregation", {})
        if group in agg:
            agg[group] = jax.tree.map(lambda s: s * ratio, agg[group])
    return scales


def optimizer_kwargs(train_cfg) -> dict:
    args = train_cfg.get("optimizer_args")
    return dict(args.to_dict() if hasattr(args, "to_dict") else (args or {}))


def learning_rate(opt_state) -> float:
    return float(opt_state.hyperparams["learning_rate"])


def set_learning_rate(opt_state, lr: float):
    """A copy of the optimizer state with a new learning rate (no recompilation)."""
    old = opt_state.hyperparams["learning_rate"]
    hyper = dict(opt_state.hyperparams)
    if hasattr(old, "sharding"):
        # from host memory, which device_put can place on a mesh spanning several processes
        hyper["learning_rate"] = jax.device_put(np.asarray(lr, dtype=old.dtype), old.sharding)
    else:
        hyper["learning_rate"] = jnp.asarray(lr, dtype=old.dtype)
    return opt_state._replace(hyperparams=hyper)


def averaged_params(params, opt_state):
    """ASGD's averaged weights where it keeps them, the current ones elsewhere (frozen
    leaves); `params` itself for other optimizers."""
    found = []

    def visit(x):
        if isinstance(x, ASGDState):
            found.append(x)
        return x

    jax.tree.map(visit, opt_state, is_leaf=lambda x: isinstance(x, ASGDState))
    if not found:
        return params
    # Inside multi_transform each group's `ax` holds its own leaves, the others (and the
    # frozen ones) are optax.MaskedNode: a leaf's average is in the group that trains it.
    def pick(p, *axes):
        kept = [a for a in axes if not isinstance(a, optax.MaskedNode)]
        return kept[0] if kept else p

    return jax.tree.map(pick, params, *(state.ax for state in found),
                        is_leaf=lambda x: isinstance(x, optax.MaskedNode))
