"""The synthetic city in the layouts of the benchmarks (`--format msls|nordland|npy_gt|sped|
stlucia|svox`), each read back by its evaluation reader (`vgjax.data.readers`).

Each writer lays out one rendered @UTM split (`<split>/{database,queries}`, pitts30k's by
default) in a benchmark's files, copying its images:

- `npy_gt`: `<out>/npy-gt/{ref,query}/<i>.jpg` and `synthcity_{dbImages,qImages,gt}.npy`
  (positives within 25 m);
- `msls`: `<out>/msls/train_val/{cph,sf}/{database,query}/` (the area cut in two at the
  database's median easting), with `postprocessed.csv`, `raw.csv` (one database image in
  7 and one query in 5 marked as panoramas), `seq_info.csv`, `subtask_index.csv`,
  `images/<key>.jpg`, and the subset lists `<out>/msls/msls_val_{dbImages,qImages,qIdx,
  pIdx}.npy` (every other query that has a positive);
- `nordland`: `<out>/nordland/images/test/{database,queries}`, the database images as
  frames 0..N-1 in file order, each query given the frame of its nearest database image;
- `sped`, `stlucia`: the split copied to `<out>/sped/images/test`, `<out>/st_lucia/...`;
- `svox`: `<out>/svox/images/test/gallery` and the queries dealt in turn to
  `queries_{night,overcast,rain,snow,sun}`.
"""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np

from vgjax.data import format as fmt
from vgjax.data.dataset import load_index
from vgjax.data.positives import positives_within
from vgjax.data.readers.folders import SVOX_CONDITIONS
from vgjax.data.readers.msls import SUBSET, VAL_CITIES
from vgjax.data.readers.nordland import TOLERANCES
from vgjax.registry import Registry

WRITERS = Registry("--format", fixed=("source", "out_root"))
METRES = 25.0
NPY_NAME = "synthcity"
# where each writer puts its dataset under --out, and the split of the city it lays out
FOLDERS = {"npy_gt": "npy-gt", "msls": "msls", "nordland": "nordland", "sped": "sped",
           "stlucia": "st_lucia", "svox": "svox"}
SOURCE_SPLIT = {"msls": "val"}  # the others: test


def _fresh(folder: Path, overwrite: bool) -> Path:
    if folder.exists():
        if not overwrite:
            raise FileExistsError(f"{folder} already exists; pass overwrite=True "
                                  "(--overwrite) to replace it")
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder


def _copy(src: str, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)


def _roles(source: Path):
    return load_index(source / "database"), load_index(source / "queries")


def _object_array(lists) -> np.ndarray:
    out = np.empty(len(lists), dtype=object)
    for i, x in enumerate(lists):
        out[i] = np.asarray(x, np.int64)
    return out


@WRITERS.register("npy_gt")
def write_npy_gt(source, out_root, overwrite: bool = False) -> dict:
    top = _fresh(Path(out_root) / FOLDERS["npy_gt"], overwrite)
    db, q = _roles(Path(source))
    db_rel = [f"ref/{i:05d}.jpg" for i in range(len(db))]
    q_rel = [f"query/{i:05d}.jpg" for i in range(len(q))]
    for paths, rel in ((db.paths, db_rel), (q.paths, q_rel)):
        for src, r in zip(paths, rel):
            _copy(src, top / r)
    gt = positives_within(db.utm, q.utm, METRES)
    np.save(top / f"{NPY_NAME}_dbImages.npy", np.array(db_rel))
    np.save(top / f"{NPY_NAME}_qImages.npy", np.array(q_rel))
    np.save(top / f"{NPY_NAME}_gt.npy", _object_array(gt), allow_pickle=True)
    return {"folder": str(top), "database": len(db), "queries": len(q)}


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["", *header])   # pandas' unnamed index column, as the published files
        for i, row in enumerate(rows):
            w.writerow([i, *row])


@WRITERS.register("msls")
def write_msls(source, out_root, overwrite: bool = False) -> dict:
    top = _fresh(Path(out_root) / FOLDERS["msls"], overwrite)
    db, q = _roles(Path(source))
    cut = float(np.median(db.utm[:, 0]))
    listed = {"database": [], "query": []}      # non-panorama (relative path, utm) in order
    counts = {}
    for role, index, pano_every in (("database", db, 7), ("query", q, 5)):
        for c, city in enumerate(VAL_CITIES):
            mine = np.flatnonzero((index.utm[:, 0] < cut) == (c == 0))
            folder = top / "train_val" / city / role
            (folder / "images").mkdir(parents=True)
            post, raw, seq, sub = [], [], [], []
            for n, i in enumerate(mine):
                key = f"{city}{role[0]}{int(i):06d}"
                _copy(index.paths[i], folder / "images" / f"{key}.jpg")
                night = fmt.parse_fields(index.paths[i])["note"].startswith("night")
                pano = (n % pano_every) == pano_every - 1
                east, north = index.utm[i]
                post.append([key, f"{east:.3f}", f"{north:.3f}", night, "Forward", 0])
                raw.append([key, 0.0, 0.0, 0.0, 0, pano])
                seq.append([key, f"{city}{role}", n])
                sub.append([True])
                if not pano:
                    listed[role].append((f"train_val/{city}/{role}/images/{key}.jpg",
                                         index.utm[i]))
            _write_csv(folder / "postprocessed.csv", ["key", "easting", "northing", "night",
                                                      "view_direction", "unique_cluster"], post)
            _write_csv(folder / "raw.csv", ["key", "lon", "lat", "ca", "captured_at", "pano"],
                       raw)
            _write_csv(folder / "seq_info.csv", ["key", "sequence_key", "frame_number"], seq)
            _write_csv(folder / "subtask_index.csv", ["all"], sub)
            counts[f"{city}/{role}"] = len(mine)
    db_rel = [p for p, _ in listed["database"]]
    q_rel = [p for p, _ in listed["query"]]
    db_utm = np.array([u for _, u in listed["database"]]).reshape(-1, 2)
    q_utm = np.array([u for _, u in listed["query"]]).reshape(-1, 2)
    db_city = np.array([p.split("/")[1] for p in db_rel])
    q_city = np.array([p.split("/")[1] for p in q_rel])
    positives = []
    for j in range(len(q_rel)):   # positives within a city, as the official rule
        same = np.flatnonzero(db_city == q_city[j])
        near = positives_within(db_utm[same], q_utm[j:j + 1], METRES)[0]
        positives.append(same[near])
    with_positive = [j for j, p in enumerate(positives) if len(p)]
    q_idx = np.array(with_positive[::2], np.int64)
    np.save(top / f"{SUBSET}_dbImages.npy", np.array(db_rel))
    np.save(top / f"{SUBSET}_qImages.npy", np.array(q_rel))
    np.save(top / f"{SUBSET}_qIdx.npy", q_idx)
    np.save(top / f"{SUBSET}_pIdx.npy", _object_array([positives[j] for j in q_idx]),
            allow_pickle=True)
    return {"folder": str(top), "images": counts, "subset_queries": int(len(q_idx))}


def _copy_split(source: Path, folder: Path, database: str = "database") -> tuple[int, int]:
    db, q = _roles(source)
    for p in db.paths:
        _copy(p, folder / database / Path(p).name)
    for p in q.paths:
        _copy(p, folder / "queries" / Path(p).name)
    return len(db), len(q)


@WRITERS.register("sped")
def write_sped(source, out_root, overwrite: bool = False) -> dict:
    top = _fresh(Path(out_root) / FOLDERS["sped"], overwrite)
    n_db, n_q = _copy_split(Path(source), top / "images" / "test")
    return {"folder": str(top), "database": n_db, "queries": n_q}


@WRITERS.register("stlucia")
def write_stlucia(source, out_root, overwrite: bool = False) -> dict:
    top = _fresh(Path(out_root) / FOLDERS["stlucia"], overwrite)
    n_db, n_q = _copy_split(Path(source), top / "images" / "test")
    return {"folder": str(top), "database": n_db, "queries": n_q}


@WRITERS.register("svox")
def write_svox(source, out_root, overwrite: bool = False) -> dict:
    top = _fresh(Path(out_root) / FOLDERS["svox"], overwrite)
    folder = top / "images" / "test"
    db, q = _roles(Path(source))
    for p in db.paths:
        _copy(p, folder / "gallery" / Path(p).name)
    counts = dict.fromkeys(SVOX_CONDITIONS, 0)
    for j, p in enumerate(q.paths):
        condition = SVOX_CONDITIONS[j % len(SVOX_CONDITIONS)]
        _copy(p, folder / f"queries_{condition}" / Path(p).name)
        counts[condition] += 1
    return {"folder": str(top), "database": len(db), "queries": counts}


@WRITERS.register("nordland")
def write_nordland(source, out_root, overwrite: bool = False) -> dict:
    top = _fresh(Path(out_root) / FOLDERS["nordland"], overwrite)
    folder = top / "images" / "test"
    db, q = _roles(Path(source))
    step = METRES / (max(TOLERANCES) + 0.5)   # metres between frames, as the published copy

    def name(frame: int, **fields) -> str:
        return fmt.make_filename(0.0, frame * step, pano_id=frame, **fields)

    for frame, p in enumerate(db.paths):
        _copy(p, folder / "database" / name(frame))
    nearest = [int(np.argmin(((db.utm - u) ** 2).sum(1))) for u in q.utm]
    for j, (p, frame) in enumerate(zip(q.paths, nearest)):
        _copy(p, folder / "queries" / name(frame, timestamp=f"{j:05d}"))
    return {"folder": str(top), "database": len(db), "queries": len(q)}


def write_benchmark(data_format: str, source, out_root, overwrite: bool = False) -> dict:
    """Lays out the @UTM split folder `source` as the benchmark `data_format` under
    `out_root`; returns a summary (folder, counts)."""
    return WRITERS.get(data_format)(source=source, out_root=out_root, overwrite=overwrite)
