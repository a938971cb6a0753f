"""MixVPR, Conv-AP and CosPlace: parity with PyTorch modules written here from the published
architectures, descriptor sizes, the whole network with each head, and option checks."""
from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from configs.default import get_config
from vgjax.config import ConfigError
from vgjax.models.convap import ConvAP, ConvAPSettings, adaptive_pool_matrix
from vgjax.models.cosplace import CosPlaceHead
from vgjax.models.mixvpr import MixVPR, MixVPRSettings
from vgjax.models.network import (build_network, descriptor_dim, head_options, init_variables,
                                  input_size_for)

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parent.parent


def model_cfg(aggregation="netvlad", options=None, **overrides):
    cfg = get_config().model
    cfg.aggregation = aggregation
    for k, v in overrides.items():
        cfg[k] = v
    for k, v in (options or {}).items():
        cfg[aggregation][k] = v
    return cfg


def features(shape, seed=0):
    """Random local features (N, h, w, C) float32 and the same as NCHW torch."""
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return x, torch.from_numpy(x.transpose(0, 3, 1, 2).copy())


def randomized(params, seed=1):
    """`params` with every leaf random (LayerNorm scales and biases included)."""
    leaves, tree = jax.tree_util.tree_flatten(params)
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_unflatten(
        tree, [jnp.asarray(rng.uniform(-1, 1, np.shape(x)).astype(np.float32)) for x in leaves])


def relative_error(actual, expected) -> float:
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


def linear(fc: nn.Linear, p):
    """Copies a TorchLinear's params (kernel (in, out), bias) into a torch Linear."""
    fc.weight.copy_(torch.from_numpy(np.asarray(p["kernel"]).T.copy()))
    if fc.bias is not None:
        fc.bias.copy_(torch.from_numpy(np.array(p["bias"])))


# PyTorch references, written from the papers' and the published code's architecture -------

class TorchMixVPR(nn.Module):
    def __init__(self, channels, h, w, out_channels, depth, ratio, rows):
        super().__init__()
        hw = h * w
        self.mix = nn.ModuleList(nn.Sequential(
            nn.LayerNorm(hw), nn.Linear(hw, int(hw * ratio)), nn.ReLU(),
            nn.Linear(int(hw * ratio), hw)) for _ in range(depth))
        self.channel_proj = nn.Linear(channels, out_channels)
        self.row_proj = nn.Linear(hw, rows, bias=False)

    def forward(self, x):  # (N, C, h, w)
        x = x.flatten(2)
        for block in self.mix:
            x = x + block(x)
        x = self.channel_proj(x.permute(0, 2, 1)).permute(0, 2, 1)
        return F.normalize(self.row_proj(x).flatten(1), dim=-1)


class TorchConvAP(nn.Module):
    def __init__(self, channels, out_channels, s1, s2):
        super().__init__()
        self.conv = nn.Conv2d(channels, out_channels, 1, bias=True)
        self.pool = nn.AdaptiveAvgPool2d((s1, s2))

    def forward(self, x):
        return F.normalize(self.pool(self.conv(x)).flatten(1), dim=1)


class TorchCosPlace(nn.Module):
    def __init__(self, channels, out_dim, p=3.0, eps=1e-6):
        super().__init__()
        self.p, self.eps = nn.Parameter(torch.ones(1) * p), eps
        self.fc = nn.Linear(channels, out_dim)

    def forward(self, x):
        x = F.normalize(x, dim=1)  # every local feature, over its channels
        x = F.avg_pool2d(x.clamp(min=self.eps).pow(self.p), x.shape[-2:]).pow(1.0 / self.p)
        return F.normalize(self.fc(x[:, :, 0, 0]), dim=1)


def test_mixvpr_matches_torch():
    o = MixVPRSettings(in_h=3, in_w=5, out_channels=7, mix_depth=2, mlp_ratio=1.5, out_rows=3)
    x, xt = features((2, 3, 5, 6))
    head = MixVPR(o)
    params = randomized(head.init(jax.random.key(0), x)["params"])
    desc = jax.jit(lambda p, x: head.apply({"params": p}, x))(params, x)
    ref = TorchMixVPR(6, 3, 5, 7, 2, 1.5, 3)
    with torch.no_grad():
        for i, block in enumerate(ref.mix):
            p = params[f"mix_{i}"]
            block[0].weight.copy_(torch.from_numpy(np.array(p["norm"]["scale"])))
            block[0].bias.copy_(torch.from_numpy(np.array(p["norm"]["bias"])))
            linear(block[1], p["fc1"])
            linear(block[3], p["fc2"])
        linear(ref.channel_proj, params["channel_proj"])
        linear(ref.row_proj, params["row_proj"])
        expected = ref(xt).numpy()
    assert desc.shape == (2, 7 * 3) and params["mix_0"]["fc1"]["kernel"].shape == (15, 22)
    err = relative_error(desc, expected)
    print(f"mixvpr max relative error {err:.2e}")
    assert err < 1e-4


def test_convap_matches_torch_with_overlapping_bins():
    """5x7 features into 2x2 and 2x3 bins: rows 0-2 / 2-4, columns 0-3 / 3-6 (and 0-2 / 2-4
    / 4-6) overlap, as torch's adaptive pooling makes them."""
    x, xt = features((2, 5, 7, 6))
    for s1, s2 in ((2, 2), (2, 3)):
        head = ConvAP(ConvAPSettings(out_channels=4, s1=s1, s2=s2))
        params = randomized(head.init(jax.random.key(0), x)["params"])
        desc = jax.jit(lambda p, x: head.apply({"params": p}, x))(params, x)
        ref = TorchConvAP(6, 4, s1, s2)
        with torch.no_grad():
            kernel = np.asarray(params["channel_pool"]["kernel"])  # (1, 1, C, out)
            ref.conv.weight.copy_(torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy()))
            ref.conv.bias.copy_(torch.from_numpy(np.array(params["channel_pool"]["bias"])))
            expected = ref(xt).numpy()
        assert desc.shape == (2, 4 * s1 * s2)
        err = relative_error(desc, expected)
        print(f"convap {s1}x{s2} max relative error {err:.2e}")
        assert err < 1e-4
    for size in range(1, 12):  # the bins themselves, for any size (numpy only)
        for bins in range(1, 6):
            eye = torch.eye(size).reshape(size, 1, size)
            expected = F.adaptive_avg_pool1d(eye, bins)[:, 0, :].numpy().T  # (bins, size)
            np.testing.assert_allclose(adaptive_pool_matrix(size, bins), expected, atol=1e-7)


def test_cosplace_matches_torch():
    x, xt = features((2, 3, 4, 6))
    head = CosPlaceHead(out_dim=5)
    params = head.init(jax.random.key(0), x)["params"]
    params = {"p": jnp.array([2.5], jnp.float32), "fc": randomized(params["fc"])}
    desc = jax.jit(lambda p, x: head.apply({"params": p}, x))(params, x)
    ref = TorchCosPlace(6, 5, p=2.5)
    with torch.no_grad():
        linear(ref.fc, params["fc"])
        expected = ref(xt).numpy()
    assert desc.shape == (2, 5)
    err = relative_error(desc, expected)
    print(f"cosplace max relative error {err:.2e}")
    assert err < 1e-4


def test_descriptor_dims_follow_the_options():
    assert descriptor_dim(model_cfg("mixvpr")) == 1024 * 4  # the published defaults
    assert descriptor_dim(model_cfg("convap")) == 512 * 2 * 2
    assert descriptor_dim(model_cfg("cosplace")) == 512
    assert descriptor_dim(model_cfg("mixvpr", dict(out_channels=32, out_rows=3))) == 96
    assert descriptor_dim(model_cfg("convap", dict(out_channels=16, s1=3, s2=1))) == 48
    assert descriptor_dim(model_cfg("cosplace", dict(out_dim=128))) == 128
    assert descriptor_dim(model_cfg("cosplace", fc_output_dim=64)) == 64
    # a model section without the head's options (a model.json written before they existed)
    old = ml_collections.ConfigDict({"backbone": "resnet18conv4", "aggregation": "convap",
                                     "netvlad_clusters": 64})
    assert head_options(old) == ConvAPSettings() and descriptor_dim(old) == 2048
    assert head_options(model_cfg("netvlad")) is None
    net = build_network(model_cfg("mixvpr", dict(in_h=3)))
    assert net.head_options == MixVPRSettings(in_h=3) and hash(net.head_options)
    # MixVPR is traced on the smallest image whose features are in_h x in_w
    assert input_size_for("resnet18conv4", 20, 20) == (305, 305)
    assert input_size_for("resnet18conv4", 3, 4) == (33, 49)


HEADS = {"mixvpr": dict(in_h=3, in_w=4, out_channels=8, mix_depth=2, out_rows=2),
         "convap": dict(out_channels=8, s1=2, s2=3), "cosplace": dict(out_dim=16)}


def _attention_heads():
    from test_heads_attention import HEADS as attention
    return attention


@pytest.mark.parametrize("aggregation", [*HEADS, "boq", "salad"])
def test_each_head_in_the_network_describes_and_trains(aggregation):
    """Every modern head as the network's head (VGNetwork.aggregate, with the options
    resolved from the config) on resnet18conv4's (width 8) local features of a 48x64 image
    (3x4): descriptors of descriptor_dim values and unit norm, a finite gradient that
    reaches the head. One compilation each, of the head only: the backbone and the head
    together are exercised by tests/test_efficientnet.py::test_every_aggregation_works_on_lite0."""
    from vgjax.models.backbones import parse_backbone
    from vgjax.models.network import VGNetwork, feature_dim
    options = {**HEADS, **_attention_heads()}[aggregation]
    cfg = model_cfg(aggregation, options, resnet_width=8)
    net = build_network(cfg)
    h, w = parse_backbone(cfg.backbone).feature_size(48, 64)
    feats = features((3, h, w, feature_dim(cfg)))[0]

    @jax.jit
    def step(key):
        params = net.init(key, feats[:1], method=VGNetwork.aggregate)["params"]

        def loss(params):
            desc = net.apply({"params": params}, feats, method=VGNetwork.aggregate)
            return jnp.sum(desc[0] * desc[1]) - jnp.sum(desc[0] * desc[2]), desc

        return jax.value_and_grad(loss, has_aux=True)(params)

    (value, desc), grads = step(jax.random.key(0))
    assert desc.shape == (3, descriptor_dim(cfg))
    np.testing.assert_allclose(np.linalg.norm(desc, axis=1), 1.0, rtol=1e-5)
    leaves = jax.tree_util.tree_leaves(grads)
    assert np.isfinite(float(value)) and all(np.isfinite(g).all() for g in leaves)
    assert any(np.abs(g).max() > 0 for g in jax.tree_util.tree_leaves(grads["aggregation"]))


def test_mixvpr_model_dir_round_trip_and_older_model_json(tmp_path):
    """A MixVPR model dir keeps its options; a model.json without the new sections (written
    before they existed) still loads."""
    from vgjax.models.io import load_model, save_model
    from vgjax.models.network import abstract_variables

    def zeros(cfg):  # the variables' shapes, without compiling an init
        return jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype),
                                      abstract_variables(cfg))

    cfg = model_cfg("mixvpr", HEADS["mixvpr"], resnet_width=8)
    save_model(tmp_path / "m", cfg, zeros(cfg), image_size=(48, 64))
    loaded, variables = load_model(tmp_path / "m", device_put=False)
    assert head_options(loaded) == MixVPRSettings(**HEADS["mixvpr"])
    assert variables["params"]["aggregation"]["row_proj"]["kernel"].shape == (12, 2)
    old = model_cfg("gem", resnet_width=8)
    save_model(tmp_path / "old", old, zeros(old), image_size=(48, 64))
    info = json.loads((tmp_path / "old" / "model.json").read_text())
    for section in ("mixvpr", "convap", "cosplace"):
        del info["model"][section]
    (tmp_path / "old" / "model.json").write_text(json.dumps(info))
    loaded, _ = load_model(tmp_path / "old", device_put=False)
    assert loaded.aggregation == "gem" and descriptor_dim(loaded) == 32


@pytest.mark.parametrize("override, message", [
    ("model.mixvpr.in_h=0", "model.mixvpr.in_h: must be >= 1, got 0"),
    ("model.mixvpr.out_channels=-2", "model.mixvpr.out_channels: must be >= 1, got -2"),
    ("model.mixvpr.out_rows=0", "model.mixvpr.out_rows: must be >= 1, got 0"),
    ("model.mixvpr.mix_depth=-1", "model.mixvpr.mix_depth: must be >= 0"),
    ("model.mixvpr.mlp_ratio=0", "model.mixvpr.mlp_ratio: must be > 0, got 0.0"),
    ("model.mixvpr.mlp_ratio=0.001", "model.mixvpr.mlp_ratio: 0.001 leaves the mixer MLPs"),
    ("model.convap.out_channels=0", "model.convap.out_channels: must be >= 1, got 0"),
    ("model.convap.s1=0", "model.convap.s1: must be >= 1, got 0"),
    ("model.convap.s2=-1", "model.convap.s2: must be >= 1, got -1"),
    ("model.cosplace.out_dim=0", "model.cosplace.out_dim: must be >= 1, got 0"),
    ("model.gem_p=0", "model.gem_p: must be > 0"),
])
def test_bad_head_options_are_refused_in_one_line(override, message):
    from vgjax.cli.config import load_config
    head = override.split(".")[1] if override.count(".") > 1 else "cosplace"
    with pytest.raises(ConfigError) as e:
        load_config(REPO / "configs" / "default.py", [f"model.aggregation={head}", override])
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_only_the_configured_heads_options_are_checked():
    from vgjax.cli.config import load_config
    load_config(REPO / "configs" / "default.py", ["model.convap.s1=0", "model.mixvpr.in_h=0"])


def test_mixvpr_refuses_images_whose_features_do_not_fit(tmp_path):
    from conftest import write_dataset
    from vgjax.cli.config import load_config, validate_training
    for name in ("pitts30k", "sf-xs", "tokyo-xs", "tokyo-night"):  # the splits it would read
        write_dataset(tmp_path, name=name, n_db=2, n_q=1)
    demo = REPO / "configs" / "demo.py"  # 96x128 -> 6x8 local features at stride 16
    fits = [f"data.root={tmp_path}", "model.aggregation=mixvpr", "model.mixvpr.in_h=6",
            "model.mixvpr.in_w=8"]
    validate_training(load_config(demo, fits))
    for extra, match in [
            (["model.mixvpr.in_w=6"], r"^data\.resize=\(96, 128\): model\.aggregation=mixvpr: "
                                      r"the local features are 6x8, .*model\.mixvpr\.in_h x "
                                      r"model\.mixvpr\.in_w = 6x6"),
            (["test.scales=[1.0, 0.5]"], r"^[\w.]+\.scales: \[1\.0, 0\.5\]: model\.aggre"),
            (["test.method=single_query"], r"^[\w.]+\.method: 'single_query' describes"),
            (["test.pca_dim=8"], r"^[\w.]+\.pca_native_size: PCA images")]:
        with pytest.raises(ConfigError, match=match) as e:
            validate_training(load_config(demo, fits + extra))
        assert "\n" not in str(e.value)
    # the module itself refuses other sizes (e.g. a describe call at another size)
    net = build_network(model_cfg("mixvpr", dict(in_h=3, in_w=4), resnet_width=8))
    with pytest.raises(ValueError, match="local features are 4x4.*3x4"):
        jax.eval_shape(lambda x: net.init(jax.random.key(0), x),
                       jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.uint8))
