"""Progress bars for the long steps (descriptor extraction, search, mining rounds, NetVLAD's
k-means features, decoded caches, city rendering): tqdm on stderr with count, rate and ETA,
shown only when stderr is a terminal, so logs, pipes and CI output stay clean.

    for batch in progress.bar(loader, desc="pitts30k database", unit="batch"):
        ...
    with progress.bar(total=n, desc="rendering", unit="img") as bar:
        bar.update(k)
"""
from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TextIO

from tqdm import tqdm


def on_terminal(stream: TextIO | None = None) -> bool:
    """Whether `stream` (default: the current stderr) is a terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def bar(iterable: Iterable | None = None, *, desc: str, total: int | None = None,
        unit: str = "it", enabled: bool = True, leave: bool = False,
        stream: TextIO | None = None) -> tqdm:
    """A tqdm bar over `iterable` (or updated by hand with `total`) on `stream` (default
    stderr); disabled, costing nothing, unless `enabled` and `stream` is a terminal.
    `leave=False` removes it once done, so the log lines around it stay together."""
    stream = sys.stderr if stream is None else stream
    return tqdm(iterable, desc=desc, total=total, unit=unit, leave=leave, file=stream,
                dynamic_ncols=True, disable=not (enabled and on_terminal(stream)))
