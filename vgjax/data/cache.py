"""Decode once, read many times: a fixed-size uint8 copy of a set of images.

Training reads the same database images and queries again in every mining round; decoding
JPEGs is the slowest part of the data path. `DecodedImages` decodes each image once (in
parallel, through `BatchLoader`) into an `(N, H, W, 3)` uint8 array, in memory or in a
`.npy` file on disk (memory-mapped, so a set larger than RAM still works), and then serves
images at memory speed: one at a time through `reader()` (what training uses, so that the
usual `BatchLoader` assembles the batches) or as index batches (`images[idx]`).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from vgjax.data.pipeline import BatchLoader
from vgjax.data.sources import ImageReader


def _fingerprint(paths: Sequence[str], size: tuple[int, int], key: str = "") -> str:
    h = hashlib.sha256(json.dumps([list(size), list(map(str, paths)), key]).encode())
    for p in paths[:: max(1, len(paths) // 64)]:  # a sample of sizes/mtimes catches edits
        try:
            st = os.stat(p)
            h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
        except OSError:
            h.update(b"missing")
    return h.hexdigest()[:16]


class DecodedImages:
    """uint8 images of `paths` at `size` = (H, W); `images[idx]` -> (len(idx), H, W, 3).

    `native`: every image already is `size` and is kept as decoded (what evaluation's float
    resize starts from); `load_fn` must then return the full-size image.

    With `cache_dir`, the array lives in `cache_dir/decoded-<H>x<W>-<fingerprint>.npy` and is
    reused by later runs over the same files (a partly written file is never reused: it is
    written under a temporary name and renamed when complete).
    """

    def __init__(self, paths: Sequence[str], size: tuple[int, int], *,
                 cache_dir: str | os.PathLike | None = None, num_workers: int = 8,
                 batch_size: int = 64, load_fn: Callable[[str], np.ndarray] | None = None,
                 progress: bool = False, native: bool = False, key: str = ""):
        self.native = native  # the images are at their own size: they serve size=None reads
        self.paths = list(paths)
        self.size = (int(size[0]), int(size[1]))
        self.index = {p: i for i, p in enumerate(self.paths)}
        shape = (len(self.paths), *self.size, 3)
        if cache_dir is None:
            self.array = np.empty(shape, np.uint8)
            self._fill(self.array, num_workers, batch_size, load_fn, progress)
            return
        cache_dir = Path(cache_dir)
        cache_dir.mkdir(parents=True, exist_ok=True)
        # `key` tells apart copies of the same files decoded differently (e.g. JPEG draft)
        fingerprint = _fingerprint(self.paths, size, f"{key};native={native}")
        final = cache_dir / f"decoded-{size[0]}x{size[1]}-{fingerprint}.npy"
        if not final.exists():
            tmp = final.with_suffix(f".tmp{os.getpid()}.npy")
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
            self._fill(out, num_workers, batch_size, load_fn, progress)
            out.flush()
            del out
            os.replace(tmp, final)
        self.array = np.load(final, mmap_mode="r", allow_pickle=False)
        if self.array.shape != shape:
            raise ValueError(f"{final}: cached shape {self.array.shape} != expected {shape}; "
                             "delete the file")

    def _fill(self, out, num_workers, batch_size, load_fn, progress):
        loader = BatchLoader(self.paths, self.size, batch_size, num_workers=num_workers,
                             load_fn=load_fn)
        batches = iter(loader)
        if progress:
            from tqdm import tqdm
            batches = tqdm(batches, total=len(loader), desc="decoding images", unit="batch")
        start = 0
        for batch, valid in batches:
            out[start:start + valid] = batch[:valid]
            start += valid

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, idx) -> np.ndarray:
        idx = np.asarray(idx)
        if idx.ndim == 0:
            return np.asarray(self.array[int(idx)])
        order = np.argsort(idx, kind="stable")  # sorted reads are sequential on a memmap
        out = np.empty((len(idx), *self.size, 3), np.uint8)
        out[order] = self.array[idx[order]]
        return out

    def by_path(self, paths: Sequence[str]) -> np.ndarray:
        return self[np.array([self.index[p] for p in paths], np.int64)]

    def reader(self, fallback):
        """An `ImageReader` serving cached paths at the cached size from memory, anything
        else (and image sizes) through `fallback`, the `ImageReader` of the images' source."""
        def read(path, size=None, draft=False):
            i = self.index.get(path)
            wanted = self.size if size is None and self.native else size
            if i is not None and wanted is not None and tuple(wanted) == self.size:
                return np.asarray(self.array[i])
            return fallback(path, size)

        return ImageReader(read, fallback.size, draft=fallback.draft)
