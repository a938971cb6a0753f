"""Optimizers (optax, torch semantics) and per-epoch learning-rate schedulers (plain Python).

Optimizers (config `train.optimizer`):
- adam:  torch Adam with coupled L2 weight decay (wd * param added to the gradient).
- adamw: torch AdamW (decoupled: param -= lr * wd * param).
- sgd:   torch SGD with momentum (buffer = momentum * buffer + grad), coupled weight decay.
- asgd:  torch ASGD, including its averaged copy of the weights (`averaged_params`).
Frozen parameters (mask False) get no update and no weight decay. The learning rate is a
hyperparameter inside the optimizer state (`optax.inject_hyperparams`), so a scheduler
changes it between epochs without recompiling (`set_learning_rate`).
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

OPTIMIZERS = ("adam", "adamw", "sgd", "asgd")
SCHEDULERS = ("none", "plateau", "cosine")


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


def _base_optimizer(name: str, learning_rate, weight_decay: float, momentum: float,
                    asgd_lambd: float, asgd_alpha: float, asgd_t0: float):
    if name == "adam":
        parts = [optax.add_decayed_weights(weight_decay)] if weight_decay else []
        return optax.chain(*parts, optax.scale_by_adam(b1=0.9, b2=0.999, eps=1e-8),
                           optax.scale_by_learning_rate(learning_rate))
    if name == "adamw":
        return optax.adamw(learning_rate, b1=0.9, b2=0.999, eps=1e-8, weight_decay=weight_decay)
    if name == "sgd":
        parts = [optax.add_decayed_weights(weight_decay)] if weight_decay else []
        if momentum:
            parts.append(optax.trace(decay=momentum))
        return optax.chain(*parts, optax.scale_by_learning_rate(learning_rate))
    if name == "asgd":
        return asgd(learning_rate, asgd_lambd, asgd_alpha, asgd_t0, weight_decay)
    raise ValueError(f"train.optimizer: unknown optimizer {name!r}; choose one of {OPTIMIZERS}")


def make_optimizer(train_cfg, trainable=None) -> optax.GradientTransformation:
    """The optimizer of config section `train`; `trainable` is a bool tree like the params
    (False = frozen: zero update, no optimizer state)."""
    def build(learning_rate):
        tx = _base_optimizer(train_cfg.optimizer, learning_rate, float(train_cfg.weight_decay),
                             float(train_cfg.momentum), float(train_cfg.asgd_lambd),
                             float(train_cfg.asgd_alpha), float(train_cfg.asgd_t0))
        if trainable is None:
            return tx
        labels = jax.tree.map(lambda t: "train" if t else "frozen", trainable)
        return optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)

    return optax.inject_hyperparams(build)(learning_rate=float(train_cfg.lr))


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
    ax = found[0].ax
    # Inside multi_transform, the frozen leaves of `ax` are optax.MaskedNode.
    return jax.tree.map(lambda p, a: p if isinstance(a, optax.MaskedNode) else a,
                        params, ax, is_leaf=lambda x: isinstance(x, optax.MaskedNode))


class ReduceLROnPlateau:
    """torch.optim.lr_scheduler.ReduceLROnPlateau, mode 'max' (the metric is val R@5).

    `step(metric)` after each evaluation returns the learning rate to use next.
    """

    def __init__(self, lr: float, factor: float = 0.1, patience: int = 10,
                 threshold: float = 1e-4, threshold_mode: str = "rel", cooldown: int = 0,
                 min_lr: float = 0.0, eps: float = 1e-8):
        if factor >= 1.0:
            raise ValueError(f"train.plateau_factor must be < 1, got {factor}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"train.plateau_threshold_mode must be rel or abs, got {threshold_mode!r}")
        self.factor, self.patience, self.threshold = factor, patience, threshold
        self.threshold_mode, self.cooldown, self.min_lr, self.eps = (
            threshold_mode, cooldown, min_lr, eps)
        self.lr = lr
        self.best = -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0

    def _is_better(self, value: float) -> bool:
        if self.threshold_mode == "rel":
            return value > self.best * (1.0 + self.threshold)
        return value > self.best + self.threshold

    def step(self, metric: float | None = None) -> float:
        if metric is None:
            raise ValueError("the plateau scheduler needs the validation metric")
        value = float(metric)
        if self._is_better(value):
            self.best = value
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            new_lr = max(self.lr * self.factor, self.min_lr)
            if self.lr - new_lr > self.eps:
                self.lr = new_lr
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        return self.lr

    def state_dict(self) -> dict:
        return {"lr": self.lr, "best": self.best, "num_bad_epochs": self.num_bad_epochs,
                "cooldown_counter": self.cooldown_counter}

    def load_state_dict(self, state: dict) -> None:
        self.lr = float(state["lr"])
        self.best = float(state["best"])
        self.num_bad_epochs = int(state["num_bad_epochs"])
        self.cooldown_counter = int(state["cooldown_counter"])


class CosineAnnealingLR:
    """torch CosineAnnealingLR in closed form, one step per epoch:
    lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * T_cur / T_max)) / 2, with T_cur
    counting on past T_max (so the rate rises again, period 2 * T_max)."""

    def __init__(self, lr: float, t_max: int, eta_min: float = 0.0):
        if t_max < 1:
            raise ValueError(f"train.cosine_t_max must be >= 1, got {t_max}")
        self.base_lr, self.t_max, self.eta_min = lr, t_max, eta_min
        self.t_cur = 0

    @property
    def lr(self) -> float:
        return self.eta_min + (self.base_lr - self.eta_min) * (
            1 + math.cos(math.pi * self.t_cur / self.t_max)) / 2

    def step(self, metric: float | None = None) -> float:
        self.t_cur += 1
        return self.lr

    def state_dict(self) -> dict:
        return {"t_cur": self.t_cur}

    def load_state_dict(self, state: dict) -> None:
        self.t_cur = int(state["t_cur"])


class ConstantLR:
    def __init__(self, lr: float):
        self.lr = lr

    def step(self, metric: float | None = None) -> float:
        return self.lr

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def make_scheduler(train_cfg):
    """The per-epoch scheduler of config `train.scheduler`."""
    name, lr = train_cfg.scheduler, float(train_cfg.lr)
    if name == "none":
        return ConstantLR(lr)
    if name == "plateau":
        return ReduceLROnPlateau(lr, float(train_cfg.plateau_factor), int(train_cfg.plateau_patience),
                                 float(train_cfg.plateau_threshold), train_cfg.plateau_threshold_mode,
                                 int(train_cfg.plateau_cooldown), float(train_cfg.plateau_min_lr))
    if name == "cosine":
        return CosineAnnealingLR(lr, int(train_cfg.cosine_t_max), float(train_cfg.cosine_eta_min))
    raise ValueError(f"train.scheduler: unknown scheduler {name!r}; choose one of {SCHEDULERS}")
