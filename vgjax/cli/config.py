"""What the commands load configs with: the schema, the aliases of renamed fields, and the
checks of every section, all before any work starts.

    from vgjax.cli.config import load_config
    config = load_config("configs/resnet18_gem.py", ["train.lr=1e-4"])

`vgjax.config` holds the mechanics (files, overrides, the schema); each section's checks
live with its owner (`vgjax.data.settings`, `vgjax.models.settings`, `vgjax.train.settings`,
`vgjax.eval.settings` and `vgjax.eval.evaluators` for the `evals` entries), whose errors
name the option. This module runs them in order and applies the aliases of renamed fields.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import ml_collections

from vgjax import config as cfglib
from vgjax.data.settings import check_data
from vgjax.eval.evaluators import check_evals
from vgjax.models.settings import check_model
from vgjax.train.settings import check_train, validate_training

log = logging.getLogger("vgjax.checks")

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "default.py"
OPEN_SECTIONS = ("evals",)


def schema() -> ml_collections.ConfigDict:
    """The default config (configs/default.py): the fields every config may have."""
    return cfglib.load_config_file(DEFAULT_CONFIG)


# Renamed fields: old name -> function(config, value) that sets the new one -------------------

def _moved(new: str):
    def apply(config, value):
        log.warning("config field %s is now %s; please rename it", old_name[new], new)
        cfglib.set_path(config, new, value)
    return apply


def _validate_initial(config, value):
    log.warning("train.validate_initial is now evals.val.when (add 'before'); please "
                "rename it")
    when = list(cfglib.get_path(config, "evals.val.when", ["epoch"]))
    if value and "before" not in when:
        when.insert(0, "before")
    if not value and "before" in when:
        when.remove("before")
    cfglib.set_path(config, "evals.val.when", when)


_RENAMES = {
    "train.momentum": "train.optimizer_args.momentum",
    "train.asgd_lambd": "train.optimizer_args.lambd",
    "train.asgd_alpha": "train.optimizer_args.alpha",
    "train.asgd_t0": "train.optimizer_args.t0",
    "train.plateau_factor": "train.scheduler_args.factor",
    "train.plateau_patience": "train.scheduler_args.patience",
    "train.plateau_threshold": "train.scheduler_args.threshold",
    "train.plateau_threshold_mode": "train.scheduler_args.threshold_mode",
    "train.plateau_cooldown": "train.scheduler_args.cooldown",
    "train.plateau_min_lr": "train.scheduler_args.min_lr",
    "train.cosine_t_max": "train.scheduler_args.t_max",
    "train.cosine_eta_min": "train.scheduler_args.eta_min",
    "train.margin": "train.loss_args.margin",
}
old_name = {new: old for old, new in _RENAMES.items()}
ALIASES = {old: _moved(new) for old, new in _RENAMES.items()}
ALIASES["train.validate_initial"] = _validate_initial


def _cache_mode(config, value):
    """data.cache_decoded: true / false keep their meaning (host / none)."""
    if isinstance(value, str) and value.lower() in ("true", "false"):
        value = value.lower() == "true"
    cfglib.set_path(config, "data.cache_decoded",
                    {True: "host", False: "none"}.get(value, value)
                    if isinstance(value, bool) else value)


ALIASES["data.cache_decoded"] = _cache_mode


CHECKS = (check_data, check_model, check_train, check_evals)

__all__ = ["ALIASES", "CHECKS", "DEFAULT_CONFIG", "load_config", "schema", "validate",
           "validate_training"]


def load_config(path: str | os.PathLike, overrides: Sequence[str] = ()):
    """File (`path` or `path:arg`) held to the schema, overrides, every check; locked."""
    return cfglib.load_config(path, overrides, schema=schema(), checks=CHECKS,
                              aliases=ALIASES, open_sections=OPEN_SECTIONS)


def validate(config):
    """Every check on a config built in Python; locks it."""
    return cfglib.validate(config, CHECKS)
