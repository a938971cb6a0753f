"""Conversion of the published checkpoints of the modern heads: CosPlace / EigenPlaces,
MixVPR, Conv-AP and BoQ. Each torch model here has the published module names (so its
state_dict keys are the published checkpoints'), tiny widths and random weights; the
converted vgjax model must give its descriptors."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_convert import assert_close, convert_file, torch_input, uint8_images
from test_heads_attention import TorchBoQBlock
from torch import nn
from torch_reference import (GeM, L2Norm, TorchResNet, TorchVGG16, randomize,
                             state_dict_numpy)

from configs.default import get_config
from vgjax.models.convert import CheckpointError, convert_state_dict
from vgjax.models.network import build_network, make_describe_fn

torch.set_num_threads(1)
R50 = {"bottleneck": True, "layers": (3, 4, 6, 3)}
R152 = {"bottleneck": True, "layers": (3, 8, 36, 3)}


def randomize_all(module: nn.Module, seed=0):
    """`randomize` plus what it leaves at torch's init: LayerNorms, bias-free Linears,
    attention projections, BoQ's queries."""
    randomize(module, seed)
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=g))
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=g))
            elif isinstance(m, nn.MultiheadAttention):
                d = m.embed_dim
                m.in_proj_weight.copy_(torch.randn(3 * d, d, generator=g) / d ** 0.5)
                m.in_proj_bias.copy_(0.1 * torch.randn(3 * d, generator=g))
            elif isinstance(m, TorchBoQBlock):
                m.queries.copy_(torch.randn(m.queries.shape, generator=g))
    return module.eval()


def resnet_forward(x, r):
    x = r.maxpool(r.relu(r.bn1(r.conv1(x))))
    for name in ("layer1", "layer2", "layer3", "layer4"):
        if getattr(r, name, None) is not None:
            x = getattr(r, name)(x)
    return x


# The published models, with their module names --------------------------------------------

class CosPlaceNet(nn.Module):
    """CosPlace's / EigenPlaces' GeoLocalizationNet: `backbone` = Sequential of the ResNet's
    children but avgpool and fc (VGG-16: features[:-2]), `aggregation` = Sequential(L2Norm,
    GeM, Flatten, Linear, L2Norm)."""

    def __init__(self, net, fc_output_dim):
        super().__init__()
        if hasattr(net, "features"):
            layers = list(net.features.children())[:-2]
            dim = layers[-1].out_channels
        else:
            layers = list(net.children())[:-2]
            last = net.layer4[-1]
            dim = (last.bn3 if hasattr(last, "bn3") else last.bn2).num_features
        self.backbone = nn.Sequential(*layers)
        self.aggregation = nn.Sequential(L2Norm(), GeM(), nn.Flatten(),
                                         nn.Linear(dim, fc_output_dim), L2Norm())

    def forward(self, x):
        return self.aggregation(self.backbone(x))


class GSVResNet(nn.Module):
    """The GSV-Cities / MixVPR code's backbone: torchvision's ResNet as `model`, without
    avgpool and fc, layer4 None when cropped."""

    def __init__(self, crop_layer4, **kw):
        super().__init__()
        self.model = TorchResNet(**kw)
        self.model.avgpool = None
        self.model.fc = None
        if crop_layer4:
            self.model.layer4 = None

    def forward(self, x):
        return resnet_forward(x, self.model)


class FeatureMixerLayer(nn.Module):
    def __init__(self, hw, ratio):
        super().__init__()
        self.mix = nn.Sequential(nn.LayerNorm(hw), nn.Linear(hw, int(hw * ratio)), nn.ReLU(),
                                 nn.Linear(int(hw * ratio), hw))

    def forward(self, x):
        return x + self.mix(x)


class MixVPR(nn.Module):
    def __init__(self, channels, h, w, out_channels, depth, ratio, rows):
        super().__init__()
        self.mix = nn.Sequential(*[FeatureMixerLayer(h * w, ratio) for _ in range(depth)])
        self.channel_proj = nn.Linear(channels, out_channels)
        self.row_proj = nn.Linear(h * w, rows)  # with bias, as the released code

    def forward(self, x):
        x = self.mix(x.flatten(2))
        x = self.row_proj(self.channel_proj(x.permute(0, 2, 1)).permute(0, 2, 1))
        return F.normalize(x.flatten(1), dim=-1)


class ConvAP(nn.Module):
    def __init__(self, channels, out_channels, s1, s2):
        super().__init__()
        self.channel_pool = nn.Conv2d(channels, out_channels, 1, bias=True)
        self.AAP = nn.AdaptiveAvgPool2d((s1, s2))

    def forward(self, x):
        return F.normalize(self.AAP(self.channel_pool(x)).flatten(1), dim=1)


class BoQ(nn.Module):
    def __init__(self, channels, proj, queries, layers, rows):
        super().__init__()
        self.proj_c = nn.Conv2d(channels, proj, 3, padding=1)
        self.norm_input = nn.LayerNorm(proj)
        self.boqs = nn.ModuleList(TorchBoQBlock(proj, queries, proj // 64)
                                  for _ in range(layers))
        self.fc = nn.Linear(layers * queries, rows)

    def forward(self, x):
        x = self.norm_input(self.proj_c(x).flatten(2).permute(0, 2, 1))
        outs = []
        for block in self.boqs:
            x, out = block(x)
            outs.append(out)
        out = self.fc(torch.cat(outs, dim=1).permute(0, 2, 1))
        return F.normalize(out.flatten(1), dim=-1), None  # (descriptor, attention maps)


class VPRModel(nn.Module):
    def __init__(self, backbone, aggregator):
        super().__init__()
        self.backbone, self.aggregator = backbone, aggregator

    def forward(self, x):
        out = self.aggregator(self.backbone(x))
        return out[0] if isinstance(out, tuple) else out


class BoQResNet(nn.Module):
    """BoQ's ResNet backbone: `net` = Sequential(conv1, bn1, relu, maxpool, layer1..3)."""

    def __init__(self, **kw):
        super().__init__()
        r = TorchResNet(**kw)
        self.net = nn.Sequential(r.conv1, r.bn1, r.relu, r.maxpool, r.layer1, r.layer2,
                                 r.layer3)

    def forward(self, x):
        return self.net(x)


def descriptors(cfg, variables, images):
    return make_describe_fn(build_network(cfg))(variables, images)


def check(torch_model, cfg, variables, images):
    with torch.no_grad():
        expected = torch_model(torch_input(images)).numpy()
    actual = np.asarray(descriptors(cfg, variables, images))
    err = float(np.abs(actual - expected).max() / np.abs(expected).max())
    print(f"{cfg.backbone} + {cfg.aggregation}: max relative error {err:.2e}")
    assert_close(actual, expected)
    return err


# Tests -------------------------------------------------------------------------------------

@pytest.mark.parametrize("net,name", [
    (lambda: TorchResNet(width=8), "resnet18conv5"),
    (lambda: TorchVGG16(width=8), "vgg16"),
])
def test_cosplace_and_eigenplaces_checkpoints(tmp_path, net, name):
    model = randomize_all(CosPlaceNet(net(), 12), seed=1)
    sd = model.state_dict()
    assert {k for k in sd if k.startswith("aggregation.")} == {
        "aggregation.1.p", "aggregation.3.weight", "aggregation.3.bias"}
    cfg, variables, info = convert_file(tmp_path, sd, "ResNet18_12_cosplace.pth",
                                        "--image-size", 64, 64)
    assert (cfg.backbone, cfg.aggregation, cfg.cosplace.out_dim, cfg.fc_output_dim) == \
        (name, "cosplace", 12, 0)
    assert info["extra"]["format"] == "cosplace" and info["descriptor_dim"] == 12
    check(model, cfg, variables, uint8_images((48, 64), seed=2))


def test_cosplace_resnet152_layout():
    """ResNet-152's block counts are read from the keys (no forward: 50 blocks compile
    slowly); the variables are the checkpoint's."""
    sd = state_dict_numpy(CosPlaceNet(TorchResNet(**R152, width=2), 16))
    cfg, variables, report = convert_state_dict(sd, get_config().model)
    assert (cfg.backbone, cfg.resnet_width, cfg.cosplace.out_dim, report["format"]) == \
        ("resnet152conv5", 2, 16, "cosplace")
    agg = variables["params"]["aggregation"]
    np.testing.assert_array_equal(agg["fc"]["kernel"], sd["aggregation.3.weight"].T)
    np.testing.assert_array_equal(agg["p"], sd["aggregation.1.p"])
    np.testing.assert_array_equal(
        variables["params"]["backbone"]["layer3"]["block35"]["conv3"]["kernel"],
        sd["backbone.6.35.conv3.weight"].transpose(2, 3, 1, 0))


def test_mixvpr_resnet50_checkpoint(tmp_path):
    """resnet50_MixVPR_*.ckpt: layer4 cropped (conv4); in_h x in_w = 2 x 2 here (32 x 32
    images at stride 16), read from the mixer's width."""
    model = randomize_all(VPRModel(GSVResNet(True, **R50, width=4),
                                   MixVPR(64, 2, 2, 8, 2, 1.5, 3)), seed=3)
    sd = model.state_dict()
    assert "aggregator.mix.1.mix.3.weight" in sd and "backbone.model.layer3.5.bn3.weight" in sd
    cfg, variables, info = convert_file(tmp_path, sd, "resnet50_MixVPR.ckpt")
    o = cfg.mixvpr
    assert (cfg.backbone, cfg.aggregation, o.in_h, o.in_w, o.out_channels, o.mix_depth,
            o.out_rows, o.row_bias) == ("resnet50conv4", "mixvpr", 2, 2, 8, 2, 3, True)
    assert int(o.in_h * o.in_w * o.mlp_ratio) == 6
    assert info["image_size"] == [32, 32] and info["extra"]["format"] == "gsv-cities"
    check(model, cfg, variables, uint8_images((32, 32), seed=4))

    sd = state_dict_numpy(model)
    del sd["aggregator.mix.1.mix.0.bias"]
    with pytest.raises(CheckpointError, match=r"missing keys: aggregator\.mix\.1\.mix\.0\.bias"):
        convert_state_dict(sd, get_config().model)
    sd = dict(state_dict_numpy(model), **{"backbone.model.fc.weight": np.zeros((3, 4))})
    with pytest.raises(CheckpointError, match=r"unexpected keys in the gsv-cities checkpoint: "
                                              r"backbone\.model\.fc\.weight"):
        convert_state_dict(sd, get_config().model)
    sd = state_dict_numpy(model)
    with pytest.raises(CheckpointError, match=r"shape mismatches: aggregator\.mix\.0\.mix\.1"):
        convert_state_dict(sd, get_config().model, head_options={"in_h": 1, "in_w": 3})


def test_convap_resnet50_checkpoint(tmp_path):
    """resnet50_ConvAP_*.ckpt: the whole ResNet-50 (conv5); s1 x s2 (no parameters) from
    --head-option, here 2 x 3 on 3 x 3 features (overlapping bins)."""
    model = randomize_all(VPRModel(GSVResNet(False, **R50, width=2), ConvAP(64, 6, 2, 3)),
                          seed=5)
    cfg, variables, info = convert_file(tmp_path, model.state_dict(), "resnet50_ConvAP.ckpt",
                                        "--head-option", "s2=3", "--image-size", 96, 96)
    assert (cfg.backbone, cfg.aggregation, cfg.convap.out_channels, cfg.convap.s1,
            cfg.convap.s2, info["descriptor_dim"]) == ("resnet50conv5", "convap", 6, 2, 3, 36)
    check(model, cfg, variables, uint8_images((72, 80), seed=6))
    sd = dict(state_dict_numpy(model), **{"aggregator.extra": np.zeros(2)})
    with pytest.raises(CheckpointError, match=r"unexpected keys: aggregator\.extra"):
        convert_state_dict(sd, get_config().model)
    with pytest.raises(CheckpointError, match="no option 'nope'"):
        convert_state_dict(state_dict_numpy(model), get_config().model,
                           head_options={"nope": 1})


def test_boq_resnet50_checkpoint(tmp_path):
    """resnet50_16384.pth's layout: proj_c 3x3 C -> d, d // 64 heads (d = 128: 2 heads)."""
    model = randomize_all(VPRModel(BoQResNet(**R50, width=4), BoQ(64, 128, 3, 2, 4)), seed=7)
    sd = model.state_dict()
    assert "aggregator.boqs.1.encoder.self_attn.in_proj_weight" in sd
    assert "backbone.net.6.5.conv3.weight" in sd
    cfg, variables, info = convert_file(tmp_path, sd, "resnet50_16384.pth",
                                        "--image-size", 64, 64)
    o = cfg.boq
    assert (cfg.backbone, cfg.aggregation, o.proj_channels, o.proj_kernel, o.num_queries,
            o.num_layers, o.row_dim, o.num_heads) == ("resnet50conv4", "boq", 128, 3, 3, 2, 4, 0)
    assert info["extra"]["format"] == "boq" and info["descriptor_dim"] == 128 * 4
    check(model, cfg, variables, uint8_images((40, 56), seed=8))

    sd = state_dict_numpy(model)
    del sd["aggregator.boqs.0.cross_attn.in_proj_bias"]
    with pytest.raises(CheckpointError,
                       match=r"missing keys: aggregator\.boqs\.0\.cross_attn\.in_proj_bias"):
        convert_state_dict(sd, get_config().model)
    sd = dict(state_dict_numpy(model))
    sd["aggregator.boqs.1.self_attn.in_proj_weight"] = np.zeros((3 * 64, 128), np.float32)
    with pytest.raises(CheckpointError, match=r"shape mismatches: aggregator\.boqs\.1\.self_attn"
                                              r"\.in_proj_weight: checkpoint \(192, 128\), "
                                              r"model needs \(384, 128\)"):
        convert_state_dict(sd, get_config().model)
