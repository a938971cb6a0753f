"""Per-epoch learning-rate schedulers with torch semantics, registered for `train.scheduler`.

A scheduler keeps only its own bookkeeping (best metric, bad epochs, epochs counted); the
learning rate itself lives in the optimizer state. After each epoch the loop calls
`lr = scheduler.step(metric, lr)` with the current rate read from there and writes the
returned rate back (`vgjax.train.optim.set_learning_rate`). Settings come from
`train.scheduler_args` (or the spec, `"plateau(patience=1)"`).
"""
from __future__ import annotations

import math

from vgjax.registry import Registry

SCHEDULERS = Registry("train.scheduler", fixed=("lr",))


@SCHEDULERS.register("plateau")
class ReduceLROnPlateau:
    """torch.optim.lr_scheduler.ReduceLROnPlateau, mode 'max' (the metric is the best-model
    metric, val R@5 by default): the rate is multiplied by `factor` after more than
    `patience` evaluations without improvement."""

    def __init__(self, lr: float = 0.0, factor: float = 0.1, patience: int = 10,
                 threshold: float = 1e-4, threshold_mode: str = "rel", cooldown: int = 0,
                 min_lr: float = 0.0, eps: float = 1e-8):
        if not 0 < factor < 1:
            raise ValueError(f"factor must be in (0, 1), got {factor}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"threshold_mode must be rel or abs, got {threshold_mode!r}")
        if int(patience) < 0 or int(cooldown) < 0:
            raise ValueError("patience and cooldown must be >= 0")
        self.factor, self.patience, self.threshold = factor, int(patience), threshold
        self.threshold_mode, self.cooldown, self.min_lr, self.eps = (
            threshold_mode, int(cooldown), min_lr, eps)
        self.best = -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0

    def _is_better(self, value: float) -> bool:
        if self.threshold_mode == "rel":
            return value > self.best * (1.0 + self.threshold)
        return value > self.best + self.threshold

    def step(self, metric: float | None, lr: float) -> float:
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
            new_lr = max(lr * self.factor, self.min_lr)
            if lr - new_lr > self.eps:
                lr = new_lr
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        return lr

    def state_dict(self) -> dict:
        return {"best": self.best, "num_bad_epochs": self.num_bad_epochs,
                "cooldown_counter": self.cooldown_counter}

    def load_state_dict(self, state: dict) -> None:
        self.best = float(state["best"])
        self.num_bad_epochs = int(state["num_bad_epochs"])
        self.cooldown_counter = int(state["cooldown_counter"])


@SCHEDULERS.register("cosine")
class CosineAnnealingLR:
    """torch CosineAnnealingLR in closed form, one step per epoch:
    lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * T_cur / T_max)) / 2, with T_cur
    counting on past T_max (so the rate rises again, period 2 * T_max)."""

    def __init__(self, lr: float, t_max: int = 10, eta_min: float = 0.0):
        if int(t_max) < 1:
            raise ValueError(f"t_max must be >= 1, got {t_max}")
        self.base_lr, self.t_max, self.eta_min = lr, int(t_max), eta_min
        self.t_cur = 0

    def rate(self) -> float:
        return self.eta_min + (self.base_lr - self.eta_min) * (
            1 + math.cos(math.pi * self.t_cur / self.t_max)) / 2

    def step(self, metric: float | None = None, lr: float | None = None) -> float:
        self.t_cur += 1
        return self.rate()

    def state_dict(self) -> dict:
        return {"t_cur": self.t_cur}

    def load_state_dict(self, state: dict) -> None:
        self.t_cur = int(state["t_cur"])


@SCHEDULERS.register("none")
class ConstantLR:
    def __init__(self, lr: float = 0.0):
        pass

    def step(self, metric: float | None, lr: float) -> float:
        return lr

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def scheduler_kwargs(train_cfg) -> dict:
    args = train_cfg.get("scheduler_args")
    return dict(args.to_dict() if hasattr(args, "to_dict") else (args or {}))


def make_scheduler(train_cfg):
    """The per-epoch scheduler of config `train.scheduler` / `train.scheduler_args`."""
    return SCHEDULERS.build(train_cfg.scheduler, scheduler_kwargs(train_cfg),
                            lr=float(train_cfg.lr))


def plateau_patience(train_cfg) -> int | None:
    """The epochs a scheduler waits without improvement before it lowers the rate (its
    `patience`), None for schedulers that do not wait on the metric."""
    return getattr(make_scheduler(train_cfg), "patience", None)
