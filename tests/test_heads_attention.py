"""BoQ and SALAD: parity with PyTorch modules written here from the published architectures,
descriptor sizes, the whole network with each head, and option checks."""
from __future__ import annotations

import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vgjax.config import ConfigError
from vgjax.models.boq import BoQ, BoQSettings
from vgjax.models.network import build_network, descriptor_dim, head_options
from vgjax.models.salad import SALAD, SALADSettings, check_feature_size
from test_heads import features, model_cfg, randomized, relative_error

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parent.parent


def t(a):
    return torch.from_numpy(np.array(a, np.float32))


def linear(fc, p):
    """A flax kernel (in, out) and bias into a torch Linear (or 1x1 Conv2d)."""
    fc.weight.copy_(t(np.asarray(p["kernel"]).T).reshape(fc.weight.shape))
    fc.bias.copy_(t(p["bias"]))


def norm(ln, p):
    ln.weight.copy_(t(p["scale"]))
    ln.bias.copy_(t(p["bias"]))


def attention(mha: nn.MultiheadAttention, p):
    mha.in_proj_weight.copy_(torch.cat([t(np.asarray(p[k]["kernel"]).T)
                                        for k in ("query", "key", "value")]))
    mha.in_proj_bias.copy_(torch.cat([t(p[k]["bias"]) for k in ("query", "key", "value")]))
    linear(mha.out_proj, p["out"])


# PyTorch references, written from the papers' and the published code's architecture -------

class TorchBoQBlock(nn.Module):
    def __init__(self, d, queries, heads):
        super().__init__()
        self.encoder = nn.TransformerEncoderLayer(d, heads, 4 * d, dropout=0.0,
                                                  batch_first=True)
        self.queries = nn.Parameter(torch.zeros(1, queries, d))
        self.self_attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.norm_q = nn.LayerNorm(d)
        self.cross_attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.norm_out = nn.LayerNorm(d)

    def forward(self, x):
        x = self.encoder(x)
        q = self.queries.expand(x.shape[0], -1, -1)
        q = self.norm_q(q + self.self_attn(q, q, q)[0])
        return x, self.norm_out(self.cross_attn(q, x, x)[0])


class TorchBoQ(nn.Module):
    def __init__(self, channels, proj, kernel, queries, layers, rows, heads):
        super().__init__()
        d = proj if kernel else channels
        self.proj = nn.Conv2d(channels, proj, kernel, padding=kernel // 2) if kernel else None
        self.norm_input = nn.LayerNorm(d)
        self.blocks = nn.ModuleList(TorchBoQBlock(d, queries, heads) for _ in range(layers))
        self.fc = nn.Linear(layers * queries, rows)

    def forward(self, x):  # (N, C, h, w)
        if self.proj is not None:
            x = self.proj(x)
        x = self.norm_input(x.flatten(2).permute(0, 2, 1))
        outs = []
        for block in self.blocks:
            x, out = block(x)
            outs.append(out)
        out = self.fc(torch.cat(outs, dim=1).permute(0, 2, 1))
        return F.normalize(out.flatten(1), dim=-1)

    def load(self, params):
        if self.proj is not None:
            self.proj.weight.copy_(t(np.asarray(params["proj"]["kernel"]).transpose(3, 2, 0, 1)))
            self.proj.bias.copy_(t(params["proj"]["bias"]))
        norm(self.norm_input, params["norm_input"])
        for i, block in enumerate(self.blocks):
            p = params[f"block_{i}"]
            enc = block.encoder
            attention(enc.self_attn, p["encoder"]["self_attn"])
            linear(enc.linear1, p["encoder"]["linear1"])
            linear(enc.linear2, p["encoder"]["linear2"])
            norm(enc.norm1, p["encoder"]["norm1"])
            norm(enc.norm2, p["encoder"]["norm2"])
            block.queries.copy_(t(p["queries"]))
            attention(block.self_attn, p["self_attn"])
            norm(block.norm_q, p["norm_q"])
            attention(block.cross_attn, p["cross_attn"])
            norm(block.norm_out, p["norm_out"])
        linear(self.fc, params["fc"])


def sinkhorn_log_plan(scores, dust_bin, iters):
    """Log-domain Sinkhorn with a dustbin row, the published SALAD's marginals."""
    b, m, n = scores.shape
    s = torch.cat([scores, dust_bin.expand(b, 1, n)], dim=1)
    lognorm = -math.log(n + m)
    log_a = torch.full((b, m + 1), lognorm)
    log_a[:, -1] += math.log(n - m)
    log_b = torch.full((b, n), lognorm)
    u, v = torch.zeros_like(log_a), torch.zeros_like(log_b)
    for _ in range(iters):
        u = log_a - torch.logsumexp(s + v.unsqueeze(1), dim=2)
        v = log_b - torch.logsumexp(s + u.unsqueeze(2), dim=1)
    return s + u.unsqueeze(2) + v.unsqueeze(1) - lognorm


class TorchSALAD(nn.Module):
    def __init__(self, channels, clusters, cluster_dim, token_dim, hidden, iters, p, eps):
        super().__init__()
        self.iters, self.eps = iters, eps
        self.p = nn.Parameter(torch.ones(1) * p)
        self.token_features = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(),
                                            nn.Linear(hidden, token_dim))
        self.cluster_features = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(),
                                              nn.Conv2d(hidden, cluster_dim, 1))
        self.score = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(),
                                   nn.Conv2d(hidden, clusters, 1))
        self.dust_bin = nn.Parameter(torch.tensor(1.0))

    def forward(self, x):  # (N, C, h, w)
        token = F.avg_pool2d(x.clamp(min=self.eps).pow(self.p), x.shape[-2:]).pow(1 / self.p)
        g = self.token_features(token.flatten(1))
        f = self.cluster_features(x).flatten(2)                      # (N, l, n)
        p = torch.exp(sinkhorn_log_plan(self.score(x).flatten(2), self.dust_bin,
                                        self.iters))[:, :-1, :]      # (N, K, n)
        v = (f.unsqueeze(2) * p.unsqueeze(1)).sum(-1)               # (N, l, K)
        out = torch.cat([F.normalize(g, dim=-1), F.normalize(v, dim=1).flatten(1)], dim=-1)
        return F.normalize(out, dim=-1)

    def load(self, params):
        for name in ("token_features", "cluster_features", "score"):
            seq = getattr(self, name)
            linear(seq[0], params[name]["fc1"])
            linear(seq[2], params[name]["fc2"])
        self.dust_bin.copy_(t(params["dust_bin"]))
        self.p.copy_(t(params["token_p"]))


@pytest.mark.parametrize("kernel", [3, 0])
def test_boq_matches_torch(kernel):
    """C=16 features 4x5, tokens of width 32 (3x3 projection) or 16 (none), 2 heads,
    4 queries, 2 blocks, 3 rows."""
    o = BoQSettings(proj_channels=32, proj_kernel=kernel, num_queries=4, num_layers=2,
                    row_dim=3, num_heads=2)
    x, xt = features((2, 4, 5, 16))
    head = BoQ(o)
    params = randomized(jax.eval_shape(head.init, jax.random.key(0), x)["params"])
    desc = jax.jit(lambda p, x: head.apply({"params": p}, x))(params, x)
    d = 32 if kernel else 16
    ref = TorchBoQ(16, 32, kernel, 4, 2, 3, 2).eval()
    with torch.no_grad():
        ref.load(params)
        expected = ref(xt).numpy()
    assert desc.shape == (2, d * 3)
    assert params["block_1"]["queries"].shape == (1, 4, d)
    err = relative_error(desc, expected)
    print(f"boq proj_kernel={kernel} max relative error {err:.2e}")
    assert err < 1e-4


def test_salad_matches_torch():
    """C=16 features 4x5 (20 positions), 4 clusters of 8, a 16-dim token, MLPs 24 wide."""
    o = SALADSettings(num_clusters=4, cluster_dim=8, token_dim=16, hidden_dim=24, iters=3)
    x, xt = features((2, 4, 5, 16))
    x, xt = np.abs(x), xt.abs()  # GeM's features are non-negative (post-ReLU)
    head = SALAD(o)
    params = randomized(jax.eval_shape(head.init, jax.random.key(0), x)["params"])
    params["token_p"] = jnp.array([2.5], jnp.float32)
    desc = jax.jit(lambda p, x: head.apply({"params": p}, x))(params, x)
    ref = TorchSALAD(16, 4, 8, 16, 24, 3, 3.0, 1e-6).eval()
    with torch.no_grad():
        ref.load(params)
        expected = ref(xt).numpy()
    assert desc.shape == (2, 16 + 4 * 8)
    err = relative_error(desc, expected)
    print(f"salad max relative error {err:.2e}")
    assert err < 1e-4
    # the published marginals, rescaled by n + K: every position carries 1, every cluster
    # 1 and the dustbin n - K (the rows once Sinkhorn has converged)
    with torch.no_grad():
        plan = torch.exp(sinkhorn_log_plan(torch.randn(1, 4, 20), torch.tensor(1.0), 50))
    np.testing.assert_allclose(plan.sum(1).numpy(), 1.0, rtol=1e-5)
    np.testing.assert_allclose(plan.sum(2).numpy(), [[1, 1, 1, 1, 16]], rtol=1e-3)


def test_descriptor_dims_follow_the_options():
    assert descriptor_dim(model_cfg("boq")) == 512 * 32 == 16384  # the published ResNet-50
    assert descriptor_dim(model_cfg("salad")) == 256 + 64 * 128 == 8448
    assert descriptor_dim(model_cfg("boq", dict(proj_channels=128, row_dim=4))) == 512
    assert descriptor_dim(model_cfg("boq", dict(proj_kernel=0, row_dim=2))) == 256 * 2
    assert descriptor_dim(model_cfg("salad", dict(num_clusters=8, cluster_dim=4,
                                                  token_dim=10))) == 42
    assert head_options(model_cfg("salad")) == SALADSettings()


HEADS = {"boq": dict(proj_channels=16, num_queries=4, num_layers=1, row_dim=3, num_heads=2),
         "salad": dict(num_clusters=4, cluster_dim=8, token_dim=16, hidden_dim=24)}


def test_salad_refuses_too_few_local_features():
    """The Sinkhorn marginals need more positions than clusters (init is shape-only)."""
    with pytest.raises(ValueError, match=r"local features are 3x4 = 12 .*salad.num_clusters = 12"):
        check_feature_size(3, 4, SALADSettings(num_clusters=12))
    check_feature_size(3, 5, SALADSettings(num_clusters=12))
    net = build_network(model_cfg("salad", dict(num_clusters=12), resnet_width=8))
    shapes = jax.eval_shape(lambda x: net.init(jax.random.key(0), x),
                            jax.ShapeDtypeStruct((1, 48, 64, 3), jnp.uint8))
    with pytest.raises(ValueError, match=r"3x4 = 12 positions"):
        jax.eval_shape(lambda v, x: net.apply(v, x), shapes,
                       jax.ShapeDtypeStruct((1, 48, 64, 3), jnp.uint8))


@pytest.mark.parametrize("override, message", [
    ("model.boq.num_queries=0", "model.boq.num_queries: must be >= 1, got 0"),
    ("model.boq.num_layers=0", "model.boq.num_layers: must be >= 1, got 0"),
    ("model.boq.row_dim=-1", "model.boq.row_dim: must be >= 1, got -1"),
    ("model.boq.proj_channels=0", "model.boq.proj_channels: must be >= 1, got 0"),
    ("model.boq.proj_kernel=2", "model.boq.proj_kernel: must be 0 (no projection) or an odd"),
    ("model.boq.num_heads=-1", "model.boq.num_heads: must be >= 0"),
    ("model.boq.num_heads=3", "model.boq.num_heads: 3 heads do not divide the token width"),
    ("model.boq.proj_channels=32", "model.boq.num_heads=0 takes d // 64 heads, none for"),
    ("model.salad.num_clusters=0", "model.salad.num_clusters: must be >= 1, got 0"),
    ("model.salad.cluster_dim=-1", "model.salad.cluster_dim: must be >= 1, got -1"),
    ("model.salad.token_dim=0", "model.salad.token_dim: must be >= 1, got 0"),
    ("model.salad.hidden_dim=0", "model.salad.hidden_dim: must be >= 1, got 0"),
    ("model.salad.iters=0", "model.salad.iters: must be >= 1 (Sinkhorn iterations), got 0"),
    ("model.gem_p=0", "model.gem_p: must be > 0"),
])
def test_bad_head_options_are_refused_in_one_line(override, message):
    from vgjax.cli.config import load_config
    head = override.split(".")[1] if override.count(".") > 1 else "salad"
    with pytest.raises(ConfigError) as e:
        load_config(REPO / "configs" / "default.py", [f"model.aggregation={head}", override])
    assert str(e.value).startswith(message) and "\n" not in str(e.value)
