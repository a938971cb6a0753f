"""Databases shared by several test sets of one evaluation, described once.

Some benchmarks are a query subset of another over the same database: the deep benchmark's
tokyo-night holds a copy of tokyo-xs's database beside tokyo-xs's night queries, and the
synthetic city writes it the same way. When one evaluation run (`RetrievalEvaluator.run`)
tests several datasets, `database_keys` finds the databases made of the same image files
(same names, sizes and bytes, in the same order, read by the same kind of reader), and
`DatabaseMemo` hands the descriptors of the first to the others instead of describing the
same images again. The descriptors are those the first dataset's extraction wrote, so the
recalls are exactly those of describing each database on its own.

Only databases whose paths are all plain files are compared, and file contents are hashed
only for the databases whose names and sizes already match another's, so a run of unrelated
datasets costs one `os.stat` per database image.
"""
from __future__ import annotations

import collections
import hashlib
import logging
import os
import stat
from collections.abc import Mapping, Sequence

import numpy as np

log = logging.getLogger(__name__)

HASH_BLOCK = 1 << 20


def _names_and_sizes(paths: Sequence[str]) -> tuple | None:
    """(file name, size) of every path in order; None when a path is not a plain file (a
    TFDS record, a missing file): such databases are never shared."""
    out = []
    for p in paths:
        try:
            st = os.stat(p)
        except (OSError, TypeError, ValueError):
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        out.append((os.path.basename(str(p)), st.st_size))
    return tuple(out)


def _content_hash(paths: Sequence[str]) -> str:
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            while block := f.read(HASH_BLOCK):
                h.update(block)
        h.update(b"\0")
    return h.hexdigest()


def database_keys(databases: Mapping[str, tuple[Sequence[str], str]]) -> dict[str, str]:
    """{dataset: key} for the datasets whose database is the same files as another's:
    `databases` maps a dataset to (its database paths, its reader kind). Datasets with the
    same key have byte-identical databases; a dataset without a partner has no key."""
    first = {}
    for name, (paths, kind) in databases.items():
        shape = _names_and_sizes(paths)
        if shape is not None and len(shape):
            first[name] = (kind, shape)
    groups = collections.defaultdict(list)
    for name, cheap in first.items():
        groups[cheap].append(name)
    keys = {}
    for (kind, _), names in groups.items():
        if len(names) < 2:
            continue
        by_content = collections.defaultdict(list)
        for name in names:
            by_content[_content_hash(databases[name][0])].append(name)
        for digest, same in by_content.items():
            if len(same) > 1:
                keys.update({name: f"{kind}:{digest}" for name in same})
    return keys


class DatabaseMemo:
    """Database descriptors of one evaluation run, kept for the later datasets of `keys`
    (`database_keys`) that reuse them. `get` gives (descriptors, the dataset that computed
    them) or None; `put` keeps a copy only when a later dataset will ask for it."""

    def __init__(self, keys: Mapping[str, str] | None = None, order: Sequence[str] = ()):
        self.keys = dict(keys or {})
        self._pending = collections.Counter(self.keys[d] for d in order if d in self.keys)
        self._kept: dict[str, tuple[np.ndarray, str]] = {}

    def get(self, dataset: str) -> tuple[np.ndarray, str] | None:
        key = self.keys.get(dataset)
        if key is None:
            return None
        self._pending[key] -= 1
        kept = self._kept.get(key)
        if kept is not None and self._pending[key] <= 0:
            del self._kept[key]  # the last user: free the copy
        return kept

    def put(self, dataset: str, descriptors: np.ndarray) -> None:
        key = self.keys.get(dataset)
        if key is not None and self._pending[key] > 0 and key not in self._kept:
            self._kept[key] = (descriptors, dataset)

    def wanted(self, dataset: str) -> bool:
        """Whether a later dataset will reuse this one's database descriptors."""
        key = self.keys.get(dataset)
        return key is not None and self._pending[key] > 0 and key not in self._kept

    def slot(self, dataset: str) -> DatabaseSlot:
        return DatabaseSlot(self, dataset)


class DatabaseSlot:
    """One dataset's view of a `DatabaseMemo`: what `evaluate_protocols` takes."""

    def __init__(self, memo: DatabaseMemo, dataset: str):
        self.memo, self.dataset = memo, dataset

    def get(self) -> tuple[np.ndarray, str] | None:
        return self.memo.get(self.dataset)

    def wanted(self) -> bool:
        return self.memo.wanted(self.dataset)

    def put(self, descriptors: np.ndarray) -> None:
        self.memo.put(self.dataset, descriptors)
