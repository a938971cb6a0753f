"""Reference points that need no training, to make recalls mean something.

- thumbnails(size=(12, 16)): raw pixels as the descriptor: each image shrunk to `size`
  (antialiased), zero mean per image, L2-normalised. What any learned model must beat.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from vgjax.registry import Registry

BASELINES = Registry("baseline")


@BASELINES.register("thumbnails")
def thumbnails(size=(12, 16)):
    """A describer `images (B, H, W, 3) -> (B, h * w * 3)` of raw-pixel thumbnails."""
    h, w = (int(s) for s in size)

    @jax.jit
    def describe(images):
        x = images.astype(jnp.float32) / 255.0 if images.dtype == jnp.uint8 else images
        x = jax.image.resize(x, (x.shape[0], h, w, 3), "linear", antialias=True)
        x = x.reshape(x.shape[0], -1)
        x = x - x.mean(axis=1, keepdims=True)
        return x / jnp.maximum(jnp.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    return describe
