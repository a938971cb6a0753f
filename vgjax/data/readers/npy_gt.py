"""`npy_gt`: image lists and ground truth as `.npy` files, the layout of the validation sets
of GSV-Cities and MixVPR (pitts30k_val, pitts30k_test, SPED, Nordland, ...):

    <folder>/<name>_dbImages.npy   (D,) str: database image paths, relative to <folder>
    <folder>/<name>_qImages.npy    (Q,) str: query image paths, relative to <folder>
    <folder>/<name>_gt.npy         (Q,) object: per query, the indices of its positive
                                   database images (possibly none)

The dataset is `<folder>/<name>` (the prefix) or `<folder>` if it holds one such triple, or
several of which one is named `<...>_<split>` (`pitts30k_test` for split test). A query is
correct at N if one of its first N predictions is among its positives; the lists' order is
kept. `_gt.npy` is a pickled object array, so it is loaded with pickling allowed: read only
files you trust.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np

from vgjax.data import format as fmt
from vgjax.data.dataset import Split, plain_index
from vgjax.data.protocol import Protocol, query_set
from vgjax.data.readers import READERS
from vgjax.safe_npy import load_npy

SUFFIXES = ("_dbImages.npy", "_qImages.npy", "_gt.npy")


def find_prefix(dataset: str | os.PathLike, split: str) -> Path:
    """`<folder>/<name>` of the triple `dataset` names (see the module docstring)."""
    dataset = Path(dataset)
    if not dataset.is_dir():
        if Path(f"{dataset}_gt.npy").is_file() or dataset.parent.is_dir():
            return dataset
        raise fmt.DatasetFormatError(f"{dataset} is neither a folder nor a <folder>/<name> "
                                     "prefix of <name>_gt.npy")
    names = sorted(p.name[:-len("_gt.npy")] for p in dataset.glob("*_gt.npy"))
    if len(names) == 1:
        return dataset / names[0]
    pick = [n for n in names if n.endswith(f"_{split}")]
    if len(pick) == 1:
        return dataset / pick[0]
    if not names:
        raise fmt.DatasetFormatError(
            f"{dataset}: no <name>_gt.npy (expected <name>_dbImages.npy, <name>_qImages.npy "
            "and <name>_gt.npy)")
    raise fmt.DatasetFormatError(
        f"{dataset}: several ground truths ({', '.join(n + '_gt.npy' for n in names)}); name "
        f"one as {dataset}/<name>")


def _load(path: Path, pickled: bool = False) -> np.ndarray:
    if not path.is_file():
        raise fmt.DatasetFormatError(f"{path} does not exist")
    try:
        return load_npy(path, allow_objects=pickled)
    except (ValueError, OSError, EOFError, pickle.UnpicklingError) as e:
        raise fmt.DatasetFormatError(f"{path}: not a readable .npy file ({e})") from None


def _image_list(path: Path) -> np.ndarray:
    paths = _load(path)
    if paths.ndim != 1 or paths.dtype.kind not in "US":
        raise fmt.DatasetFormatError(
            f"{path}: expected a 1-D array of image paths, got {paths.dtype} {paths.shape}")
    return paths.astype(str)


def read_ground_truth(path: Path, num_queries: int, num_database: int) -> list[np.ndarray]:
    """Per query its positives from `path`; one-line errors naming the file for a bad
    array, a count that is not the queries' or an index outside the database."""
    gt = _load(path, pickled=True)
    if gt.ndim == 0 or (gt.dtype != object and gt.ndim > 2):
        raise fmt.DatasetFormatError(
            f"{path}: expected per query a list of database indices, got {gt.dtype} "
            f"{gt.shape}")
    if len(gt) != num_queries:
        raise fmt.DatasetFormatError(
            f"{path}: {len(gt)} ground-truth lists but {num_queries} queries in the "
            "_qImages.npy beside it")
    out = []
    for q, entry in enumerate(gt):
        try:
            positives = np.asarray(entry, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise fmt.DatasetFormatError(
                f"{path}: entry {q} is not a list of integers ({entry!r:.60})") from None
        if len(positives) and (not np.all(positives == np.round(positives))
                               or positives.min() < 0 or positives.max() >= num_database):
            raise fmt.DatasetFormatError(
                f"{path}: entry {q} holds {positives.tolist()[:5]}, not indices of the "
                f"{num_database} database images")
        out.append(np.unique(positives.astype(np.int64)))
    return out


def check_images_exist(root: Path, relative, listed_in: Path) -> np.ndarray:
    """Absolute paths of `relative` under `root`; the error names the list, the first
    missing images and how many are missing."""
    paths = np.array([str(root / str(p).lstrip("/")) for p in relative], dtype=str)
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise fmt.DatasetFormatError(
            f"{listed_in}: {len(missing)} listed image(s) missing: {missing[0]}{more}")
    return paths


@READERS.register("npy_gt")
def read_npy_gt(data_cfg, dataset, split: str) -> Split:
    prefix = find_prefix(dataset, split)
    root, name = prefix.parent, prefix.name
    db_file, q_file, gt_file = (Path(f"{prefix}{s}") for s in SUFFIXES)
    db_rel, q_rel = _image_list(db_file), _image_list(q_file)
    for path, paths in ((db_file, db_rel), (q_file, q_rel)):
        if len(paths) == 0:
            raise fmt.DatasetFormatError(f"{path}: lists no image")
    positives = read_ground_truth(gt_file, len(q_rel), len(db_rel))
    database = plain_index(check_images_exist(root, db_rel, db_file))
    queries = plain_index(check_images_exist(root, q_rel, q_file))
    protocol = Protocol(name, split, f"ground truth {gt_file.name}", None, "all")
    qs = query_set(name, protocol, np.arange(len(queries)), positives)
    return Split(dataset=name, split=split, database=database, queries=queries,
                 soft_positives=list(qs.positives), hard_positives=None,
                 dropped_queries=np.array([], dtype=str), where=str(prefix),
                 query_sets=(qs,))
