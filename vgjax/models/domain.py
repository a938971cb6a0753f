"""Domain classifiers for unsupervised domain adaptation: backbone local features of a
source (day training) or target (e.g. night) image -> 2 logits (source, target).

Registered by name for `train.da.classifier`; each takes local features (N, h, w, C) in
any dtype and computes in float32.
- mlp(hidden=256, layers=2): global average pool, then `layers` Dense + ReLU, then 2 logits.
- conv(channels=128): a 3x3 conv + ReLU on the feature map, global average pool, 2 logits.
"""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from vgjax.registry import Registry

DOMAIN_CLASSIFIERS = Registry("train.da.classifier")


class MLPClassifier(nn.Module):
    hidden: int = 256
    layers: int = 2

    @nn.compact
    def __call__(self, features):
        x = jnp.mean(features.astype(jnp.float32), axis=(1, 2))   # (N, C)
        for i in range(self.layers):
            x = nn.relu(nn.Dense(self.hidden, name=f"dense{i}")(x))
        return nn.Dense(2, name="logits")(x)


class ConvClassifier(nn.Module):
    channels: int = 128

    @nn.compact
    def __call__(self, features):
        x = nn.relu(nn.Conv(self.channels, (3, 3), padding=((1, 1), (1, 1)), name="conv")(
            features.astype(jnp.float32)))
        return nn.Dense(2, name="logits")(jnp.mean(x, axis=(1, 2)))


@DOMAIN_CLASSIFIERS.register("mlp")
def mlp(hidden: int = 256, layers: int = 2) -> nn.Module:
    if int(hidden) < 1 or int(layers) < 0:
        raise ValueError(f"mlp needs hidden >= 1 and layers >= 0, got {hidden}, {layers}")
    return MLPClassifier(int(hidden), int(layers))


@DOMAIN_CLASSIFIERS.register("conv")
def conv(channels: int = 128) -> nn.Module:
    if int(channels) < 1:
        raise ValueError(f"conv needs channels >= 1, got {channels}")
    return ConvClassifier(int(channels))
