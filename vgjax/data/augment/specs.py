"""The registry of the training-query augmentations (`train.query_augment`) and the checks of
their specs.

The device ops (`vgjax.data.augment.device`) register here, each with the check of its
arguments and whether it acts on the whole batch; the host ops (`vgjax.data.augment.host`)
take the same specs and the values those checks return. Argument checks happen in Python,
when a spec is parsed (`check_specs`), before any work: a bad value is a ConfigError naming
`train.query_augment`.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

from vgjax.config import ConfigError
from vgjax.registry import Registry, Spec

AUGMENTATIONS = Registry("train.query_augment", fixed=("image", "key"))


def register(name: str, check: Callable, whole_batch: Callable | None = None):
    """Registers an op with `check(**spec arguments)`, which raises ValueError (TypeError)
    on a bad value (called by `check_specs`), and `whole_batch(**spec arguments) -> bool`:
    whether the op acts on every row of the batch at once rather than per query."""
    def add(fn):
        fn.check_args = check
        fn.whole_batch = whole_batch or (lambda **kwargs: False)
        return AUGMENTATIONS.register(name)(fn)
    return add


def check_specs(specs: Sequence[str] | str) -> list[Spec]:
    """Parses and validates every spec without running anything: unknown ops and arguments
    (the registry's errors) and bad values (each op's checks) are ConfigErrors naming
    `train.query_augment`. Returns the parsed specs (arguments as keywords)."""
    if isinstance(specs, str):
        specs = [specs]
    if not isinstance(specs, Sequence):
        raise ConfigError(f"{AUGMENTATIONS.option}: expected a list of specs such as "
                          f"['brightness(0.3)'], got {specs!r}")
    parsed = []
    for text in specs:
        spec = AUGMENTATIONS.check(text)
        try:
            AUGMENTATIONS.get(spec.name).check_args(**spec.kwargs)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"{AUGMENTATIONS.option}: {spec}: {e}") from None
        parsed.append(spec)
    return parsed
