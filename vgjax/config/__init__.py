"""Configs: a `configs/*.py` file with `get_config(arg=None)`, `--config.a.b=value` overrides.

The mechanics of the one config system every command uses (train, eval, describe, suites);
the checks of each option live with the code that owns it (`vgjax.cli.config` gathers them), so
this package imports nothing else from vgjax (`values`: the error and value checks, `files`:
config files, `schema`: holding a config to the default one, `overrides`: `--config.`
parsing, `sweep`: suite files, their grid of cells and the overrides each cell becomes):

    config = load_config("configs/resnet18_gem.py:smoke", ["train.lr=1e-4"],
                         schema=default, checks=[...])

- `path:arg` passes `arg` to `get_config` (big_vision's convention), e.g. `smoke`.
- A config file is held to the schema (the default config) as strictly as an override: a
  field the schema does not know is refused with "did you mean", a value of the wrong type
  is refused, missing fields take the schema's default. Fields ending in `_args` hold one
  component's keyword arguments and sections listed as `open` (e.g. `evals`) hold named
  entries: their contents are checked by the owning component.
- Overrides are parsed as Python literals where the field is not a string; strings may be
  written bare (`train.optimizer=sgd`); string lists as `[a,b]`, `a,b` or `["a","b"]`.
- Numbers must be finite. After checks, the config is locked: no new fields, types kept.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence

import ml_collections

from vgjax.config.files import load_config_file, parse_arg, split_spec
from vgjax.config.overrides import (NEW, apply_overrides, literal_dict, parse_value,
                                    split_argv, split_list)
from vgjax.config.schema import conform, get_path, set_path
from vgjax.config.values import ConfigError, check_value, literal, require, require_positive

ConfigDict = ml_collections.ConfigDict
Check = Callable[[ConfigDict], None]

__all__ = ["NEW", "Check", "ConfigDict", "ConfigError", "apply_overrides", "check_value",
           "conform", "flatten", "get_path", "literal", "literal_dict", "load_config",
           "load_config_file", "parse_arg", "parse_value", "require", "require_positive", "set_path",
           "split_argv",
           "split_list", "split_spec", "to_json", "validate"]


def validate(config: ConfigDict, checks: Sequence[Check] = ()) -> ConfigDict:
    """Runs `checks` (each raises ConfigError naming the option), then locks the config."""
    for check in checks:
        check(config)
    config.lock()
    return config


def load_config(path: str | os.PathLike, overrides: Sequence[str] = (), *,
                schema: ConfigDict | None = None, checks: Sequence[Check] = (),
                aliases: Mapping[str, Callable] | None = None,
                open_sections: Sequence[str] = ()) -> ConfigDict:
    """File (`path` or `path:arg`) held to `schema`, then overrides, then `checks`; locked."""
    config = load_config_file(path)
    if schema is not None:
        config = conform(config, schema, open_sections=open_sections, aliases=aliases,
                         where=f"{split_spec(path)[0]}: ")
    apply_overrides(config, overrides, aliases=aliases, open_sections=open_sections)
    return validate(config, checks)


def to_json(config: ConfigDict) -> str:
    return json.dumps(config.to_dict(), indent=2, sort_keys=True, default=list)


def flatten(tree: Mapping, prefix: str = "") -> dict:
    """{'a': {'b': 1}} -> {'a.b': 1}."""
    out = {}
    for k, v in tree.items():
        if isinstance(v, Mapping):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
