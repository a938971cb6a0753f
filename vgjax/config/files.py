"""Config files: `configs/x.py` (optionally `:arg`) imported, `get_config(arg)` called."""
from __future__ import annotations

import importlib.util
import inspect
import os
import sys
from pathlib import Path

import ml_collections

from vgjax.config.values import ConfigError, _NotLiteral, literal

ConfigDict = ml_collections.ConfigDict


def split_spec(spec: str | os.PathLike) -> tuple[Path, str | None]:
    """`configs/x.py:smoke` -> (Path('configs/x.py'), 'smoke'); no `:arg` -> None."""
    text = os.fspath(spec)
    head, sep, tail = text.rpartition(":")
    if sep and head.endswith(".py") and "/" not in tail:
        return Path(head), tail
    return Path(text), None


def parse_arg(arg: str | None, **defaults) -> ConfigDict:
    """`get_config`'s argument -> ConfigDict of `defaults` updated from `arg`.

    `arg` is a comma-separated list of `key=value` or bare `key` (= True), e.g.
    `"smoke"` or `"smoke,repeats=1"`; values are parsed as literals (else strings) and
    must have the type of their default.
    """
    out = ConfigDict(defaults)
    for item in (arg or "").split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, text = item.partition("=")
        if key not in defaults:
            raise ConfigError(f"config argument {key!r}: unknown (accepted: "
                              f"{', '.join(defaults) or 'none'})")
        if not sep:
            value = True
        else:
            try:
                value = literal(text)
            except _NotLiteral:
                value = text
        if defaults[key] is not None and type(value) is not type(defaults[key]):
            if not (isinstance(defaults[key], float) and isinstance(value, int)):
                raise ConfigError(f"config argument {key!r}: expected a "
                                  f"{type(defaults[key]).__name__}, got {text!r}")
            value = float(value)
        out[key] = value
    return out


def load_config_file(path: str | os.PathLike, arg: str | None = None) -> ConfigDict:
    """Imports `path` (optionally `path:arg`) and returns its `get_config(arg)`."""
    path, spec_arg = split_spec(path)
    arg = spec_arg if arg is None else arg
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
    takes_arg = bool(inspect.signature(module.get_config).parameters)
    if arg is not None and not takes_arg:
        raise ConfigError(f"config file {path}: get_config() takes no argument, got {arg!r}")
    try:
        config = module.get_config(arg) if takes_arg else module.get_config()
    except ConfigError as e:
        raise ConfigError(f"config file {path}: {e}") from None
    except Exception as e:  # e.g. ml_collections refusing a value of the wrong type
        raise ConfigError(f"config file {path}: get_config() failed: "
                          f"{type(e).__name__}: {e}") from e
    if not isinstance(config, ConfigDict):
        raise ConfigError(f"{path}: get_config() must return an ml_collections.ConfigDict")
    return config
