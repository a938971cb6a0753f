"""Decode once, read many times: a fixed-size uint8 copy of a set of images, and the copies a
training run keeps (`data.cache_decoded`, the domain-adaptation target set) and what its
mining cache reads (`train.cache_resize`).

Training reads the same database images and queries again in every mining round; decoding
JPEGs is the slowest part of the data path. `DecodedImages` decodes each image once (in
parallel, through `BatchLoader`) into an `(N, H, W, 3)` uint8 array, in memory or in a
`.npy` file on disk (memory-mapped, so a set larger than RAM still works), and then serves
images at memory speed: one at a time through `reader()` (what training uses, so that the
usual `BatchLoader` assembles the batches) or as index batches (`images[idx]`).
`CACHE_MODES` says, per `data.cache_decoded` value, whether and where a run keeps that copy;
`decode_once` and `target_images` make a run's copies, `cache_loader` what its mining cache
reads.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Callable, Sequence

import jax
import numpy as np

from vgjax.config import ConfigError
from vgjax.data.format import list_images
from vgjax.data.ops import RESAMPLING_MODES, resampling, resize
from vgjax.data.pipeline import BatchLoader
from vgjax.data.sources import FOLDER_READER, SOURCES, ImageReader
from vgjax.progress import bar as progress_bar
from vgjax.registry import Registry

log = logging.getLogger("vgjax.train")  # the lines of a training run's log


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
        batches = progress_bar(iter(loader), total=len(loader), desc="decoding images",
                               unit="batch", enabled=progress)
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

        return ImageReader(read, fallback.size, draft=fallback.draft, check=fallback.check)


# What a training run keeps decoded (data.cache_decoded) --------------------------------------

def _bytes(n: int, hw) -> int:
    return int(n) * int(hw[0]) * int(hw[1]) * 3


def _gb(n: int) -> str:
    return f"{n / 2**30:.2f} GB"


def _host_memory(folder: Path) -> tuple[int | None, str]:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024, "available host memory"
    except OSError:
        pass
    return None, "memory"


def _device_memory(folder: Path) -> tuple[int | None, str]:
    stats = jax.devices()[0].memory_stats() or {}
    if "bytes_limit" in stats:
        return stats["bytes_limit"] - stats.get("bytes_in_use", 0), \
            f"free memory of {jax.devices()[0].device_kind}"
    return _host_memory(folder)


def _disk(folder: Path) -> tuple[int | None, str]:
    folder.mkdir(parents=True, exist_ok=True)
    return shutil.disk_usage(folder).free, f"free disk space in {folder}"


@dataclasses.dataclass(frozen=True)
class CacheMode:
    """One `data.cache_decoded` value. `decodes`: the training images (and every-epoch
    evaluation images) are decoded once into RUN/decoded/; `on_disk`: as a memory-mapped
    file (else in memory); `on_device`: the training images also sit on the device, where
    the train steps gather them; `free(folder)`: (bytes free, where) for such a copy;
    `fallback`: what to use where it does not fit."""
    decodes: bool
    on_disk: bool
    on_device: bool
    free: Callable[[Path], tuple[int | None, str]]
    fallback: str


CACHE_MODES = Registry("data.cache_decoded")
CACHE_MODES.register("none")(CacheMode(
    decodes=False, on_disk=False, on_device=False, free=_host_memory,
    fallback="data.cache_decoded=none (read every round)"))
CACHE_MODES.register("host")(CacheMode(
    decodes=True, on_disk=True, on_device=False, free=_disk,
    fallback="data.cache_decoded=none (read every round)"))
CACHE_MODES.register("device")(CacheMode(
    decodes=True, on_disk=False, on_device=True, free=_device_memory,
    fallback="data.cache_decoded=host (a memory-mapped file on disk) or none"))


def available_memory(mode: str, folder: Path) -> tuple[int | None, str]:
    """(bytes free, where) for a cache of `mode`: the device's free memory where it reports
    it, else host RAM (MemAvailable); for `host` the free disk of the cache folder (the
    array is a memory-mapped file there)."""
    return CACHE_MODES.get(mode).free(folder)


def check_cache_size(mode: str, n_images: int, size, folder: Path,
                     free: int | None = None) -> None:
    """Refuses, before anything is allocated, a cache that does not fit, naming its size
    and the fallback."""
    need = _bytes(n_images, size)
    where = "memory given"
    if free is None:
        free, where = available_memory(mode, folder)
    if free is not None and need > 0.9 * free:
        raise ConfigError(f"data.cache_decoded={mode}: {n_images} images at {size[0]}x"
                          f"{size[1]} need {_gb(need)}, more than the {_gb(free)} of {where}; "
                          f"use {CACHE_MODES.get(mode).fallback}, or a smaller data.resize")


def decode_once(data, run: Path, train, reader, epoch_evals):
    """`data.cache_decoded` = host | device: the train images (at the model size, as
    training reads them; rows: the database, then the queries) and every-epoch evaluation
    images (at the model size for `data.eval_resize=pil`, at their own size for the float
    resize when they all share one), decoded once into RUN/decoded/: every round and
    validation re-read them. `data`: the run's `vgjax.data.settings.DataSettings`. Returns
    (reader serving them, the decoded train images)."""
    size = data.resize
    mode = data.cache_decoded
    kw = dict(cache_dir=run / "decoded", num_workers=data.num_workers,
              progress=True, key=f"draft={reader.draft}")
    train_paths = np.concatenate([train.database.paths, train.queries.paths])
    eval_paths = np.concatenate([p for e in epoch_evals for d in e.datasets
                                 for p in (e.open(d)[0].database.paths,
                                           e.open(d)[0].queries.paths)])
    check_cache_size(mode, len(train_paths), size, run / "decoded")
    decoded = DecodedImages(train_paths, size, load_fn=reader.loader(size), **kw)
    if RESAMPLING_MODES.get(data.eval_resize).decoder_resizes:
        eval_size, native, load = size, False, reader.loader(size)
    else:  # the float resize starts from the full-size images
        sizes = {tuple(reader.size(p)) for p in eval_paths}
        eval_size, native, load = (sizes.pop() if len(sizes) == 1 else None), True, \
            reader.loader(None)
        if eval_size is None:
            log.info("data.cache_decoded: the evaluation images have %d different sizes; "
                     "they are read from their files every epoch", len(sizes))
    if eval_size is not None:
        eval_decoded = DecodedImages(eval_paths, eval_size, native=native, load_fn=load, **kw)
        for e in epoch_evals:
            e.wrap_readers(eval_decoded.reader)
    return decoded.reader(reader), decoded


def target_images(data, target_dir: str, run: Path):
    """`train.da.target_dir` decoded once at the model size (every image read now, so a
    bad one stops the run before training); logged as transductive when it holds test
    queries. `data`: the run's `vgjax.data.settings.DataSettings`."""
    paths = list_images(target_dir)
    test_queries = set()
    for name in data.test_datasets:
        folder = Path(data.root) / name / "images" / "test" / "queries"
        if SOURCES.get(data.source).folders and folder.is_dir():
            test_queries.update(os.path.realpath(p) for p in list_images(folder))
    shared = sum(os.path.realpath(p) in test_queries for p in paths)
    if shared:
        log.warning("train.da.target_dir=%s holds %d test queries: transductive adaptation "
                    "(the paper's setting for tokyo-night); the recalls on that test set "
                    "are not those of an unseen target", target_dir, shared)
    size = data.resize
    log.info("domain adaptation: %d target images from %s", len(paths), target_dir)
    on_disk = CACHE_MODES.get(data.cache_decoded).on_disk  # else in memory: it is small
    return DecodedImages(paths, size, cache_dir=run / "decoded" if on_disk else None,
                         num_workers=data.num_workers,
                         load_fn=FOLDER_READER.loader(size), progress=True)


# What the mining cache reads (train.cache_resize) ---------------------------------------------

# (config, the source's reader) -> path -> image, or None: the training images
CACHE_RESIZE = Registry("train.cache_resize")


@CACHE_RESIZE.register("train")
def _train_images(config, source_reader) -> None:
    """The mining cache and NetVLAD init see the training images, as the train steps do."""
    return None


@CACHE_RESIZE.register("eval")
def _eval_resize(config, source_reader) -> Callable[[str], np.ndarray]:
    """What the reference's mining cache and NetVLAD init see: the full-size file
    (`source_reader`: no training-query crop) resized as evaluation resizes it
    (`data.eval_resize`, `data.resize_antialias`); float32 in [0, 1] for the float resize."""
    return functools.partial(_resized, source_reader, tuple(config.data.resize),
                             resampling(config.data, config.test))


def _resized(reader, size, how, path: str) -> np.ndarray:
    return resize(reader(path), size, how)


def cache_loader(config, source_reader) -> Callable[[str], np.ndarray] | None:
    """`train.cache_resize`: path -> the image the mining cache and NetVLAD init describe,
    or None where they read the training images (`train`)."""
    return CACHE_RESIZE.get(config.train.cache_resize)(config, source_reader)
