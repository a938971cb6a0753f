"""Global descriptors and retrieval pairs in the files of hloc (Hierarchical-Localization).

    python -m vgjax.export hloc --checkpoint RUN --images DIR --out OUT [--num-matched K]
        [--query-prefix P ... | --query-list F] [--db-prefix P ... | --db-list F]
        [--min-score S] [--as-half] [--resize H W] [--batch-size N] [--num-workers N]

Writes, as hloc's `extract_features` and `pairs_from_retrieval` do for a global model:
- `OUT/global-feats.h5`: one group per image, named by its path relative to DIR with '/'
  kept (nested groups), holding `global_descriptor` (D,) float32 (float16 with --as-half)
  and `image_size` (W, H) int64, the size of the image as hloc reads it (EXIF orientation
  applied);
- `OUT/pairs-from-retrieval.txt`: one "query db" line per pair, per query its K most
  similar database images by inner product, best first, never itself, none scoring below
  --min-score (hloc's 0; `--min-score=-inf` keeps all).
Queries and database are every image, or those whose name starts with one of the prefixes,
or those a list file names (one name per line, '#' comments). Every image is described once.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from vgjax.data.pipeline import ImageError, image_info
from vgjax.describe import check_folder, describe_paths
from vgjax.export.pairs import read_name_list, retrieval_pairs, select_names
from vgjax.models.io import load_model

FEATURES_FILE = "global-feats.h5"
PAIRS_FILE = "pairs-from-retrieval.txt"
DESCRIPTOR_KEY = "global_descriptor"
SIZE_KEY = "image_size"
ROTATED = (5, 6, 7, 8)  # EXIF orientations that swap width and height


def image_names(paths: Sequence[str], images: str | os.PathLike) -> list[str]:
    """Names of `paths` relative to the folder `images`, with '/' separators; raises
    ValueError for a path outside it (from a `<folder>_images_paths.txt` listing)."""
    names = []
    for p in paths:
        rel = os.path.relpath(p, images)
        if rel == os.pardir or rel.startswith(os.pardir + os.sep) or os.path.isabs(rel):
            raise ValueError(f"--images {images}: {p} is outside the folder, so it has no "
                             "name relative to it")
        names.append(Path(rel).as_posix())
    return names


def stored_size(path: str) -> np.ndarray:
    """(W, H) int64 of the image as hloc reads it (OpenCV applies the EXIF orientation)."""
    info = image_info(path)
    w, h = info.width, info.height
    if info.exif_orientation in ROTATED:
        w, h = h, w
    return np.array([w, h], np.int64)


def write_features(path: str | os.PathLike, names: Sequence[str], descriptors: np.ndarray,
                   sizes: Sequence[np.ndarray], as_half: bool = False) -> None:
    """hloc's feature file: `fd[name]["global_descriptor"]`, `fd[name]["image_size"]`.
    Written beside `path` and renamed over it, so a stopped export leaves no partial file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    dtype = np.float16 if as_half else np.float32
    with h5py.File(tmp, "w", libver="latest") as fd:
        for name, desc, size in zip(names, descriptors, sizes):
            group = fd.create_group(name)
            group.create_dataset(DESCRIPTOR_KEY, data=np.asarray(desc, dtype))
            group.create_dataset(SIZE_KEY, data=np.asarray(size, np.int64))
    os.replace(tmp, path)


def write_pairs(path: str | os.PathLike, pairs: Sequence[tuple[str, str]]) -> None:
    """One "query db" line per pair (hloc writes no newline after the last one)."""
    Path(path).write_text("\n".join(f"{q} {d}" for q, d in pairs))


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True,
                        help="model dir, checkpoint folder or training run folder")
    parser.add_argument("--images", required=True, help="folder of images (recursive)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--num-matched", type=int, default=10, metavar="K",
                        help="database images per query (default 10)")
    for side, what in (("query", "queries"), ("db", "database images")):
        group = parser.add_mutually_exclusive_group()
        group.add_argument(f"--{side}-prefix", nargs="+", metavar="P",
                           help=f"{what}: the names starting with one of these")
        group.add_argument(f"--{side}-list", metavar="FILE",
                           help=f"{what}: the names in this file, one a line")
    parser.add_argument("--min-score", type=float, default=0.0,
                        help="drop pairs of lower similarity (default 0, as hloc; "
                             "--min-score=-inf keeps all)")
    parser.add_argument("--as-half", action="store_true",
                        help="store descriptors as float16 (hloc's as_half)")
    parser.add_argument("--resize", type=int, nargs=2, metavar=("H", "W"),
                        help="input size (default: the size stored with the model)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-workers", type=int, default=8, help="decoding threads")
    return parser


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Path:
    if args.num_matched < 1:
        parser.error(f"--num-matched must be >= 1, got {args.num_matched}")
    if args.batch_size < 1:
        parser.error(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.num_workers < 1:
        parser.error(f"--num-workers must be >= 1, got {args.num_workers}")
    if args.resize and min(args.resize) < 1:
        parser.error(f"--resize must be positive, got {args.resize}")
    for side in ("query", "db"):
        listed = getattr(args, f"{side}_list")
        if listed is not None and not Path(listed).is_file():
            parser.error(f"--{side}-list {listed}: no such file")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        parser.error(f"--out {out}: is a file, expected a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        parser.error(f"--out {out}: cannot create it ({e.strerror or e})")
    if not os.access(out, os.W_OK):
        parser.error(f"--out {out}: not writable")
    return out


def main(argv=None, prog: str = "python -m vgjax.export hloc") -> int:
    parser = _parser(prog)
    args = parser.parse_args(argv)
    out = _check_args(parser, args)
    start = time.perf_counter()
    try:
        paths, size = check_folder(args.checkpoint, args.images, args.resize,
                                   args.num_workers)
        names = image_names(paths, args.images)
        lists = {side: read_name_list(f) if f else None
                 for side, f in (("query", args.query_list), ("db", args.db_list))}
        query_names = select_names(names, args.query_prefix, lists["query"], "query")
        db_names = select_names(names, args.db_prefix, lists["db"], "db")
        sizes = [stored_size(p) for p in paths]
    except (FileNotFoundError, ValueError, ImageError) as e:  # ModelDirError is a ValueError
        print(f"error: {e}", file=sys.stderr)
        return 2
    model_cfg, variables = load_model(args.checkpoint)
    desc = describe_paths(model_cfg, variables, paths, size, args.batch_size,
                          args.num_workers)
    described = time.perf_counter() - start
    features = out / FEATURES_FILE
    write_features(features, names, desc, sizes, args.as_half)
    stored = desc.astype(np.float16).astype(np.float32) if args.as_half else desc
    row = {n: i for i, n in enumerate(names)}
    pairs = retrieval_pairs(stored[[row[n] for n in query_names]],
                            stored[[row[n] for n in db_names]], query_names, db_names,
                            args.num_matched, args.min_score)
    write_pairs(out / PAIRS_FILE, pairs)
    print(json.dumps({"features": str(features), "pairs": str(out / PAIRS_FILE),
                      "images": len(names), "queries": len(query_names),
                      "database": len(db_names), "num_pairs": len(pairs),
                      "descriptor_dim": int(desc.shape[1]),
                      "seconds": round(time.perf_counter() - start, 2),
                      "images_per_s": round(len(names) / max(described, 1e-9), 1)}))
    return 0
