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


def _warmup_steps(warmup_steps) -> int:
    if int(warmup_steps) != warmup_steps or int(warmup_steps) < 0:
        raise ValueError(f"warmup_steps must be an integer >= 0, got {warmup_steps}")
    return int(warmup_steps)


class _EpochRate:
    """A rate in closed form of the epochs stepped so far (`t`, its saved state)."""
    t = 0

    def rate(self) -> float:
        raise NotImplementedError

    def step(self, metric: float | None = None, lr: float | None = None) -> float:
        self.t += 1
        return self.rate()

    def state_dict(self) -> dict:
        return {"t": self.t}

    def load_state_dict(self, state: dict) -> None:
        self.t = int(state["t"])


@SCHEDULERS.register("multistep")
class MultiStepLR(_EpochRate):
    """torch MultiStepLR in closed form, one step per epoch: after epoch t (counted from 1)
    lr = base_lr * gamma ** (number of milestones <= t), milestones in epochs. With
    `warmup_steps` > 0 the optimizer also scales every update by min(1, (s + 1) /
    warmup_steps) at optimizer step s (counted from 0): the GSV-Cities / MixVPR linear
    warmup, per step (the logged `lr` is the scheduled rate, before that factor)."""

    def __init__(self, lr: float, milestones=(), gamma: float = 0.1, warmup_steps: int = 0):
        ms = [int(m) for m in milestones]
        if any(m < 1 for m in ms) or ms != sorted(ms) or any(m != x for m, x in
                                                               zip(ms, milestones)):
            raise ValueError(f"milestones must be increasing epochs >= 1, got {list(milestones)}")
        if not 0 < gamma <= 1:
            raise ValueError(f"gamma must be in (0, 1], got {gamma}")
        self.base_lr, self.milestones, self.gamma = lr, ms, gamma
        self.warmup_steps = _warmup_steps(warmup_steps)
        self.t = 0

    def rate(self) -> float:
        return self.base_lr * self.gamma ** sum(m <= self.t for m in self.milestones)



@SCHEDULERS.register("linear")
class LinearLR(_EpochRate):
    """torch LinearLR in closed form, one step per epoch: the rate of epoch t (from 0) is
    base_lr * (start_factor + (end_factor - start_factor) * min(t, total_epochs) /
    total_epochs); the first epoch already trains at base_lr * start_factor (the optimizer
    starts there, `initial_lr`). `warmup_steps` as for `multistep`: a linear warmup factor
    per optimizer step on top."""

    def __init__(self, lr: float, start_factor: float = 1.0 / 3, end_factor: float = 1.0,
                 total_epochs: int = 5, warmup_steps: int = 0):
        if not 0 < start_factor <= 1 or not 0 <= end_factor <= 1:
            raise ValueError(f"start_factor must be in (0, 1] and end_factor in [0, 1], got "
                             f"{start_factor}, {end_factor}")
        if int(total_epochs) < 1:
            raise ValueError(f"total_epochs must be >= 1, got {total_epochs}")
        self.base_lr, self.start, self.end = lr, start_factor, end_factor
        self.total = int(total_epochs)
        self.warmup_steps = _warmup_steps(warmup_steps)
        self.t = 0

    @property
    def initial_lr(self) -> float:
        return self.base_lr * self.start

    def rate(self) -> float:
        return self.base_lr * (self.start + (self.end - self.start)
                               * min(self.t, self.total) / self.total)



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


def warmup_steps(train_cfg) -> int:
    """Optimizer steps of the scheduler's linear warmup (0: none)."""
    return int(getattr(make_scheduler(train_cfg), "warmup_steps", 0))


def initial_lr(train_cfg) -> float:
    """The rate of the first epoch: `train.lr`, or where the scheduler starts lower (linear
    with start_factor < 1) its own first rate."""
    return float(getattr(make_scheduler(train_cfg), "initial_lr", float(train_cfg.lr)))


def plateau_patience(train_cfg) -> int | None:
    """The epochs a scheduler waits without improvement before it lowers the rate (its
    `patience`), None for schedulers that do not wait on the metric."""
    return getattr(make_scheduler(train_cfg), "patience", None)
