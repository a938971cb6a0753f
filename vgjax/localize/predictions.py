"""Each query's top-k database matches, their confidence, and `predictions.csv`.

Confidence of the match at rank r among a query's k matches with squared descriptor
distances d_1 <= ... <= d_k: its share of the inverse distances,

    confidence_r = (1 / d_r) / sum_j (1 / d_j)        (d clipped below at 1e-12)

so the k confidences of a query sum to 1, a match twice as close in descriptor space gets
twice the share, an exact copy of a database image gets about 1, and k equally close
matches get 1/k each. confidence_1 / confidence_2 = d_2 / d_1 is the ratio of the first two
distances. It compares the candidates with each other only: it is not a calibrated
probability that the place is right (with --top-k 1 it is always 1).
"""
from __future__ import annotations

import csv
import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vgjax.localize.coordinates import Places, metres_between

MIN_DISTANCE = 1e-12


def confidence(distances: np.ndarray) -> np.ndarray:
    """(Q, k) shares of the inverse squared distances (rows sum to 1)."""
    inv = 1.0 / np.maximum(np.asarray(distances, np.float64), MIN_DISTANCE)
    return inv / inv.sum(axis=1, keepdims=True)


@dataclasses.dataclass(frozen=True)
class Predictions:
    """Top-k database rows of Q queries. distances, indices, confidences: (Q, k)."""
    queries: tuple[str, ...]
    distances: np.ndarray
    indices: np.ndarray
    confidences: np.ndarray
    query_places: Places

    @classmethod
    def from_search(cls, queries: Sequence[str], distances, indices,
                    query_places: Places) -> Predictions:
        return cls(tuple(queries), np.asarray(distances, np.float32),
                   np.asarray(indices, np.int64), confidence(distances), query_places)

    @property
    def k(self) -> int:
        return self.indices.shape[1]

    def match_places(self, database: Places) -> np.ndarray:
        """(Q, k, 2) coordinates of the matches (NaN where unknown)."""
        return database.values[self.indices]

    def metres(self, database: Places) -> np.ndarray:
        """(Q, k) ground distance from each query's known place to each match (NaN where
        either is unknown)."""
        return metres_between(database.system, self.query_places.values[:, None, :],
                              self.match_places(database))


def csv_header(system_columns: tuple[str, str]) -> list[str]:
    a, b = system_columns
    return ["query", "rank", "match", f"match_{a}", f"match_{b}", "descriptor_distance",
            "confidence", f"query_{a}", f"query_{b}", "metres"]


def _cell(x: float, digits: int) -> str:
    return "" if not np.isfinite(x) else f"{x:.{digits}f}"


def write_predictions_csv(path: str | os.PathLike, preds: Predictions,
                          database_paths: Sequence[str], database: Places) -> Path:
    """One row per query and rank (rank 1 first); empty cells where a place is unknown."""
    digits = 7 if database.system == "latlon" else 2
    places = preds.match_places(database)
    metres = preds.metres(database)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(csv_header(database.columns))
        for q, query in enumerate(preds.queries):
            qa, qb = preds.query_places.values[q]
            for r in range(preds.k):
                w.writerow([query, r + 1, database_paths[preds.indices[q, r]],
                            _cell(places[q, r, 0], digits), _cell(places[q, r, 1], digits),
                            f"{preds.distances[q, r]:.6g}", f"{preds.confidences[q, r]:.6f}",
                            _cell(qa, digits), _cell(qb, digits), _cell(metres[q, r], 1)])
    return Path(path)
