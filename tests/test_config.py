from pathlib import Path

import pytest

from vgjax.config import ConfigError, load_config, validate_training

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", ["default", "resnet18_netvlad", "resnet18_gem", "smoke", "demo"])
def test_shipped_configs_validate(name):
    assert load_config(REPO / "configs" / f"{name}.py").is_locked


def test_netvlad_init_sampling_must_fit_the_feature_map():
    demo = REPO / "configs" / "demo.py"  # 96x128 -> 6x8 local features at stride 16
    validate_training(load_config(demo, ["model.netvlad_init.descriptors_per_image=48"]))
    too_many = load_config(demo, ["model.netvlad_init.descriptors_per_image=49"])  # eval: fine
    with pytest.raises(ConfigError, match=r"descriptors_per_image.*6x8 = 48"):
        validate_training(too_many)
    # conv5 halves it again (3x4); a disabled init is not checked
    with pytest.raises(ConfigError, match="3x4 = 12"):
        validate_training(load_config(demo, ["model.backbone=resnet18conv5"]))
    validate_training(load_config(demo, ["model.backbone=resnet18conv5",
                                         "model.netvlad_init.enabled=false"]))


@pytest.mark.parametrize("override, option", [
    ("test.index=hnsw", "test.index"), ("test.scales=[-1.0]", "test.scales"),
    ("test.multiscale_method=median", "test.multiscale_method"),
    ("test.recall_values=[0]", "test.recall_values"), ("test.pca_dim=-1", "test.pca_dim"),
    ("test.pictures_topk=0", "test.pictures_topk")])
def test_bad_test_options_are_refused_before_any_work(override, option):
    with pytest.raises(ConfigError, match=option.replace(".", r"\.")):
        load_config(REPO / "configs" / "default.py", [override])
