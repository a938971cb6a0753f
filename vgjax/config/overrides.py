"""`--config.a.b=value` overrides: parsed as literals where the field is not a string, bare
strings, string lists as `[a,b]`, `a,b` or `["a","b"]`; unknown fields refused."""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import ml_collections

from vgjax.config.schema import _is_free, _unknown, get_path
from vgjax.config.values import (ConfigError, _finite, _NotLiteral, _number, _type_name,
                                 check_value, literal)

ConfigDict = ml_collections.ConfigDict


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


def split_argv(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Separates `--config.a.b=value` overrides from the other command-line arguments."""
    overrides, rest = [], []
    for arg in argv:
        (overrides if arg.startswith("--config.") else rest).append(arg)
    return overrides, rest
