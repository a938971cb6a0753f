"""DINOv2 ViT backbones: parity with a torch DINOv2 written here (random weights in the hub's
key layout, tiny sizes; the native grid and grids needing the position embeddings resized,
with and without registers, MLP and SwiGLU FFNs), the `cls` and `salad` heads on the CLS
token, converting hub / timm files into a model dir that `vgjax.describe` runs, the
published SALAD and BoQ-DINOv2 models with their heads, and training: the frozen blocks stay
as they were, the trained ones move."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from jax.sharding import NamedSharding, PartitionSpec as P
from torch import nn

from configs.default import get_config
from vgjax import describe
from vgjax.models.convert import CheckpointError, convert_state_dict
from vgjax.models.network import (build_network, descriptor_dim, input_normalization, normalize,
                                  num_frozen, trainable_mask)
from vgjax.models.vit import VITS, bicubic_matrix, parse_vit

torch.set_num_threads(1)
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "convert_torch_weights.py"
WIDTH, DEPTH, HEADS, GRID = 32, 2, 2, 4  # 4 x 4 patches = 56 x 56 px at the native size


class TorchBlock(nn.Module):
    """DINOv2's pre-norm block with LayerScale (torch's own attention)."""

    def __init__(self, dim, heads, swiglu):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
        self.attn = nn.Module()
        self.attn.qkv, self.attn.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.ls1, self.ls2 = nn.Module(), nn.Module()
        self.ls1.gamma = nn.Parameter(torch.randn(dim))
        self.ls2.gamma = nn.Parameter(torch.randn(dim))
        self.mlp = nn.Module()
        self.swiglu = swiglu
        if swiglu:
            hidden = (int(4 * dim * 2 / 3) + 7) // 8 * 8
            self.mlp.w12, self.mlp.w3 = nn.Linear(dim, 2 * hidden), nn.Linear(hidden, dim)
        else:
            self.mlp.fc1, self.mlp.fc2 = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.attn.qkv(self.norm1(x)).reshape(b, n, 3, self.heads, c // self.heads)
        q, k, v = qkv.unbind(2)
        y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2),
                                           v.transpose(1, 2))
        x = x + self.ls1.gamma * self.attn.proj(y.transpose(1, 2).reshape(b, n, c))
        h = self.norm2(x)
        if self.swiglu:
            x1, x2 = self.mlp.w12(h).chunk(2, dim=-1)
            h = self.mlp.w3(F.silu(x1) * x2)
        else:
            h = self.mlp.fc2(F.gelu(self.mlp.fc1(h)))
        return x + self.ls2.gamma * h


class TorchDinoViT(nn.Module):
    """DINOv2's vision transformer (hub key layout), its forward_features' normed tokens."""

    def __init__(self, dim=WIDTH, depth=DEPTH, heads=HEADS, grid=GRID, registers=0,
                 swiglu=False, final_norm=True):
        super().__init__()
        self.grid, self.registers, self.final_norm = grid, registers, final_norm
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, dim, 14, 14)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, grid * grid + 1, dim))
        self.mask_token = nn.Parameter(torch.zeros(1, dim))
        if registers:
            self.register_tokens = nn.Parameter(torch.randn(1, registers, dim))
        self.blocks = nn.ModuleList(TorchBlock(dim, heads, swiglu) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        with torch.no_grad():  # LayerNorms away from their identity start
            for m in self.modules():
                if isinstance(m, nn.LayerNorm):
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.normal_(0, 0.1)

    def pos(self, h, w, height, width):
        if h * w == self.grid ** 2 and height == width:
            return self.pos_embed
        patch = self.pos_embed[:, 1:].reshape(1, self.grid, self.grid, -1).permute(0, 3, 1, 2)
        patch = F.interpolate(patch, mode="bicubic", antialias=self.registers > 0,
                              scale_factor=((h + 0.1) / self.grid, (w + 0.1) / self.grid))
        assert patch.shape[-2:] == (h, w)
        patch = patch.permute(0, 2, 3, 1).reshape(1, h * w, -1)
        return torch.cat([self.pos_embed[:, :1], patch], dim=1)

    def forward(self, x):  # (B, 3, H, W) -> (CLS (B, C), patches (B, h, w, C))
        b, _, height, width = x.shape
        x = self.patch_embed.proj(x)
        h, w = x.shape[-2:]
        x = torch.cat([self.cls_token.expand(b, -1, -1), x.flatten(2).transpose(1, 2)], dim=1)
        x = x + self.pos(h, w, height, width)
        if self.registers:
            x = torch.cat([x[:, :1], self.register_tokens.expand(b, -1, -1), x[:, 1:]], dim=1)
        for block in self.blocks:
            x = block(x)
        if self.final_norm:  # BoQ's DINOv2 backbone takes the tokens without it
            x = self.norm(x)
        return x[:, 0], x[:, 1 + self.registers:].reshape(b, h, w, -1)


def state_dict(model) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def pixels(size, n=2, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, *size, 3), dtype=np.uint8)


def torch_tokens(model, images, backbone):
    x = normalize(images, *input_normalization(backbone)).astype(np.float32)
    with torch.no_grad():
        cls, patches = model(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))
    return cls.numpy(), patches.numpy()


def rel_diff(actual, expected) -> float:
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


def model_cfg(backbone, aggregation="cls", **overrides):
    cfg = get_config().model
    cfg.backbone = backbone
    cfg.aggregation = aggregation
    for k, v in overrides.items():
        cfg[k] = v
    return cfg


def run_script(*argv):
    spec = importlib.util.spec_from_file_location("convert_torch_weights", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main([str(a) for a in argv])


@pytest.mark.parametrize("n_in", [4, 37])
@pytest.mark.parametrize("antialias", [False, True])
def test_position_resizing_is_torch_bicubic_with_the_offset(n_in, antialias):
    """Every output size from 1 to 2.5x the grid, shrinking and growing, the same size
    included (antialiasing then leaves the axis as it is)."""
    grid = torch.randn(1, 3, n_in, n_in, dtype=torch.float64)
    for n_out in sorted({1, 2, 3, n_in - 1, n_in, n_in + 1, 2 * n_in, 5 * n_in // 2}):
        scale = (n_out + 0.1) / n_in
        expected = F.interpolate(grid, scale_factor=(scale, scale), mode="bicubic",
                                 antialias=antialias)[0].numpy()
        m = bicubic_matrix(n_in, n_out, scale, antialias)
        actual = np.einsum("ym,cmn,xn->cyx", m, grid[0].numpy(), m)
        assert actual.shape == expected.shape
        assert rel_diff(actual, expected) < 1e-6, (n_out, rel_diff(actual, expected))


NATIVE, GROWN, SHRUNK, NOT_SQUARE = (56, 56), (84, 75), (42, 45), (56, 62)


@pytest.mark.parametrize("registers, swiglu, sizes", [
    (0, False, (NATIVE, NOT_SQUARE)), (4, False, (GROWN, SHRUNK)), (4, True, (NATIVE,))])
def test_tokens_match_torch_dinov2(registers, swiglu, sizes):
    """Hub-layout weights through `convert_state_dict`: the CLS token and the patch tokens
    equal torch's at the native 4 x 4 grid and at grids that resize the position embeddings
    (4 x 4 from a non-square image, which DINOv2 resizes too; 6 x 5: growing, a non-square
    image; 3 x 3: shrinking). Registers bring the antialiased resizing; every size of
    `bicubic_matrix` is checked against torch above."""
    torch.manual_seed(registers + swiglu)
    ref = TorchDinoViT(registers=registers, swiglu=swiglu).eval()
    backbone = (f"dinov2_custom_d{DEPTH}_w{WIDTH}_h{HEADS}_g{GRID}"
                f"{f'_reg{registers}' if registers else ''}{'_swiglu' if swiglu else ''}")
    cfg, variables, report = convert_state_dict(state_dict(ref), get_config().model,
                                                backbone=backbone, aggregation="cls")
    assert cfg.backbone == backbone and report["format"] == "dinov2"
    net = build_network(cfg)
    encode = jax.jit(lambda v, x: net.apply(v, x, method=type(net).encode))
    for size in sizes:
        images = pixels(size, seed=size[1])
        cls_ref, patches_ref = torch_tokens(ref, images, backbone)
        patches, cls = encode(variables, images)
        assert patches.shape == patches_ref.shape == (2, size[0] // 14, size[1] // 14, WIDTH)
        assert rel_diff(cls, cls_ref) < 1e-4, (size, rel_diff(cls, cls_ref))
        assert rel_diff(patches, patches_ref) < 1e-4, (size, rel_diff(patches, patches_ref))


def test_published_names_and_their_specs():
    sizes = {n: (s.depth, s.width, s.heads, s.registers, s.ffn, s.grid) for n, s in VITS.items()}
    assert sizes["dinov2_vits14"] == (12, 384, 6, 0, "mlp", 37)
    assert sizes["dinov2_vitb14_reg"] == (12, 768, 12, 4, "mlp", 37)
    assert sizes["dinov2_vitl14"] == (24, 1024, 16, 0, "mlp", 37)
    assert sizes["dinov2_vitg14_reg"] == (40, 1536, 24, 4, "swiglu", 37)
    assert VITS["dinov2_vitg14"].ffn_hidden == 4096
    b = parse_vit("dinov2_vitb14")
    assert b.feature_size(322, 336) == (23, 24) and b.channels() == 768
    assert b.input_mean == (0.485, 0.456, 0.406) and not b.antialias
    assert parse_vit("dinov2_vitb14_reg").antialias
    prenorm = parse_vit("dinov2_vitb14_reg_prenorm")
    assert not prenorm.final_norm and prenorm.registers == 4 and parse_vit("resnet18") is None
    cfg = model_cfg("dinov2_vitb14", trainable_from="auto")
    assert num_frozen(cfg) == 1 + 8  # embed, block0..7 frozen: the last 4 blocks train
    assert descriptor_dim(cfg) == 768


def test_cls_needs_a_token_and_remat_a_vit():
    with pytest.raises(ValueError, match="model.aggregation=cls: resnet18conv4 has no global"):
        build_network(model_cfg("resnet18conv4"))
    with pytest.raises(ValueError, match="model.remat: applies to the ViT"):
        build_network(model_cfg("resnet18conv4", "gem", remat=True))
    with pytest.raises(ValueError, match="model.trainable_from: 'layer3' is not a stage"):
        build_network(model_cfg("dinov2_vits14", trainable_from="layer3"))


def timm_layout(sd: dict) -> dict:
    """The hub's state_dict as timm's reg4 checkpoints store it (registers as `reg_token`,
    the CLS position embedding added into `cls_token`, no mask_token); its SwiGLU packed
    into `mlp.fc1` / `mlp.fc2`."""
    out = {k.replace("mlp.w12", "mlp.fc1").replace("mlp.w3", "mlp.fc2"): v
           for k, v in sd.items() if k != "mask_token"}
    if "register_tokens" in out:
        out["reg_token"] = out.pop("register_tokens")
        out["cls_token"] = out["cls_token"] + out["pos_embed"][:, :1]
        out["pos_embed"] = out["pos_embed"][:, 1:]
    return out


def test_convert_script_hub_and_timm_then_describe(tmp_path, capsys):
    """128 wide (two 64-wide heads: inferred): the hub's and timm's layouts read the same;
    the script converts the timm file and `vgjax.describe` on its model dir gives torch's
    L2-normalised CLS tokens (bfloat16 compute: within 3e-2); a wrong --backbone and a
    missing key are refused naming them."""
    torch.manual_seed(3)
    ref = TorchDinoViT(dim=128, registers=4).eval()
    hub = state_dict(ref)
    timm = timm_layout(hub)
    cfg, from_hub, _ = convert_state_dict(hub, aggregation="cls")
    _, from_timm, report = convert_state_dict(timm, aggregation="cls")
    assert report["format"] == "timm"
    a, b = from_hub["params"]["backbone"], from_timm["params"]["backbone"]
    for group in a:
        if group not in ("cls_token", "pos_embed"):
            jax.tree_util.tree_map(np.testing.assert_array_equal, a[group], b[group])
    np.testing.assert_allclose(a["cls_token"] + a["pos_embed"][:, :1],
                               b["cls_token"] + b["pos_embed"][:, :1], atol=1e-6)
    np.testing.assert_array_equal(a["pos_embed"][:, 1:], b["pos_embed"][:, 1:])

    torch.save({k: torch.from_numpy(v) for k, v in timm.items()}, tmp_path / "timm.pth")
    out = tmp_path / "model"
    assert run_script("--input", tmp_path / "timm.pth", "--output", out,
                      "--aggregation", "cls", "--image-size", 56, 70) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["backbone"] == "dinov2_custom_d2_w128_h2_g4_reg4"
    assert printed["format"] == "timm" and printed["descriptor_dim"] == 128
    images = pixels((56, 70))
    folder = tmp_path / "images"
    folder.mkdir()
    from PIL import Image
    for i, img in enumerate(images):
        Image.fromarray(img).save(folder / f"{i}.png")
    assert describe.main(["--checkpoint", str(out), "--images", str(folder),
                          "--out", str(tmp_path / "desc.npy"), "--num-workers", "1"]) == 0
    cls_ref, _ = torch_tokens(ref, images, "dinov2_vits14")
    expected = cls_ref / np.linalg.norm(cls_ref, axis=1, keepdims=True)
    np.testing.assert_allclose(np.load(tmp_path / "desc.npy"), expected, atol=1e-5)
    cfg.dtype = "bfloat16"  # bfloat16 compute, float32 parameters and descriptors
    net = build_network(cfg)
    desc, features = jax.jit(lambda v, x: net.apply(v, x, return_features=True))(from_hub,
                                                                                   images)
    assert features.dtype == jnp.bfloat16 and desc.dtype == jnp.float32
    np.testing.assert_allclose(desc, expected, atol=3e-2)

    assert run_script("--input", tmp_path / "timm.pth", "--output", tmp_path / "bad",
                      "--backbone", "dinov2_vits14", "--aggregation", "cls") == 2
    assert "backbone is dinov2_custom_d2_w128_h2_g4_reg4, not dinov2_vits14" in \
        capsys.readouterr().err
    broken = dict(hub)
    del broken["blocks.1.ls2.gamma"]
    with pytest.raises(CheckpointError, match=r"missing keys: blocks\.1\.ls2\.gamma"):
        convert_state_dict(broken, aggregation="cls")
    with pytest.raises(CheckpointError, match="heads do not show"):
        convert_state_dict(state_dict(TorchDinoViT()), aggregation="cls")


def test_imported_vit_with_salad_trains_only_its_last_block(tiny_city):
    """A converted DINOv2 (depth 2, registers) + SALAD on its CLS token, trainable_from=block1,
    remat, the configured optimizer and the jitted train step: three triplet steps on images
    of the tiny city leave the patch embedding, the tokens and block 0 exactly as imported,
    and move block 1, the final norm and the head."""
    from vgjax.cli.config import load_config
    from vgjax.data.pipeline import load_image
    from vgjax.train import optim
    from vgjax.train.losses import make_term
    from vgjax.train.state import TrainState
    from vgjax.train.step import make_mesh, make_train_step

    torch.manual_seed(5)
    backbone = f"dinov2_custom_d{DEPTH}_w{WIDTH}_h{HEADS}_g{GRID}_reg4"
    salad = {"num_clusters": 4, "cluster_dim": 8, "token_dim": 8, "hidden_dim": 16}
    _, variables, _ = convert_state_dict(
        state_dict(TorchDinoViT(registers=4)), get_config().model, backbone=backbone,
        aggregation="salad", head_options=salad)
    config = load_config(Path(__file__).resolve().parents[1] / "configs" / "smoke.py", [
        f"model.backbone={backbone}", "model.aggregation=salad",
        *(f"model.salad.{k}={v}" for k, v in salad.items()), "model.trainable_from=block1",
        "model.remat=true", "train.lr=1e-2"])
    assert num_frozen(config.model) == 2  # embed, block0
    mesh = make_mesh(1)
    net = build_network(config.model)
    tx = optim.make_optimizer(config.train, trainable_mask(variables["params"], config.model))
    step = make_train_step(net, tx, [make_term("triplet", {"margin": 0.1})], 1, mesh)
    paths = sorted(p for p in Path(tiny_city).rglob("*") if p.suffix in (".jpg", ".png"))
    images = np.stack([load_image(p, (56, 70)) for p in paths[:9]])  # 3 x (q, p, n)
    state = jax.device_put(TrainState.create(jax.tree_util.tree_map(np.array, variables), tx),
                           NamedSharding(mesh, P()))
    for _ in range(3):
        state, metrics = step(state, images)
        assert np.isfinite(float(metrics["loss"]))
    before, after = variables["params"], jax.device_get(state.params)
    mask = trainable_mask(after, config.model)
    moved = {}
    for group in ("patch_embed", "cls_token", "pos_embed", "register_tokens", "blocks_0",
                  "blocks_1", "norm"):
        leaves = zip(jax.tree_util.tree_leaves(before["backbone"][group]),
                     jax.tree_util.tree_leaves(after["backbone"][group]))
        moved[group] = any(not np.array_equal(a, b) for a, b in leaves)
        assert all(jax.tree_util.tree_leaves(mask["backbone"][group])) == moved[group], group
    assert moved == {"patch_embed": False, "cls_token": False, "pos_embed": False,
                     "register_tokens": False, "blocks_0": False, "blocks_1": True,
                     "norm": True}
    assert not np.array_equal(before["aggregation"]["score"]["fc1"]["kernel"],
                              after["aggregation"]["score"]["fc1"]["kernel"])


class PublishedSALAD(nn.Module):
    """The published SALAD head's modules and names (dropout between conv and ReLU), on
    DINOv2's patch tokens and CLS token."""

    def __init__(self, c, clusters, cluster_dim, token_dim, hidden):
        super().__init__()
        self.token_features = nn.Sequential(nn.Linear(c, hidden), nn.ReLU(),
                                            nn.Linear(hidden, token_dim))
        self.cluster_features = nn.Sequential(nn.Conv2d(c, hidden, 1), nn.Dropout(0.3),
                                              nn.ReLU(), nn.Conv2d(hidden, cluster_dim, 1))
        self.score = nn.Sequential(nn.Conv2d(c, hidden, 1), nn.Dropout(0.3), nn.ReLU(),
                                   nn.Conv2d(hidden, clusters, 1))
        self.dust_bin = nn.Parameter(torch.tensor(1.3))

    def forward(self, x, t):  # x (N, C, h, w), t (N, C)
        from test_heads_attention import sinkhorn_log_plan
        f = self.cluster_features(x).flatten(2)                                   # (N, l, n)
        p = torch.exp(sinkhorn_log_plan(self.score(x).flatten(2), self.dust_bin, 3))[:, :-1]
        v = (f.unsqueeze(2) * p.unsqueeze(1)).sum(-1)                             # (N, l, K)
        out = torch.cat([F.normalize(self.token_features(t), dim=-1),
                         F.normalize(v, dim=1).flatten(1)], dim=-1)
        return F.normalize(out, dim=-1)


def test_published_salad_checkpoint_reads_with_its_head():
    """`backbone.model.*` (the hub's DINOv2) + `aggregator.*` (SALAD's names): the descriptors
    equal the torch model's; the options come from the shapes."""
    torch.manual_seed(7)
    vit, head = TorchDinoViT(dim=64, heads=1).eval(), PublishedSALAD(64, 4, 8, 16, 24).eval()
    sd = {f"backbone.model.{k}": v for k, v in state_dict(vit).items()}
    sd.update({f"aggregator.{k}": v for k, v in state_dict(head).items()})
    cfg, variables, report = convert_state_dict(sd, get_config().model)
    assert report["format"] == "salad" and report["initialised"] == []
    assert cfg.aggregation == "salad" and cfg.backbone == "dinov2_custom_d2_w64_h1_g4"
    assert (cfg.salad.num_clusters, cfg.salad.cluster_dim, cfg.salad.token_dim,
            cfg.salad.hidden_dim) == (4, 8, 16, 24)
    images = pixels((70, 84))
    x = normalize(images, *input_normalization(cfg.backbone)).astype(np.float32)
    with torch.no_grad():
        cls, patches = vit(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))
        expected = head(patches.permute(0, 3, 1, 2), cls).numpy()
    actual = jax.jit(build_network(cfg).apply)(variables, images)
    assert rel_diff(actual, expected) < 1e-4, rel_diff(actual, expected)
    with pytest.raises(CheckpointError, match="--aggregation netvlad does not apply"):
        convert_state_dict(sd, aggregation="netvlad")


def test_published_boq_dinov2_checkpoint_reads_with_its_head():
    """`backbone.dino.*` (the hub's DINOv2, its final norm unused) + `aggregator.*` (BoQ's
    names): read as the `_prenorm` backbone + `boq`, the descriptors equal the torch model's."""
    from test_convert_modern import BoQ
    torch.manual_seed(9)
    vit = TorchDinoViT(dim=64, heads=1, final_norm=False).eval()
    head = BoQ(64, 64, 4, 2, 3).eval()
    with torch.no_grad():
        for block in head.boqs:
            block.queries.normal_()
    sd = {f"backbone.dino.{k}": v for k, v in state_dict(vit).items()}
    sd.update({f"aggregator.{k}": v for k, v in state_dict(head).items()})
    cfg, variables, report = convert_state_dict(sd, get_config().model)
    assert report["format"] == "boq" and report["initialised"] == []
    assert cfg.backbone == "dinov2_custom_d2_w64_h1_g4_prenorm" and cfg.aggregation == "boq"
    assert "norm" not in variables["params"]["backbone"]
    assert (cfg.boq.proj_channels, cfg.boq.num_queries, cfg.boq.num_layers,
            cfg.boq.row_dim) == (64, 4, 2, 3)
    images = pixels((70, 84))
    x = normalize(images, *input_normalization(cfg.backbone)).astype(np.float32)
    with torch.no_grad():
        _, patches = vit(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))
        expected = head(patches.permute(0, 3, 1, 2))[0].numpy()
    actual = jax.jit(build_network(cfg).apply)(variables, images)
    assert rel_diff(actual, expected) < 1e-4, rel_diff(actual, expected)


def test_dinov2_evaluation_config_fits_the_published_size():
    """configs/dinov2_vpr.py (the README's import steps): 322 x 322 views of a DINOv2
    ViT-B/14, whose 23 x 23 patches every evaluator of the config accepts."""
    from vgjax.cli.config import load_config
    from vgjax.eval import evaluators
    from vgjax.models.backbones import parse_backbone
    c = load_config(SCRIPT.parents[1] / "configs" / "dinov2_vpr.py", [])
    assert tuple(c.data.resize) == (322, 322) and c.test.method == "hard_resize"
    assert parse_backbone(c.model.backbone).feature_size(322, 322) == (23, 23)
    evaluators.check_image_sizes(c, c.model.backbone, c.data.resize)
