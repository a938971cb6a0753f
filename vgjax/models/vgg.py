"""VGG-16 and AlexNet backbones: torchvision's `features`, cut as the reference cuts them.

The reference keeps `list(backbone.features.children())[:-2]`: every layer up to the last
convolution, without its ReLU and the final max-pool. So `vgg16` gives the conv5_3
activations before their ReLU (512 channels, stride 16) and `alexnet` conv5's (256
channels, stride 16 as well: a stride-4 conv and two 3x3/2 pools). NHWC, explicit torch
padding, max-pools without padding that floor the size, as torch's do.

Parameters are named after torchvision's layer index (`features_0`, `features_2`, ...), so
torchvision's `features.<i>.*` and the reference's `backbone.<i>.*` convert by renaming.
Stages (what `model.trainable_from` names) are the conv blocks, `conv1` .. `conv5`: in
VGG-16 the convolutions between two pools (`conv5` = conv5_1..conv5_3), in AlexNet each
convolution. The reference trains VGG-16 from `conv5` and AlexNet from `conv3`.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from vgjax.models.resnet import IMAGENET_MEAN, IMAGENET_STD

# torchvision's `features`: ("conv", out channels at width 64, kernel, stride, padding),
# ("relu",), ("pool", kernel, stride)
_VGG16 = []
for _block in ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)):
    for _c in _block:
        _VGG16 += [("conv", _c, 3, 1, 1), ("relu",)]
    _VGG16.append(("pool", 2, 2))
_ALEXNET = [("conv", 64, 11, 4, 2), ("relu",), ("pool", 3, 2),
            ("conv", 192, 5, 1, 2), ("relu",), ("pool", 3, 2),
            ("conv", 384, 3, 1, 1), ("relu",), ("conv", 256, 3, 1, 1), ("relu",),
            ("conv", 256, 3, 1, 1), ("relu",), ("pool", 3, 2)]


@dataclasses.dataclass(frozen=True)
class PlainSpec:
    """A torchvision `features` stack cut before its last ReLU and pool."""
    name: str
    layers: tuple[tuple, ...]       # the kept layers, at width 64
    stage_starts: tuple[int, ...]   # torchvision index of the first layer of conv1..conv5
    reference_trainable_from: str   # what the reference trains
    kaiming_init: bool              # torchvision's init: VGG kaiming normal (fan_out) with
    #                                 zero biases; AlexNet torch's Conv2d default

    input_mean = IMAGENET_MEAN      # torchvision's normalisation of [0, 1] RGB
    input_std = IMAGENET_STD
    uses_width = True               # every layer scaled by model.resnet_width / 64
    global_token = False  # local features only (no CLS token)
    supports_remat = False  # model.remat does not apply
    imagenet_weights = None         # no wheel bundles them: convert torchvision's

    @property
    def family(self) -> str:
        return self.name

    @property
    def stages(self) -> tuple[str, ...]:
        return tuple(f"conv{i + 1}" for i in range(len(self.stage_starts)))

    def channels(self, width: int = 64) -> int:
        """Channels of the local features (512 for vgg16, 256 for alexnet, at width 64)."""
        return _scaled(self.layers[-1][1], width)

    def stage_of_index(self, index: int) -> int:
        """The stage (0-based) that torchvision layer `index` belongs to."""
        return max(i for i, start in enumerate(self.stage_starts) if start <= index)

    def stage_of(self, param_key: str) -> int:
        """The stage of a backbone parameter group (`features_<i>`)."""
        return self.stage_of_index(int(param_key.removeprefix("features_")))

    def conv_indices(self) -> tuple[int, ...]:
        return tuple(i for i, layer in enumerate(self.layers) if layer[0] == "conv")

    def feature_size(self, h: int, w: int) -> tuple[int, int]:
        """(h, w) of the local features of an h x w image."""
        for layer in self.layers:
            if layer[0] == "conv":
                _, _, k, s, p = layer
                h, w = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
            elif layer[0] == "pool":
                _, k, s = layer
                h, w = (h - k) // s + 1, (w - k) // s + 1
        return h, w

    def module(self, width: int, num_frozen: int, freeze_bn_stats: bool, dtype):
        return PlainNet(self, width, num_frozen, dtype)


def _scaled(channels: int, width: int) -> int:
    return max(1, channels * int(width) // 64)


PLAIN = {
    "vgg16": PlainSpec("vgg16", tuple(_VGG16[:-2]), (0, 5, 10, 17, 24), "conv5", True),
    "alexnet": PlainSpec("alexnet", tuple(_ALEXNET[:-2]), (0, 3, 6, 8, 10), "conv3", False),
}

# torch's Conv2d init (kaiming uniform, a = sqrt(5)): weights and biases uniform in
# +-1/sqrt(fan_in); torchvision's VGG: kaiming normal (fan_out, relu), biases 0
_torch_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
_vgg_kernel_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def _uniform_bias(bound: float):
    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)
    return init


class PlainNet(nn.Module):
    """(N, H, W, 3) -> local features (N, h, w, C). The `num_frozen` leading stages get no
    gradient (the input of the first trained stage passes through `stop_gradient`)."""
    spec: PlainSpec
    width: int = 64
    num_frozen: int = 0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        del train  # no BatchNorm: the same in training and evaluation
        x = x.astype(self.dtype)
        starts = self.spec.stage_starts
        first_trained = starts[self.num_frozen] if 0 < self.num_frozen < len(starts) else None
        for i, layer in enumerate(self.spec.layers):
            if i == first_trained:
                x = jax.lax.stop_gradient(x)
            if layer[0] == "conv":
                _, c, k, s, p = layer
                fan_in = k * k * x.shape[-1]
                x = nn.Conv(_scaled(c, self.width), (k, k), (s, s), padding=((p, p), (p, p)),
                            dtype=self.dtype, param_dtype=jnp.float32,
                            kernel_init=(_vgg_kernel_init if self.spec.kaiming_init
                                         else _torch_kernel_init),
                            bias_init=(nn.initializers.zeros if self.spec.kaiming_init
                                       else _uniform_bias(fan_in ** -0.5)),
                            name=f"features_{i}")(x)
            elif layer[0] == "relu":
                x = nn.relu(x)
            else:
                _, k, s = layer
                x = nn.max_pool(x, (k, k), (s, s), padding="VALID")
        if self.num_frozen >= len(starts):  # every stage frozen: only the head trains
            x = jax.lax.stop_gradient(x)
        return x
