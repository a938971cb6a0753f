"""`python -m vgjax.data.inspect ROOT/NAME [--verify-images]`: check and summarise a dataset.

Per split: database/query counts, image sizes seen, source image modes and how decoding
converts them to 8-bit RGB (e.g. 16-bit grayscale -> value >> 8), EXIF orientations (not
applied, like the reference), queries without soft/hard positives, UTM zones and extent.
Exits non-zero with a message naming the path and the reason when the folder does not follow
the standard format (a split whose images lie in different UTM zones included), or an image
is unreadable or in a mode that decoding refuses (see
`vgjax.data.pipeline.load_image`).
"""
from __future__ import annotations

import argparse
import collections
import concurrent.futures as cf
import dataclasses
import json
import os
import sys
from pathlib import Path

import numpy as np

from vgjax.data import format as fmt
from vgjax.data.dataset import Index, check_zones, images_folder, load_index, present_splits
from vgjax.data.pipeline import (CONVERSIONS, ImageError, UnsupportedImageError, image_info,
                                 load_image)
from vgjax.data.positives import positives_within


@dataclasses.dataclass
class _Scan:
    sizes: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    kinds: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    orientations: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    unreadable: list = dataclasses.field(default_factory=list)
    unsupported: list = dataclasses.field(default_factory=list)


def _scan(paths: np.ndarray, workers: int, verify: bool, into: _Scan) -> _Scan:
    """Counts (H, W), source kinds and EXIF orientations over images (header only unless
    verify) and collects the unreadable and the unsupported ones."""

    def read(p: str):
        try:
            info = image_info(p)
            return info, (load_image(p).shape[:2] if verify else (info.height, info.width))
        except ImageError as e:
            return e

    with cf.ThreadPoolExecutor(workers) as pool:
        for result in pool.map(read, paths, chunksize=64):
            if isinstance(result, UnsupportedImageError):
                into.unsupported.append(str(result))
            elif isinstance(result, ImageError):
                into.unreadable.append(str(result))
            else:
                info, hw = result
                into.sizes[tuple(int(v) for v in hw)] += 1
                into.kinds[info.kind] += 1
                if 2 <= info.exif_orientation <= 8:
                    into.orientations[info.exif_orientation] += 1
    return into


def _listing(what: str, items: list[str]) -> str:
    shown = "\n  ".join(items[:10])
    more = f"\n  ... and {len(items) - 10} more" if len(items) > 10 else ""
    return f"{len(items)} {what}:\n  {shown}{more}"


def load_indexes(split_dir: Path) -> tuple[dict[str, Index], dict[str, int]]:
    """(role -> Index, zone -> count) of one split, from the file names only; raises
    DatasetFormatError for a missing or empty role folder, bad names or mixed UTM zones."""
    for role in fmt.ROLES:
        if not (split_dir / role).is_dir():
            raise fmt.DatasetFormatError(f"{split_dir / role} does not exist "
                                         f"(each split needs {' and '.join(fmt.ROLES)})")
    indexes: dict[str, Index] = {role: load_index(split_dir / role) for role in fmt.ROLES}
    return indexes, check_zones(str(split_dir), indexes)


def inspect_split(split_dir: Path, verify_images: bool, soft_dist: float, hard_dist: float,
                  workers: int,
                  loaded: tuple[dict[str, Index], dict[str, int]] | None = None) -> dict:
    """Summary of one split; raises DatasetFormatError / ImageError on problems.

    `loaded`: what `load_indexes(split_dir)` returned, if it was called already."""
    indexes, zones = loaded or load_indexes(split_dir)
    db, q = indexes["database"], indexes["queries"]
    summary: dict = {"database": len(db), "queries": len(q),
                     "zones": {z or "unknown": n for z, n in zones.items()}}
    scan = _Scan()
    for role, index in indexes.items():
        scan.sizes = collections.Counter()
        _scan(index.paths, workers, verify_images, scan)
        summary[f"{role}_image_sizes"] = {f"{h}x{w}": n
                                          for (h, w), n in scan.sizes.most_common()}
    problems = []
    if scan.unreadable:
        problems.append(_listing("unreadable or truncated image(s)", scan.unreadable))
    if scan.unsupported:
        problems.append(_listing("image(s) in an unsupported mode", scan.unsupported))
    if problems:
        raise ImageError(f"{split_dir}: " + "\n".join(problems))
    summary["source_modes"] = dict(scan.kinds.most_common())
    summary["conversions"] = {kind: CONVERSIONS[kind] for kind in summary["source_modes"]
                              if CONVERSIONS[kind] is not None}
    summary["exif_orientations"] = {str(k): n for k, n in sorted(scan.orientations.items())}
    soft = positives_within(db.utm, q.utm, soft_dist)
    hard = positives_within(db.utm, q.utm, hard_dist)
    summary["queries_without_soft_positives"] = int(sum(len(s) == 0 for s in soft))
    summary["queries_without_hard_positives"] = int(sum(len(h) == 0 for h in hard))
    both = np.concatenate([db.utm, q.utm])
    summary["utm_extent"] = {"east": [float(both[:, 0].min()), float(both[:, 0].max())],
                             "north": [float(both[:, 1].min()), float(both[:, 1].max())]}
    notes = collections.Counter(q.notes.tolist())
    if set(notes) != {""}:
        summary["query_notes"] = dict(notes)
    return summary


def inspect_dataset(dataset_dir: str | os.PathLike, verify_images: bool = False,
                    soft_dist: float = 25.0, hard_dist: float = 10.0,
                    workers: int = 8) -> dict:
    images = images_folder(dataset_dir)
    # every split's names (and zones) are checked before any image is read
    loaded = {split: load_indexes(images / split) for split in present_splits(dataset_dir)}
    return {split: inspect_split(images / split, verify_images, soft_dist, hard_dist, workers,
                                 loaded[split])
            for split in loaded}


def _zones_line(zones: dict[str, int]) -> str:
    """'17T (all)', 'unknown', or each zone with its count ('17T (40), unknown (3)')."""
    if len(zones) == 1:
        zone = next(iter(zones))
        return zone if zone == "unknown" else f"{zone} (all)"
    return ", ".join(f"{z} ({n})" for z, n in zones.items())


def format_report(name: str, report: dict) -> str:
    lines = [f"dataset {name}"]
    for split, s in report.items():
        east, north = s["utm_extent"]["east"], s["utm_extent"]["north"]
        lines.append(
            f"  {split:5s}  database {s['database']:>8d}  queries {s['queries']:>7d}  "
            f"no soft positive {s['queries_without_soft_positives']:>5d}  "
            f"no hard positive {s['queries_without_hard_positives']:>5d}")
        for role in fmt.ROLES:
            sizes = ", ".join(f"{k} ({v})" for k, v in s[f"{role}_image_sizes"].items())
            lines.append(f"         {role} sizes: {sizes}")
        modes = ", ".join(f"{k} ({v})" for k, v in s.get("source_modes", {}).items())
        lines.append(f"         source modes: {modes}")
        for kind, conversion in s.get("conversions", {}).items():
            n = s["source_modes"][kind]
            lines.append(f"         {n} {'image is' if n == 1 else 'images are'} {kind}: "
                         f"{conversion}")
        if s.get("exif_orientations"):
            n = sum(s["exif_orientations"].values())
            tags = ", ".join(f"{k}: {v}" for k, v in s["exif_orientations"].items())
            lines.append(f"         {n} {'image carries' if n == 1 else 'images carry'} an "
                         f"EXIF orientation other than upright ({tags}): read as stored, "
                         f"unrotated, like the reference")
        if "zones" in s:
            lines.append(f"         zones: {_zones_line(s['zones'])}")
        lines.append(f"         UTM east {east[0]:.1f}..{east[1]:.1f} "
                     f"({east[1] - east[0]:.0f} m), north {north[0]:.1f}..{north[1]:.1f} "
                     f"({north[1] - north[0]:.0f} m)")
        if "query_notes" in s:
            lines.append("         query notes: " +
                         ", ".join(f"{k or '(none)'} {v}" for k, v in s["query_notes"].items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vgjax.data.inspect", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", help="dataset folder ROOT/NAME")
    parser.add_argument("--verify-images", action="store_true",
                        help="decode every image fully (finds truncated/corrupt files and "
                             "out-of-range float images)")
    parser.add_argument("--soft-dist", type=float, default=25.0)
    parser.add_argument("--hard-dist", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error(f"--workers {args.workers}: expected at least 1")
    for option, value in (("--soft-dist", args.soft_dist), ("--hard-dist", args.hard_dist)):
        if not value > 0 or value == float("inf"):  # NaN fails `> 0` too
            parser.error(f"{option} {value:g}: expected a positive distance in metres")
    if args.hard_dist > args.soft_dist:
        parser.error(f"--hard-dist {args.hard_dist:g} > --soft-dist {args.soft_dist:g}: hard "
                     "positives are the closer ones (expected hard <= soft)")
    if not Path(args.dataset).is_dir():  # a usage error; what is wrong in a dataset is a finding
        parser.error(f"{args.dataset}: {'not a folder' if Path(args.dataset).exists() else 'no such folder'}")
    try:
        report = inspect_dataset(args.dataset, args.verify_images, args.soft_dist,
                                 args.hard_dist, args.workers)
    except (fmt.DatasetFormatError, ImageError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=1) if args.json
          else format_report(Path(args.dataset).name, report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
