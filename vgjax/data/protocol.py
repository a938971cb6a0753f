"""Benchmark protocols: which queries of a split are scored and what counts as a match.

A `Protocol` names the rule a recall was computed under (dataset, split, ground-truth rule,
its threshold, the query subset), so that two numbers on one dataset under different rules
are never mistaken for each other. A `QuerySet` is one protocol made concrete: the queries
it scores and, for each, the set of positive database indices (the explicit ground truth).
"""
from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Protocol:
    """How the recalls of one result were computed."""
    dataset: str                   # e.g. 'msls'
    split: str                     # train | val | test
    rule: str                      # e.g. 'UTM distance <= 25 m', 'frame tolerance 10'
    threshold: float | None = None  # the rule's number (metres, frames); None for a file
    queries: str = "all"           # the query subset scored, e.g. 'all', 'night', '740 ...'

    def label(self) -> str:
        """One line: `msls/val: queries all, UTM distance <= 25 m`."""
        return f"{self.dataset}/{self.split}: queries {self.queries}, {self.rule}"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def utm_protocol(dataset: str, split: str, metres: float, queries: str = "all") -> Protocol:
    """The rule of the @UTM folders: a database image within `metres` of the query."""
    return Protocol(dataset, split, f"UTM distance <= {metres:g} m", float(metres), queries)


@dataclasses.dataclass(frozen=True)
class QuerySet:
    """The queries one protocol scores and their ground truth.

    `queries` indexes the split's query Index; `positives[i]` holds the database indices
    that count as a match for query `queries[i]` (possibly empty: that query is a miss)."""
    name: str                        # the result's key (results.json, tables)
    protocol: Protocol
    queries: np.ndarray              # (Q,) int64 into split.queries
    positives: tuple[np.ndarray, ...]  # Q int64 arrays into split.database

    def __post_init__(self):
        if len(self.queries) != len(self.positives):
            raise ValueError(f"{self.name}: {len(self.queries)} queries but "
                             f"{len(self.positives)} ground-truth lists")

    def __len__(self) -> int:
        return len(self.queries)


def query_set(name: str, protocol: Protocol, queries, positives) -> QuerySet:
    """A QuerySet from any sequences (indices become int64 arrays)."""
    return QuerySet(name, protocol, np.asarray(queries, np.int64).reshape(-1),
                    tuple(np.asarray(p, np.int64).reshape(-1) for p in positives))
