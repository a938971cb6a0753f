"""Named components chosen by config strings: one small registry per kind.

    OPTIMIZERS = Registry("train.optimizer")

    @OPTIMIZERS.register("sgd")
    def sgd(learning_rate, momentum=0.9): ...

    OPTIMIZERS.get("sgd")                          # the registered function
    OPTIMIZERS.build("sgd(momentum=0.5)", learning_rate=0.1)   # called with both
    OPTIMIZERS.check("sgd(momentum=0.5)")         # parse + argument check, no call

A spec is a name, optionally followed by Python-literal arguments: `"brightness(0.1)"`,
`"plateau(factor=0.5, patience=1)"`. Unknown names and arguments that the function does not
take are errors that name the config option and list the choices, raised by `check` before
any work starts; every option's error message lives here, in one place.
"""
from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from vgjax.config import ConfigError


@dataclasses.dataclass(frozen=True)
class Spec:
    """A parsed spec: `name(*args, **kwargs)`."""
    name: str
    args: tuple = ()
    kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __str__(self) -> str:
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{self.name}({', '.join(parts)})" if parts else self.name


def parse_spec(text: str, option: str = "spec") -> Spec:
    """`"name"` or `"name(1, b=2)"` -> Spec; arguments must be Python literals."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"{option}: expected a name such as 'x' or 'x(a=1)', got {text!r}")
    try:
        node = ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        raise ConfigError(f"{option}: cannot parse {text!r} (expected 'name' or "
                          "'name(arg, key=value)')") from None
    if isinstance(node, ast.Name):
        return Spec(node.id)
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
        raise ConfigError(f"{option}: cannot parse {text!r} (expected 'name' or "
                          "'name(arg, key=value)')")
    try:
        args = tuple(ast.literal_eval(a) for a in node.args)
        kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords}
    except ValueError:
        raise ConfigError(f"{option}: arguments of {text!r} must be literals "
                          "(numbers, strings, lists, True/False/None)") from None
    if any(k is None for k in kwargs):
        raise ConfigError(f"{option}: {text!r}: '**' arguments are not allowed")
    return Spec(node.func.id, args, kwargs)


class Registry:
    """Names -> functions (or classes) for one config option."""

    def __init__(self, option: str, fixed: tuple[str, ...] = ()):
        """`option` names the config field in errors; `fixed` are parameters that the code
        passes itself (e.g. `learning_rate`), which a spec may not set."""
        self.option = option
        self.fixed = fixed
        self._items: dict[str, Callable] = {}

    def register(self, name: str):
        def add(fn):
            if name in self._items:
                raise ValueError(f"{self.option}: {name!r} is registered twice")
            self._items[name] = fn
            return fn
        return add

    def names(self) -> list[str]:
        return list(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def __iter__(self):
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: int) -> str:
        return self.names()[index]

    def get(self, name: str) -> Callable:
        if name not in self._items:
            close = difflib.get_close_matches(str(name), self.names(), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"{self.option}: unknown value {name!r} (accepted: "
                              f"{', '.join(self.names())}){hint}")
        return self._items[name]

    def parse(self, spec: str | Spec, kwargs: Mapping[str, Any] | None = None) -> Spec:
        """Parses and checks a spec (plus extra `kwargs`, e.g. a config dict) against the
        registered function's signature; raises ConfigError naming the option."""
        spec = spec if isinstance(spec, Spec) else parse_spec(spec, self.option)
        fn = self.get(spec.name)
        merged = dict(spec.kwargs)
        for k, v in (kwargs or {}).items():
            merged.setdefault(k, v)
        spec = Spec(spec.name, spec.args, merged)
        fixed = [k for k in merged if k in self.fixed]
        if fixed:
            raise ConfigError(f"{self.option}: {spec}: {fixed[0]!r} is set by vgjax itself")
        try:
            sig = inspect.signature(fn)
        except (TypeError, ValueError):
            return spec
        params = [p for p in sig.parameters.values() if p.name not in self.fixed]
        bindable = sig.replace(parameters=params)
        try:
            bound = bindable.bind(*spec.args, **merged)
        except TypeError as e:
            accepted = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD,
                                                              p.KEYWORD_ONLY)]
            unknown = [k for k in merged if k not in accepted]
            if unknown:
                close = difflib.get_close_matches(unknown[0], accepted, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(f"{self.option}: {spec.name} has no argument "
                                  f"{unknown[0]!r}{hint}; it takes: "
                                  f"{', '.join(accepted) or 'no arguments'}") from None
            raise ConfigError(f"{self.option}: {spec}: {e}") from None
        # positional arguments become keywords, so that the fixed ones can be passed too
        return Spec(spec.name, (), dict(bound.arguments))

    def check(self, spec: str | Spec, kwargs: Mapping[str, Any] | None = None) -> Spec:
        """`parse` under the name every config check uses."""
        return self.parse(spec, kwargs)

    def partial(self, spec: str | Spec, kwargs: Mapping[str, Any] | None = None):
        """The registered function with the spec's arguments bound (for function-style
        components: loss terms, image ops)."""
        spec = self.parse(spec, kwargs)
        return functools.partial(self.get(spec.name), *spec.args, **spec.kwargs)

    def build(self, spec: str | Spec, kwargs: Mapping[str, Any] | None = None, **fixed):
        """Calls the registered function with the spec's arguments, `kwargs` and `fixed`
        (the parameters the code provides)."""
        spec = self.parse(spec, kwargs)
        fn = self.get(spec.name)
        try:
            return fn(*spec.args, **spec.kwargs, **fixed)
        except (ValueError, TypeError) as e:
            if isinstance(e, ConfigError):
                raise
            raise ConfigError(f"{self.option}: {spec}: {e}") from e
