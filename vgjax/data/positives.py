"""Geographic neighbours of queries in the database (soft 25 m / hard 10 m positives)."""
from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree


def positives_within(db_utm: np.ndarray, query_utm: np.ndarray, radius: float) -> list[np.ndarray]:
    """For each query, the sorted database indices within `radius` metres (Euclidean UTM).

    A k-d tree over the database: ~1M points build and query in seconds.
    Returns a list of int64 arrays, one per query (possibly empty).
    """
    db_utm = np.asarray(db_utm, np.float64).reshape(-1, 2)
    query_utm = np.asarray(query_utm, np.float64).reshape(-1, 2)
    if len(db_utm) == 0:
        return [np.zeros(0, np.int64) for _ in range(len(query_utm))]
    tree = cKDTree(db_utm)
    found = tree.query_ball_point(query_utm, r=radius, return_sorted=True, workers=-1)
    return [np.asarray(f, np.int64) for f in found]


def to_padded(lists: list[np.ndarray], pad: int = -1) -> np.ndarray:
    """(Q, max_len) int array of ragged index lists, padded with `pad` (for device code)."""
    width = max((len(x) for x in lists), default=0)
    out = np.full((len(lists), max(width, 1)), pad, np.int64)
    for i, x in enumerate(lists):
        out[i, : len(x)] = x
    return out
