"""Torch checkpoint conversion: key maps, inference of the architecture, safe loading."""
from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import jax
import numpy as np
import pytest
import torch
from torch_reference import (ReferenceNet, TorchAlexNet, TorchResNet, TorchVGG16, randomize,
                             state_dict_numpy)

from configs.default import get_config
from vgjax.models.convert import CheckpointError, convert_state_dict, load_torch_checkpoint
from vgjax.models.io import load_model, read_model_info
from vgjax.models.network import build_network, make_describe_fn, make_features_fn, normalize

torch.set_num_threads(1)
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "convert_torch_weights.py"


def run_script(*argv):
    spec = importlib.util.spec_from_file_location("convert_torch_weights", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main([str(a) for a in argv])


def convert_file(tmp_path, obj, filename, *argv):
    """`obj` saved with torch as tmp_path/filename, converted by the script into
    tmp_path/m: (model config, variables, model.json info)."""
    torch.save(obj, tmp_path / filename)
    assert run_script("--input", tmp_path / filename, "--output", tmp_path / "m", *argv) == 0
    return (*load_model(tmp_path / "m"), read_model_info(tmp_path / "m"))


def uint8_images(size, n=2, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, *size, 3), dtype=np.uint8)


def torch_input(images):
    x = normalize(images).astype(np.float32)
    return torch.from_numpy(x.transpose(0, 3, 1, 2).copy())


def assert_close(actual, expected, rel=1e-4):
    np.testing.assert_allclose(np.asarray(actual), expected, rtol=rel,
                               atol=rel * np.abs(expected).max())


def test_torchvision_weights_round_trip(tmp_path):
    resnet = randomize(TorchResNet(width=16), seed=0).eval()
    cfg, variables, info = convert_file(tmp_path, resnet.state_dict(), "resnet18.pth",
                                        "--image-size", 32, 48)
    assert (cfg.backbone, cfg.resnet_width, cfg.aggregation) == ("resnet18conv4", 16, "netvlad")
    assert info["image_size"] == [32, 48] and info["descriptor_dim"] == 64 * 64
    assert info["extra"]["format"] == "torchvision"
    assert sorted(info["extra"]["initialised"]) == ["aggregation/centroids",
                                                    "aggregation/conv/kernel"]
    imgs = uint8_images((33, 47))
    feats = make_features_fn(build_network(cfg))(variables, imgs)
    with torch.no_grad():
        r = resnet
        expected = r.layer3(r.layer2(r.layer1(r.maxpool(r.relu(r.bn1(r.conv1(
            torch_input(imgs))))))))
    assert_close(feats, expected.numpy().transpose(0, 2, 3, 1))


@pytest.mark.parametrize("aggregation", ["netvlad", "gem"])
def test_reference_checkpoint_round_trip(tmp_path, aggregation):
    ref = randomize(ReferenceNet(TorchResNet(width=8), aggregation=aggregation, clusters=6),
                    seed=1).eval()
    state = {"module." + k: v for k, v in ref.state_dict().items()}  # DataParallel prefix
    cfg, variables, _ = convert_file(
        tmp_path, {"epoch_num": 3, "model_state_dict": state, "optimizer_state_dict": {},
                   "recalls": np.array([80.1, 90.2, 93.0, 95.5]), "best_r5": np.float64(90.2),
                   "not_improved_num": 1}, "best_model.pth")
    assert cfg.aggregation == aggregation
    imgs = uint8_images((32, 48), seed=2)
    desc = make_describe_fn(build_network(cfg))(variables, imgs)
    with torch.no_grad():
        assert_close(desc, ref(torch_input(imgs)).numpy())


def test_reference_conv5_with_fc_bare_state_dict(tmp_path):
    ref = randomize(ReferenceNet(TorchResNet(width=4), conv5=True, clusters=3,
                                 fc_output_dim=10), seed=3).eval()
    cfg, variables, _ = convert_state_dict(state_dict_numpy(ref), get_config().model)
    assert (cfg.backbone, cfg.netvlad_clusters, cfg.fc_output_dim) == ("resnet18conv5", 3, 10)
    imgs = uint8_images((64, 64), seed=4)
    desc = make_describe_fn(build_network(cfg))(variables, imgs)
    with torch.no_grad():
        assert_close(desc, ref(torch_input(imgs)).numpy())


def test_flags_override_inference():
    sd = state_dict_numpy(TorchResNet(width=4))
    cfg, variables, _ = convert_state_dict(sd, get_config().model, backbone="resnet18conv5",
                                               aggregation="gem", fc_output_dim=8)
    assert (cfg.backbone, cfg.aggregation, cfg.fc_output_dim) == ("resnet18conv5", "gem", 8)
    assert "layer4" in variables["params"]["backbone"]
    np.testing.assert_array_equal(variables["params"]["backbone"]["layer4"]["block1"]["conv2"][
        "kernel"], sd["layer4.1.conv2.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(variables["batch_stats"]["backbone"]["layer2"]["block0"][
        "downsample_bn"]["var"], sd["layer2.0.downsample.1.running_var"])
    ref = {k: v for k, v in state_dict_numpy(
        ReferenceNet(TorchResNet(width=4), aggregation="gem")).items()}
    bb = {k: v for k, v in ref.items() if k.startswith("backbone.")}
    with pytest.raises(CheckpointError, match="--aggregation"):
        convert_state_dict(bb, get_config().model)
    cfg, _, _ = convert_state_dict(bb, get_config().model, aggregation="mac")
    assert cfg.aggregation == "mac"


def test_truncated_or_foreign_checkpoints_name_the_keys():
    sd = state_dict_numpy(ReferenceNet(TorchResNet(width=4), clusters=3))
    broken = dict(sd)
    del broken["backbone.6.1.bn2.running_var"]
    with pytest.raises(CheckpointError, match=r"missing keys: backbone\.6\.1\.bn2\.running_var"):
        convert_state_dict(broken, get_config().model)
    extra = dict(sd, **{"aggregation.extra": np.zeros(3, np.float32)})
    with pytest.raises(CheckpointError, match="unexpected keys: aggregation.extra"):
        convert_state_dict(extra, get_config().model)
    stray = dict(sd, **{"head.weight": np.zeros(3, np.float32)})
    with pytest.raises(CheckpointError, match="unexpected keys.*head.weight"):
        convert_state_dict(stray, get_config().model)
    with pytest.raises(CheckpointError, match="shape mismatches: aggregation.conv.weight"):
        convert_state_dict(dict(sd, **{"aggregation.conv.weight": np.zeros((3, 5, 1, 1))}),
                           get_config().model)
    no_centroids = {k: v for k, v in sd.items() if k != "aggregation.centroids"}
    with pytest.raises(CheckpointError, match="missing keys: aggregation.centroids"):
        convert_state_dict(no_centroids, get_config().model)
    with pytest.raises(CheckpointError, match="conv1.weight"):
        convert_state_dict({"encoder.weight": np.zeros(3)}, get_config().model)
    no_layer3 = {k: v for k, v in sd.items() if not k.startswith("backbone.6.")}
    with pytest.raises(CheckpointError, match="layer3"):
        convert_state_dict(no_layer3, get_config().model)
    with pytest.raises(CheckpointError, match=r"missing keys: backbone\.7\."):
        convert_state_dict(sd, get_config().model, backbone="resnet18conv5")
    with pytest.raises(CheckpointError, match=r"missing keys.*backbone\.4\.0\.conv3\.weight"):
        convert_state_dict(sd, get_config().model, backbone="resnet50conv4")


def test_loading_is_weights_only(tmp_path):
    sd = TorchResNet(width=4).state_dict()
    torch.save({"model_state_dict": sd, "args": argparse.Namespace(lr=1e-5)},
               tmp_path / "unsafe.pth")
    with pytest.raises(CheckpointError, match="weights_only"):
        load_torch_checkpoint(tmp_path / "unsafe.pth")
    torch.save({"model_state_dict": sd, "recalls": np.array([1.0, 2.0])}, tmp_path / "ok.pth")
    loaded = load_torch_checkpoint(tmp_path / "ok.pth")
    assert set(loaded) == set(sd) and isinstance(loaded["conv1.weight"], np.ndarray)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_torch_checkpoint(tmp_path / "missing.pth")
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="garbage.pth"):
        load_torch_checkpoint(tmp_path / "garbage.pth")
    assert run_script("--input", tmp_path / "garbage.pth", "--output", tmp_path / "m") == 2
    assert not (tmp_path / "m").exists()


def test_converted_variables_are_a_tree_of_float32():
    sd = state_dict_numpy(ReferenceNet(TorchResNet(width=4), clusters=3))
    _, variables, _ = convert_state_dict(sd, get_config().model)
    assert set(variables) == {"params", "batch_stats"}
    assert all(v.dtype == np.float32 for v in jax.tree_util.tree_leaves(variables))


def test_torchvision_vgg16_and_reference_alexnet_checkpoints(tmp_path):
    vgg = randomize(TorchVGG16(width=8), seed=3).eval()
    cfg, variables, info = convert_file(tmp_path, vgg.state_dict(), "vgg16.pth",
                                        "--image-size", 32, 48)
    assert (cfg.backbone, cfg.resnet_width, info["extra"]["format"]) == ("vgg16", 8, "torchvision")
    imgs = uint8_images((40, 56))
    feats = make_features_fn(build_network(cfg))(variables, imgs)
    with torch.no_grad():  # the reference's cut: features[:-2]
        expected = vgg.features[:-2](torch_input(imgs)).numpy().transpose(0, 2, 3, 1)
    assert_close(feats, expected)

    alex = randomize(ReferenceNet(TorchAlexNet(width=8), aggregation="gem"), seed=4).eval()
    sd = state_dict_numpy(alex)
    assert "backbone.0.weight" in sd and not any(k.startswith("backbone.1.") for k in sd)
    cfg, variables, report = convert_state_dict(sd, get_config().model)
    assert (cfg.backbone, cfg.aggregation, report["format"]) == ("alexnet", "gem", "reference")
    imgs = uint8_images((67, 67), seed=1)
    with torch.no_grad():
        assert_close(make_describe_fn(build_network(cfg))(variables, imgs),
                     alex(torch_input(imgs)).numpy())

    with pytest.raises(CheckpointError, match="backbone is alexnet, not vgg16"):
        convert_state_dict(sd, get_config().model, backbone="vgg16")
    with pytest.raises(CheckpointError, match="backbone is alexnet, not resnet18conv4"):
        convert_state_dict(sd, get_config().model, backbone="resnet18conv4")
    no_conv5 = {k: v for k, v in sd.items() if not k.startswith("backbone.10.")}
    with pytest.raises(CheckpointError, match=r"features indices \[0, 3, 6, 8\], which is "
                                              r"neither vgg16 .* nor alexnet"):
        convert_state_dict(no_conv5, get_config().model)
    wrong = dict(sd, **{"backbone.6.weight": np.zeros((48, 40, 3, 3), np.float32)})
    with pytest.raises(CheckpointError, match=r"shape mismatches: backbone\.6\.weight"):
        convert_state_dict(wrong, get_config().model)


def test_cirtorch_off_the_shelf_network(tmp_path):
    """A Radenović cirtorch retrieval network (features / pool / whiten, in a dict with 'meta'
    and 'state_dict', as published): the descriptor L2(whiten(L2(GeM(features)))) is the
    reference's --l2 after_pool --aggregation gem --fc_output_dim D network."""
    from torch import nn
    from torch_reference import GeM
    resnet = randomize(TorchResNet(bottleneck=True, layers=(3, 4, 6, 3), width=8), seed=5)
    net = nn.Module()
    net.features = nn.Sequential(*list(resnet.children())[:-2])
    net.pool = GeM()
    net.whiten = nn.Linear(256, 48)
    with torch.no_grad():
        net.pool.p.fill_(2.7)
        net.whiten.weight.copy_(torch.randn(48, 256) / 16)
    net.eval()
    cfg, variables, info = convert_file(
        tmp_path, {"architecture": "resnet50", "meta": {"outputdim": 48, "mean": [0.485]},
                   "state_dict": net.state_dict()}, "rSfM120k-tl-resnet50-gem-w.pth")
    assert (cfg.backbone, cfg.aggregation, cfg.l2, cfg.fc_output_dim) == \
        ("resnet50conv5", "gem", "after_pool", 48)
    assert info["extra"]["format"] == "cirtorch"
    imgs = uint8_images((40, 56))
    with torch.no_grad():
        x = torch.nn.functional.normalize(net.pool(net.features(torch_input(imgs)))[:, :, 0, 0])
        expected = torch.nn.functional.normalize(net.whiten(x)).numpy()
    assert_close(make_describe_fn(build_network(cfg))(variables, imgs), expected)
    sd = state_dict_numpy(net)
    with pytest.raises(CheckpointError, match="unexpected key in the cirtorch checkpoint: "
                                              "lwhiten.weight"):
        convert_state_dict(dict(sd, **{"lwhiten.weight": np.zeros((4, 4))}), get_config().model)
