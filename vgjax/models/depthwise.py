"""Depthwise convolution (one k x k filter per channel) with TensorFlow's SAME padding.

Two formulations with the same result:
- `native`: `lax.conv_general_dilated` with `feature_group_count = C`, the one XLA lowers
  to cuDNN / the TPU convolution units;
- `shifted`: the sum over the k x k taps of a shifted (strided) slice of the padded input
  times that tap's filter weights, per channel: elementwise multiply-adds that XLA:CPU
  fuses into one loop, where its grouped convolution is a slow generic path (about 10x
  slower forward and 5-7x slower gradient on a 2-core x86 CPU, docs/PERFORMANCE.md).

`auto` picks `shifted` on the CPU backend and `native` elsewhere.

TensorFlow's SAME padding pads `max((ceil(n / s) - 1) * s + k - n, 0)` in total, the
smaller half before: (0, 1) for a 3x3 stride-2 convolution of an even size. Flax's
padding="SAME" is the same rule, so `native` passes explicit pads only to say so.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

IMPLEMENTATIONS = ("auto", "native", "shifted")


def same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's SAME padding of one axis: (before, after)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def resolve(impl: str) -> str:
    """`auto` -> `shifted` on the CPU backend, `native` on GPUs and TPUs."""
    if impl not in IMPLEMENTATIONS:
        raise ValueError(f"depthwise convolution: unknown implementation {impl!r} "
                         f"(accepted: {', '.join(IMPLEMENTATIONS)})")
    if impl == "auto":
        return "shifted" if jax.default_backend() == "cpu" else "native"
    return impl


def depthwise_conv(x, kernel, stride: int = 1, impl: str = "auto"):
    """(N, H, W, C) x (k, k, 1, C) kernel -> (N, ceil(H / s), ceil(W / s), C), SAME padding.

    The kernel has flax's grouped-convolution layout (HWIO with I = 1): torch's depthwise
    weight (C, 1, k, k) transposed like any other convolution.
    """
    kh, kw = kernel.shape[:2]
    pads = (same_pads(x.shape[1], kh, stride), same_pads(x.shape[2], kw, stride))
    if resolve(impl) == "native":
        return jax.lax.conv_general_dilated(
            x, kernel, (stride, stride), pads, dimension_numbers=("NHWC", "HWIO", "NHWC"),
            feature_group_count=x.shape[-1])
    oh, ow = -(-x.shape[1] // stride), -(-x.shape[2] // stride)
    xp = jnp.pad(x, ((0, 0), *pads, (0, 0)))
    taps = kernel[:, :, 0, :]  # (k, k, C)
    # the sum runs in float32 whatever the compute dtype, as the native convolution's does
    acc_dtype = jnp.promote_types(x.dtype, jnp.float32)
    out = None
    for i in range(kh):
        for j in range(kw):
            window = jax.lax.slice(xp, (0, i, j, 0),
                                   (xp.shape[0], i + (oh - 1) * stride + 1,
                                    j + (ow - 1) * stride + 1, xp.shape[3]),
                                   (1, stride, stride, 1))
            term = window.astype(acc_dtype) * taps[i, j].astype(acc_dtype)
            out = term if out is None else out + term
    return out.astype(x.dtype)


class DepthwiseConv(nn.Module):
    """A bias-free depthwise convolution layer, SAME padded; parameter `kernel` (k, k, 1, C)."""
    kernel_size: int
    stride: int = 1
    impl: str = "auto"
    dtype: Any = jnp.float32
    # He-normal over the k * k taps that feed each output (TensorFlow EfficientNet's init)
    kernel_init: Any = nn.initializers.variance_scaling(2.0, "fan_in", "normal")

    @nn.compact
    def __call__(self, x):
        c = x.shape[-1]
        kernel = self.param("kernel", self.kernel_init,
                            (self.kernel_size, self.kernel_size, 1, c), jnp.float32)
        return depthwise_conv(x.astype(self.dtype), kernel.astype(self.dtype), self.stride,
                              self.impl)
