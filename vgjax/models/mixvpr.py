"""MixVPR (Ali-bey et al., WACV 2023): feature mixing over the whole feature map.

The local features (N, h, w, C) become C rows of h*w values (each channel's map flattened
row by row, as torch flattens NCHW). `mix_depth` Feature-Mixer blocks each add to a row an
MLP of its LayerNorm: Linear(hw -> hw * mlp_ratio), ReLU, Linear(-> hw), with the same
weights for every row. Then a channel projection Linear(C -> out_channels) (with bias)
mixes the rows, a row projection Linear(hw -> out_rows) reduces each of them (without bias
by default, as the paper's first code; `row_bias=True` adds the bias of the published
checkpoints' code, which the weight converter sets when the checkpoint has one), and the (out_channels, out_rows) result is flattened channel-major
(index c * out_rows + r) and L2-normalised: out_channels * out_rows values.

The mixer's weights are sized for one feature map (`model.mixvpr.in_h` x `in_w`): the model
describes images whose local features have exactly that size (320 x 320 for 20 x 20 at
stride 16); other sizes are refused. Parameters: `mix_<i>/{norm, fc1, fc2}`,
`channel_proj/{kernel, bias}`, `row_proj/kernel` (and `row_proj/bias` with `row_bias`);
float32 throughout.
"""
from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from vgjax.config.settings import Settings
from vgjax.models.aggregation import (AGGREGATIONS, Aggregation, TorchLinear, l2_normalize,
                                      read_options, require_options)


@dataclasses.dataclass(frozen=True)
class MixVPRSettings(Settings):
    """`model.mixvpr`: the published configuration (ResNet-50 cut after layer3, 320 x 320
    images) by default; 4096-dim descriptors."""
    in_h: int = 20
    in_w: int = 20
    out_channels: int = 1024
    mix_depth: int = 4
    mlp_ratio: float = 1.0
    out_rows: int = 4
    row_bias: bool = False

    @property
    def hidden(self) -> int:
        """Width of the mixer MLPs: int(in_h * in_w * mlp_ratio), as the published code."""
        return int(self.in_h * self.in_w * self.mlp_ratio)


def feature_size_error(h: int, w: int, o: MixVPRSettings) -> str | None:
    if (h, w) == (o.in_h, o.in_w):
        return None
    return (f"model.aggregation=mixvpr: the local features are {h}x{w}, but the mixer's "
            f"weights are sized for model.mixvpr.in_h x model.mixvpr.in_w = {o.in_h}x{o.in_w}; "
            f"set those options to {h} and {w}, or choose an image size whose features are "
            f"{o.in_h}x{o.in_w}")


def check_feature_size(h: int, w: int, options: MixVPRSettings | None) -> None:
    error = feature_size_error(h, w, options or MixVPRSettings())
    if error:
        raise ValueError(error)


class FeatureMixer(nn.Module):
    """x + MLP(LayerNorm(x)) over the last axis (the flattened feature map)."""
    hidden: int

    @nn.compact
    def __call__(self, x):  # (N, C, hw)
        y = nn.LayerNorm(epsilon=1e-5, dtype=jnp.float32, name="norm")(x)
        y = TorchLinear(self.hidden, name="fc1")(y)
        return x + TorchLinear(x.shape[-1], name="fc2")(jax.nn.relu(y))


class MixVPR(nn.Module):
    options: MixVPRSettings = MixVPRSettings()

    @nn.compact
    def __call__(self, x):  # (N, h, w, C)
        o = self.options
        n, h, w, c = x.shape
        check_feature_size(h, w, o)
        x = x.astype(jnp.float32).reshape(n, h * w, c).transpose(0, 2, 1)  # (N, C, hw)
        for i in range(o.mix_depth):
            x = FeatureMixer(o.hidden, name=f"mix_{i}")(x)
        x = TorchLinear(o.out_channels, name="channel_proj")(x.transpose(0, 2, 1))  # (N, hw, O)
        x = TorchLinear(o.out_rows, use_bias=o.row_bias, name="row_proj")(x.transpose(0, 2, 1))
        return l2_normalize(x.reshape(n, -1), axis=-1)  # (N, O * rows), channel-major


def check_settings(get) -> None:
    o = read_options(MixVPRSettings, get("mixvpr"))
    positive = (lambda v: v >= 1, ">= 1")
    require_options(o, "model.mixvpr", [
        *((name, *positive) for name in ("in_h", "in_w", "out_channels", "out_rows")),
        ("mix_depth", lambda v: v >= 0, ">= 0 (0 = no mixer blocks)"),
        ("mlp_ratio", lambda v: v > 0, "> 0")])
    if o.hidden < 1:
        raise ValueError(f"model.mixvpr.mlp_ratio: {o.mlp_ratio} leaves the mixer MLPs "
                         f"int({o.in_h}*{o.in_w}*{o.mlp_ratio}) = 0 units; use a larger ratio")


AGGREGATIONS.register("mixvpr")(Aggregation(
    module=lambda s: MixVPR(s.head_options or MixVPRSettings()),
    dim=lambda c, k, o: o.out_channels * o.out_rows, uses_l2=False,
    check_features=check_feature_size, check_settings=check_settings, options=MixVPRSettings,
    feature_size=lambda o: (o.in_h, o.in_w)))
