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


def package_root(path: str | os.PathLike) -> Path:
    """The folder from which the Python file `path` imports its own package by name: the one
    above the first folder up from the file without an `__init__.py`. `configs/` is a
    namespace package (no `__init__.py`) and `configs/suites/` a regular one, so both
    `configs/x.py` and `configs/suites/x.py` give the folder holding `configs/`."""
    folder = Path(path).resolve().parent
    while (folder / "__init__.py").is_file():
        folder = folder.parent
    return folder.parent


def import_file(path: str | os.PathLike, name: str):
    """Imports the Python file `path` as module `name`, with its `package_root` on sys.path
    so that `configs/x.py` can import `configs.default` from wherever the command runs."""
    root = str(package_root(path))
    if root not in sys.path:
        sys.path.insert(0, root)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_config_file(path: str | os.PathLike, arg: str | None = None) -> ConfigDict:
    """Imports `path` (optionally `path:arg`) and returns its `get_config(arg)`."""
    path, spec_arg = split_spec(path)
    arg = spec_arg if arg is None else arg
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        module = import_file(path, f"_vgjax_config_{path.stem}")
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
