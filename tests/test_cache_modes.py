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
    from vgjax.checks import load_config
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
    from vgjax.train import images, loop
    with pytest.raises(ConfigError, match=r"data.cache_decoded=device: 1000 images at "
                                          r"480x640 need 0.86 GB, more than the 0.50 GB .*"
                                          r"use data.cache_decoded=host"):
        images.check_cache_size("device", 1000, (480, 640), tmp_path, free=2**29)
    images.check_cache_size("device", 10, (48, 64), tmp_path, free=2**29)   # fits
    monkeypatch.setattr(images, "available_memory", lambda mode, folder: (1000, "test"))
    with pytest.raises(ConfigError, match="data.cache_decoded=host.*use data.cache_decoded=none"):
        loop.train_and_evaluate(_config(city, "host"), tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints").exists()
    assert not np.any([p.suffix == ".npy" for p in (tmp_path / "run").rglob("*")])
