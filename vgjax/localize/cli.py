"""Where were these photos taken? Query photos matched against a folder of geotagged ones.

    python -m vgjax.localize --checkpoint RUN --database DIR [--database-coords CSV] \
        --queries DIR_OR_FILES... --out OUT [--top-k K] [--resize H W] [--batch-size N] \
        [--num-workers N] [--save-index F] [--index F] [--allow-missing-coords]

--checkpoint is a model dir, a checkpoint folder or a training run folder (vgjax.models.io).
Database coordinates come, per image, from --database-coords, else its @UTM file name, else
its EXIF GPS tags (vgjax.localize.coordinates). Every input is checked before any image is
described; an error is one line on stderr and exit status 2.

Writes OUT/predictions.csv (one row per query and rank), OUT/pictures/<query stem>.jpg and
OUT/map.png, and prints a JSON summary. --save-index F keeps the described database;
--index F searches it instead of --database (refused if another model made it).
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import ml_collections
import numpy as np

from vgjax.data.format import IMAGE_EXTENSIONS, list_images
from vgjax.data.pipeline import ImageError, check_image_files
from vgjax.eval.extract import Describer, extract_descriptors
from vgjax.eval.methods import ViewPlan
from vgjax.eval.store import store_factory
from vgjax.localize.coordinates import Places, database_places, query_places
from vgjax.localize.index import (INFO_FILE, DatabaseIndex, build_index, load_index,
                                  model_identity, require_faiss)
from vgjax.localize.map import save_map
from vgjax.localize.pictures import save_query_pictures
from vgjax.localize.predictions import Predictions, write_predictions_csv
from vgjax.models.backbones import check_input_size
from vgjax.models.io import ModelDirError, load_model, read_model_info
from vgjax.models.network import ARCH_DEFAULTS, build_network, make_describe_fn

PREDICTIONS_CSV, PICTURES, MAP = "predictions.csv", "pictures", "map.png"


@dataclasses.dataclass
class Plan:
    """Everything checked, nothing described yet."""
    checkpoint: str
    size: tuple[int, int]
    model: dict                          # model_identity(...)
    queries: list[str]
    out: Path
    database_paths: list[str] | None     # None: a saved index is searched
    database: Places | None
    saved: DatabaseIndex | None


def query_paths(items: list[str]) -> list[str]:
    """Image paths of --queries: folders (recursive, sorted) and single image files."""
    paths: list[str] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = list_images(p)
            if not found:
                raise FileNotFoundError(f"--queries {item}: no .jpg/.jpeg/.png images found")
            paths += found
        elif p.is_file():
            if not p.name.lower().endswith(IMAGE_EXTENSIONS):
                raise ValueError(f"--queries {item}: not a .jpg/.jpeg/.png image")
            paths.append(str(p))
        else:
            raise FileNotFoundError(f"--queries {item}: no such file or folder")
    return paths


def _check_out(out: Path, option: str = "--out") -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"{option} {out}: cannot create the folder "
                         f"({e.strerror or e})") from None
    if not os.access(out, os.W_OK):
        raise ValueError(f"{option} {out}: the folder is not writable")


def prepare(args) -> Plan:
    """Checks every input (raising one-line errors) before any image is described."""
    require_faiss()
    if args.index and (args.database or args.database_coords or args.allow_missing_coords):
        flag = "--database" if args.database else (
            "--database-coords" if args.database_coords else "--allow-missing-coords")
        raise ValueError(f"--index {args.index}: the saved index is the database; "
                         f"{flag} cannot be given with it")
    if args.index and args.save_index:
        raise ValueError("--save-index cannot be given with --index (the index is saved)")
    if not args.index and not args.database:
        raise ValueError("give --database DIR (or --index F saved by --save-index)")
    try:
        info = read_model_info(args.checkpoint)
    except ModelDirError as e:
        raise ModelDirError(f"--checkpoint {e}") from None
    size = tuple(args.resize) if args.resize else tuple(int(s) for s in info["image_size"])
    backbone = info["model"].get("backbone", ARCH_DEFAULTS["backbone"])
    check_input_size(backbone, size, "--resize" if args.resize else
                     f"the size stored with {args.checkpoint} ({size[0]} {size[1]})")
    model = model_identity(info["dir"], info["descriptor_dim"], size)
    out = Path(args.out)
    _check_out(out)
    if args.save_index:
        target = Path(args.save_index)
        if target.exists() and not (target.is_dir() and (
                (target / INFO_FILE).is_file() or not any(target.iterdir()))):
            raise ValueError(f"--save-index {target}: exists and is not an index folder "
                             "(give a new or empty folder, or an index to replace)")
    queries = query_paths(args.queries)
    saved = database = db_paths = None
    if args.index:
        saved = load_index(args.index, model)
    else:
        folder = Path(args.database)
        if not folder.is_dir():
            raise FileNotFoundError(f"--database {folder}: not a folder")
        db_paths = list_images(folder)
        if not db_paths:
            raise FileNotFoundError(f"--database {folder}: no .jpg/.jpeg/.png images found")
        check_image_files(db_paths, f"--database {folder}", args.num_workers)
        database = database_places(db_paths, folder, args.database_coords,
                                   args.allow_missing_coords)
    check_image_files(queries, "--queries", args.num_workers)
    return Plan(args.checkpoint, size, model, queries, out, db_paths, database, saved)


@functools.lru_cache(maxsize=2)
def describe_fn(model_json: str):
    """One jitted describe function per architecture (its JSON config): localizing again in
    the same process reuses its compilations."""
    return make_describe_fn(build_network(ml_collections.ConfigDict(json.loads(model_json))))


def describe(paths, describer, size, batch_size, num_workers, store_path=None,
             progress=None):
    """A DescriptorStore of `paths` (on disk at `store_path` if given): evaluation's
    extraction, database side."""
    store, _ = extract_descriptors(paths, describer, ViewPlan(sizes=(tuple(size),)),
                                   batch_size=batch_size, num_workers=num_workers,
                                   make_store=store_factory(path=store_path),
                                   progress=progress)
    return store


def localize(plan: Plan, top_k: int, batch_size: int = 32, num_workers: int = 8,
             save_index: str | None = None) -> tuple[Predictions, DatabaseIndex, dict]:
    """Describes (the database unless saved, then) the queries, searches, writes OUT."""
    timings = {}
    start = time.perf_counter()
    model_cfg, variables = load_model(plan.checkpoint)
    describer = Describer(describe_fn(json.dumps(model_cfg.to_dict(), sort_keys=True)),
                          variables)
    index = plan.saved
    if index is None:
        with tempfile.TemporaryDirectory(dir=plan.out, prefix=".database-") as tmp:
            store = describe(plan.database_paths, describer, plan.size, batch_size,
                             num_workers, Path(tmp) / "descriptors.npy", "database")
            try:
                index = build_index(store, [os.path.abspath(p) for p in plan.database_paths],
                                    plan.database, plan.model)
            finally:
                store.close()
        timings["database_s"] = round(time.perf_counter() - start, 2)
        if save_index:
            index.save(save_index)
    t = time.perf_counter()
    store = describe(plan.queries, describer, plan.size, batch_size, num_workers)
    try:
        distances, rows = index.search(store.read(), top_k)
    finally:
        store.close()
    timings["queries_s"] = round(time.perf_counter() - t, 2)
    preds = Predictions.from_search(plan.queries, distances, rows,
                                    query_places(plan.queries, index.places.system))
    write_predictions_csv(plan.out / PREDICTIONS_CSV, preds, index.paths, index.places)
    save_query_pictures(preds, index.paths, index.places, plan.out / PICTURES)
    save_map(preds, index.places, plan.out / MAP)
    return preds, index, timings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m vgjax.localize", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True,
                        help="model dir, checkpoint folder or training run folder")
    parser.add_argument("--database", help="folder of geotagged database photos (recursive)")
    parser.add_argument("--database-coords", metavar="CSV",
                        help="CSV with a header: path (relative to --database) and lat,lon "
                             "(or latitude,longitude) or utm_east,utm_north (or east,north)")
    parser.add_argument("--allow-missing-coords", action="store_true",
                        help="keep database photos without coordinates (their place is "
                             "left empty) instead of refusing them")
    parser.add_argument("--queries", nargs="+", required=True, metavar="DIR_OR_FILE",
                        help="query photos: folders (recursive) and/or image files")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--top-k", type=int, default=5, help="matches per query (default 5)")
    parser.add_argument("--resize", type=int, nargs=2, metavar=("H", "W"),
                        help="input size (default: the size stored with the model)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-workers", type=int, default=8, help="decoding threads")
    parser.add_argument("--save-index", metavar="F",
                        help="also save the described database as folder F")
    parser.add_argument("--index", metavar="F",
                        help="search the database saved by --save-index F (no --database)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    try:
        for option, value in (("--top-k", args.top_k), ("--batch-size", args.batch_size),
                              ("--num-workers", args.num_workers)):
            if value < 1:
                raise ValueError(f"{option} must be >= 1, got {value}")
        if args.resize and min(args.resize) < 1:
            raise ValueError(f"--resize must be positive, got {args.resize[0]} {args.resize[1]}")
        plan = prepare(args)
        preds, index, timings = localize(plan, args.top_k, args.batch_size,
                                         args.num_workers, args.save_index)
    except (FileNotFoundError, ValueError, ImageError, ImportError) as e:
        # ModelDirError, CoordinatesError and IndexFileError are ValueErrors
        print(f"error: {e}", file=sys.stderr)
        return 2
    top1 = preds.metres(index.places)[:, 0]
    summary = {"out": str(plan.out), "queries": len(preds.queries), "database": len(index),
               "top_k": preds.k, "system": index.places.system,
               "index": args.index or args.save_index,
               "queries_with_known_place": int(np.isfinite(top1).sum()),
               "median_top1_metres": (round(float(np.nanmedian(top1)), 1)
                                      if np.isfinite(top1).any() else None),
               **timings, "seconds": round(time.perf_counter() - start, 2)}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
