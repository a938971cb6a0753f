"""CRN, the contextual reweighting network (Kim et al. 2017), as the reference builds it:
NetVLAD whose soft assignments are scaled, position by position, by a context mask.

The mask: the L2-normalised local features average-pooled 3x3 / 2 (ceil mode, no padding:
windows past the border average what they cover), three context filters (3x3 -> 32,
5x5 -> 32, 7x7 -> 20 channels, "same" padding, with biases), ReLU, an accumulation 1x1 conv
to one channel whose weight (1) and bias (0) never train, ReLU, and a bilinear x2
upsampling (torch's, align_corners=False) back to the features' size. The upsampled mask
has the features' size only when both sides are even: other sizes are refused (the
reference fails on them too). Parameters: NetVLAD's `centroids` and `conv`, then
`crn/{filter_3_3, filter_5_5, filter_7_7, acc_w}` as torch names them, so a reference
checkpoint converts by renaming and a trained NetVLAD gives the NetVLAD part.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from vgjax.models.aggregation import AGGREGATIONS, Aggregation, l2_normalize, netvlad

FILTERS = (("filter_3_3", 3, 32), ("filter_5_5", 5, 32), ("filter_7_7", 7, 20))
_xavier_normal = nn.initializers.variance_scaling(1.0, "fan_avg", "normal")  # torch's


def check_feature_size(h: int, w: int) -> None:
    """CRN's x2-upsampled mask matches only even feature maps."""
    if h % 2 or w % 2:
        raise ValueError(f"model.aggregation=crn: the local features are {h}x{w}, but CRN's "
                         "mask (pooled 3x3/2, then upsampled x2) only fits even sides; choose "
                         "an image size whose features have even sides (e.g. 480x640 -> 30x40 "
                         "for a stride-16 backbone)")


def avg_pool_ceil(x, k: int = 3, s: int = 2):
    """torch `AvgPool2d(k, s, padding=0, ceil_mode=True)` on (N, h, w, C): windows that run
    past the border average the elements they cover."""
    h, w = x.shape[1:3]
    out_h, out_w = -(-(h - k) // s) + 1, -(-(w - k) // s) + 1
    pad = ((0, 0), (0, max(0, (out_h - 1) * s + k - h)), (0, max(0, (out_w - 1) * s + k - w)),
           (0, 0))
    window, strides = (1, k, k, 1), (1, s, s, 1)
    total = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, strides, pad)
    count = jax.lax.reduce_window(jnp.ones((1, h, w, 1), x.dtype), 0.0, jax.lax.add, window,
                                  strides, pad)
    return total / count


def upsample2(x):
    """torch `F.interpolate(scale_factor=2, mode="bilinear")` (align_corners=False) on
    (N, h, w, C): for a x2 upsampling jax.image.resize's triangle kernel with half-pixel
    centres gives the same weights, borders included (tests/test_models.py)."""
    n, h, w, c = x.shape
    return jax.image.resize(x, (n, 2 * h, 2 * w, c), "bilinear", antialias=False)


class ContextMask(nn.Module):
    """L2-normalised local features (N, h, w, D) -> the reweighting mask (N, h, w)."""

    @nn.compact
    def __call__(self, x):
        check_feature_size(*x.shape[1:3])
        pooled = avg_pool_ceil(x)
        g = jnp.concatenate([
            nn.Conv(c, (k, k), padding=((k // 2, k // 2),) * 2, dtype=jnp.float32,
                    param_dtype=jnp.float32, precision=jax.lax.Precision.HIGHEST,
                    kernel_init=_xavier_normal, name=name)(pooled)
            for name, k, c in FILTERS], axis=-1)
        acc = nn.Conv(1, (1, 1), dtype=jnp.float32, param_dtype=jnp.float32,
                      precision=jax.lax.Precision.HIGHEST, kernel_init=nn.initializers.ones,
                      name="acc_w")(jax.nn.relu(g))
        return upsample2(jax.nn.relu(acc))[..., 0]


class CRN(nn.Module):
    """NetVLAD (K clusters, output K * D) with CRN's context reweighting."""
    clusters: int = 64
    precision: str = "highest"

    @nn.compact
    def __call__(self, x):  # (N, h, w, D)
        x = l2_normalize(x.astype(jnp.float32), axis=-1)
        return netvlad(self, x, self.clusters, self.precision, ContextMask(name="crn")(x))


AGGREGATIONS.register("crn")(Aggregation(
    module=lambda s: CRN(s.netvlad_clusters, precision=getattr(s, "matmul_precision", "highest")),
    dim=lambda c, k, o: k * c, uses_clusters=True, uses_l2=False, frozen=("crn/acc_w",),
    takes_head_of=("netvlad",), check_features=lambda h, w, o: check_feature_size(h, w),
    lr_groups=(("crn", "crn_lr"),)))
