"""ResNet-18/50/101/152 backbones cut after layer3 ("conv4") or layer4 ("conv5"), NHWC.

Numerically the same network as torchvision's ResNet (v1.5: stride on the 3x3 conv of a
bottleneck): explicit torch padding everywhere (never 'SAME', which pads (0, 1) on even
inputs), a max-pool padded with -inf, and BatchNorm with torch semantics (momentum 0.1,
eps 1e-5, running variance stored as the unbiased estimate).

Parameter names follow torchvision so that checkpoint conversion is a renaming:
`conv1`, `bn1`, `layer{1..4}/block{i}/{conv1,bn1,conv2,bn2[,conv3,bn3]}` and
`downsample_conv` / `downsample_bn` for torchvision's `downsample.0` / `downsample.1`.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

STAGES = ("conv1", "layer1", "layer2", "layer3", "layer4")  # conv1 = stem (conv1, bn1, pool)
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision's ImageNet normalisation
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """What a backbone name means: block type, blocks per stage, how many stages are kept."""
    name: str
    bottleneck: bool
    stage_sizes: tuple[int, ...]  # blocks in layer1..layer4
    num_layers: int               # 3 = cut after layer3 (conv4), 4 = keep layer4 (conv5)

    reference_trainable_from = "layer3"  # the reference freezes every child before layer3
    input_mean = IMAGENET_MEAN           # torchvision's normalisation of [0, 1] RGB
    input_std = IMAGENET_STD
    uses_width = True                    # model.resnet_width = channels of conv1
    global_token = False  # local features only (no CLS token)
    supports_remat = False  # model.remat does not apply
    imagenet_weights = None              # no wheel bundles them: convert torchvision's

    @property
    def family(self) -> str:
        """The network without its cut: 'resnet18' for resnet18conv4 and resnet18conv5."""
        return self.name.rsplit("conv", 1)[0]

    def channels(self, width: int = 64) -> int:
        """Channels of the local features (e.g. 256 for resnet18conv4 at width 64)."""
        expansion = 4 if self.bottleneck else 1
        return width * 2 ** (self.num_layers - 1) * expansion

    @property
    def stages(self) -> tuple[str, ...]:
        """What `model.trainable_from` can name, in order (the stem is `conv1`)."""
        return STAGES[:self.num_layers + 1]

    @staticmethod
    def stage_of(param_key: str) -> int:
        """The stage of a backbone parameter group (`conv1`, `bn1`, `layer<i>`)."""
        return 0 if param_key in ("conv1", "bn1") else STAGES.index(param_key)

    def feature_size(self, h: int, w: int) -> tuple[int, int]:
        """(h, w) of the local features: every stride-2 step rounds up (torch padding)."""
        for _ in range(self.num_layers + 1):
            h, w = -(-h // 2), -(-w // 2)
        return h, w

    def module(self, width: int, num_frozen: int, freeze_bn_stats: bool, dtype):
        return ResNet(self, width, num_frozen, freeze_bn_stats, dtype)


DEPTHS = {
    18: (False, (2, 2, 2, 2)),
    34: (False, (3, 4, 6, 3)),
    50: (True, (3, 4, 6, 3)),
    101: (True, (3, 4, 23, 3)),
    152: (True, (3, 8, 36, 3)),
}
SUPPORTED_DEPTHS = (18, 50, 101, 152)


RESNET_NAMES = tuple(f"resnet{d}conv{c}" for d in SUPPORTED_DEPTHS for c in (4, 5))


def parse_resnet(name: str) -> BackboneSpec | None:
    """'resnet18conv4' -> BackboneSpec; None for a name that is not a supported ResNet."""
    m = re.fullmatch(r"resnet(\d+)conv([45])", str(name))
    if not m or int(m.group(1)) not in SUPPORTED_DEPTHS:
        return None
    bottleneck, sizes = DEPTHS[int(m.group(1))]
    return BackboneSpec(name, bottleneck, sizes, int(m.group(2)) - 1)


def backbone_name(bottleneck: bool, stage_sizes: Sequence[int], num_layers: int) -> str:
    """Inverse of `parse_resnet` (used when reading checkpoints); raises on unknown depths."""
    for depth in SUPPORTED_DEPTHS:
        b, sizes = DEPTHS[depth]
        if b == bottleneck and tuple(sizes[:len(stage_sizes)]) == tuple(stage_sizes):
            return f"resnet{depth}conv{num_layers + 1}"
    kind = "bottleneck" if bottleneck else "basic"
    raise ValueError(f"no supported ResNet has {kind} blocks with {list(stage_sizes)} blocks "
                     f"per stage (supported depths: {SUPPORTED_DEPTHS})")


conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")  # torchvision's kaiming


class BatchNorm(nn.Module):
    """BatchNorm2d with torch semantics over (N, H, W), channels last.

    Statistics are computed in float32 whatever the compute dtype. In training the batch
    (biased) variance normalises and the unbiased one, n / (n - 1) times it, updates the
    running variance, as torch does.
    """
    momentum: float = 0.1  # torch convention: new = (1 - momentum) * old + momentum * batch
    epsilon: float = 1e-5
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, use_running_average: bool):
        c = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (c,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (c,), jnp.float32)
        ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((c,), jnp.float32))
        ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((c,), jnp.float32))
        if use_running_average:
            mean, var = ra_mean.value, ra_var.value
        else:
            xf = x.astype(jnp.float32)
            axes = tuple(range(x.ndim - 1))
            mean = jnp.mean(xf, axes)
            var = jnp.maximum(jnp.mean(jnp.square(xf), axes) - jnp.square(mean), 0.0)
            if not self.is_initializing():
                n = x.size // c
                unbiased = var * (n / max(n - 1, 1))
                ra_mean.value = (1 - self.momentum) * ra_mean.value + self.momentum * mean
                ra_var.value = (1 - self.momentum) * ra_var.value + self.momentum * unbiased
        mul = scale * jax.lax.rsqrt(var + self.epsilon)
        add = bias - mean * mul
        return x * mul.astype(self.dtype) + add.astype(self.dtype)


def _conv(features, kernel, stride, pad, dtype, name):
    return nn.Conv(features, (kernel, kernel), (stride, stride), padding=((pad, pad), (pad, pad)),
                   use_bias=False, dtype=dtype, param_dtype=jnp.float32,
                   kernel_init=conv_init, name=name)


class BasicBlock(nn.Module):
    planes: int
    stride: int = 1
    downsample: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, use_running_average: bool):
        bn = lambda name: BatchNorm(dtype=self.dtype, name=name)
        y = _conv(self.planes, 3, self.stride, 1, self.dtype, "conv1")(x)
        y = nn.relu(bn("bn1")(y, use_running_average))
        y = _conv(self.planes, 3, 1, 1, self.dtype, "conv2")(y)
        y = bn("bn2")(y, use_running_average)
        if self.downsample:
            x = _conv(self.planes, 1, self.stride, 0, self.dtype, "downsample_conv")(x)
            x = bn("downsample_bn")(x, use_running_average)
        return nn.relu(x + y)


class Bottleneck(nn.Module):
    planes: int
    stride: int = 1
    downsample: bool = False
    dtype: Any = jnp.float32
    expansion = 4

    @nn.compact
    def __call__(self, x, use_running_average: bool):
        bn = lambda name: BatchNorm(dtype=self.dtype, name=name)
        y = _conv(self.planes, 1, 1, 0, self.dtype, "conv1")(x)
        y = nn.relu(bn("bn1")(y, use_running_average))
        y = _conv(self.planes, 3, self.stride, 1, self.dtype, "conv2")(y)
        y = nn.relu(bn("bn2")(y, use_running_average))
        y = _conv(self.planes * 4, 1, 1, 0, self.dtype, "conv3")(y)
        y = bn("bn3")(y, use_running_average)
        if self.downsample:
            x = _conv(self.planes * 4, 1, self.stride, 0, self.dtype, "downsample_conv")(x)
            x = bn("downsample_bn")(x, use_running_average)
        return nn.relu(x + y)


class Stage(nn.Module):
    """torchvision's `layerN`: `num_blocks` blocks, the first one strided/projected."""
    planes: int
    num_blocks: int
    stride: int
    in_channels: int
    bottleneck: bool
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, use_running_average: bool):
        block = Bottleneck if self.bottleneck else BasicBlock
        out_channels = self.planes * (4 if self.bottleneck else 1)
        for i in range(self.num_blocks):
            first = i == 0
            x = block(self.planes, self.stride if first else 1,
                      downsample=first and (self.stride != 1 or self.in_channels != out_channels),
                      dtype=self.dtype, name=f"block{i}")(x, use_running_average)
        return x


class ResNet(nn.Module):
    """(N, H, W, 3) -> local features (N, H/s, W/s, C), s = 16 (conv4) or 32 (conv5).

    `num_frozen` leading stages of STAGES (stem, layer1, ...) get no gradient: their output
    passes through `stop_gradient`, so no backward pass is even computed for them. With
    `freeze_bn_stats` their BatchNorms also stay in inference mode during training.
    """
    spec: BackboneSpec
    width: int = 64
    num_frozen: int = 0
    freeze_bn_stats: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        def use_ra(stage_index):
            frozen = stage_index < self.num_frozen
            return (not train) or (frozen and self.freeze_bn_stats)

        last_frozen = min(self.num_frozen, 1 + self.spec.num_layers) - 1

        def maybe_stop(x, stage_index):
            return jax.lax.stop_gradient(x) if stage_index == last_frozen else x

        x = x.astype(self.dtype)
        x = _conv(self.width, 7, 2, 3, self.dtype, "conv1")(x)
        x = nn.relu(BatchNorm(dtype=self.dtype, name="bn1")(x, use_ra(0)))
        x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))  # pads with -inf
        x = maybe_stop(x, 0)
        in_channels = self.width
        expansion = 4 if self.spec.bottleneck else 1
        for i in range(self.spec.num_layers):
            planes = self.width * 2 ** i
            x = Stage(planes, self.spec.stage_sizes[i], 1 if i == 0 else 2, in_channels,
                      self.spec.bottleneck, dtype=self.dtype, name=f"layer{i + 1}")(x, use_ra(i + 1))
            x = maybe_stop(x, i + 1)
            in_channels = planes * expansion
        return x
