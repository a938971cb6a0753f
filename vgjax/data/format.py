"""The standard VG dataset folder format: `@`-separated labels in image file names.

`<root>/<name>/images/<split>/<role>/<file>` with file names
`@utm_east@utm_north@utm_zone_number@utm_zone_letter@lat@lon@pano_id@tile_num@heading@pitch@roll@height@timestamp@note@.jpg`.
Only east and north are required. Labels are read from the file name only, never the
full path, so an `@` inside a folder name is harmless.

The UTM zone (number 1..60 and latitude band letter C..X without I and O) is optional: both
fields empty means "unknown"; a number without a letter is accepted (the number is what makes
eastings comparable); a letter without a number, a number outside 1..60 or another letter is
refused naming the file (`parse_zone`, `utm_and_zones`).
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
SPLITS = ("train", "val", "test")
# UTM latitude bands, south to north: C..M lie south of the equator, N..X north of it
UTM_BANDS = "CDEFGHJKLMNPQRSTUVWX"
ROLES = ("database", "queries")
FIELDS = ("utm_east", "utm_north", "utm_zone_number", "utm_zone_letter", "lat", "lon",
          "pano_id", "tile_num", "heading", "pitch", "roll", "height", "timestamp", "note")


class DatasetFormatError(ValueError):
    """A dataset folder or file name does not follow the standard format."""


def parse_fields(filename: str | os.PathLike) -> dict[str, str]:
    """Returns the named `@` fields of a file name (empty fields as '')."""
    name = os.path.basename(os.fspath(filename))
    parts = name.split("@")
    if len(parts) < 4 or parts[0] != "":
        raise DatasetFormatError(
            f"{name!r}: expected '@utm_east@utm_north@...@.<ext>' (file name must start with '@')")
    values = parts[1:-1]  # the last part is the extension ('.jpg')
    return {field: (values[i] if i < len(values) else "") for i, field in enumerate(FIELDS)}


def parse_utm(filename: str | os.PathLike) -> tuple[float, float]:
    """UTM (east, north) in metres from a file name; raises DatasetFormatError."""
    return _utm_of(parse_fields(filename), filename)


def _utm_of(fields: dict[str, str], filename: str | os.PathLike) -> tuple[float, float]:
    try:
        east, north = float(fields["utm_east"]), float(fields["utm_north"])
    except ValueError:
        name = os.path.basename(os.fspath(filename))
        raise DatasetFormatError(
            f"{name!r}: UTM east/north fields {fields['utm_east']!r}, {fields['utm_north']!r} "
            "are not numbers") from None
    if not (math.isfinite(east) and math.isfinite(north)):
        raise DatasetFormatError(f"{os.path.basename(os.fspath(filename))!r}: non-finite UTM")
    return east, north


def _zone_of(fields: dict[str, str], filename: str | os.PathLike) -> str:
    number, letter = fields["utm_zone_number"].strip(), fields["utm_zone_letter"].strip()
    if not number and not letter:
        return ""
    name = os.path.basename(os.fspath(filename))
    if not number:
        raise DatasetFormatError(
            f"{name!r}: UTM zone letter {letter!r} without a zone number")
    if not (number.isascii() and number.isdigit() and 1 <= int(number) <= 60):
        raise DatasetFormatError(
            f"{name!r}: UTM zone number {number!r} is not an integer from 1 to 60")
    if letter and not (len(letter) == 1 and letter.upper() in UTM_BANDS):
        raise DatasetFormatError(
            f"{name!r}: UTM zone letter {letter!r} is not a latitude band "
            f"({UTM_BANDS[0]}..{UTM_BANDS[-1]} without I and O)")
    return f"{int(number)}{letter.upper()}"


def parse_zone(filename: str | os.PathLike) -> str:
    """The UTM zone of a file name: '17T' (number and band), '17' (number only) or '' (both
    fields empty: unknown); raises DatasetFormatError naming the file."""
    return _zone_of(parse_fields(filename), filename)


def zone_number(zone: str) -> int | None:
    """17 for '17T' or '17'; None for '' (unknown)."""
    digits = zone.rstrip(UTM_BANDS)
    return int(digits) if digits else None


def zone_hemisphere(zone: str) -> str | None:
    """'N' or 'S' from the band letter of a zone ('17T' -> 'N', '23K' -> 'S'); None without
    a letter."""
    if not zone or not zone[-1].isalpha():
        return None
    return "S" if zone[-1] <= "M" else "N"


def make_filename(east: float, north: float, ext: str = ".jpg", **fields: object) -> str:
    """Builds a standard file name; east/north zero-padded with two decimals."""
    unknown = set(fields) - set(FIELDS[2:])
    if unknown:
        raise ValueError(f"unknown file-name fields: {sorted(unknown)}")
    values = [f"{east:010.2f}", f"{north:010.2f}"]
    values += ["" if fields.get(f) is None else str(fields[f]) for f in FIELDS[2:]]
    if any("@" in v or "/" in v or os.sep in v for v in values):
        raise ValueError("file-name fields may not contain '@' or a path separator")
    return "@" + "@".join(values) + "@" + ext


def list_images(folder: str | os.PathLike) -> list[str]:
    """Sorted image paths below `folder` (recursive; .jpg/.jpeg/.png, any case).

    If `<folder>_images_paths.txt` exists beside the folder, it is read instead of walking
    the tree (one path per line, absolute or relative to `folder`).
    """
    folder = Path(folder)
    listing = folder.parent / f"{folder.name}_images_paths.txt"
    if listing.is_file():
        paths = []
        for line in listing.read_text().splitlines():
            line = line.strip()
            if not line:
                continue
            paths.append(str(folder / line))  # an absolute line stays absolute
        return sorted(paths)
    found = []
    for dirpath, _, filenames in os.walk(folder, followlinks=True):
        for f in filenames:
            if f.lower().endswith(IMAGE_EXTENSIONS):
                found.append(os.path.join(dirpath, f))
    return sorted(found)


def _bad_names(bad: list[tuple[str, str]]) -> DatasetFormatError:
    shown = "\n  ".join(f"{p}: {msg}" for p, msg in bad[:5])
    more = f"\n  ... and {len(bad) - 5} more" if len(bad) > 5 else ""
    return DatasetFormatError(
        f"{len(bad)} file name(s) without parseable UTM fields:\n  {shown}{more}")


def utm_and_zones(paths: Sequence[str]):
    """((N, 2) float64 UTM, (N,) str zones as `parse_zone` gives them) of paths, each name
    parsed once; the error names the first files whose UTM or zone fields are bad."""
    import numpy as np

    utm = np.empty((len(paths), 2), np.float64)
    zones = []
    bad = []
    for i, p in enumerate(paths):
        try:
            fields = parse_fields(p)
            utm[i] = _utm_of(fields, p)
            zones.append(_zone_of(fields, p))
        except DatasetFormatError as e:
            bad.append((p, str(e)))
    if bad:
        raise _bad_names(bad)
    return utm, np.array(zones, dtype=str)


def utm_array(paths: Sequence[str]):
    """(N, 2) float64 UTM of paths; the error names the first bad files."""
    import numpy as np

    utm = np.empty((len(paths), 2), np.float64)
    bad = []
    for i, p in enumerate(paths):
        try:
            utm[i] = parse_utm(p)
        except DatasetFormatError as e:
            bad.append((p, str(e)))
    if bad:
        raise _bad_names(bad)
    return utm
