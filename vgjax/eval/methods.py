"""Test methods: how a query image becomes one or several model inputs ("views"), how the
descriptors of those views are combined, and how per-crop rankings are merged.

Each method is a registered class (`TEST_METHODS`, config `test.method`) built from the
image ops of `vgjax.data.ops`. A `ViewPlan` applies one method at every scale: it turns one
decoded image into `len(sizes) * crops` views, scale-major (`[s0c0, s0c1, ..., s1c0, ...]`).
Descriptors of the scales of one crop are combined elementwise (multi-scale testing,
`MULTISCALE`, config `test.multiscale_method`); `five_crops` then averages its crops, while
`nearest_crop` / `maj_voting` keep one descriptor row per crop and merge the crops'
rankings after the search.

Sizes follow the reference protocol (model size (H, W), usually 480x640):
- hard_resize: resize to (H, W), aspect ignored.
- single_query: short side to min(H, W), aspect kept (truncated long side, like torchvision).
- central_crop: the largest central crop of aspect H:W, scaled to (H, W).
- five_crops / nearest_crop / maj_voting: short side to S = min(H, W), then the four corner
  and the central S x S crops, in the order top-left, top-right, bottom-left, bottom-right,
  centre.
- native: the image as it is (PCA images, which the reference describes at native size).
Multi-scale testing multiplies (H, W) by each scale factor before applying the method.
"""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import numpy as np

from vgjax.data import ops
from vgjax.data.ops import Resampling
from vgjax.data.sources import FOLDER_READER, ImageReader
from vgjax.registry import Registry

TEST_METHODS = Registry("test.method")
MULTISCALE = Registry("test.multiscale_method", fixed=("per_scale",))
# maj_voting: windows (leading ranks of each crop's list) inside which agreement is rewarded.
VOTING_WINDOWS = (1, 5, 10)


# Multi-scale combinations ---------------------------------------------------------------------

MULTISCALE.register("avg")(lambda per_scale: per_scale.mean(0))
MULTISCALE.register("sum")(lambda per_scale: per_scale.sum(0))
MULTISCALE.register("max")(lambda per_scale: per_scale.max(0))
MULTISCALE.register("min")(lambda per_scale: per_scale.min(0))
MULTISCALE_METHODS = tuple(MULTISCALE.names())


def combine_scales(per_scale: np.ndarray, method: str, renormalize: bool = False) -> np.ndarray:
    """Elementwise combination over axis 0 (the scales) of descriptors (S, ..., D).

    With one scale every method returns its input unchanged (bit for bit), so multi-scale
    testing with `scales=[1]` equals single-scale testing.
    """
    combine = MULTISCALE.get(method)
    out = per_scale[0] if per_scale.shape[0] == 1 else combine(per_scale)
    if renormalize:
        norm = np.linalg.norm(out, axis=-1, keepdims=True)
        out = out / np.maximum(norm, 1e-12)
    return out.astype(np.float32, copy=False)


# Test methods ---------------------------------------------------------------------------------

class TestMethod:
    """One way of turning an image into views at a target size (H, W)."""
    crops = 1              # views per scale
    rows_per_image = 1     # descriptor rows stored per image (crops kept apart)
    fixed_shapes = True    # every image gives views of the same shapes
    one_resize = False     # its view is one resize of the whole image (JPEG draft applies)

    def view_shapes(self, size, image_hw=None) -> list[tuple[int, int]]:
        return [tuple(size)]

    def views(self, image, size, resampling: Resampling) -> list[np.ndarray]:
        raise NotImplementedError

    def combine_crops(self, combined: np.ndarray) -> np.ndarray:
        """(B, crops, D) -> (B, rows_per_image, D)."""
        return combined

    def merge(self, distances, indices, k: int, settings) -> tuple[np.ndarray, np.ndarray]:
        """Search results (Q * rows, k) -> (Q, k)."""
        return distances, indices


@TEST_METHODS.register("hard_resize")
class HardResize(TestMethod):
    one_resize = True

    def views(self, image, size, resampling):
        return [ops.resize(image, size, resampling)]


@TEST_METHODS.register("single_query")
class SingleQuery(TestMethod):
    fixed_shapes = False

    def view_shapes(self, size, image_hw=None):
        if image_hw is None:
            raise ValueError("single_query view shapes depend on the image size")
        return [ops.short_side_size(image_hw, min(size))]

    def views(self, image, size, resampling):
        return [ops.resize_short_side(image, min(size), resampling)]


@TEST_METHODS.register("central_crop")
class CentralCrop(TestMethod):
    def views(self, image, size, resampling):
        return [ops.central_crop(image, size, resampling)]


@TEST_METHODS.register("five_crops")
class FiveCrops(TestMethod):
    crops = 5

    def view_shapes(self, size, image_hw=None):
        s = min(size)
        return [(s, s)] * 5

    def views(self, image, size, resampling):
        return ops.five_crops(image, min(size), resampling)

    def combine_crops(self, combined):
        return combined.mean(1, keepdims=True)


@TEST_METHODS.register("nearest_crop")
class NearestCrop(FiveCrops):
    rows_per_image = 5

    def combine_crops(self, combined):
        return combined

    def merge(self, distances, indices, k, settings):
        q = distances.shape[0] // self.rows_per_image
        return merge_crop_rankings(distances.reshape(q, self.rows_per_image, -1),
                                   indices.reshape(q, self.rows_per_image, -1), k)


@TEST_METHODS.register("maj_voting")
class MajorityVoting(NearestCrop):
    def merge(self, distances, indices, k, settings):
        q = distances.shape[0] // self.rows_per_image
        d = distances.reshape(q, self.rows_per_image, -1)
        i = indices.reshape(q, self.rows_per_image, -1)
        return merge_crop_rankings(d, i, k, voting_bonus(i, settings.majority_weight))


@TEST_METHODS.register("native")
class Native(TestMethod):
    fixed_shapes = False

    def view_shapes(self, size, image_hw=None):
        if image_hw is None:
            raise ValueError("native view shapes depend on the image size")
        return [tuple(image_hw)]

    def views(self, image, size, resampling):
        return [ops.identity(image)]


@dataclasses.dataclass(frozen=True)
class ViewPlan:
    """How images become views and how view descriptors become descriptor rows."""
    method: str = "hard_resize"
    sizes: tuple[tuple[int, int], ...] = ((480, 640),)  # one target (H, W) per scale
    combine: str = "avg"              # multi-scale: avg | sum | max | min
    renormalize: bool = False         # L2 re-normalise the multi-scale combination
    read: ImageReader = dataclasses.field(default=FOLDER_READER, compare=False)
    """How paths become pixels (and image sizes): a folder's files or a TFDS copy's records."""
    resampling: Resampling = Resampling()  # default: the reference's float resize

    def __post_init__(self):
        TEST_METHODS.get(self.method)
        MULTISCALE.get(self.combine)
        if not self.sizes:
            raise ValueError("test.scales is empty: give at least one scale factor")

    @functools.cached_property
    def impl(self) -> TestMethod:
        """The registered method (built once per plan: views are made per image)."""
        return TEST_METHODS.get(self.method)()

    @classmethod
    def for_queries(cls, test_cfg, model_size, read=FOLDER_READER,
                    resampling: Resampling = Resampling()) -> ViewPlan:
        return cls(method=test_cfg.method, sizes=scale_sizes(test_cfg.scales, model_size),
                   combine=test_cfg.multiscale_method,
                   renormalize=test_cfg.multiscale_renormalize, read=read,
                   resampling=resampling)

    @classmethod
    def for_database(cls, test_cfg, model_size, read=FOLDER_READER,
                     resampling: Resampling = Resampling()) -> ViewPlan:
        """Database images are always hard-resized; scaled only if `multiscale_database`."""
        scales = test_cfg.scales if test_cfg.multiscale_database else [1.0]
        return cls(method="hard_resize", sizes=scale_sizes(scales, model_size),
                   combine=test_cfg.multiscale_method,
                   renormalize=bool(test_cfg.multiscale_renormalize and
                                    test_cfg.multiscale_database), read=read,
                   resampling=resampling)

    @property
    def crops(self) -> int:
        return self.impl.crops

    @property
    def rows_per_image(self) -> int:
        return self.impl.rows_per_image

    @property
    def fixed_shapes(self) -> bool:
        """True if every image gives views of the same shapes (no header read needed)."""
        return self.impl.fixed_shapes

    def view_shapes(self, image_hw: tuple[int, int] | None = None) -> tuple[tuple[int, int], ...]:
        """The (h, w) of each view; `image_hw` (original size) is needed for single_query."""
        impl = self.impl
        return tuple(s for size in self.sizes for s in impl.view_shapes(size, image_hw))

    def load_views(self, path: str) -> list[np.ndarray]:
        """Decodes `path` once and returns its views (scale-major), (h, w, 3) each."""
        if self.impl.one_resize and len(self.sizes) == 1 and \
                ops.RESAMPLING_MODES.get(self.resampling.mode).decoder_resizes:
            # the reader resizes (with JPEG draft decoding where data.jpeg_draft allows it)
            return [self.read(path, self.sizes[0])]
        return self.views(self.read(path))

    def views(self, img: np.ndarray) -> list[np.ndarray]:
        """Views of a decoded RGB uint8 image (H0, W0, 3)."""
        impl = self.impl
        return [v for size in self.sizes for v in impl.views(img, tuple(size), self.resampling)]

    def combine_views(self, descriptors: Sequence[np.ndarray]) -> np.ndarray:
        """View descriptors (one (B, D) per view, scale-major) -> (B, rows_per_image, D)."""
        impl = self.impl
        n_scales, crops = len(self.sizes), impl.crops
        if len(descriptors) != n_scales * crops:
            raise ValueError(f"expected {n_scales * crops} views, got {len(descriptors)}")
        per_scale = np.stack([np.stack(descriptors[i * crops:(i + 1) * crops], 1)
                              for i in range(n_scales)], 0)     # (S, B, C, D)
        return impl.combine_crops(combine_scales(per_scale, self.combine, self.renormalize))

    def merge(self, distances, indices, k: int, settings):
        return self.impl.merge(distances, indices, k, settings)


def scale_sizes(scales, model_size) -> tuple[tuple[int, int], ...]:
    scales = [float(s) for s in scales]
    bad = [s for s in scales if not np.isfinite(s) or s <= 0]
    if bad:
        raise ValueError(f"test.scales must be positive factors, got {bad}")
    return tuple(ops.scale(model_size, s) for s in scales)


def scaled_size(size: Sequence[int], scale: float) -> tuple[int, int]:
    return ops.scale(size, scale)


def voting_bonus(indices: np.ndarray, weight: float,
                 windows: Sequence[int] = VOTING_WINDOWS) -> np.ndarray:
    """Distance reductions for `maj_voting`, same shape as `indices` (Q, C, K).

    For each window n (the first n ranks of every crop's list), a database image found
    c > 1 times inside the window (over all crops of the query) has each of those
    occurrences' distance lowered by `weight * c / n`. Windows add up, so agreement in the
    first ranks counts more. Missing results (-1) never earn a bonus.
    """
    q, c, k = indices.shape
    bonus = np.zeros(indices.shape, np.float32)
    for n in windows:
        n_eff = min(n, k)
        sub = indices[:, :, :n_eff].reshape(q, c * n_eff)                 # (Q, C*n)
        counts = (sub[:, :, None] == sub[:, None, :]).sum(-1)              # (Q, C*n)
        gain = np.where((counts > 1) & (sub >= 0), weight * counts / n, 0.0)
        bonus[:, :, :n_eff] += gain.reshape(q, c, n_eff).astype(np.float32)
    return bonus


def merge_crop_rankings(distances: np.ndarray, indices: np.ndarray, k: int,
                        bonus: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Merges per-crop results (Q, C, K) into one list (Q, k) by distance, without duplicates.

    Each database image keeps its smallest (bonus-adjusted) distance over the crops. Missing
    entries are index -1 with distance +inf.
    """
    q = distances.shape[0]
    dist = distances.reshape(q, -1).astype(np.float32)
    idx = indices.reshape(q, -1)
    if bonus is not None:
        dist = dist - bonus.reshape(q, -1)
    dist = np.where(idx < 0, np.inf, dist)
    order = np.argsort(dist, axis=1, kind="stable")
    dist = np.take_along_axis(dist, order, 1)
    idx = np.take_along_axis(idx, order, 1)
    # Keep the first (closest) occurrence of each database index in every row.
    by_index = np.argsort(idx, axis=1, kind="stable")
    sorted_idx = np.take_along_axis(idx, by_index, 1)
    first = np.ones_like(sorted_idx, bool)
    first[:, 1:] = sorted_idx[:, 1:] != sorted_idx[:, :-1]
    keep = np.empty_like(first)
    np.put_along_axis(keep, by_index, first, 1)
    keep &= idx >= 0
    pick = np.argsort(~keep, axis=1, kind="stable")[:, :k]  # kept ones first, in distance order
    out_idx = np.take_along_axis(idx, pick, 1)
    out_dist = np.take_along_axis(dist, pick, 1)
    valid = np.take_along_axis(keep, pick, 1)
    out_idx = np.where(valid, out_idx, -1)
    out_dist = np.where(valid, out_dist, np.inf).astype(np.float32)
    if out_idx.shape[1] < k:
        pad = k - out_idx.shape[1]
        out_idx = np.pad(out_idx, ((0, 0), (0, pad)), constant_values=-1)
        out_dist = np.pad(out_dist, ((0, 0), (0, pad)), constant_values=np.inf)
    return out_dist, out_idx
