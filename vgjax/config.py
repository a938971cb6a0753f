"""Configs: a `configs/*.py` file with `get_config()`, `--config.a.b=value` overrides, checks.

One config system for every command (train, eval, describe):

    config = load_config("configs/resnet18_gem.py", ["train.lr=1e-4", "data.resize=(240,320)"])

Override values are parsed as Python literals where the field is not a string; strings may
be written bare (`train.optimizer=sgd`); a list of strings may be written `a,b,c`. After
`validate`, the config is locked: no new fields, types kept.
"""
from __future__ import annotations

import ast
import difflib
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Sequence

import ml_collections


class ConfigError(ValueError):
    """A config file or option that cannot be used; the message names it."""


def load_config_file(path: str | os.PathLike) -> ml_collections.ConfigDict:
    """Imports `path` and returns its `get_config()`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    root = str(path.resolve().parent.parent)
    if root not in sys.path:  # lets `configs/x.py` import `configs.default`
        sys.path.insert(0, root)
    spec = importlib.util.spec_from_file_location(f"_vgjax_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        raise ConfigError(f"config file {path} failed to load: {type(e).__name__}: {e}") from e
    if not hasattr(module, "get_config"):
        raise ConfigError(f"config file {path} has no get_config() function")
    config = module.get_config()
    if not isinstance(config, ml_collections.ConfigDict):
        raise ConfigError(f"{path}: get_config() must return an ml_collections.ConfigDict")
    return config


def _parse_value(key: str, text: str, current):
    if isinstance(current, bool):
        low = text.strip().lower()
        if low in ("true", "1", "yes"):
            return True
        if low in ("false", "0", "no"):
            return False
        raise ConfigError(f"--config.{key}: expected true/false, got {text!r}")
    if isinstance(current, str):
        try:
            value = ast.literal_eval(text)
            return value if isinstance(value, str) else text
        except (ValueError, SyntaxError):
            return text
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        if isinstance(current, (list, tuple)):
            value = [v.strip() for v in text.split(",") if v.strip()]
        else:
            raise ConfigError(f"--config.{key}: cannot parse {text!r} as a "
                              f"{type(current).__name__}") from None
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(current, (list, tuple)):
        if isinstance(value, (str, int, float)):
            value = [value]
        value = type(current)(value)
    if current is not None and not isinstance(value, type(current)):
        raise ConfigError(f"--config.{key}: expected a {type(current).__name__}, got {text!r}")
    return value


def apply_overrides(config: ml_collections.ConfigDict, overrides: Sequence[str]):
    """Applies `a.b=value` strings (the `--config.` prefix is optional) in place."""
    for item in overrides:
        item = item[len("--config."):] if item.startswith("--config.") else item
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like --config.section.field=value")
        key, text = item.split("=", 1)
        *parents, leaf = key.split(".")
        node = config
        for i, p in enumerate(parents):
            if p not in node or not isinstance(node[p], ml_collections.ConfigDict):
                raise ConfigError(f"--config.{key}: no config section "
                                  f"{'.'.join(parents[:i + 1])!r}")
            node = node[p]
        if leaf not in node:
            close = difflib.get_close_matches(leaf, list(node.keys()), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ConfigError(f"--config.{key}: unknown field{hint}")
        value = _parse_value(key, text, node[leaf])
        try:
            node[leaf] = value
        except (TypeError, ValueError) as e:
            raise ConfigError(f"--config.{key}: {e}") from e
    return config


def _check(cond: bool, option: str, message: str) -> None:
    if not cond:
        raise ConfigError(f"{option}: {message}")


def _choice(section, field: str, choices: Sequence[str], prefix: str) -> None:
    if field in section:
        _check(section[field] in choices, f"{prefix}.{field}",
               f"unknown value {section[field]!r} (accepted: {', '.join(choices)})")


def validate(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Checks the options train and eval rely on; raises ConfigError naming the option."""
    from vgjax.train.losses import LOSSES
    from vgjax.train.mining import MINING_METHODS
    from vgjax.train.optim import OPTIMIZERS, SCHEDULERS

    if "data" in config:
        d = config.data
        size = tuple(d.resize)
        _check(len(size) == 2 and all(int(s) > 0 for s in size), "data.resize",
               f"expected (H, W) positive integers, got {d.resize!r}")
        _check(d.soft_positives_dist >= d.hard_positives_dist > 0, "data.hard_positives_dist",
               "must be > 0 and <= data.soft_positives_dist")
        _check(len(d.test_datasets) > 0 if "test_datasets" in d else True, "data.test_datasets",
               "is empty")
    if "train" in config:
        t = config.train
        _choice(t, "optimizer", OPTIMIZERS, "train")
        _choice(t, "scheduler", SCHEDULERS, "train")
        _choice(t, "mining", MINING_METHODS, "train")
        _choice(t, "loss", tuple(LOSSES), "train")
        for f in ("queries_per_step", "negatives_per_query", "cache_refresh_rate",
                  "queries_per_epoch", "epochs", "patience", "infer_batch_size",
                  "neg_samples_num"):
            if f in t:
                _check(int(t[f]) >= 1, f"train.{f}", f"must be >= 1, got {t[f]}")
        _check(t.lr > 0, "train.lr", f"must be > 0, got {t.lr}")
        _check(t.weight_decay >= 0, "train.weight_decay", f"must be >= 0, got {t.weight_decay}")
        _check(t.cache_refresh_rate >= t.queries_per_step, "train.cache_refresh_rate",
               f"({t.cache_refresh_rate}) must be >= train.queries_per_step ({t.queries_per_step})")
        if t.mining in ("partial", "full"):
            _check(t.neg_samples_num >= t.negatives_per_query, "train.neg_samples_num",
                   f"({t.neg_samples_num}) must be >= train.negatives_per_query "
                   f"({t.negatives_per_query})")
        if t.scheduler == "plateau":
            _check(0 < t.plateau_factor < 1, "train.plateau_factor", "must be in (0, 1)")
            _choice(t, "plateau_threshold_mode", ("rel", "abs"), "train")
        if t.scheduler == "cosine":
            _check(int(t.cosine_t_max) >= 1, "train.cosine_t_max", "must be >= 1")
        if t.get("eval_with_averaged_weights", False):
            _check(t.optimizer == "asgd", "train.eval_with_averaged_weights",
                   f"needs train.optimizer=asgd (got {t.optimizer!r})")
        if "num_devices" in t:
            _check(int(t.num_devices) >= 0, "train.num_devices", "must be >= 0 (0 = all)")
    if "test" in config:
        from vgjax.eval.methods import MULTISCALE_METHODS, TEST_METHODS
        te = config.test
        _choice(te, "method", TEST_METHODS, "test")
        _choice(te, "multiscale_method", MULTISCALE_METHODS, "test")
        _choice(te, "index", ("flat", "ivfpq"), "test")
        rv = list(te.recall_values)
        _check(len(rv) > 0 and all(int(n) >= 1 for n in rv), "test.recall_values",
               f"must be positive integers, got {rv}")
        scales = list(te.scales)
        _check(len(scales) > 0 and all(float(f) > 0 for f in scales), "test.scales",
               f"must be positive factors of the model resolution, got {scales}")
        _check(float(te.positive_dist) > 0, "test.positive_dist", "must be > 0")
        _check(int(te.batch_size) >= 1, "test.batch_size", "must be >= 1")
        _check(int(te.pca_dim) >= 0, "test.pca_dim", "must be >= 0 (0 = no PCA)")
        if "pictures_topk" in te:
            _check(int(te.pictures_topk) >= 1, "test.pictures_topk", "must be >= 1")
    if "model" in config:
        from vgjax.models.network import validate_model_config
        try:
            validate_model_config(config.model)
        except ValueError as e:
            raise ConfigError(str(e)) from None
    config.lock()
    return config


def validate_training(config: ml_collections.ConfigDict) -> None:
    """Checks that only matter when training starts (before any data is read)."""
    init = config.model.get("netvlad_init")
    if config.model.aggregation == "netvlad" and init and init.enabled:
        from vgjax.models.resnet import parse_backbone
        h, w = (int(s) for s in config.data.resize)
        for _ in range(parse_backbone(config.model.backbone).num_layers + 1):
            h, w = -(-h // 2), -(-w // 2)  # every stride-2 stage rounds up (torch padding)
        _check(int(init.descriptors_per_image) <= h * w,
               "model.netvlad_init.descriptors_per_image",
               f"({init.descriptors_per_image}) exceeds the {h}x{w} = {h * w} local "
               f"features of a {config.data.resize[0]}x{config.data.resize[1]} image")


def load_config(path: str | os.PathLike, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
    """File + overrides, validated and locked."""
    config = load_config_file(path)
    apply_overrides(config, overrides)
    return validate(config)


def split_argv(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Separates `--config.a.b=value` overrides from the other command-line arguments."""
    overrides, rest = [], []
    for arg in argv:
        (overrides if arg.startswith("--config.") else rest).append(arg)
    return overrides, rest


def to_json(config: ml_collections.ConfigDict) -> str:
    return json.dumps(config.to_dict(), indent=2, sort_keys=True, default=list)
