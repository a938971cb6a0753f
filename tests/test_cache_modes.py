"""data.cache_decoded = none | host | device: the same losses for the same seed, and a cache
that does not fit is refused before training with its size and the fallback."""
import json
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def city(tiny_city):
    return tiny_city


def _config(root, mode, *extra):
    from vgjax.cli.config import load_config
    return load_config(REPO / "configs" / "smoke.py", [
        f"data.root={root}", "data.test_datasets=[pitts30k]", "train.queries_per_epoch=16",
        "train.epochs=1", "test.save_predictions=false", f"data.cache_decoded={mode}", *extra])


def _losses(run):
    return [json.loads(l)["loss"] for l in (run / "metrics.jsonl").read_text().splitlines()
            if json.loads(l)["type"] == "step"]


def test_cache_modes_give_identical_losses(city, tmp_path):
    from vgjax.train import loop
    results = {}
    for mode in ("none", "device"):  # host serves the same decoded array through the loader
        results[mode] = loop.train_and_evaluate(_config(city, mode), tmp_path / mode)
    assert len(_losses(tmp_path / "none")) == 8
    assert _losses(tmp_path / "none") == _losses(tmp_path / "device")
    assert results["none"] == results["device"]
    assert "data.cache_decoded=device: " in (tmp_path / "device" / "train.log").read_text()


def test_a_cache_too_big_is_refused_before_training(city, tmp_path, monkeypatch):
    from vgjax.config import ConfigError
    from vgjax.data import cache
    from vgjax.train import loop
    with pytest.raises(ConfigError, match=r"data.cache_decoded=device: 1000 images at "
                                          r"480x640 need 0.86 GB, more than the 0.50 GB .*"
                                          r"use data.cache_decoded=host"):
        cache.check_cache_size("device", 1000, (480, 640), tmp_path, free=2**29)
    cache.check_cache_size("device", 10, (48, 64), tmp_path, free=2**29)   # fits
    monkeypatch.setattr(cache, "available_memory", lambda mode, folder: (1000, "test"))
    with pytest.raises(ConfigError, match="data.cache_decoded=host.*use data.cache_decoded=none"):
        loop.train_and_evaluate(_config(city, "host"), tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints").exists()
    assert not np.any([p.suffix == ".npy" for p in (tmp_path / "run").rglob("*")])


def _context(config, train, reader, cache_load=None, pool=None):
    """A RoundContext whose 'descriptor' is the image itself, flattened, in [0, 1]."""
    import jax
    import jax.numpy as jnp
    from vgjax.train import mining
    from vgjax.train.rounds import RoundContext
    from vgjax.train.step import make_mesh

    def describe(variables, images):
        x = images.astype(jnp.float32)
        x = x / 255.0 if images.dtype == jnp.uint8 else x
        return x.reshape(x.shape[0], -1)

    describe = jax.jit(describe)
    return RoundContext(
        train=train, reader=reader, tables=mining.MiningTables.from_split(train),
        mining="partial", describe=describe, train_step=None, mesh=make_mesh(1), metrics=None,
        target=None, size=tuple(config.data.resize), seed=0, queries_per_step=2,
        negatives_per_query=3, neg_samples_num=8, infer_batch_size=4, num_workers=2,
        prefetch=1, pool=pool, describe_rows=jax.jit(lambda v, p, rows: describe(v, p[rows])),
        cache_load=cache_load)


def test_cache_resize_eval_caches_what_the_reference_caches(city):
    """train.cache_resize=eval: the mining cache describes each training file at full size,
    resized as evaluation resizes it (the reference's BaseDataset path: no query crop, no
    Pillow), even where the training images sit on the device; `train` keeps the training
    images."""
    import jax.numpy as jnp
    from vgjax.data.ops import Resampling, resize
    from vgjax.data.sources import FOLDER_READER, open_split, with_view
    from vgjax.data.ops import train_query
    from vgjax.data.cache import cache_loader
    from vgjax.train.rounds import device_descriptors

    cfg = _config(city, "none", "data.resize=[30,40]", "train.cache_resize=eval")
    train, source = open_split(cfg.data, "pitts30k", "train")
    reader = with_view(source, train.queries.paths, train_query)
    rows = np.array([0, 5, len(train.database) + 1, len(train.database) + 7])
    paths = np.concatenate([train.database.paths, train.queries.paths])[rows]
    float_resize = Resampling(mode="float", antialias=bool(cfg.data.resize_antialias))
    expected = np.stack([resize(FOLDER_READER(p), (30, 40), float_resize).reshape(-1)
                         for p in paths])
    zeros = jnp.zeros((len(train.database) + len(train.queries), 30, 40, 3), jnp.uint8)
    load = cache_loader(cfg, source)
    got = device_descriptors(_context(cfg, train, reader, load, pool=zeros), None, rows)
    np.testing.assert_allclose(np.asarray(got), expected, atol=1e-6)  # not the pool's zeros

    train_cfg = _config(city, "none", "data.resize=[30,40]")
    assert cache_loader(train_cfg, source) is None
    pillow = np.stack([reader(p, (30, 40)).reshape(-1) / 255.0 for p in paths])
    got = device_descriptors(_context(train_cfg, train, reader), None, rows)
    np.testing.assert_allclose(np.asarray(got), pillow, atol=1e-6)
    assert np.abs(pillow - expected).max() > 0.01   # the two resizes differ visibly here


def test_training_with_the_reference_cache_resize(city, tmp_path):
    """A run with train.cache_resize=eval (NetVLAD init and every mining cache from the
    evaluation resize of the files) trains from the device cache and tests."""
    from vgjax.train import loop
    results = loop.train_and_evaluate(
        _config(city, "device", "train.cache_resize=eval"), tmp_path / "eval")
    losses = _losses(tmp_path / "eval")
    assert len(losses) == 8 and all(np.isfinite(losses))
    assert set(results) == {"pitts30k"}
    config = json.loads((tmp_path / "eval" / "config.json").read_text())
    assert config["train"]["cache_resize"] == "eval"
