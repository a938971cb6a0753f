"""Frozen, typed settings: a config section turned once into a `dataclass(frozen=True)`.

    @dataclasses.dataclass(frozen=True)
    class DataSettings(Settings):
        resize: tuple[int, ...]
        num_workers: int

    data = DataSettings.from_section(config.data)   # ints, floats, tuples: no casts later

Each field's annotation says what the section's value becomes: `int`, `float`, `str`,
`bool`, `float | None` (an optional number), `tuple[int, ...]` (and of str / float),
`Args` (a `*_args` dict of keyword arguments, frozen; `.kwargs()` gives a dict) or another
`Settings` class (a nested section). The section owners (`vgjax.data.settings`,
`vgjax.models.settings`, `vgjax.train.settings`, `vgjax.eval.settings`) check the section
before it is converted.
"""
from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Iterator, Mapping


class Args(Mapping):
    """A `*_args` section: keyword arguments of one component, frozen (sorted pairs)."""

    __slots__ = ("_pairs",)

    def __init__(self, pairs=()):
        items = pairs.items() if isinstance(pairs, Mapping) else pairs
        object.__setattr__(self, "_pairs", tuple((str(k), _frozen(v)) for k, v in items))

    @classmethod
    def of(cls, value) -> "Args":
        if isinstance(value, Args):
            return value
        if value is None:
            return cls()
        return cls(value.to_dict() if hasattr(value, "to_dict") else value)

    def kwargs(self) -> dict:
        return {k: _thawed(v) for k, v in self._pairs}

    def to_dict(self) -> dict:
        return self.kwargs()

    def __getitem__(self, key):
        for k, v in self._pairs:
            if k == key:
                return _thawed(v)
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self._pairs)

    def __len__(self) -> int:
        return len(self._pairs)

    def __setattr__(self, name, value):
        raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")

    def __eq__(self, other):
        return isinstance(other, Mapping) and dict(self.items()) == dict(other.items())

    def __hash__(self):
        return hash(self._pairs)

    def __repr__(self) -> str:
        return f"Args({self.kwargs()!r})"


def _frozen(value):
    if isinstance(value, list):
        return ("__list__", tuple(_frozen(v) for v in value))
    if isinstance(value, Mapping) or hasattr(value, "to_dict"):
        return Args.of(value)
    return value


def _thawed(value):
    if isinstance(value, tuple) and len(value) == 2 and value[0] == "__list__":
        return [_thawed(v) for v in value[1]]
    if isinstance(value, Args):
        return value.kwargs()
    return value


@functools.lru_cache(maxsize=None)
def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def _convert(kind, value):
    if isinstance(kind, type) and issubclass(kind, Settings):
        return value if isinstance(value, kind) else kind.from_section(value)
    if kind is Args:
        return Args.of(value)
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        inner = [a for a in typing.get_args(kind) if a is not type(None)]
        return _convert(inner[0], value)
    if origin is tuple:
        item = typing.get_args(kind)[0]
        return tuple(_convert(item, v) for v in value)
    if kind in (int, float, str, bool):
        return kind(value)
    return value


@dataclasses.dataclass(frozen=True)
class Settings:
    """Base of the settings classes: `from_section` converts a section once."""

    @classmethod
    def from_section(cls, section, **replace):
        """The settings of `section` (a ConfigDict or mapping); `replace` sets fields
        outright (already typed). Fields the section lacks keep their default."""
        if isinstance(section, cls) and not replace:
            return section
        hints = _hints(cls)
        values = {}
        for f in dataclasses.fields(cls):
            if f.name in replace:
                values[f.name] = replace[f.name]
            elif f.name in section:  # a Settings object or a ConfigDict / mapping
                values[f.name] = _convert(hints[f.name], _read(section, f.name))
        return cls(**values)

    def get(self, name: str, default=None):
        """A field by name (as `ConfigDict.get`), `default` if there is no such field."""
        return getattr(self, name, default)

    def __getitem__(self, name: str):
        return getattr(self, name)

    def __contains__(self, name: str) -> bool:
        return name in {f.name for f in dataclasses.fields(self)}


def _read(section, name: str):
    return getattr(section, name) if isinstance(section, Settings) else section[name]
