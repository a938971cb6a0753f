"""`python -m vgjax.data.inspect ROOT/NAME [--verify-images]`: check and summarise a dataset.

Per split: database/query counts, image sizes seen, queries without soft/hard positives,
UTM extent. Exits non-zero with a message naming the path and the reason when the folder
does not follow the standard format.
"""
from __future__ import annotations

import argparse
import collections
import concurrent.futures as cf
import json
import os
import sys
from pathlib import Path

import numpy as np

from vgjax.data import format as fmt
from vgjax.data.dataset import Index, images_folder, load_index, present_splits
from vgjax.data.pipeline import ImageError, load_image, image_size
from vgjax.data.positives import positives_within


def _sizes(paths: np.ndarray, workers: int, verify: bool) -> tuple[collections.Counter, list[str]]:
    """Counter of (H, W) over images (header only unless verify) and the unreadable ones."""
    sizes: collections.Counter = collections.Counter()
    bad: list[str] = []

    def read(p: str):
        try:
            return image_size(p) if not verify else load_image(p).shape[:2]
        except ImageError as e:
            return str(e)

    with cf.ThreadPoolExecutor(workers) as pool:
        for result in pool.map(read, paths, chunksize=64):
            if isinstance(result, str):
                bad.append(result)
            else:
                sizes[tuple(int(v) for v in result)] += 1
    return sizes, bad


def inspect_split(split_dir: Path, verify_images: bool, soft_dist: float, hard_dist: float,
                  workers: int) -> dict:
    """Summary of one split; raises DatasetFormatError / ImageError on problems."""
    for role in fmt.ROLES:
        if not (split_dir / role).is_dir():
            raise fmt.DatasetFormatError(f"{split_dir / role} does not exist "
                                         f"(each split needs {' and '.join(fmt.ROLES)})")
    indexes: dict[str, Index] = {role: load_index(split_dir / role) for role in fmt.ROLES}
    db, q = indexes["database"], indexes["queries"]
    summary: dict = {"database": len(db), "queries": len(q)}
    unreadable: list[str] = []
    for role, index in indexes.items():
        sizes, bad = _sizes(index.paths, workers, verify_images)
        summary[f"{role}_image_sizes"] = {f"{h}x{w}": n for (h, w), n in sizes.most_common()}
        unreadable += bad
    if unreadable:
        shown = "\n  ".join(unreadable[:10])
        more = f"\n  ... and {len(unreadable) - 10} more" if len(unreadable) > 10 else ""
        raise ImageError(f"{split_dir}: {len(unreadable)} unreadable or truncated image(s):\n"
                         f"  {shown}{more}")
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
    return {split: inspect_split(images / split, verify_images, soft_dist, hard_dist, workers)
            for split in present_splits(dataset_dir)}


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
                        help="decode every image fully (finds truncated/corrupt files)")
    parser.add_argument("--soft-dist", type=float, default=25.0)
    parser.add_argument("--hard-dist", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)
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
