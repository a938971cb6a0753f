"""The modern-method recipes (`configs/{mixvpr,convap,cosplace,salad,boq}.py`): each loads
with its published settings, its `:smoke` variant passes the checks a training run makes
before any work on the tiny city's GSV-Cities folder and describes images at its size, one
recipe trains end to end; and the `modern_heads` suite's cells pass the runner's up-front
checks."""
import json
from pathlib import Path

import jax
import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
RECIPES = ["mixvpr", "convap", "cosplace", "salad", "boq"]  # the modern_heads suite's heads
# the recipes trained with place batches (configs/cosplace.py trains as CosPlace does:
# tests/test_cosplace.py)
PLACE_RECIPES = [r for r in RECIPES if r != "cosplace"]
# P, optimizer, lr, scheduler, image size, descriptor size: the published recipes
PUBLISHED = {
    "mixvpr": (120, "sgd", 0.05, "multistep", (320, 320), 4096),
    "convap": (100, "adam", 2e-4, "multistep", (320, 320), 4096),
    "salad": (60, "adamw", 6e-5, "linear", (224, 224), 8448),
    "boq": (128, "adamw", 1e-4, "multistep", (320, 320), 16384),
}


@pytest.fixture(scope="module")
def gsv_city(tmp_path_factory):
    """The tiny city's GSV-Cities training folder (16 places of 4..6 images)."""
    from vgjax.synthetic.gsv import generate_gsv
    root = tmp_path_factory.mktemp("gsv")
    generate_gsv(root, "tiny", seed=0, workers=2)
    return root / "gsv-cities"


def _load(spec, *overrides):
    from vgjax.cli.config import load_config
    return load_config(REPO / "configs" / spec, list(overrides))


@pytest.mark.parametrize("name", PLACE_RECIPES)
def test_recipe_has_its_published_settings(name):
    from vgjax.data.augment import AUGMENTATIONS, check_specs
    from vgjax.models.network import build_network, descriptor_dim, init_variables
    from vgjax.train import schedules
    c = _load(f"{name}.py")
    p, optimizer, lr, scheduler, size, dim = PUBLISHED[name]
    assert (c.train.batching, c.data.format, c.data.train_dataset) == (
        "places", "gsv_cities", "gsv-cities")
    assert (c.train.places_per_batch, c.train.images_per_place) == (p, 4)
    assert c.train.loss == "multi_similarity" and c.train.miner == "multi_similarity"
    assert dict(c.train.loss_args) == {"alpha": 1.0, "beta": 50.0, "base": 0.0}
    assert dict(c.train.miner_args) == {"epsilon": 0.1}
    assert (c.train.optimizer, c.train.lr, c.train.scheduler) == (optimizer, lr, scheduler)
    assert tuple(c.data.resize) == size and c.model.aggregation == name
    assert c.model.backbone.startswith("resnet50")
    assert descriptor_dim(c.model) == dim
    if name == "mixvpr":
        assert c.model.mixvpr.row_bias  # the released code's row projection has a bias
    # the published RandAugment(num_ops=3, interpolation=BILINEAR) (BoQ's: magnitude 15)
    (augment,) = check_specs(c.train.query_augment)
    assert augment.name == "randaugment"
    assert AUGMENTATIONS.get("randaugment").check_args(**augment.kwargs) == (
        3, 15 if name == "boq" else 9, 31, "bilinear", 0.0)
    schedules.make_scheduler(c.train)
    # the head fits the published image size (shapes only: nothing is computed)
    variables = jax.eval_shape(lambda: init_variables(c.model, 0, size))
    out = jax.eval_shape(lambda v, x: build_network(c.model).apply(v, x), variables,
                         jax.ShapeDtypeStruct((1, *size, 3), np.float32))
    assert out.shape == (1, dim)


@pytest.mark.parametrize("name", PLACE_RECIPES)
def test_smoke_variant_passes_the_training_checks(name, tiny_city, gsv_city):
    from vgjax.models.network import (build_network, descriptor_dim, init_variables,
                                      trainable_mask)
    from vgjax.train import optim
    from vgjax.train.settings import validate_training
    c = _load(f"{name}.py:smoke", f"data.root={tiny_city}", f"data.train_dataset={gsv_city}",
              "data.test_datasets=pitts30k")
    assert (c.train.places_per_batch, c.train.images_per_place) == (4, 4)
    validate_training(c)
    size = tuple(c.data.resize)
    # shapes only (the one recipe trained below computes): the head fits the smoke size
    variables = jax.eval_shape(lambda: init_variables(c.model, 0, size))
    out = jax.eval_shape(lambda v, x: build_network(c.model).apply(v, x), variables,
                         jax.ShapeDtypeStruct((2, *size, 3), np.float32))
    assert out.shape == (2, descriptor_dim(c.model))
    tx = optim.make_optimizer(c.train, trainable_mask(variables["params"], c.model))
    jax.eval_shape(tx.init, variables["params"])


def _run_suite_script():
    import importlib.util
    spec = importlib.util.spec_from_file_location("_run_suite", REPO / "scripts" / "run_suite.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("variant", ["smoke", "demo"])
def test_modern_heads_suite_cells_pass_the_runners_checks(variant, tmp_path):
    """Every cell of `modern_heads` passes `scripts/run_suite.py`'s up-front checks (nothing
    runs), its descriptor-size label is the model's, NetVLAD is the paired tests' baseline,
    and a missing GSV-Cities folder is refused naming the command that renders it."""
    from vgjax.config.sweep import load_suite
    from vgjax.models.network import descriptor_dim
    rs = _run_suite_script()
    suite = load_suite(REPO / "configs" / "suites" / f"modern_heads.py:{variant}")
    assert [c["name"] for c in suite.cells][0] == "netvlad"
    assert {c["name"] for c in suite.cells} == {"netvlad", *RECIPES}
    assert suite.baseline_row()["name"] == "netvlad" and suite.train_time
    config = str(REPO / suite.config) + (":smoke" if variant == "smoke" else "")
    common = {"data.root": str(tmp_path), **suite.overrides}
    rs._check_rows(suite, config, common, tmp_path, suite.cells)
    for c in suite.cells:
        from vgjax.cli.config import load_config
        cfg = load_config(config, rs._cell_overrides(common, c, tmp_path, seed=0))
        assert str(descriptor_dim(cfg.model)) == c["label"]["descriptor"], c["name"]
        if c["name"] != "netvlad":
            assert (cfg.train.batching, cfg.data.format) == ("places", "gsv_cities")
            assert dict(cfg.train.loss_args) == {"alpha": 1.0, "beta": 50.0, "base": 0.0}
            assert dict(cfg.train.miner_args) == {"epsilon": 0.1}
    with pytest.raises(rs.Refused, match="--format gsv_cities"):
        rs._check_gsv_folders(suite, suite.cells, tmp_path)
    (tmp_path / "gsv-cities" / "Dataframes").mkdir(parents=True)
    rs._check_gsv_folders(suite, suite.cells, tmp_path)


def test_train_time_column(tmp_path):
    """A `train_time` suite's table has the runs' summed epoch times in minutes."""
    from vgjax.config.sweep import Suite, cell, run_name
    from vgjax.suite import aggregate, write_tables
    suite = Suite(name="t", title="t", config="configs/smoke.py", datasets=["pitts30k"],
                  recalls=["R@1"], cells=[cell("a", {"m": "A"})], train_time=True)
    for k, seconds in enumerate((60.0, 180.0)):
        run = tmp_path / "runs" / run_name("a", k)
        run.mkdir(parents=True)
        (run / "results.json").write_text(json.dumps({"pitts30k": {"R@1": 50.0}}))
        (run / "metrics.jsonl").write_text("\n".join(json.dumps(
            {"type": "epoch", "epoch_time_s": seconds / 2}) for _ in range(2)) + "\n")
    rows = aggregate(suite, tmp_path / "runs", 2)
    assert rows[0]["train_min"] == {"mean": 2.0, "std": 1.0, "n": 2}
    write_tables(suite, rows, tmp_path, 2, meta={})
    md = (tmp_path / "t.md").read_text()
    assert "| m | train min | pitts30k/R@1 |" in md and "| A | 2.0 ± 1.0 | 50.0 ± 0.0 |" in md
