"""`nordland`: the Nordland railway as two frame sequences (summer database, winter queries),
in the @UTM layout VPR-datasets-downloader gives it:

    <nordland>/images/test/{database,queries}/@0@<north>@@@@@<frame>@@@@@@@@.jpg

The frame number is the file name's seventh field (`pano_id`), the same number in both
sequences showing the same place. A query's positives are the database frames at most T
frames from its own; both published tolerances are reported, each a query set of its own:
T = 1 (`<name>_tol1`) and T = 10 (`<name>_tol10`, the rule the made-up UTM of the layout
reproduces at 25 m).
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

from vgjax.data import format as fmt
from vgjax.data.dataset import Split, load_split
from vgjax.data.protocol import Protocol, query_set
from vgjax.data.readers import ENTRY_HINT, READERS

TOLERANCES = (1, 10)  # frames


def frame_numbers(paths) -> np.ndarray:
    """(N,) int64 frame numbers from the file names' `pano_id` field; the error names the
    first file without one."""
    out = np.empty(len(paths), np.int64)
    for i, p in enumerate(paths):
        field = fmt.parse_fields(p)["pano_id"].strip()
        if not (field.isascii() and field.isdigit()):
            raise fmt.DatasetFormatError(
                f"{p}: no frame number in the file name's seventh field (pano_id), found "
                f"{field!r}")
        out[i] = int(field)
    return out


def frame_positives(db_frames, query_frames, tolerance: int) -> list[np.ndarray]:
    """Per query, the database indices whose frame is within `tolerance` of its own."""
    db_frames = np.asarray(db_frames, np.int64)
    order = np.argsort(db_frames, kind="stable")
    ranked = db_frames[order]
    lo = np.searchsorted(ranked, np.asarray(query_frames) - tolerance, side="left")
    hi = np.searchsorted(ranked, np.asarray(query_frames) + tolerance, side="right")
    return [np.sort(order[a:b]) for a, b in zip(lo, hi)]


@READERS.register("nordland")
def read_nordland(data_cfg, dataset, split: str) -> Split:
    if split != "test":
        raise fmt.DatasetFormatError(f"{dataset}: Nordland is a test set only (asked for "
                                     f"split {split!r}){ENTRY_HINT}")
    whole = load_split(dataset, split, data_cfg.soft_positives_dist,
                       data_cfg.hard_positives_dist)
    db_frames = frame_numbers(whole.database.paths)
    q_frames = frame_numbers(whole.queries.paths)
    dupes = np.flatnonzero(np.bincount(db_frames - db_frames.min()) > 1)
    if len(dupes):
        raise fmt.DatasetFormatError(
            f"{os.path.join(whole.where, 'database')}: frame {int(dupes[0] + db_frames.min())}"
            f" appears {int(np.sum(db_frames == dupes[0] + db_frames.min()))} times")
    name = whole.dataset
    sets = tuple(query_set(f"{name}_tol{t}",
                           Protocol(name, split, f"frame tolerance {t}", float(t), "all"),
                           np.arange(len(q_frames)), frame_positives(db_frames, q_frames, t))
                 for t in TOLERANCES)
    return dataclasses.replace(whole, query_sets=sets)
