from pathlib import Path

import pytest

from vgjax.cli.config import load_config, validate_training
from vgjax.config import ConfigError

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", ["default", "resnet18_netvlad", "resnet18_gem", "smoke", "demo"])
def test_shipped_configs_validate(name):
    assert load_config(REPO / "configs" / f"{name}.py").is_locked


def test_netvlad_init_sampling_must_fit_the_feature_map(tmp_path):
    from conftest import write_dataset
    for name in ("pitts30k", "sf-xs", "tokyo-xs", "tokyo-night"):  # the splits it would read
        write_dataset(tmp_path, name=name, n_db=2, n_q=1)
    demo = REPO / "configs" / "demo.py"  # 96x128 -> 6x8 local features at stride 16
    root = [f"data.root={tmp_path}"]
    validate_training(load_config(demo, root + ["model.netvlad_init.descriptors_per_image=48"]))
    too_many = load_config(demo, root + ["model.netvlad_init.descriptors_per_image=49"])
    with pytest.raises(ConfigError, match=r"descriptors_per_image.*6x8 = 48"):
        validate_training(too_many)  # (evaluation alone would be fine)
    # the stride-32 cut halves it again (3x4); a disabled init is not checked
    with pytest.raises(ConfigError, match="3x4 = 12"):
        validate_training(load_config(demo, root + ["model.backbone=efficientnet_lite0_s32"]))
    validate_training(load_config(demo, root + ["model.backbone=efficientnet_lite0_s32",
                                                "model.netvlad_init.enabled=false"]))


@pytest.mark.parametrize("override, option", [
    ("test.index=hnsw", "test.index"), ("test.scales=[-1.0]", "test.scales"),
    ("test.multiscale_method=median", "test.multiscale_method"),
    ("test.recall_values=[0]", "test.recall_values"), ("test.pca_dim=-1", "test.pca_dim"),
    ("test.pictures_topk=0", "test.pictures_topk"),
    ("train.cache_resize=pillow", "train.cache_resize"),
    ("test.ivfpq_nlist=0", "test.ivfpq_nlist"), ("test.ivfpq_m=0", "test.ivfpq_m"),
    ("test.ivfpq_nprobe=0", "test.ivfpq_nprobe"), ("test.pca_max_images=0", "test.pca_max_images"),
    ("test.num_pictures=-1", "test.num_pictures"), ("test.majority_weight=-1", "test.majority_weight"),
    ("test.descriptors_in_memory_gb=-1", "test.descriptors_in_memory_gb"),
    ("test.search_chunk_mb=0", "test.search_chunk_mb"), ("train.mining_chunk_mb=0", "train.mining_chunk_mb"),
    ("model.aggregation=gem", None), ("model.gem_p=0", None),  # GeM's p only matters for GeM
    ("model.aggregation=gem model.gem_p=0", "model.gem_p"),
    ("model.aggregation=gem model.gem_p=-2", "model.gem_p"),
    ("model.aggregation=gem model.gem_eps=0", "model.gem_eps")])
def test_bad_test_options_are_refused_before_any_work(override, option):
    if option is None:
        load_config(REPO / "configs" / "default.py", override.split())
        return
    with pytest.raises(ConfigError, match=option.replace(".", r"\.")):
        load_config(REPO / "configs" / "default.py", override.split())


def _write_config(tmp_path, body):
    path = tmp_path / "cfg.py"
    path.write_text("from configs import default\n\n\ndef get_config():\n"
                    "    c = default.get_config()\n" + body + "    return c\n")
    (tmp_path / "configs").mkdir(exist_ok=True)
    (tmp_path / "configs" / "default.py").write_text((REPO / "configs" / "default.py").read_text())
    return path


def test_config_files_are_held_to_the_schema(tmp_path):
    bad = _write_config(tmp_path, '    c.train.optimiser = "sgd"\n')
    with pytest.raises(ConfigError, match=r"cfg.py: train.optimiser: unknown field "
                                          r"\(did you mean optimizer"):
        load_config(bad)
    wrong_type = _write_config(tmp_path, '    c.train.epochs = "ten"\n')
    with pytest.raises(ConfigError, match="cfg.py: get_config.. failed.*epochs"):
        load_config(wrong_type)
    no_section = _write_config(tmp_path, '    c.train = 3\n')
    with pytest.raises(ConfigError, match="get_config.. failed.*train"):
        load_config(no_section)
    infinite = _write_config(tmp_path, '    c.train.lr = float("inf")\n')
    with pytest.raises(ConfigError, match="train.lr: must be a finite number"):
        load_config(infinite)
    with pytest.raises(ConfigError, match="train.lr: must be a finite"):
        load_config(REPO / "configs" / "default.py", ["train.lr=1e400"])


def test_renamed_fields_still_work(tmp_path, caplog):
    old = _write_config(tmp_path, "    c.train.scheduler = 'plateau'\n"
                                  "    c.train.plateau_patience = 1\n")
    with caplog.at_level("WARNING"):
        cfg = load_config(old, ["--config.train.momentum=0.5", "train.optimizer=sgd",
                                "train.validate_initial=true"])
    assert cfg.train.scheduler_args.patience == 1 and cfg.train.optimizer_args.momentum == 0.5
    assert list(cfg.evals.val.when) == ["before", "epoch"]
    assert "train.plateau_patience is now train.scheduler_args.patience" in caplog.text


def test_smoke_switch_and_list_overrides():
    cfg = load_config(f"{REPO / 'configs' / 'resnet18_netvlad.py'}:smoke")
    assert tuple(cfg.data.resize) == (48, 64) and cfg.train.lr == 1e-5   # optimizer kept
    for text in ["[day,night]", "day,night", '["day","night"]', "[ day , night ]"]:
        got = load_config(REPO / "configs" / "default.py", [f"test.domains={text}"])
        assert list(got.test.domains) == ["day", "night"], text
    for text in ["[day", "day]", "a,,b", "[[a]]"]:
        with pytest.raises(ConfigError, match="test.domains"):
            load_config(REPO / "configs" / "default.py", [f"test.domains={text}"])
    with pytest.raises(ConfigError, match="unknown value 'platoo'.*did you mean 'plateau'"):
        load_config(REPO / "configs" / "default.py", ["train.scheduler=platoo"])
    with pytest.raises(ConfigError, match="plateau has no argument 'patiense'"):
        load_config(REPO / "configs" / "default.py", ["train.scheduler=plateau",
                                                      "train.scheduler_args.patiense=2"])


def test_evaluator_entries_are_checked():
    default = REPO / "configs" / "default.py"
    cfg = load_config(default, ["evals.val.method=five_crops"])
    from vgjax.eval.evaluators import entry_settings
    assert entry_settings(cfg, "val").method == "five_crops"
    assert entry_settings(cfg, "test").method == "hard_resize"
    for override, match in [("evals.val.when=[sometimes]", "evals.val.when"),
                            ("evals.val.method=best", "test.method"),
                            ("evals.val.split=holdout", "evals.val.split"),
                            ("evals.val.methd=x", r"evals.val.methd: not an evaluator field")]:
        with pytest.raises(ConfigError, match=match):
            load_config(default, [override])
    for metric, match in [("val/R@3", "computes R@1, R@5"), ("test/R@5", "after every epoch"),
                          ("nope/R@5", "expected <evaluator>/R@N")]:
        with pytest.raises(ConfigError, match=match):
            validate_training(load_config(default, [f"train.best_metric={metric}"]))


def test_plateau_that_cannot_fire_before_early_stopping_is_warned(caplog):
    default = REPO / "configs" / "default.py"
    with caplog.at_level("WARNING"):
        load_config(default, ["train.scheduler=plateau"])          # torch's patience 10
    assert "the rate never drops" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        load_config(default, ["train.scheduler=plateau", "train.scheduler_args.patience=1"])
    assert "never drops" not in caplog.text


def test_training_options_checked_before_any_work(tmp_path, caplog):
    """Datasets that do not exist, a PCA larger than the descriptor or its images, and
    sizes that leave queries untrained are all caught by validate_training / load_config."""
    from conftest import write_dataset
    root = tmp_path / "data"
    write_dataset(root, name="pitts30k")
    smoke = REPO / "configs" / "smoke.py"
    base = [f"data.root={root}", "data.test_datasets=[pitts30k]"]
    validate_training(load_config(smoke, base))
    with pytest.raises(ConfigError, match=r"data.test_datasets: 'tokyo': dataset folder .* "
                                          r"does not exist"):
        validate_training(load_config(smoke, base + ["data.test_datasets=[pitts30k,tokyo]"]))
    with pytest.raises(ConfigError, match=r"test.pca_dim: \(9999\) exceeds the model's "
                                          r"descriptor size 256"):
        validate_training(load_config(smoke, base + ["test.pca_dim=9999"]))
    folder = root / "pitts30k" / "images" / "test" / "database"
    with pytest.raises(ConfigError, match=r"test.pca_dim: \(64\) must be below the 12 images"):
        validate_training(load_config(smoke, base + ["test.pca_dim=64",
                                                     f"test.pca_dataset={folder}"]))
    with pytest.raises(ConfigError, match=r"data.resize=\(48, 64\): model.aggregation=crn: "
                                          r"the local features are 3x4"):
        validate_training(load_config(smoke, base + ["model.aggregation=crn"]))
    validate_training(load_config(smoke, base + ["model.aggregation=crn", "data.resize=(64,96)"]))
    # image sizes the backbone cannot describe: data.resize, and the scales of test / evals
    with pytest.raises(ConfigError, match=r"data.resize: a 8x8 image is too small for vgg16 "
                                          r"\(local features 0x0\): both sides must be at "
                                          r"least 16 px"):
        validate_training(load_config(smoke, base + ["model.backbone=vgg16", "data.resize=(8,8)"]))
    with pytest.raises(ConfigError, match=r"test.scales=\[0.001, 1.0\] \(scale 0.001 of "
                                          r"data.resize=\(48, 64\)\): a 1x1 image"):
        validate_training(load_config(smoke, base + ["test.scales=[0.001,1]"]))
    with pytest.raises(ConfigError, match=r"evals.val.scales=\[0.25\] .*a 12x16 image"):
        validate_training(load_config(smoke, base + ["evals.val.scales=[0.25]"]))
    validate_training(load_config(smoke, base + ["test.scales=[0.34,1,2]"]))  # 16x22: fits
    with pytest.raises(ConfigError, match=r"train.crn_lr: must be > 0"):
        load_config(smoke, base + ["train.crn_lr=0"])
    with caplog.at_level("WARNING"):
        load_config(smoke, base + ["train.cache_refresh_rate=9"])
    assert "4 of the 32 queries of every epoch are mined but not trained on" in caplog.text
