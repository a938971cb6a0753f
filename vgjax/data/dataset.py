"""A dataset split as plain arrays: image paths, UTM coordinates and positives.

No mining, no behaviour flags: training and evaluation build what they need from these.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import os
from pathlib import Path

import numpy as np

from vgjax.data import format as fmt
from vgjax.data.positives import positives_within
from vgjax.data.protocol import QuerySet

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Index:
    """The images of one role (database or queries) of one split."""
    paths: np.ndarray      # (N,) str, sorted
    utm: np.ndarray        # (N, 2) float64 east, north in metres
    # (N,) str UTM zones ('17T', '17' or '' for unknown), parsed with the UTM by load_index;
    # None where the index was built otherwise (then `zone_labels` parses the file names)
    zones: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def zone_labels(self) -> np.ndarray:
        """The UTM zone of each image, '' where its file name has none."""
        if self.zones is not None:
            return self.zones
        return np.array([fmt.parse_zone(p) for p in self.paths], dtype=str)

    @property
    def notes(self) -> np.ndarray:
        """The file names' `note` field (e.g. day / sunset / night), '' where absent."""
        return np.array([fmt.parse_fields(p)["note"] for p in self.paths])


@dataclasses.dataclass(frozen=True)
class Split:
    """One split of a dataset: database, queries and their geographic positives."""
    dataset: str                       # dataset name (folder name)
    split: str                         # train | val | test
    database: Index
    queries: Index
    soft_positives: list[np.ndarray]   # per query, database indices within soft radius
    hard_positives: list[np.ndarray] | None  # per query within hard radius (train only)
    dropped_queries: np.ndarray        # paths of training queries dropped (no hard positive)
    where: str = ""                    # the split's folder (or copy), named in messages
    soft_dist: float = 25.0            # radius (m) of soft_positives
    hard_dist: float = 10.0            # radius (m) of hard_positives
    # the benchmark protocols that score this split, each with its queries and explicit
    # ground truth (vgjax.data.readers); () = the @UTM rule: every query, positives within
    # test.positive_dist metres
    query_sets: tuple[QuerySet, ...] = ()

    @property
    def name(self) -> str:
        """How messages name the split: its folder, else dataset/split."""
        return self.where or f"{self.dataset}/{self.split}"

    def summary(self) -> str:
        return (f"{self.dataset}/{self.split}: {len(self.database)} database images, "
                f"{len(self.queries)} queries")


def dataset_name(dataset_dir: str | os.PathLike) -> str:
    return Path(dataset_dir).resolve().name


def images_folder(dataset_dir: str | os.PathLike) -> Path:
    """`<dataset>/images`; raises DatasetFormatError naming the missing folder."""
    dataset_dir = Path(dataset_dir)
    if not dataset_dir.is_dir():
        raise fmt.DatasetFormatError(f"dataset folder {dataset_dir} does not exist")
    images = dataset_dir / "images"
    if not images.is_dir():
        raise fmt.DatasetFormatError(
            f"{images} does not exist: expected <dataset>/images/<split>/<database|queries>/")
    return images


def split_folder(dataset_dir: str | os.PathLike, split: str) -> Path:
    """`<dataset>/images/<split>`; raises DatasetFormatError naming the missing folder."""
    images = images_folder(dataset_dir)
    folder = images / split
    if not folder.is_dir():
        present = sorted(p.name for p in images.iterdir() if p.is_dir())
        raise fmt.DatasetFormatError(
            f"split folder {folder} does not exist (splits present: {present or 'none'})")
    return folder


def available_splits(dataset_dir: str | os.PathLike) -> list[str]:
    images = Path(dataset_dir) / "images"
    return [s for s in fmt.SPLITS if (images / s).is_dir()]


def present_splits(dataset_dir: str | os.PathLike) -> list[str]:
    """The split folders of a dataset; raises DatasetFormatError if there is none."""
    images = images_folder(dataset_dir)
    splits = available_splits(dataset_dir)
    if not splits:
        raise fmt.DatasetFormatError(
            f"{images} has no split folder (expected some of {', '.join(fmt.SPLITS)})")
    return splits


def load_index(folder: str | os.PathLike) -> Index:
    """Lists and parses one role folder; raises DatasetFormatError if missing or empty."""
    folder = Path(folder)
    if not folder.is_dir():
        raise fmt.DatasetFormatError(f"folder {folder} does not exist")
    paths = fmt.list_images(folder)
    if not paths:
        raise fmt.DatasetFormatError(
            f"{folder} holds no images (looked for {', '.join(fmt.IMAGE_EXTENSIONS)})")
    utm, zones = fmt.utm_and_zones(paths)
    index = Index(paths=np.array(paths), utm=utm, zones=zones)
    check_zones(str(folder), {folder.name: index})  # a folder mixing zones
    return index


def check_zones(where: str, indexes: dict[str, Index]) -> dict[str, int]:
    """`{zone: number of images}` over `indexes` (role -> Index; zone '' for the images whose
    file names carry none), the known zones most frequent first, unknown last.

    Raises a one-line DatasetFormatError naming `where`, each zone with its count and an
    example file, if the known zones differ: eastings and northings of two UTM zones are
    not comparable, so distances between them are meaningless. Only the zone number and
    the hemisphere matter: within one zone the band letter does not change the coordinates,
    except that bands C..M (south of the equator) count northings from a false origin
    10,000 km away, so 17M and 17N are refused, 17S and 17T accepted. Images without a zone
    are accepted beside images of one zone (taken to be in it; `inspect` reports both).
    """
    counts: collections.Counter = collections.Counter()
    examples: dict[str, str] = {}
    for role, index in indexes.items():
        labels = index.zone_labels
        values = labels.tolist()
        counts.update(values)
        for zone in set(values) - set(examples):
            i = int(np.flatnonzero(labels == zone)[0])
            examples[zone] = f"{role}/{os.path.basename(str(index.paths[i]))}"
    counts = dict(sorted(counts.items(), key=lambda kv: (kv[0] == "", -kv[1], kv[0])))
    known = [z for z in counts if z]
    numbers = {fmt.zone_number(z) for z in known}
    hemispheres = {fmt.zone_hemisphere(z) for z in known} - {None}
    if len(numbers) > 1 or len(hemispheres) > 1:
        found = ", ".join(f"{z or 'unknown'} ({n} image{'s' if n > 1 else ''}, e.g. "
                          f"{examples[z]})" for z, n in counts.items())
        south = (" (bands C..M lie south of the equator, where northings carry a "
                 "10,000 km false northing)" if len(hemispheres) > 1 else "")
        raise fmt.DatasetFormatError(
            f"{where}: images in different UTM zones: {found}{south}; eastings and northings "
            f"of two zones are not comparable, so distances across zones are meaningless: "
            f"re-project the coordinates in the file names to one zone (e.g. {known[0]})")
    return counts


def load_split(dataset_dir: str | os.PathLike, split: str,
               soft_dist: float = 25.0, hard_dist: float = 10.0) -> Split:
    """Reads `<dataset>/images/<split>/{database,queries}` and computes positives.

    For the train split, queries without a hard positive are dropped (and logged); for
    val/test, every query is kept and one without soft positives counts as a miss (logged;
    a warning if no query has one, see `check_evaluable`).
    """
    folder = split_folder(dataset_dir, split)
    return split_from_indexes(dataset_name(dataset_dir), split, load_index(folder / "database"),
                              load_index(folder / "queries"), soft_dist, hard_dist,
                              where=str(folder))


def split_from_indexes(dataset: str, split: str, database: Index, queries: Index,
                       soft_dist: float, hard_dist: float, where: str) -> Split:
    """Positives of `queries` in `database`; drops training queries without hard positive.

    `where` names the source (folder or copy) in errors. Raises DatasetFormatError, before
    any work, if the images lie in different UTM zones (`check_zones`), and if no training
    query has a hard positive; for val/test, logs how many queries have no soft positive
    (they count as misses) and warns if none has one.
    """
    zones = check_zones(where, {"database": database, "queries": queries})
    if "" in zones and len(zones) > 1:
        log.info("%s: %d of %d images carry no UTM zone in their file names; taken to be in "
                 "zone %s like the others", where, zones[""], len(database) + len(queries),
                 next(z for z in zones if z))
    hard = None
    dropped = np.array([], dtype=str)
    if split == "train":
        hard = positives_within(database.utm, queries.utm, hard_dist)
        keep = np.array([len(h) > 0 for h in hard], bool)
        if not keep.all():
            dropped = queries.paths[~keep]
            log.info("%s: dropped %d of %d training queries without a database image "
                     "within %g m", where, (~keep).sum(), len(keep), hard_dist)
            queries = Index(paths=queries.paths[keep], utm=queries.utm[keep],
                            zones=None if queries.zones is None else queries.zones[keep])
            hard = [h for h, k in zip(hard, keep) if k]
        if len(queries) == 0:
            raise fmt.DatasetFormatError(
                f"{where}: no training query has a database image within {hard_dist:g} m "
                f"(data.hard_positives_dist); check the UTM coordinates in the file names")
    soft = positives_within(database.utm, queries.utm, soft_dist)
    if split != "train":
        missing = sum(len(s) == 0 for s in soft)
        if missing == len(soft):
            log.warning("%s: no query has a database image within %g m "
                        "(data.soft_positives_dist): every query counts as a miss, "
                        "its recalls are 0", where, soft_dist)
        elif missing:
            log.info("%s: %d of %d queries have no database image within %g m; they count "
                     "as misses", where, missing, len(soft), soft_dist)
    return Split(dataset=dataset, split=split, database=database, queries=queries,
                 soft_positives=soft, hard_positives=hard, dropped_queries=dropped,
                 where=where, soft_dist=float(soft_dist), hard_dist=float(hard_dist))


def plain_index(paths) -> Index:
    """An Index of images whose file names carry no coordinates (the UTM is NaN, the zone
    unknown): their ground truth comes with the split's query sets."""
    paths = np.asarray(paths, dtype=str).reshape(-1)
    return Index(paths=paths, utm=np.full((len(paths), 2), np.nan),
                 zones=np.full(len(paths), "", dtype=str))


def check_evaluable(split: Split, purpose: str) -> None:
    """Raises DatasetFormatError naming the split if none of its queries has a database
    image within the soft-positive radius, so that every recall on it is 0.

    `purpose` completes "... : <purpose> would be meaningless", e.g.
    `check_evaluable(val, "early stopping on it")` for the validation split of training.
    """
    if split.query_sets:
        if not any(len(p) for qs in split.query_sets for p in qs.positives):
            raise fmt.DatasetFormatError(
                f"{split.name}: no query has a positive in its ground truth: {purpose} "
                "would be meaningless")
        return
    if not any(len(s) for s in split.soft_positives):
        raise fmt.DatasetFormatError(
            f"{split.name}: no query has a database image within {split.soft_dist:g} m: "
            f"{purpose} would be meaningless")
