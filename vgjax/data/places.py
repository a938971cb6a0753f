"""Training data read as *places*: each place is a set of images of the same spot.

Place batches (P places x K images each, the labels being the place indices) need to know
which images show one place. Two formats give that:

- `gsv_cities`, the GSV-Cities training set (`load_gsv_cities`):
  `<root>/Dataframes/<City>.csv`, one row per image with the columns
  `place_id,year,month,northdeg,city_id,lat,lon,panoid` (other columns, such as an unnamed
  index column, are ignored), and the images in `<root>/Images/<city_id>/`, named
  `<city_id>_<place_id:07d>_<year:04d>_<month:02d>_<northdeg:03d>_<lat>_<lon>_<panoid>.jpg`
  where `lat` and `lon` are written as Python writes the floats (`str(float(...))`).
- `folder`, a split of a standard @UTM folder (`places_from_folder`): its database and query
  images grouped into places by the UTM grid cell they lie in.

`PLACE_FORMATS` (the `data.format` option) opens either from the `data` section.
"""
from __future__ import annotations

import collections
import csv
import dataclasses
import logging
import math
import os
from pathlib import Path

import numpy as np

from vgjax.data import format as fmt
from vgjax.data.dataset import check_zones, dataset_name, load_index, split_folder
from vgjax.registry import Registry

log = logging.getLogger(__name__)

# The columns of a GSV-Cities dataframe, in the order of the published files.
GSV_COLUMNS = ("place_id", "year", "month", "northdeg", "city_id", "lat", "lon", "panoid")
GSV_MIN_IMAGES = 4  # GSV-Cities keeps the places depicted by at least 4 images


@dataclasses.dataclass(frozen=True)
class Places:
    """Images grouped into places, sorted by place and then path.

    `labels[i]` is the place index (0..P-1) of image i; `place_ids[labels[i]]` names it
    ('<city_id>/<place_id:07d>' for GSV-Cities, '<cell_m>m:<column>:<row>' for a folder).
    Metadata that a format does not carry is NaN (floats) or 0 (year, month)."""
    paths: np.ndarray      # (N,) str
    labels: np.ndarray     # (N,) int32 in 0..P-1
    place_ids: np.ndarray  # (P,) str
    cities: np.ndarray     # (N,) str: GSV-Cities city_id; a folder's dataset name
    latlon: np.ndarray     # (N, 2) float64 degrees
    headings: np.ndarray   # (N,) float64 degrees clockwise from north (GSV `northdeg`)
    years: np.ndarray      # (N,) int32
    months: np.ndarray     # (N,) int32
    utm: np.ndarray | None = None  # (N, 2) float64 east, north (folders only)
    where: str = ""        # the folder read, named in messages

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def num_places(self) -> int:
        return len(self.place_ids)

    def counts(self) -> np.ndarray:
        """(P,) number of images of each place."""
        return np.bincount(self.labels, minlength=self.num_places)

    def members(self) -> list[np.ndarray]:
        """Per place, the indices of its images (ascending)."""
        starts = np.concatenate([[0], np.cumsum(self.counts())])
        return [np.arange(starts[p], starts[p + 1]) for p in range(self.num_places)]

    def summary(self) -> str:
        counts = self.counts()
        return (f"{self.where}: {self.num_places} places, {len(self)} images "
                f"({counts.min() if len(counts) else 0}..{counts.max() if len(counts) else 0} "
                "per place)")


def _min_images_rule(where: str, keys: list, counts: dict, min_images: int, drop_small: bool,
                     name) -> set:
    """The keys of the places with fewer than `min_images` images: refused in one line
    naming the first such place and how many there are, or (`drop_small`) returned to be
    dropped, the count logged."""
    if min_images < 1:
        raise ValueError(f"min_images {min_images}: expected at least 1")
    small = [k for k in keys if counts[k] < min_images]
    if small and not drop_small:
        more = f" ({len(small)} places have fewer)" if len(small) > 1 else ""
        raise fmt.DatasetFormatError(
            f"{where}: {name(small[0])} has {counts[small[0]]} image(s), fewer than "
            f"min_images={min_images}{more}; drop them with drop_small=True")
    if small:
        log.info("%s: dropped %d of %d places with fewer than %d images (%d images)", where,
                 len(small), len(keys), min_images, sum(counts[k] for k in small))
    return set(small)


def _build(where: str, rows: list[tuple], keys: list, place_name, **arrays) -> Places:
    """Places from per-image `rows` of (key, path, index into `arrays`), keys in label order."""
    label_of = {k: i for i, k in enumerate(keys)}
    rows = sorted(((label_of[k], p, i) for k, p, i in rows if k in label_of))
    order = np.array([i for _, _, i in rows], np.int64)
    out = {name: (None if a is None else np.asarray(a)[order]) for name, a in arrays.items()}
    return Places(paths=np.array([p for _, p, _ in rows], dtype=str),
                  labels=np.array([lab for lab, _, _ in rows], np.int32),
                  place_ids=np.array([place_name(k) for k in keys], dtype=str),
                  where=where, **out)


# --------------------------------------------------------------------------------------------
# GSV-Cities
# --------------------------------------------------------------------------------------------
def gsv_image_name(city_id: str, place_id: int, year: int, month: int, northdeg: int,
                   lat: float, lon: float, panoid: str, ext: str = ".jpg") -> str:
    """The file name GSV-Cities gives an image (under `Images/<city_id>/`)."""
    return (f"{city_id}_{int(place_id):07d}_{int(year):04d}_{int(month):02d}_"
            f"{int(northdeg):03d}_{float(lat)}_{float(lon)}_{panoid}{ext}")


def _read_dataframe(path: Path) -> list[dict[str, str]]:
    """The rows of one city's CSV; refuses a header without the GSV-Cities columns."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise fmt.DatasetFormatError(f"{path}: empty file (expected the header "
                                         f"{','.join(GSV_COLUMNS)})")
        header = [h.strip() for h in header]
        missing = [c for c in GSV_COLUMNS if c not in header]
        if missing:
            raise fmt.DatasetFormatError(
                f"{path}: header {','.join(header)!r} lacks the column(s) "
                f"{', '.join(missing)} (expected {','.join(GSV_COLUMNS)})")
        at = {c: header.index(c) for c in GSV_COLUMNS}
        rows = []
        for line, values in enumerate(reader, 2):
            if not values:
                continue
            if len(values) < len(header):
                raise fmt.DatasetFormatError(
                    f"{path}:{line}: {len(values)} values, expected {len(header)}")
            rows.append({c: values[i].strip() for c, i in at.items()} | {"line": str(line)})
    return rows


def load_gsv_cities(root: str | os.PathLike, cities=None, min_images: int = GSV_MIN_IMAGES,
                    drop_small: bool = False) -> Places:
    """The places of a GSV-Cities folder: `<root>/Dataframes/<City>.csv` and
    `<root>/Images/<city_id>/<name>` (see the module docstring for the columns and names).

    `cities`: the CSV names to read (None: every `Dataframes/*.csv`, sorted). A place is the
    rows of one city with one `place_id` (the same id in two cities is two places); labels
    follow the cities in order, then the place ids ascending. Every listed image must exist:
    the error names the first missing files and how many are missing. The original loader
    (GSVCitiesDataset) silently keeps only the places depicted by at least 4 images
    (`min_img_per_place=4`); here a place with fewer than `min_images` images is refused in
    one line naming the city, the place and its count, unless `drop_small`, which drops
    such places and logs how many.
    """
    root = Path(root)
    frames = root / "Dataframes"
    if not frames.is_dir():
        raise fmt.DatasetFormatError(
            f"{frames} does not exist: expected <root>/Dataframes/<City>.csv and "
            "<root>/Images/<city_id>/ (GSV-Cities format)")
    present = sorted(p.stem for p in frames.glob("*.csv"))
    if cities is None:
        cities = present
    elif isinstance(cities, str):
        cities = [c for c in cities.split(",") if c]
    cities = list(cities)
    if not cities:
        raise fmt.DatasetFormatError(f"{frames} holds no <City>.csv")
    unknown = [c for c in cities if c not in present]
    if unknown:
        raise fmt.DatasetFormatError(
            f"{frames}: no {unknown[0]}.csv (cities present: {', '.join(present) or 'none'})")

    rows, missing, listed = [], [], {}
    meta = collections.defaultdict(list)
    for city in cities:
        csv_path = frames / f"{city}.csv"
        for r in _read_dataframe(csv_path):
            try:
                place = int(r["place_id"])
                year, month, north = int(r["year"]), int(r["month"]), int(float(r["northdeg"]))
                lat, lon = float(r["lat"]), float(r["lon"])
            except ValueError:
                raise fmt.DatasetFormatError(
                    f"{csv_path}:{r['line']}: place_id, year, month, northdeg, lat, lon must be "
                    f"numbers, got {[r[c] for c in GSV_COLUMNS[:4] + GSV_COLUMNS[5:7]]}"
                ) from None
            city_id = r["city_id"]
            folder = root / "Images" / city_id
            if folder not in listed:
                listed[folder] = set(os.listdir(folder)) if folder.is_dir() else set()
            names = [gsv_image_name(city_id, place, year, month, north, lat, lon,
                                    r["panoid"], ext) for ext in (".jpg", ".JPG")]
            # the CSV's own spelling of lat/lon, where it is not Python's
            names += [f"{city_id}_{place:07d}_{year:04d}_{month:02d}_{north:03d}_{r['lat']}_"
                      f"{r['lon']}_{r['panoid']}{ext}" for ext in (".jpg", ".JPG")]
            name = next((n for n in names if n in listed[folder]), None)
            if name is None:
                missing.append(str(folder / names[0]))
                continue
            i = len(meta["city"])
            meta["city"].append(city_id)
            meta["latlon"].append((lat, lon))
            meta["heading"].append(float(north))
            meta["year"].append(year)
            meta["month"].append(month)
            rows.append(((city, place), str(folder / name), i))
    if missing:
        shown = ", ".join(missing[:3])
        raise fmt.DatasetFormatError(
            f"{root}: {len(missing)} image(s) listed in Dataframes/ are missing: {shown}"
            f"{' ...' if len(missing) > 3 else ''}")
    counts = collections.Counter(k for k, _, _ in rows)
    keys = sorted(counts, key=lambda k: (cities.index(k[0]), k[1]))
    small = _min_images_rule(str(root), keys, counts, min_images, drop_small,
                             lambda k: f"city {k[0]} place {k[1]}")
    keys = [k for k in keys if k not in small]
    if not keys:
        raise fmt.DatasetFormatError(f"{root}: no place has at least {min_images} images")
    return _build(str(root), rows, keys, lambda k: f"{k[0]}/{k[1]:07d}",
                  cities=np.array(meta["city"], dtype=str),
                  latlon=np.array(meta["latlon"], np.float64).reshape(-1, 2),
                  headings=np.array(meta["heading"], np.float64),
                  years=np.array(meta["year"], np.int32),
                  months=np.array(meta["month"], np.int32))


# --------------------------------------------------------------------------------------------
# Standard @UTM folders
# --------------------------------------------------------------------------------------------
def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        return math.nan
    return value if math.isfinite(value) else math.nan


def places_from_folder(dataset_dir: str | os.PathLike, split: str = "train",
                       cell_m: float = 10.0, heading_bins: int = 0,
                       min_images: int = GSV_MIN_IMAGES, drop_small: bool = False) -> Places:
    """The database and query images of `<dataset_dir>/images/<split>` grouped into places.

    Rule: a place is a square UTM grid cell, `cell_m` metres wide, aligned on multiples of
    `cell_m` in easting and northing (image i is in cell (floor(east / cell_m),
    floor(north / cell_m))), every image of the cell whichever its role. With
    `heading_bins` > 0, each cell is further split by the heading field of the file names
    into that many equal sectors from north (then every image needs a heading). The rule
    depends on the coordinates alone, so it is deterministic and does not depend on the
    order of the files; labels follow the cells in (column, row, sector) order. A place with
    fewer than `min_images` images is refused in one line naming it and its count, unless
    `drop_small` (dropped, the count logged); cells cut places at their borders, so
    `drop_small=True` or a wider `cell_m` is usual on a sparse folder.
    """
    if not (cell_m > 0 and math.isfinite(cell_m)):
        raise ValueError(f"cell_m {cell_m}: expected a positive number of metres")
    if heading_bins < 0:
        raise ValueError(f"heading_bins {heading_bins}: expected 0 (off) or more")
    folder = split_folder(dataset_dir, split)
    indexes = {role: load_index(folder / role) for role in fmt.ROLES}
    check_zones(str(folder), indexes)
    paths = np.concatenate([indexes[r].paths for r in fmt.ROLES])
    utm = np.concatenate([indexes[r].utm for r in fmt.ROLES])
    fields = [fmt.parse_fields(p) for p in paths]
    headings = np.array([_number(f["heading"]) for f in fields], np.float64)
    cells = np.floor(utm / cell_m).astype(np.int64)
    sectors = np.zeros(len(paths), np.int64)
    if heading_bins:
        unknown = np.flatnonzero(np.isnan(headings))
        if len(unknown):
            raise fmt.DatasetFormatError(
                f"{folder}: heading_bins={heading_bins} needs the heading field, which "
                f"{len(unknown)} file name(s) lack, e.g. {os.path.basename(paths[unknown[0]])}")
        sectors = (np.floor((headings % 360.0) / (360.0 / heading_bins)).astype(np.int64)
                   % heading_bins)
    rows = [((int(c[0]), int(c[1]), int(s)), str(p), i)
            for i, (c, s, p) in enumerate(zip(cells, sectors, paths))]
    counts = collections.Counter(k for k, _, _ in rows)
    keys = sorted(counts)

    def name(k) -> str:
        return f"{cell_m:g}m:{k[0]}:{k[1]}" + (f":{k[2]}" if heading_bins else "")

    small = _min_images_rule(str(folder), keys, counts, min_images, drop_small,
                             lambda k: f"place {name(k)}")
    keys = [k for k in keys if k not in small]
    if not keys:
        raise fmt.DatasetFormatError(
            f"{folder}: no {cell_m:g} m cell holds {min_images} images (widen cell_m)")
    stamps = [f["timestamp"] for f in fields]
    years = [int(s[:4]) if s[:4].isdigit() else 0 for s in stamps]
    months = [int(s[4:6]) if s[4:6].isdigit() else 0 for s in stamps]
    return _build(str(folder), rows, keys, name,
                  cities=np.full(len(paths), dataset_name(dataset_dir)),
                  latlon=np.array([(_number(f["lat"]), _number(f["lon"])) for f in fields],
                                  np.float64).reshape(-1, 2),
                  headings=headings, years=np.array(years, np.int32),
                  months=np.array(months, np.int32), utm=utm)


# --------------------------------------------------------------------------------------------
# data.format
# --------------------------------------------------------------------------------------------
# `open(data_cfg, dataset, **options) -> Places`; options come from the spec, e.g.
# data.format = "folder(cell_m=15, drop_small=True)" or "gsv_cities(cities='London,Boston')".
PLACE_FORMATS = Registry("data.format", fixed=("data_cfg", "dataset"))


def _location(data_cfg, dataset) -> str:
    from vgjax.data.sources import folder_location  # the same name-or-path rule as sources
    return folder_location(data_cfg, dataset)


@PLACE_FORMATS.register("gsv_cities")
def _open_gsv_cities(data_cfg, dataset, cities=None, min_images: int = GSV_MIN_IMAGES,
                     drop_small: bool = False) -> Places:
    return load_gsv_cities(_location(data_cfg, dataset), cities, min_images, drop_small)


@PLACE_FORMATS.register("folder")
def _open_folder(data_cfg, dataset, split: str = "train", cell_m: float = 10.0,
                 heading_bins: int = 0, min_images: int = GSV_MIN_IMAGES,
                 drop_small: bool = False) -> Places:
    return places_from_folder(_location(data_cfg, dataset), split, cell_m, heading_bins,
                              min_images, drop_small)


def open_places(data_cfg, dataset=None) -> Places:
    """The places of `dataset` (default: `data.train_dataset`) read as `data.format` says."""
    dataset = data_cfg.train_dataset if dataset is None else dataset
    spec = PLACE_FORMATS.parse(data_cfg.get("format", "folder"))
    # called directly, so that a DatasetFormatError reaches the caller as it is
    return PLACE_FORMATS.get(spec.name)(data_cfg=data_cfg, dataset=dataset, **spec.kwargs)
