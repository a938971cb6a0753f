"""`msls`: Mapillary SLS validation (cities cph and sf), under two protocols, both reported:

    <msls>/train_val/<city>/{database,query}/
        postprocessed.csv   key, easting, northing (UTM, metres), night, view_direction, ...
        raw.csv             key, lon, lat, ca, captured_at, pano
        seq_info.csv        key, sequence_key, frame_number (not needed for single images)
        subtask_index.csv   optional: per row of postprocessed.csv, the subtasks ('all', ...)
        images/<key>.jpg
    <msls>/msls_val_{dbImages,qImages,qIdx,pIdx}.npy   optional: the subset lists

- `<name>` (the official rule of mapillary_sls, im2im, subtask all): panoramas (raw.csv
  `pano` true) are left out of the database and the queries; a query's positives are the
  database images of its city within 25 m (UTM); queries without any are not scored, as
  the official evaluation ignores them. Night images stay (`night` only weights training).
- `<name>_subset` (the lists of GSV-Cities and MixVPR, 740 queries on the published files):
  the queries `qImages[qIdx]`, their positives `pIdx` (indices into `dbImages`); every
  listed path, relative to `<msls>`, must be one of the official database or query images.
"""
from __future__ import annotations

import csv
import dataclasses
import logging
import pickle
from pathlib import Path

import numpy as np

from vgjax.data import format as fmt
from vgjax.data.dataset import Index, Split, dataset_name
from vgjax.data.positives import positives_within
from vgjax.data.protocol import Protocol, query_set, utm_protocol
from vgjax.data.readers import ENTRY_HINT, READERS
from vgjax.data.readers.npy_gt import check_images_exist
from vgjax.safe_npy import load_npy

log = logging.getLogger(__name__)

VAL_CITIES = ("cph", "sf")
MSLS_METRES = 25.0
ROLES = {"database": "database", "queries": "query"}
SUBSET = "msls_val"
SUBSET_FILES = ("dbImages", "qImages", "qIdx", "pIdx")
TRUE = ("true", "1", "1.0", "yes")


def _read_csv(path: Path, columns: tuple[str, ...]) -> list[dict[str, str]]:
    if not path.is_file():
        raise fmt.DatasetFormatError(f"{path} does not exist")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        missing = [c for c in columns if c not in header]
        if missing:
            raise fmt.DatasetFormatError(
                f"{path}: no column {', '.join(missing)} (header {','.join(header)!r})")
        rows = []
        for line, values in enumerate(reader, 2):
            if not values:
                continue
            if len(values) != len(header):
                raise fmt.DatasetFormatError(
                    f"{path}:{line}: {len(values)} values, expected {len(header)}")
            rows.append(dict(zip(header, (v.strip() for v in values))))
    return rows


@dataclasses.dataclass(frozen=True)
class _Role:
    paths: np.ndarray   # (N,) str absolute
    utm: np.ndarray     # (N, 2)


def read_role(folder: Path) -> _Role:
    """The non-panorama images of one city's `database/` or `query/` folder (subtask all)."""
    post = _read_csv(folder / "postprocessed.csv", ("key", "easting", "northing"))
    raw = _read_csv(folder / "raw.csv", ("key", "pano"))
    pano = {r["key"]: r["pano"].lower() in TRUE for r in raw}
    keep = [True] * len(post)
    subtasks = folder / "subtask_index.csv"
    if subtasks.is_file():
        rows = _read_csv(subtasks, ("all",))
        if len(rows) != len(post):
            raise fmt.DatasetFormatError(
                f"{subtasks}: {len(rows)} rows but {len(post)} in postprocessed.csv")
        keep = [r["all"].lower() in TRUE for r in rows]
    paths, utm = [], []
    for line, (row, kept) in enumerate(zip(post, keep), 2):
        if row["key"] not in pano:
            raise fmt.DatasetFormatError(
                f"{folder / 'raw.csv'}: no row for key {row['key']!r} of postprocessed.csv")
        if pano[row["key"]] or not kept:
            continue
        try:
            utm.append((float(row["easting"]), float(row["northing"])))
        except ValueError:
            raise fmt.DatasetFormatError(
                f"{folder / 'postprocessed.csv'}:{line}: easting/northing "
                f"{row['easting']!r}, {row['northing']!r} are not numbers") from None
        paths.append(str(folder / "images" / f"{row['key']}.jpg"))
    return _Role(np.array(paths, dtype=str), np.array(utm, np.float64).reshape(-1, 2))


def _subset(root: Path, name: str, split: str, db_paths: np.ndarray, q_paths: np.ndarray):
    """The `msls_val` lists as a query set over the official images, or None if absent."""
    files = {k: root / f"{SUBSET}_{k}.npy" for k in SUBSET_FILES}
    present = [k for k, f in files.items() if f.is_file()]
    if not present:
        log.info("%s: no %s_*.npy lists, only the official protocol is evaluated", root, SUBSET)
        return None
    if len(present) < len(files):
        absent = next(f for k, f in files.items() if k not in present)
        raise fmt.DatasetFormatError(f"{absent} does not exist (the {SUBSET} lists come as "
                                     f"{', '.join(f.name for f in files.values())})")
    arrays = {}
    for k, f in files.items():
        try:
            arrays[k] = load_npy(f, allow_objects=(k == "pIdx"))
        except (ValueError, OSError, EOFError, pickle.UnpicklingError) as e:
            raise fmt.DatasetFormatError(f"{f}: not a readable .npy file ({e})") from None
    db_rel, q_rel, q_idx, p_idx = (arrays[k] for k in SUBSET_FILES)
    for k in ("dbImages", "qImages"):
        if arrays[k].ndim != 1 or arrays[k].dtype.kind not in "US":
            raise fmt.DatasetFormatError(f"{files[k]}: expected a 1-D array of image paths")
    if q_idx.ndim != 1 or q_idx.dtype.kind not in "iu" or (
            len(q_idx) and (q_idx.min() < 0 or q_idx.max() >= len(q_rel))):
        raise fmt.DatasetFormatError(
            f"{files['qIdx']}: expected indices into the {len(q_rel)} paths of "
            f"{files['qImages'].name}")
    if len(p_idx) != len(q_idx):
        raise fmt.DatasetFormatError(
            f"{files['pIdx']}: {len(p_idx)} ground-truth lists but {len(q_idx)} queries in "
            f"{files['qIdx'].name}")

    def mapping(listed, official, file):
        where = {p: i for i, p in enumerate(official)}
        absolute = check_images_exist(root, listed, file)
        out = np.array([where.get(p, -1) for p in absolute], np.int64)
        if (out < 0).any():
            first = absolute[int(np.flatnonzero(out < 0)[0])]
            raise fmt.DatasetFormatError(
                f"{file}: {int((out < 0).sum())} image(s) are not official MSLS val images "
                f"(panoramas or another city?), e.g. {first}")
        return out

    db_of = mapping(db_rel, db_paths, files["dbImages"])
    q_of = mapping(q_rel[q_idx], q_paths, files["qImages"])
    positives = []
    for i, entry in enumerate(p_idx):
        p = np.asarray(entry).reshape(-1)
        if p.dtype.kind not in "iu" or (len(p) and (p.min() < 0 or p.max() >= len(db_rel))):
            raise fmt.DatasetFormatError(
                f"{files['pIdx']}: entry {i} is not a list of indices into the {len(db_rel)} "
                f"paths of {files['dbImages'].name}")
        positives.append(np.unique(db_of[p]))
    protocol = Protocol(name, split, f"ground truth {files['pIdx'].name}", None,
                        f"{len(q_idx)} of {files['qIdx'].name}")
    return query_set(f"{name}_subset", protocol, q_of, positives)


@READERS.register("msls")
def read_msls(data_cfg, dataset, split: str) -> Split:
    root = Path(dataset)
    if split != "val":
        raise fmt.DatasetFormatError(
            f"{root}: the msls format reads the val split (train_val/{{{','.join(VAL_CITIES)}}}"
            f"; the test cities have no public ground truth), asked for {split!r}{ENTRY_HINT}")
    cities = [c for c in VAL_CITIES if (root / "train_val" / c).is_dir()]
    if not cities:
        raise fmt.DatasetFormatError(
            f"{root / 'train_val'}: no val city folder ({', '.join(VAL_CITIES)})")
    if len(cities) < len(VAL_CITIES):
        log.warning("%s: only %s of the val cities %s are present", root, cities, VAL_CITIES)
    name = dataset_name(root)
    db_parts, q_parts, official_q, official_p = [], [], [], []
    n_db = n_q = 0
    for city in cities:
        db = read_role(root / "train_val" / city / ROLES["database"])
        q = read_role(root / "train_val" / city / ROLES["queries"])
        for role, part in ((ROLES["database"], db), (ROLES["queries"], q)):
            check_images_exist(Path("/"), part.paths,
                               root / "train_val" / city / role / "postprocessed.csv")
        for i, p in enumerate(positives_within(db.utm, q.utm, MSLS_METRES)):
            if len(p):   # the official evaluation scores only queries with a positive
                official_q.append(n_q + i)
                official_p.append(p + n_db)
        db_parts.append(db)
        q_parts.append(q)
        n_db, n_q = n_db + len(db.paths), n_q + len(q.paths)
    if n_db == 0 or n_q == 0:
        role = "database" if not n_db else "query"
        raise fmt.DatasetFormatError(f"{root}: no non-panorama {role} image in "
                                     f"{', '.join(cities)}")

    def index(parts):  # cities lie in different UTM zones: no zone, distances within a city
        return Index(paths=np.concatenate([p.paths for p in parts]),
                     utm=np.concatenate([p.utm for p in parts]),
                     zones=np.full(sum(len(p.paths) for p in parts), "", dtype=str))

    database, queries = index(db_parts), index(q_parts)
    official = query_set(name, utm_protocol(
        name, split, MSLS_METRES, f"with a positive ({len(official_q)} of {n_q})"),
        official_q, official_p)
    sets = [official]
    subset = _subset(root, name, split, database.paths, queries.paths)
    if subset is not None:
        sets.append(subset)
    soft = [np.zeros(0, np.int64)] * n_q
    for i, p in zip(official.queries, official.positives):
        soft[int(i)] = p
    return Split(dataset=name, split=split, database=database, queries=queries,
                 soft_positives=soft, hard_positives=None,
                 dropped_queries=np.array([], dtype=str), where=str(root),
                 soft_dist=MSLS_METRES, query_sets=tuple(sets))
