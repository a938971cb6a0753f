"""Conv-AP (Ali-bey et al., GSV-Cities 2022): a 1x1 convolution C -> out_channels (with bias),
adaptive average pooling to s1 x s2, flattened channel-major (index c * s1 * s2 + i * s2 + j,
as torch flattens NCHW), L2: out_channels * s1 * s2 values.

The pooling has torch's `adaptive_avg_pool2d` bins: output row i averages input rows
floor(i * h / s1) to ceil((i + 1) * h / s1) - 1 (neighbouring bins overlap when s1 does not
divide h), for any feature size. Both steps are linear and every bin's weights sum to one, so
the pooling runs first (s1 * s2 positions go through the 1x1 conv instead of h * w): the same
descriptor up to float rounding. Parameters: `channel_pool/{kernel (1, 1, C, out), bias}`,
initialised as torch's Conv2d.
"""
from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vgjax.config.settings import Settings
from vgjax.models.aggregation import (AGGREGATIONS, Aggregation, l2_normalize, read_options,
                                      require_options, torch_uniform)


@dataclasses.dataclass(frozen=True)
class ConvAPSettings(Settings):
    """`model.convap`: the published defaults (2048-dim descriptors)."""
    out_channels: int = 512
    s1: int = 2
    s2: int = 2


def adaptive_pool_matrix(size: int, bins: int) -> np.ndarray:
    """(bins, size) float32 averaging weights of torch's adaptive average pooling."""
    m = np.zeros((bins, size), np.float32)
    for i in range(bins):
        start, end = (i * size) // bins, -(-((i + 1) * size) // bins)
        m[i, start:end] = 1.0 / (end - start)
    return m


def adaptive_avg_pool(x, s1: int, s2: int):
    """torch's adaptive_avg_pool2d to (s1, s2) of (N, h, w, C) -> (N, s1, s2, C)."""
    ph = adaptive_pool_matrix(x.shape[1], s1)
    pw = adaptive_pool_matrix(x.shape[2], s2)
    return jnp.einsum("ih,jw,nhwc->nijc", ph, pw, x, precision=jax.lax.Precision.HIGHEST)


class ConvAP(nn.Module):
    options: ConvAPSettings = ConvAPSettings()

    @nn.compact
    def __call__(self, x):  # (N, h, w, C)
        o = self.options
        n, c = x.shape[0], x.shape[-1]
        pooled = adaptive_avg_pool(x.astype(jnp.float32), o.s1, o.s2)
        init = torch_uniform(c)  # fan_in of a 1x1 conv: its input channels
        y = nn.Conv(o.out_channels, (1, 1), dtype=jnp.float32, param_dtype=jnp.float32,
                    precision=jax.lax.Precision.HIGHEST, kernel_init=init, bias_init=init,
                    name="channel_pool")(pooled)  # (N, s1, s2, out)
        return l2_normalize(y.transpose(0, 3, 1, 2).reshape(n, -1), axis=-1)


def check_settings(get) -> None:
    o = read_options(ConvAPSettings, get("convap"))
    require_options(o, "model.convap",
                    [(name, lambda v: v >= 1, ">= 1") for name in ("out_channels", "s1", "s2")])


AGGREGATIONS.register("convap")(Aggregation(
    module=lambda s: ConvAP(s.head_options or ConvAPSettings()),
    dim=lambda c, k, o: o.out_channels * o.s1 * o.s2, uses_l2=False,
    check_settings=check_settings, options=ConvAPSettings))
