"""The images a run decodes once: `data.cache_decoded` (training images at the model size,
every-epoch evaluation images) and the domain-adaptation target set."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from vgjax.data.cache import DecodedImages
from vgjax.data.format import list_images
from vgjax.data.sources import FOLDER_READER

log = logging.getLogger("vgjax.train")


def decode_once(config, run: Path, train, reader, epoch_evals):
    """`data.cache_decoded`: the train images (at the model size, as training reads them)
    and every-epoch evaluation images (at the model size for `data.eval_resize=pil`, at
    their own size for the float resize when they all share one), decoded once into
    RUN/decoded/: every round and validation re-read them."""
    size = tuple(config.data.resize)
    kw = dict(cache_dir=run / "decoded", num_workers=int(config.data.num_workers),
              progress=True, key=f"draft={reader.draft}")
    train_paths = np.concatenate([train.database.paths, train.queries.paths])
    eval_paths = np.concatenate([p for e in epoch_evals for d in e.datasets
                                 for p in (e.open(d)[0].database.paths, e.open(d)[0].queries.paths)])
    if config.data.eval_resize == "pil":
        decoded = DecodedImages(np.concatenate([train_paths, eval_paths]), size,
                                load_fn=reader.loader(size), **kw)
        for e in epoch_evals:
            e.wrap_readers(decoded.reader)
        return decoded.reader(reader)
    decoded = DecodedImages(train_paths, size, load_fn=reader.loader(size), **kw)
    native = {tuple(reader.size(p)) for p in eval_paths}
    if len(native) == 1:
        eval_decoded = DecodedImages(eval_paths, native.pop(), load_fn=reader.loader(None),
                                     native=True, **kw)
        for e in epoch_evals:
            e.wrap_readers(eval_decoded.reader)
    else:
        log.info("data.cache_decoded: the evaluation images have %d different sizes; they "
                 "are read from their files every epoch", len(native))
    return decoded.reader(reader)


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
    return DecodedImages(paths, size, cache_dir=run / "decoded" if config.data.cache_decoded
                         else None, num_workers=int(config.data.num_workers),
                         load_fn=FOLDER_READER.loader(size), progress=True)
