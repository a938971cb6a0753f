"""The images a run decodes once: `data.cache_decoded` (training images at the model size,
every-epoch evaluation images) and the domain-adaptation target set."""
from __future__ import annotations

import functools
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

from vgjax.config import ConfigError
from vgjax.data.cache import DecodedImages
from vgjax.data.format import list_images
from vgjax.data.ops import resize
from vgjax.data.sources import FOLDER_READER

log = logging.getLogger("vgjax.train")


CACHE_MODES = ("none", "host", "device")
CACHE_RESIZE = ("train", "eval")  # train.cache_resize


def cache_loader(config, source_reader) -> Callable[[str], np.ndarray] | None:
    """`train.cache_resize=eval`: path -> what the reference's mining cache and NetVLAD init
    see, the full-size file (`source_reader`: no training-query crop) resized as evaluation
    resizes it (`data.eval_resize`, `data.resize_antialias`); float32 in [0, 1] for the float
    resize. None for `train`: they see the training images, as the train steps do."""
    if config.train.cache_resize == "train":
        return None
    from vgjax.eval.evaluate import resampling  # the evaluation path's settings
    return functools.partial(_resized, source_reader, tuple(config.data.resize),
                             resampling(config.data, config.test))


def _resized(reader, size, how, path: str) -> np.ndarray:
    return resize(reader(path), size, how)


def _bytes(n: int, hw) -> int:
    return int(n) * int(hw[0]) * int(hw[1]) * 3


def _gb(n: int) -> str:
    return f"{n / 2**30:.2f} GB"


def available_memory(mode: str, folder: Path) -> tuple[int | None, str]:
    """(bytes free, where) for a cache of `mode`: the device's free memory where it reports
    it, else host RAM (MemAvailable); for `host` the free disk of the cache folder (the
    array is a memory-mapped file there)."""
    if mode == "device":
        stats = jax.devices()[0].memory_stats() or {}
        if "bytes_limit" in stats:
            return stats["bytes_limit"] - stats.get("bytes_in_use", 0), \
                f"free memory of {jax.devices()[0].device_kind}"
    if mode == "host":
        folder.mkdir(parents=True, exist_ok=True)
        return shutil.disk_usage(folder).free, f"free disk space in {folder}"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024, "available host memory"
    except OSError:
        pass
    return None, "memory"


def check_cache_size(mode: str, n_images: int, size, folder: Path,
                     free: int | None = None) -> None:
    """Refuses, before anything is allocated, a cache that does not fit, naming its size
    and the fallback."""
    need = _bytes(n_images, size)
    where = "memory given"
    if free is None:
        free, where = available_memory(mode, folder)
    if free is not None and need > 0.9 * free:
        fallback = ("data.cache_decoded=host (a memory-mapped file on disk) or none"
                    if mode == "device" else "data.cache_decoded=none (read every round)")
        raise ConfigError(f"data.cache_decoded={mode}: {n_images} images at {size[0]}x"
                          f"{size[1]} need {_gb(need)}, more than the {_gb(free)} of {where}; "
                          f"use {fallback}, or a smaller data.resize")


def decode_once(config, run: Path, train, reader, epoch_evals):
    """`data.cache_decoded` = host | device: the train images (at the model size, as
    training reads them; rows: the database, then the queries) and every-epoch evaluation
    images (at the model size for `data.eval_resize=pil`, at their own size for the float
    resize when they all share one), decoded once into RUN/decoded/: every round and
    validation re-read them. Returns (reader serving them, the decoded train images)."""
    size = tuple(config.data.resize)
    mode = config.data.cache_decoded
    kw = dict(cache_dir=run / "decoded", num_workers=int(config.data.num_workers),
              progress=True, key=f"draft={reader.draft}")
    train_paths = np.concatenate([train.database.paths, train.queries.paths])
    eval_paths = np.concatenate([p for e in epoch_evals for d in e.datasets
                                 for p in (e.open(d)[0].database.paths, e.open(d)[0].queries.paths)])
    check_cache_size(mode, len(train_paths), size, run / "decoded")
    decoded = DecodedImages(train_paths, size, load_fn=reader.loader(size), **kw)
    if config.data.eval_resize == "pil":
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


def target_images(config, run: Path):
    """`train.da.target_dir` decoded once at the model size (every image read now, so a
    bad one stops the run before training); logged as transductive when it holds test
    queries."""
    da = config.train.da
    paths = list_images(da.target_dir)
    test_queries = set()
    for name in config.data.test_datasets:
        folder = Path(config.data.root) / name / "images" / "test" / "queries"
        if config.data.source == "folder" and folder.is_dir():
            test_queries.update(os.path.realpath(p) for p in list_images(folder))
    shared = sum(os.path.realpath(p) in test_queries for p in paths)
    if shared:
        log.warning("train.da.target_dir=%s holds %d test queries: transductive adaptation "
                    "(the paper's setting for tokyo-night); the recalls on that test set "
                    "are not those of an unseen target", da.target_dir, shared)
    size = tuple(config.data.resize)
    log.info("domain adaptation: %d target images from %s", len(paths), da.target_dir)
    on_disk = config.data.cache_decoded == "host"  # else in memory: the set is small
    return DecodedImages(paths, size, cache_dir=run / "decoded" if on_disk else None,
                         num_workers=int(config.data.num_workers),
                         load_fn=FOLDER_READER.loader(size), progress=True)
