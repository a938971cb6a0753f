"""The database side of localization: a faiss index of descriptors, with each row's image
path and coordinates and the identity of the model that described them.

Search is exact squared L2 (faiss `IndexFlatL2`), the distance vgjax's evaluation ranks by
(`vgjax.eval.search`). Descriptors are added block by block from a `DescriptorStore`, so a
database described to disk is never held twice in memory.

Saved as one folder:

    F/index.faiss     the faiss index (faiss.write_index)
    F/database.npz    paths (N,), coords (N, 2) float64 (NaN: unknown), sources (N,), system
    F/index.json      {"format", "model": {"identity", "dir", "descriptor_dim",
                       "image_size"}, "count"}
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from vgjax.eval.store import DEFAULT_CHUNK_BYTES, DescriptorStore
from vgjax.localize.coordinates import SYSTEMS, Places

FORMAT = "vgjax-localize-index"
INDEX_FILE, DATABASE_FILE, INFO_FILE = "index.faiss", "database.npz", "index.json"


class IndexFileError(ValueError):
    """A saved index that cannot be read, or that another model (or input size) made."""


def require_faiss():
    try:
        import faiss
    except ImportError:
        raise ImportError("python -m vgjax.localize needs faiss (pip install faiss-cpu)") from None
    return faiss


def model_identity(model_dir: str | os.PathLike, descriptor_dim: int,
                   image_size) -> dict:
    """What a saved index must share with the model that searches it: a SHA-256 of the
    model dir's files (model.json and the variables), the descriptor size and the input
    size (H, W) the database was described at."""
    root = Path(model_dir)
    digest = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(f.relative_to(root)).encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return {"identity": digest.hexdigest(), "dir": str(root),
            "descriptor_dim": int(descriptor_dim), "image_size": [int(s) for s in image_size]}


@dataclasses.dataclass
class DatabaseIndex:
    """Database descriptors in a faiss index (`ntotal` rows), row i being `paths[i]`."""
    index: object
    paths: list[str]
    places: Places
    model: dict

    def __len__(self) -> int:
        return len(self.paths)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(squared L2 distances (Q, k) float32 ascending, database rows (Q, k) int64) of
        queries (Q, D); k is at most the database size."""
        queries = np.ascontiguousarray(queries, np.float32)
        d, i = self.index.search(queries, min(int(k), len(self)))
        return np.asarray(d, np.float32), np.asarray(i, np.int64)

    def save(self, folder: str | os.PathLike) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / INFO_FILE).unlink(missing_ok=True)  # an index is complete once this exists
        require_faiss().write_index(self.index, str(folder / INDEX_FILE))
        np.savez(folder / DATABASE_FILE, paths=np.array(self.paths, dtype=str),
                 coords=self.places.values, sources=np.array(self.places.sources, dtype=str),
                 system=np.array(self.places.system))
        tmp = folder / (INFO_FILE + ".tmp")
        tmp.write_text(json.dumps({"format": FORMAT, "model": self.model,
                                   "count": len(self)}, indent=2) + "\n")
        tmp.replace(folder / INFO_FILE)
        return folder


def build_index(store: DescriptorStore, paths, places: Places, model: dict,
                chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> DatabaseIndex:
    """An exact L2 index of the store's rows, added one block at a time."""
    index = require_faiss().IndexFlatL2(store.dim)
    for _, block in store.chunks(store.rows_per_chunk(chunk_bytes)):
        index.add(np.ascontiguousarray(block, np.float32))
    return DatabaseIndex(index, list(paths), places, model)


def read_index_info(folder: str | os.PathLike, option: str = "--index") -> dict:
    """The parsed index.json of a saved index (cheap: no faiss file is read)."""
    info_path = Path(folder) / INFO_FILE
    if not Path(folder).is_dir():
        raise IndexFileError(f"{option} {folder}: not a folder (expected one written by "
                             "--save-index)")
    try:
        info = json.loads(info_path.read_text())
    except FileNotFoundError:
        raise IndexFileError(f"{option} {folder}: no {INFO_FILE} (not an index written by "
                             "--save-index, or an interrupted one)") from None
    except (OSError, json.JSONDecodeError) as e:
        raise IndexFileError(f"{option} {info_path}: cannot be read as JSON ({e})") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise IndexFileError(f"{option} {info_path}: not a vgjax localization index")
    return info


def check_same_model(saved: dict, current: dict, where: str) -> None:
    """Refuses an index described by another model, descriptor size or input size."""
    if saved.get("descriptor_dim") != current["descriptor_dim"]:
        raise IndexFileError(f"{where}: made with {saved.get('descriptor_dim')}-d descriptors, "
                             f"this model gives {current['descriptor_dim']}-d; describe the "
                             "database again with --database")
    if list(saved.get("image_size", [])) != list(current["image_size"]):
        h, w = saved.get("image_size", ["?", "?"])
        raise IndexFileError(f"{where}: database described at {h}x{w}, this run describes at "
                             f"{current['image_size'][0]}x{current['image_size'][1]}; pass "
                             f"--resize {h} {w} or describe the database again")
    if saved.get("identity") != current["identity"]:
        raise IndexFileError(f"{where}: made by another model ({saved.get('dir')}), not by "
                             f"{current['dir']}; describe the database again with --database")


def load_index(folder: str | os.PathLike, current_model: dict,
               option: str = "--index") -> DatabaseIndex:
    """A saved index, refused in one line unless `current_model` (see `model_identity`)
    made it."""
    folder = Path(folder)
    info = read_index_info(folder, option)
    check_same_model(info.get("model", {}), current_model, f"{option} {folder}")
    try:
        with np.load(folder / DATABASE_FILE, allow_pickle=False) as z:
            paths = [str(p) for p in z["paths"]]
            system = str(z["system"])
            places = Places(system, np.asarray(z["coords"], np.float64),
                            tuple(str(s) for s in z["sources"]))
        index = require_faiss().read_index(str(folder / INDEX_FILE))
    except (OSError, KeyError, ValueError, RuntimeError) as e:
        raise IndexFileError(f"{option} {folder}: cannot be read ({str(e).splitlines()[0]})") \
            from None
    if system not in SYSTEMS or places.values.shape != (len(paths), 2) \
            or index.ntotal != len(paths) or index.d != current_model["descriptor_dim"]:
        raise IndexFileError(f"{option} {folder}: inconsistent files ({index.ntotal} "
                             f"descriptors of {index.d} dims, {len(paths)} paths)")
    return DatabaseIndex(index, paths, places, info["model"])
