"""Image pairs from global descriptors: each query's most similar database images.

The rule of hloc's `pairs_from_retrieval`: similarity is the inner product of the descriptors
(cosine for L2-normalised ones), a query is never paired with itself (same name), pairs whose
similarity is below `min_score` are dropped, and each query keeps its `num_matched` best, best
first. Queries are taken in the order given.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

QUERY_BLOCK = 1024  # queries scored at once: a (QUERY_BLOCK, N_db) float32 matrix in memory


def select_names(names: Sequence[str], prefixes: Sequence[str] | None,
                 listed: Sequence[str] | None, option: str) -> list[str]:
    """The names of `names` that start with one of `prefixes`, or those `listed`, or all.

    Raises ValueError naming `option` when a prefix matches nothing or a listed name is not
    among `names`."""
    if prefixes:
        chosen = [n for n in names if n.startswith(tuple(prefixes))]
        if not chosen:
            raise ValueError(f"--{option}-prefix {' '.join(prefixes)}: no image name starts "
                             f"with it (names are relative to --images, e.g. {names[0]!r})")
        return chosen
    if listed is not None:
        known = set(names)
        missing = [n for n in listed if n not in known]
        if missing:
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            raise ValueError(f"--{option}-list: {', '.join(missing[:3])}{more} not among the "
                             f"images of --images")
        if not listed:
            raise ValueError(f"--{option}-list: no image names in it")
        return list(listed)
    return list(names)


def read_name_list(path) -> list[str]:
    """Image names from a text file as hloc reads image lists: the first field of each
    line, skipping empty lines and lines that start with '#'."""
    names = []
    with open(path) as f:
        for line in f:
            line = line.strip("\n")
            if line and not line.startswith("#") and line.split():
                names.append(line.split()[0])
    return names


def retrieval_pairs(query_desc: np.ndarray, db_desc: np.ndarray, query_names: Sequence[str],
                    db_names: Sequence[str], num_matched: int,
                    min_score: float | None = 0.0) -> list[tuple[str, str]]:
    """[(query name, db name)], per query its `num_matched` most similar database images
    (inner product of (Q, D) `query_desc` and (N, D) `db_desc`), best first; self-pairs
    and, unless `min_score` is None, pairs scoring below it are left out. Equal scores keep
    the database order."""
    query_desc = np.asarray(query_desc, np.float32)
    db_desc = np.asarray(db_desc, np.float32)
    db_index = np.asarray(db_names, dtype=object)
    k = min(num_matched, len(db_names))
    pairs = []
    for start in range(0, len(query_names), QUERY_BLOCK):
        names = query_names[start:start + QUERY_BLOCK]
        scores = query_desc[start:start + QUERY_BLOCK] @ db_desc.T  # (B, N)
        invalid = np.asarray(names, dtype=object)[:, None] == db_index[None, :]
        if min_score is not None:
            invalid |= scores < min_score
        scores = np.where(invalid, -np.inf, scores)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]  # (B, k)
        for row, name in enumerate(names):
            for j in order[row]:
                if np.isfinite(scores[row, j]):
                    pairs.append((name, db_names[j]))
    return pairs
