"""Configs: a `configs/*.py` file with `get_config(arg=None)`, `--config.a.b=value` overrides.

The mechanics of the one config system every command uses (train, eval, describe, suites);
the checks of each option live with the code that owns it (`vgjax.checks` gathers them), so
this module imports nothing else from vgjax:

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

import ast
import difflib
import importlib.util
import inspect
import json
import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import ml_collections


ConfigDict = ml_collections.ConfigDict
Check = Callable[[ConfigDict], None]


class ConfigError(ValueError):
    """A config file or option that cannot be used; the message names it."""


# Files ---------------------------------------------------------------------------------------

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


# Schema --------------------------------------------------------------------------------------

class _NotLiteral(Exception):
    pass


def literal(text: str):
    """`ast.literal_eval`, with every way it can fail on user text (syntax, unhashable set
    items, nesting too deep for the parser) turned into `_NotLiteral`."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise _NotLiteral() from None


def _is_free(key: str) -> bool:
    return key.endswith("_args")


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


def _unknown(option: str, key: str, known) -> ConfigError:
    close = difflib.get_close_matches(key, list(known), n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return ConfigError(f"{option}: unknown field{hint}")


def get_path(config: ConfigDict, dotted: str, default=None):
    """The value at `a.b.c`, or `default`."""
    node = config
    for part in dotted.split("."):
        if not isinstance(node, ConfigDict) or part not in node:
            return default
        node = node[part]
    return node


def set_path(config: ConfigDict, dotted: str, value) -> None:
    """Sets `a.b.c` (creating sections), for aliases that move an old field's value; the
    value must have the kind of the one it replaces."""
    *parents, leaf = dotted.split(".")
    node = config
    for p in parents:
        if p not in node:
            node[p] = ConfigDict()
        node = node[p]
    if leaf in node and not isinstance(node[leaf], ConfigDict):
        value = check_value(dotted, value, node[leaf])
    try:
        node[leaf] = value
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{dotted}: {e}") from None


def conform(config: ConfigDict, schema: ConfigDict, *, open_sections: Sequence[str] = (),
            aliases: Mapping[str, Callable] | None = None, where: str = "") -> ConfigDict:
    """A new config: `config` checked against `schema` (unknown fields refused, types
    checked), with the schema's defaults for fields it lacks. `aliases` maps an old dotted
    field name to `fn(config, value)` that applies it to the new fields (and says so)."""
    aliases = aliases or {}
    out = ConfigDict(schema.to_dict())
    _merge(out, out, config, schema, "", open_sections, aliases, where)
    return out


def _merge(root, out, config, schema, prefix, open_sections, aliases, where):
    renamed = [k for k in config.keys() if f"{prefix}{k}" in aliases]
    for key in [k for k in config.keys() if k not in renamed] + renamed:  # aliases last
        option = f"{prefix}{key}"
        value = config[key]
        if option in aliases:
            try:
                aliases[option](root, value)
            except ConfigError as e:
                raise ConfigError(f"{where}{option}: {e}") from None
            continue
        if key not in schema:
            raise _unknown(f"{where}{option}", key, schema.keys())
        default = schema[key]
        if option in open_sections or _is_free(key):
            if not isinstance(value, (ConfigDict, Mapping)):
                raise ConfigError(f"{where}{option}: expected a dict, got {value!r}")
            value = value.to_dict() if isinstance(value, ConfigDict) else dict(value)
            if option in open_sections:
                bad = [k for k, v in value.items() if not isinstance(v, Mapping)]
                if bad:
                    raise ConfigError(f"{where}{option}.{bad[0]}: expected a dict (an entry), "
                                      f"got {value[bad[0]]!r}")
            _finite(f"{where}{option}", value)
            out[key] = ConfigDict(value)
        elif isinstance(default, ConfigDict):
            if not isinstance(value, ConfigDict):
                raise ConfigError(f"{where}{option}: expected a section, got {value!r}")
            _merge(root, out[key], value, default, option + ".", open_sections, aliases, where)
        else:
            value = check_value(f"{where}{option}", value, default)
            try:
                out[key] = value
            except (TypeError, ValueError) as e:
                raise ConfigError(f"{where}{option}: {e}") from None


# Overrides -----------------------------------------------------------------------------------

def split_list(text: str, option: str) -> list[str]:
    """`[a,b]`, `a,b` or `["a","b"]` -> ['a', 'b']: commas inside parentheses or quotes
    do not split (`[brightness(0.1),rotation(degrees=5)]`). Raises on unbalanced brackets."""
    s = text.strip()
    if s.startswith("[") != s.endswith("]"):
        raise ConfigError(f"--config.{option}: unbalanced brackets in {text!r} (write "
                          "[a,b], a,b or [\"a\",\"b\"])")
    if s.startswith("["):
        s = s[1:-1]
    items, depth, quote, current = [], 0, "", ""
    for ch in s:
        if quote:
            current += ch
            if ch == quote:
                quote = ""
            continue
        if ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth < 0:
                raise ConfigError(f"--config.{option}: unbalanced brackets in {text!r}")
        elif ch == "," and depth == 0:
            items.append(current)
            current = ""
            continue
        current += ch
    if depth or quote:
        raise ConfigError(f"--config.{option}: unbalanced brackets or quotes in {text!r}")
    items.append(current)
    items = [i.strip() for i in items]
    if items == [""]:
        return []
    if any(not i for i in items):
        raise ConfigError(f"--config.{option}: empty item in {text!r}")
    out = []
    for i in items:
        if len(i) >= 2 and i[0] == i[-1] and i[0] in "'\"":
            i = i[1:-1]
        if any(c in i for c in "[]") or (i[:1] in "'\"" and i):
            raise ConfigError(f"--config.{option}: cannot parse item {i!r} of {text!r}")
        out.append(i)
    return out


def _string_list(current) -> bool:
    return isinstance(current, (list, tuple)) and all(isinstance(v, str) for v in current)


NEW = object()  # `parse_value`'s `current` for a key a free-form dict does not have yet


def parse_value(key: str, text: str, current):
    """The value of `--config.<key>=<text>` for a field whose value is `current` (`NEW`: a
    new key of a free-form dict, any literal or a bare string)."""
    if isinstance(current, bool):
        low = text.strip().lower()
        if low in ("true", "1", "yes"):
            return True
        if low in ("false", "0", "no"):
            return False
        raise ConfigError(f"--config.{key}: expected true/false, got {text!r}")
    if isinstance(current, str):
        try:
            value = literal(text)
        except _NotLiteral:
            return text
        return value if isinstance(value, str) else text
    if _string_list(current) and (len(current) or not _looks_numeric(text)):
        try:
            value = literal(text)
        except _NotLiteral:
            value = None
        if not (isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)):
            value = split_list(text, key)
        return type(current)(value)
    try:
        value = literal(text)
    except _NotLiteral:
        if current is NEW:
            return text
        raise ConfigError(f"--config.{key}: cannot parse {text[:60]!r} as a "
                          f"{_type_name(current)}") from None
    if current is NEW:
        _finite(f"--config.{key}", value)
        return value
    if isinstance(current, (list, tuple)) and isinstance(value, (str, int, float)):
        value = [value]
    value = check_value(f"--config.{key}", value, current)
    return type(current)(value) if isinstance(current, (list, tuple)) else value


def _looks_numeric(text: str) -> bool:
    try:
        value = literal(text)
    except _NotLiteral:
        return False
    items = value if isinstance(value, (list, tuple)) else [value]
    return all(_number(v) for v in items)


def literal_dict(key: str, text: str) -> dict:
    """A dict literal for a free-form `*_args` field (its keys are checked by the owner)."""
    try:
        value = literal(text)
    except _NotLiteral:
        value = None
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ConfigError(f"--config.{key}: expected a dict such as {{'name': value}}, or "
                          f"--config.{key}.<name>=<value>")
    _finite(f"--config.{key}", value)
    return value


def apply_overrides(config: ConfigDict, overrides: Sequence[str], *,
                    aliases: Mapping[str, Callable] | None = None,
                    open_sections: Sequence[str] = ()) -> ConfigDict:
    """Applies `a.b=value` strings (the `--config.` prefix is optional) in place."""
    aliases = aliases or {}
    for item in overrides:
        item = item[len("--config."):] if item.startswith("--config.") else item
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like --config.section.field=value")
        key, text = item.split("=", 1)
        if key in aliases:
            current = get_path(config, key, NEW)
            try:
                aliases[key](config, parse_value(key, text, NEW if isinstance(
                    current, ConfigDict) else current))
            except ConfigError as e:
                raise ConfigError(f"--config.{key}: {e}") from None
            continue
        *parents, leaf = key.split(".")
        node = config
        free = False
        for i, p in enumerate(parents):
            if p not in node or not isinstance(node[p], ConfigDict):
                raise ConfigError(f"--config.{key}: no config section "
                                  f"{'.'.join(parents[:i + 1])!r}")
            free = free or _is_free(p) or ".".join(parents[:i]) in open_sections
            node = node[p]
        if leaf not in node and not free:
            raise _unknown(f"--config.{key}", leaf, node.keys())
        current = node[leaf] if leaf in node else NEW
        if isinstance(current, ConfigDict) and not _is_free(leaf):
            raise ConfigError(f"--config.{key}: is a section; set its fields one by one "
                              f"(--config.{key}.<field>=<value>)")
        if isinstance(current, ConfigDict):
            value = literal_dict(key, text)
        else:
            value = parse_value(key, text, current)
        try:
            node[leaf] = value
        except (TypeError, ValueError) as e:
            raise ConfigError(f"--config.{key}: {e}") from None
    return config


# Loading -------------------------------------------------------------------------------------

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


def split_argv(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Separates `--config.a.b=value` overrides from the other command-line arguments."""
    overrides, rest = [], []
    for arg in argv:
        (overrides if arg.startswith("--config.") else rest).append(arg)
    return overrides, rest


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
