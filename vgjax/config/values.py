"""The config system's error and value checks: a value for a field, of its default's kind,
finite; and Python literals read from user text without any way to fail but ConfigError."""
from __future__ import annotations

import ast
import math
from collections.abc import Mapping


class ConfigError(ValueError):
    """A config file or option that cannot be used; the message names it."""


def require(cond: bool, option: str, message: str) -> None:
    """Raises ConfigError "`option`: `message`" unless `cond` (the section owners' checks)."""
    if not cond:
        raise ConfigError(f"{option}: {message}")


def require_positive(settings, prefix: str, fields) -> None:
    """Each of `fields` of `settings` (typed: a Settings object) is >= 1."""
    for f in fields:
        value = settings[f]
        require(value >= 1, f"{prefix}.{f}", f"must be >= 1, got {value}")


# Files ---------------------------------------------------------------------------------------


class _NotLiteral(Exception):
    pass


def literal(text: str):
    """`ast.literal_eval`, with every way it can fail on user text (syntax, unhashable set
    items, nesting too deep for the parser) turned into `_NotLiteral`."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise _NotLiteral() from None


def _type_name(value) -> str:
    return "list" if isinstance(value, (list, tuple)) else type(value).__name__


def _finite(option: str, value) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{option}: must be a finite number, got {value}")
    if isinstance(value, (list, tuple)):
        for v in value:
            _finite(option, v)
    if isinstance(value, Mapping):
        for k, v in value.items():
            _finite(f"{option}.{k}", v)


def _as_float(option: str, value) -> float:
    try:
        out = float(value)
    except OverflowError:
        raise ConfigError(f"{option}: must be a finite number, got {str(value)[:40]}") from None
    if not math.isfinite(out):
        raise ConfigError(f"{option}: must be a finite number, got {str(value)[:40]}")
    return out


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_value(option: str, value, default):
    """`value` for a field whose default is `default`: same kind, finite; ints are accepted
    for floats (and returned as floats); list items of the default's item kind. A default
    of None marks an optional number (None or a number). Raises ConfigError naming
    `option`."""
    _finite(option, value)
    if default is None:
        if value is None or _number(value):
            return value
        raise ConfigError(f"{option}: expected a number or None, got {value!r}")
    if value is None:
        raise ConfigError(f"{option}: expected a {_type_name(default)}, got None")
    if isinstance(default, bool) or isinstance(value, bool):
        if not (isinstance(default, bool) and isinstance(value, bool)):
            raise ConfigError(f"{option}: expected a {_type_name(default)}, got {value!r}")
        return value
    if isinstance(default, float) and isinstance(value, int):
        return _as_float(option, value)
    if isinstance(default, (list, tuple)):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{option}: expected a list, got {value!r}")
        kinds = {type(v) for v in default}
        if kinds and not all(type(v) in kinds or (float in kinds and _number(v))
                             for v in value):
            want = "/".join(sorted(k.__name__ for k in kinds))
            raise ConfigError(f"{option}: expected a list of {want}, got {value!r}")
        if kinds == {float}:
            value = type(value)(_as_float(option, v) for v in value)
        return value
    if isinstance(default, (int, float, str)) and type(value) is not type(default):
        raise ConfigError(f"{option}: expected a {_type_name(default)}, got {value!r}")
    return value
