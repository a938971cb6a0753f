"""Recall@N: the share of queries with at least one of their first N predictions within
`positive_dist` metres (UTM), or among their positives where a protocol gives them
explicitly; queries with no database image that close count as misses."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def correct_matrix(topk_indices: np.ndarray, query_utm: np.ndarray, db_utm: np.ndarray,
                   positive_dist: float) -> np.ndarray:
    """(Q, K) bool: prediction within `positive_dist` metres (UTM) of its query; -1 is wrong."""
    metres = geo_distances(topk_indices, query_utm, db_utm)
    return np.nan_to_num(metres, nan=np.inf) <= positive_dist


def correct_from_positives(topk_indices: np.ndarray, positives) -> np.ndarray:
    """(Q, K) bool: prediction among its query's positives (explicit ground truth, one
    int array per query); -1 is wrong."""
    idx = np.asarray(topk_indices, np.int64)
    out = np.zeros(idx.shape, bool)
    for q, p in enumerate(positives):
        if len(p):
            out[q] = np.isin(idx[q], p) & (idx[q] >= 0)
    return out


def geo_distances(topk_indices, query_utm, db_utm) -> np.ndarray:
    """(Q, K) metres between each query and its predictions (nan where missing)."""
    idx = np.asarray(topk_indices)
    pred = np.asarray(db_utm, np.float64)[np.where(idx >= 0, idx, 0)]
    dist = np.sqrt(((pred - np.asarray(query_utm, np.float64)[:, None]) ** 2).sum(-1))
    return np.where(idx >= 0, dist, np.nan)


def recalls_from_correct(correct: np.ndarray, recall_values) -> dict[str, float]:
    """Share (%) of queries with a correct prediction in their first N, for each N."""
    correct = np.asarray(correct, bool)
    if len(correct) == 0:
        return {f"R@{n}": float("nan") for n in recall_values}
    return {f"R@{n}": float(100.0 * correct[:, :n].any(1).mean()) for n in recall_values}


def compute_recalls(topk_indices, query_utm, db_utm, recall_values,
                    positive_dist: float) -> dict[str, float]:
    """Recall@N in percent; queries without any database image in range count as misses."""
    return recalls_from_correct(correct_matrix(topk_indices, query_utm, db_utm, positive_dist),
                                recall_values)


def recalls_from_predictions(npz_path: str | os.PathLike, recall_values=(1, 5, 10, 20),
                             positive_dist: float = 25.0) -> dict[str, float]:
    """Recomputes recalls from a saved `predictions/<name>.npz`: by its `positives` where
    it holds them (a protocol's ground truth), else by UTM within `positive_dist`."""
    with np.load(npz_path, allow_pickle=False) as z:
        k = z["topk_indices"].shape[1]
        if max(recall_values) > k:
            raise ValueError(f"{npz_path}: holds top-{k} predictions, cannot compute "
                             f"R@{max(recall_values)}")
        if "positives" in z.files:  # a protocol's explicit ground truth (padded with -1)
            positives = [row[row >= 0] for row in z["positives"]]
            return recalls_from_correct(correct_from_positives(z["topk_indices"], positives),
                                        recall_values)
        return compute_recalls(z["topk_indices"], z["query_utm"], z["db_utm"], recall_values,
                               positive_dist)


def chance_recalls(query_utm, db_utm, recall_values=(1, 5, 10, 20),
                   positive_dist: float = 25.0) -> dict[str, float]:
    """Expected recall@N (%) of a uniformly random ranking of the database: per query with p
    of n database images in range, 1 - C(n - p, N) / C(n, N). The level any model must beat
    before its recalls mean anything (a small database with many positives per query makes
    it high)."""
    from vgjax.data.positives import positives_within

    db = np.asarray(db_utm, np.float64).reshape(-1, 2)
    queries = np.asarray(query_utm, np.float64).reshape(-1, 2)
    counts = ([len(x) for x in positives_within(db, queries, positive_dist)]
              if len(db) and len(queries) else [0] * len(queries))
    return chance_from_counts(counts, len(db), recall_values)


def chance_of_folder(folder: str | os.PathLike, recall_values=(1, 5, 10, 20),
                     positive_dist: float = 25.0) -> dict[str, float]:
    """`chance_recalls` of a split folder holding `database/` and `queries/` (UTM from the
    file names)."""
    from vgjax.data import format as fmt

    utm = {role: fmt.utm_array(fmt.list_images(Path(folder) / role))
           for role in ("database", "queries")}
    return chance_recalls(utm["queries"], utm["database"], recall_values, positive_dist)


def chance_from_counts(positives_per_query, database_size: int,
                       recall_values=(1, 5, 10, 20)) -> dict[str, float]:
    """`chance_recalls` from each query's number of positives among `database_size` images."""
    p = np.asarray(positives_per_query, np.float64).reshape(-1)
    n = int(database_size)
    if len(p) == 0:
        return {f"R@{k}": float("nan") for k in recall_values}
    out = {}
    for k in recall_values:
        i = np.arange(min(int(k), n), dtype=np.float64)
        miss = np.prod(np.clip(n - p[:, None] - i, 0, None) / (n - i), axis=1)
        out[f"R@{k}"] = float(100.0 * (1.0 - miss).mean())
    return out
