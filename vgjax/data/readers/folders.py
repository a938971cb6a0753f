"""Readers of @UTM folders: the standard `folder` and the benchmarks that VPR-methods-
evaluation distributes in that layout (`sped`, `stlucia`, `svox`), each with its protocol.

- `sped`: `<sped>/images/test/{database,queries}` (SPEDTEST, one database frame per query,
  UTM made up so that only the same frame lies within 25 m);
- `stlucia`: `<st_lucia>/images/test/{database,queries}`;
- `svox`: `<svox>/images/test/gallery` (the database; `database` is accepted too) and one
  query folder per condition, `queries_night`, `queries_overcast`, `queries_rain`,
  `queries_snow`, `queries_sun`, each a query set of its own (`queries`, if present, is the
  set `all`).

Each is scored by its published rule, a database image within 25 m, whatever
`test.positive_dist` says; `folder` keeps the @UTM rule at `test.positive_dist`.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from vgjax.data import format as fmt
from vgjax.data.dataset import (Index, Split, dataset_name, load_index, load_split,
                                split_folder, split_from_indexes)
from vgjax.data.positives import positives_within
from vgjax.data.protocol import query_set, utm_protocol
from vgjax.data.readers import ENTRY_HINT, READERS

UTM_METRES = 25.0  # the positive radius of SPED, St Lucia and SVOX
HARD_METRES = 10.0  # (hard positives: not used by evaluation)
SVOX_CONDITIONS = ("night", "overcast", "rain", "snow", "sun")
SVOX_DATABASE = ("gallery", "database")


@READERS.register("folder")
def read_folder(data_cfg, dataset, split: str) -> Split:
    return load_split(dataset, split, data_cfg.soft_positives_dist,
                      data_cfg.hard_positives_dist)


def with_utm_rule(split: Split, metres: float = UTM_METRES) -> Split:
    """`split` scored by its UTM positives within `metres`, every query, as one query set
    named like the dataset."""
    positives = split.soft_positives
    if float(split.soft_dist) != float(metres):
        positives = positives_within(split.database.utm, split.queries.utm, metres)
    qs = query_set(split.dataset, utm_protocol(split.dataset, split.split, metres),
                   np.arange(len(split.queries)), positives)
    return dataclasses.replace(split, query_sets=(qs,))


def _test_only(dataset, split: str, what: str) -> None:
    if split != "test":
        raise fmt.DatasetFormatError(
            f"{dataset}: {what} is a test set only (asked for split {split!r}){ENTRY_HINT}")


@READERS.register("sped")
def read_sped(data_cfg, dataset, split: str) -> Split:
    _test_only(dataset, split, "SPED")
    return with_utm_rule(load_split(dataset, split, UTM_METRES, HARD_METRES))


@READERS.register("stlucia")
def read_stlucia(data_cfg, dataset, split: str) -> Split:
    _test_only(dataset, split, "St Lucia")
    return with_utm_rule(load_split(dataset, split, UTM_METRES, HARD_METRES))


@READERS.register("svox")
def read_svox(data_cfg, dataset, split: str) -> Split:
    """The SVOX gallery against each condition's queries (see the module docstring)."""
    _test_only(dataset, split, "SVOX")
    folder = split_folder(dataset, split)
    db_folder = next((folder / d for d in SVOX_DATABASE if (folder / d).is_dir()), None)
    if db_folder is None:
        raise fmt.DatasetFormatError(
            f"{folder}: no gallery/ folder (the SVOX database; expected gallery/ and "
            f"queries_<{'|'.join(SVOX_CONDITIONS)}>/)")
    sets = [(c, folder / f"queries_{c}") for c in SVOX_CONDITIONS]
    sets += [("all", folder / "queries")]
    sets = [(c, f) for c, f in sets if f.is_dir()]
    if not sets:
        raise fmt.DatasetFormatError(
            f"{folder}: no query folder (expected queries_<{'|'.join(SVOX_CONDITIONS)}>/)")
    database = load_index(db_folder)
    indexes = [load_index(f) for _, f in sets]
    queries = Index(paths=np.concatenate([i.paths for i in indexes]),
                    utm=np.concatenate([i.utm for i in indexes]),
                    zones=np.concatenate([i.zone_labels for i in indexes]))
    whole = split_from_indexes(dataset_name(dataset), split, database, queries, UTM_METRES,
                               HARD_METRES, where=str(folder))
    name = whole.dataset
    starts = np.cumsum([0] + [len(i) for i in indexes])
    query_sets = []
    for (condition, _), start, index in zip(sets, starts, indexes):
        rows = np.arange(start, start + len(index))
        query_sets.append(query_set(
            f"{name}_{condition}", utm_protocol(name, split, UTM_METRES, condition), rows,
            [whole.soft_positives[r] for r in rows]))
    return dataclasses.replace(whole, query_sets=tuple(query_sets))
