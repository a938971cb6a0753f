"""A config held to the schema (the default config): unknown fields refused with "did you
mean", values checked against their defaults, missing fields filled in, renamed fields moved
by their aliases."""
from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence

import ml_collections

from vgjax.config.values import ConfigError, _finite, check_value

ConfigDict = ml_collections.ConfigDict


def _is_free(key: str) -> bool:
    return key.endswith("_args")


def _unknown(option: str, key: str, known) -> ConfigError:
    close = difflib.get_close_matches(key, [str(k) for k in known], n=3)
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


def _string_keys(config, option: str, *, deep: bool = False) -> list:
    """The field names of a section or dict, refused unless all are strings (ConfigDict cannot
    even list mixed names: it sorts them); `deep` checks the nested sections too."""
    raw = getattr(config, "_fields", config)  # a ConfigDict's own dict, or the mapping
    for key, value in raw.items():
        if not isinstance(key, str):
            raise ConfigError(f"{option}{key!r}: a field name must be a string, "
                              f"got {type(key).__name__}")
        if deep and isinstance(value, (ConfigDict, Mapping)):
            _string_keys(value, f"{option}{key}.", deep=True)
    return list(config.keys())


def _merge(root, out, config, schema, prefix, open_sections, aliases, where):
    keys = _string_keys(config, f"{where}{prefix}")
    renamed = [k for k in keys if f"{prefix}{k}" in aliases]
    for key in [k for k in keys if k not in renamed] + renamed:  # aliases last
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
            _string_keys(value, f"{where}{option}.", deep=True)
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
