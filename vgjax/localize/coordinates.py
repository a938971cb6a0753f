"""Where each database photo was taken: a CSV, the @UTM file name or the EXIF GPS tags.

Sources, in order of precedence for each image:

1. `--database-coords CSV`: a header row, then one row per image. Accepted header names
   (case and surrounding spaces ignored): `path` (relative to the database folder) and
   either `lat`, `lon` (also `latitude`, `longitude`; degrees, WGS84) or `utm_east`,
   `utm_north` (also `east`, `north`; metres). Other columns are ignored.
2. The file name, in vgjax's standard `@utm_east@utm_north@...@.jpg` format
   (`vgjax.data.format`): UTM metres.
3. The photo's EXIF GPS tags (GPSLatitude / GPSLongitude with their N/S, E/W refs, as
   degrees, minutes, seconds rationals): degrees.

All database places must be in one system, `latlon` or `utm`, since the two cannot be
compared without a projection.
"""
from __future__ import annotations

import csv
import dataclasses
import math
import os
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from vgjax.data.format import DatasetFormatError, parse_utm

# system -> (column names in outputs, axis labels)
SYSTEMS: dict[str, tuple[str, str]] = {"latlon": ("lat", "lon"),
                                       "utm": ("utm_east", "utm_north")}
AXIS_LABELS = {"latlon": ("longitude (deg)", "latitude (deg)"),
               "utm": ("UTM east (m)", "UTM north (m)")}
CSV_PATH_COLUMN = "path"
# accepted CSV header pairs -> the system they give
CSV_COLUMNS: dict[tuple[str, str], str] = {("lat", "lon"): "latlon",
                                           ("latitude", "longitude"): "latlon",
                                           ("utm_east", "utm_north"): "utm",
                                           ("east", "north"): "utm"}
EXIF_GPS_IFD = 0x8825
# GPS IFD tags: latitude ref (N/S), latitude, longitude ref (E/W), longitude
GPS_LAT_REF, GPS_LAT, GPS_LON_REF, GPS_LON = 1, 2, 3, 4
EARTH_RADIUS_M = 6371008.8  # mean radius, for distances between lat/lon places


class CoordinatesError(ValueError):
    """Coordinates that cannot be read, or an image that has none; names the file."""


Place = tuple[str, float, float]  # (system, a, b): (lat, lon) or (east, north)


@dataclasses.dataclass(frozen=True)
class Places:
    """Coordinates of N images in one system; NaN rows where unknown.

    values: (N, 2) float64, (lat, lon) or (utm_east, utm_north); sources: per image, where
    its coordinates came from ('csv', 'name', 'exif', or '' when unknown).
    """
    system: str
    values: np.ndarray
    sources: tuple[str, ...]

    @property
    def columns(self) -> tuple[str, str]:
        return SYSTEMS[self.system]

    @property
    def known(self) -> np.ndarray:
        return np.isfinite(self.values).all(axis=1)


# Per-path sources ---------------------------------------------------------------------------

def place_from_name(path: str) -> Place | None:
    """UTM from a standard `@` file name; None for other names. A name that starts with
    `@` but whose east/north do not parse is an error naming the file."""
    if not os.path.basename(path).startswith("@"):
        return None
    try:
        east, north = parse_utm(path)
    except DatasetFormatError as e:
        raise CoordinatesError(f"{path}: file name: {e}") from None
    return "utm", east, north


def _degrees(dms, ref, positive: str, negative: str, path: str, what: str) -> float:
    try:
        parts = [float(v) for v in (dms if isinstance(dms, (tuple, list)) else (dms,))]
    except (TypeError, ValueError, ZeroDivisionError):
        raise CoordinatesError(f"{path}: EXIF GPS {what} {dms!r} is not a number") from None
    if not 1 <= len(parts) <= 3 or not all(math.isfinite(p) for p in parts):
        raise CoordinatesError(f"{path}: EXIF GPS {what} {dms!r} is not degrees, minutes, "
                               "seconds")
    value = sum(p / 60 ** i for i, p in enumerate(parts))
    ref = (ref.decode("ascii", "replace") if isinstance(ref, bytes) else str(ref or ""))
    ref = ref.strip("\x00 ").upper()
    if ref not in (positive, negative):
        raise CoordinatesError(f"{path}: EXIF GPS {what} reference {ref!r} is not "
                               f"{positive} or {negative}")
    return -value if ref == negative else value


def place_from_exif(path: str) -> Place | None:
    """(lat, lon) degrees from the EXIF GPS tags (Pillow's `getexif().get_ifd(0x8825)`);
    None when the image has no GPS position."""
    try:
        with Image.open(path) as img:
            gps = img.getexif().get_ifd(EXIF_GPS_IFD)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError):
        return None
    if GPS_LAT not in gps or GPS_LON not in gps:
        return None
    lat = _degrees(gps[GPS_LAT], gps.get(GPS_LAT_REF), "N", "S", path, "latitude")
    lon = _degrees(gps[GPS_LON], gps.get(GPS_LON_REF), "E", "W", path, "longitude")
    return "latlon", *_checked_latlon(lat, lon, f"{path}: EXIF GPS")


def _checked_latlon(lat: float, lon: float, where: str) -> tuple[float, float]:
    if not (math.isfinite(lat) and -90 <= lat <= 90):
        raise CoordinatesError(f"{where}: latitude {lat} is not within -90..90")
    if not (math.isfinite(lon) and -180 <= lon <= 180):
        raise CoordinatesError(f"{where}: longitude {lon} is not within -180..180")
    return lat, lon


# The CSV -------------------------------------------------------------------------------------

def read_coords_csv(csv_path: str | os.PathLike, folder: str | os.PathLike,
                    option: str = "--database-coords") -> dict[str, Place]:
    """{normalised image path: place} from a CSV whose paths are relative to `folder`."""
    where = f"{option} {csv_path}"
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except FileNotFoundError:
        raise CoordinatesError(f"{where}: no such file") from None
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise CoordinatesError(f"{where}: cannot be read ({e})") from None
    rows = [r for r in rows if any(c.strip() for c in r)]
    if not rows:
        raise CoordinatesError(f"{where}: empty (expected a header row: path,lat,lon or "
                               "path,utm_east,utm_north)")
    header = [c.strip().lower() for c in rows[0]]
    pairs = [(pair, system) for pair, system in CSV_COLUMNS.items()
             if pair[0] in header and pair[1] in header]
    accepted = "; ".join(f"{a},{b}" for a, b in CSV_COLUMNS)
    if CSV_PATH_COLUMN not in header or len(pairs) != 1:
        why = ("has several coordinate column pairs" if len(pairs) > 1
               else "has no accepted columns")
        raise CoordinatesError(f"{where}: header {','.join(rows[0])!r} {why}: expected a "
                               f"'{CSV_PATH_COLUMN}' column and one of: {accepted}")
    (col_a, col_b), system = pairs[0]
    ip, ia, ib = header.index(CSV_PATH_COLUMN), header.index(col_a), header.index(col_b)
    places: dict[str, Place] = {}
    for line, row in enumerate(rows[1:], start=2):
        if len(row) <= max(ip, ia, ib):
            raise CoordinatesError(f"{where}: line {line}: {len(row)} columns, the header "
                                   f"has {len(header)}")
        rel = row[ip].strip()
        try:
            a, b = float(row[ia]), float(row[ib])
        except ValueError:
            raise CoordinatesError(f"{where}: line {line}: {col_a}, {col_b} "
                                   f"{row[ia]!r}, {row[ib]!r} are not numbers") from None
        if system == "latlon":
            a, b = _checked_latlon(a, b, f"{where}: line {line}")
        elif not (math.isfinite(a) and math.isfinite(b)):
            raise CoordinatesError(f"{where}: line {line}: non-finite UTM {a}, {b}")
        key = os.path.normpath(os.path.join(folder, rel))
        if key in places:
            raise CoordinatesError(f"{where}: line {line}: {rel!r} is listed twice")
        places[key] = (system, a, b)
    return places


# All sources together ------------------------------------------------------------------------

PlaceSource = Callable[[str], "Place | None"]
# name -> per-path source, after the CSV, in order of precedence
PATH_SOURCES: dict[str, PlaceSource] = {"name": place_from_name, "exif": place_from_exif}


def _combine(paths: Sequence[str], found: Sequence[tuple[str, Place] | None],
             what: str) -> Places:
    """One Places from per-image (source, place) or None; the systems must agree."""
    first: dict[str, tuple[str, str]] = {}
    for p, f in zip(paths, found):
        if f is not None:
            first.setdefault(f[1][0], (p, f[0]))
    if len(first) > 1:
        (pa, sa), (pb, sb) = first["latlon"], first["utm"]
        raise CoordinatesError(
            f"{what}: coordinates mix lat/lon ({pa}, from its {sa}) and UTM ({pb}, from its "
            f"{sb}); give every image in one system with --database-coords")
    system = next(iter(first), "latlon")
    values = np.full((len(paths), 2), np.nan)
    sources = []
    for i, f in enumerate(found):
        if f is not None:
            values[i] = f[1][1:]
        sources.append("" if f is None else f[0])
    return Places(system, values, tuple(sources))


def database_places(paths: Sequence[str], folder: str | os.PathLike,
                    coords_csv: str | os.PathLike | None = None,
                    allow_missing: bool = False, what: str = "--database") -> Places:
    """Coordinates of every database image, from the first source that has them.

    Raises CoordinatesError naming the file for an image without coordinates (unless
    `allow_missing`: its row stays NaN), for CSV rows naming no database image, and for
    a mix of lat/lon and UTM.
    """
    table: Mapping[str, Place] = {}
    if coords_csv is not None:
        table = read_coords_csv(coords_csv, folder)
        known = {os.path.normpath(p) for p in paths}
        stray = [k for k in table if k not in known]
        if stray:
            raise CoordinatesError(
                f"--database-coords {coords_csv}: {len(stray)} row(s) name no image of "
                f"{what} {folder}, e.g. {os.path.relpath(stray[0], folder)!r}")
    found: list[tuple[str, Place] | None] = []
    for p in paths:
        hit = table.get(os.path.normpath(p))
        f = ("csv", hit) if hit is not None else None
        for name, source in PATH_SOURCES.items():
            if f is not None:
                break
            place = source(p)
            f = None if place is None else (name, place)
        if f is None and not allow_missing:
            raise CoordinatesError(
                f"{p}: no coordinates (not in --database-coords, no @UTM file name, no EXIF "
                "GPS position); pass --allow-missing-coords to keep it without a place")
        found.append(f)
    return _combine(paths, found, f"{what} {folder}")


def query_places(paths: Sequence[str], system: str) -> Places:
    """Where each query was taken, when its name or EXIF says so in `system` (else NaN):
    only used to report how far each prediction lands from it."""
    found: list[tuple[str, Place] | None] = []
    for p in paths:
        f = None
        for name, source in PATH_SOURCES.items():
            try:
                place = source(p)
            except CoordinatesError:
                place = None
            if place is not None and place[0] == system:
                f = (name, place)
                break
        found.append(f)
    values = np.full((len(paths), 2), np.nan)
    for i, f in enumerate(found):
        if f is not None:
            values[i] = f[1][1:]
    return Places(system, values, tuple("" if f is None else f[0] for f in found))


def metres_between(system: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Ground distances (m) between places a and b, (..., 2) each: Euclidean for UTM,
    great-circle (haversine) for lat/lon; NaN where either is unknown."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if system == "utm":
        return np.hypot(a[..., 0] - b[..., 0], a[..., 1] - b[..., 1])
    lat1, lon1, lat2, lon2 = (np.radians(x) for x in (a[..., 0], a[..., 1],
                                                        b[..., 0], b[..., 1]))
    h = (np.sin((lat2 - lat1) / 2) ** 2
         + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2)
    return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(h, 0, 1)))
