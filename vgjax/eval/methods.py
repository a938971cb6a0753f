"""Test methods: how a query image becomes one or several model inputs ("views"), how the
descriptors of those views are combined, and how per-crop rankings are merged.

A `ViewPlan` turns one decoded image into `len(sizes) * crops` uint8 views, scale-major
(`[s0c0, s0c1, ..., s1c0, ...]`). Descriptors of the scales of one crop are combined
elementwise (multi-scale testing); `five_crops` then averages its crops, while
`nearest_crop` / `maj_voting` keep one descriptor row per crop and merge the crops'
rankings after the search (`merge_crop_rankings`).

Sizes follow the reference protocol (model size (H, W), usually 480x640):
- hard_resize: resize to (H, W), aspect ignored.
- single_query: short side to min(H, W), aspect kept (truncated long side, like torchvision).
- central_crop: smallest aspect-kept resize covering (H, W), then the central (H, W) crop.
- five_crops / nearest_crop / maj_voting: short side to S = min(H, W), then the four corner
  and the central S x S crops, in the order top-left, top-right, bottom-left, bottom-right,
  centre.
Multi-scale testing multiplies (H, W) by each scale factor before applying the method.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from PIL import Image

from vgjax.data.sources import FOLDER_READER, ImageReader

TEST_METHODS = ("hard_resize", "single_query", "central_crop", "five_crops", "nearest_crop",
                "maj_voting")
CROP_METHODS = ("five_crops", "nearest_crop", "maj_voting")
MULTISCALE_METHODS = ("avg", "sum", "max", "min")
# maj_voting: windows (leading ranks of each crop's list) inside which agreement is rewarded.
VOTING_WINDOWS = (1, 5, 10)


def scaled_size(size: Sequence[int], scale: float) -> tuple[int, int]:
    """(H, W) times `scale`, rounded, at least 1 pixel each."""
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def _resize(img: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    if img.shape[:2] == tuple(hw):
        return img
    return np.asarray(Image.fromarray(img).resize((hw[1], hw[0]), Image.BILINEAR))


def _short_side_size(hw: tuple[int, int], short: int) -> tuple[int, int]:
    """Aspect-kept size with the short side `short` (long side truncated, as torchvision)."""
    h, w = hw
    if h <= w:
        return short, max(short, int(short * w / h))
    return max(short, int(short * h / w)), short


def _crop(img: np.ndarray, top: int, left: int, h: int, w: int) -> np.ndarray:
    return img[top:top + h, left:left + w]


def _center_offset(total: int, crop: int) -> int:
    return round((total - crop) / 2.0)


@dataclasses.dataclass(frozen=True)
class ViewPlan:
    """How images become views and how view descriptors become descriptor rows."""
    method: str = "hard_resize"
    sizes: tuple[tuple[int, int], ...] = ((480, 640),)  # one target (H, W) per scale
    combine: str = "avg"              # multi-scale: avg | sum | max | min
    renormalize: bool = False         # L2 re-normalise the multi-scale combination
    read: ImageReader = dataclasses.field(default=FOLDER_READER, compare=False)
    """How paths become pixels (and image sizes): a folder's files or a TFDS copy's records."""

    def __post_init__(self):
        if self.method not in TEST_METHODS:
            raise ValueError(f"test.method={self.method!r} is not one of {TEST_METHODS}")
        if self.combine not in MULTISCALE_METHODS:
            raise ValueError(f"test.multiscale_method={self.combine!r} is not one of "
                             f"{MULTISCALE_METHODS}")
        if not self.sizes:
            raise ValueError("test.scales is empty: give at least one scale factor")

    @classmethod
    def for_queries(cls, test_cfg, model_size, read=FOLDER_READER) -> ViewPlan:
        return cls(method=test_cfg.method, sizes=_scale_sizes(test_cfg.scales, model_size),
                   combine=test_cfg.multiscale_method,
                   renormalize=bool(test_cfg.multiscale_renormalize), read=read)

    @classmethod
    def for_database(cls, test_cfg, model_size, read=FOLDER_READER) -> ViewPlan:
        """Database images are always hard-resized; scaled only if `multiscale_database`."""
        scales = test_cfg.scales if test_cfg.multiscale_database else [1.0]
        return cls(method="hard_resize", sizes=_scale_sizes(scales, model_size),
                   combine=test_cfg.multiscale_method,
                   renormalize=bool(test_cfg.multiscale_renormalize and
                                    test_cfg.multiscale_database), read=read)

    @property
    def crops(self) -> int:
        """Views per scale."""
        return 5 if self.method in CROP_METHODS else 1

    @property
    def rows_per_image(self) -> int:
        """Descriptor rows stored per image (one per crop for the crop-merging methods)."""
        return 5 if self.method in ("nearest_crop", "maj_voting") else 1

    @property
    def fixed_shapes(self) -> bool:
        """True if every image gives views of the same shapes (no header read needed)."""
        return self.method != "single_query"

    def view_shapes(self, image_hw: tuple[int, int] | None = None) -> tuple[tuple[int, int], ...]:
        """The (h, w) of each view; `image_hw` (original size) is needed for single_query."""
        shapes = []
        for size in self.sizes:
            if self.method in ("hard_resize", "central_crop"):
                shapes.append(tuple(size))
            elif self.method == "single_query":
                if image_hw is None:
                    raise ValueError("single_query view shapes depend on the image size")
                shapes.append(_short_side_size(image_hw, min(size)))
            else:
                s = min(size)
                shapes.extend([(s, s)] * 5)
        return tuple(shapes)

    def load_views(self, path: str) -> list[np.ndarray]:
        """Decodes `path` once and returns its views (scale-major), uint8 (h, w, 3) each."""
        if self.method == "hard_resize" and len(self.sizes) == 1:
            return [self.read(path, self.sizes[0])]  # fast path: JPEG draft decoding
        return self.views(self.read(path))

    def views(self, img: np.ndarray) -> list[np.ndarray]:
        """Views of a decoded RGB uint8 image (H0, W0, 3)."""
        out = []
        hw = img.shape[:2]
        for size in self.sizes:
            size = tuple(size)
            if self.method == "hard_resize":
                out.append(_resize(img, size))
            elif self.method == "single_query":
                out.append(_resize(img, _short_side_size(hw, min(size))))
            elif self.method == "central_crop":
                scale = max(size[0] / hw[0], size[1] / hw[1])
                rh = max(size[0], round(hw[0] * scale))
                rw = max(size[1], round(hw[1] * scale))
                r = _resize(img, (rh, rw))
                out.append(_crop(r, _center_offset(rh, size[0]), _center_offset(rw, size[1]),
                                 *size))
            else:
                s = min(size)
                r = _resize(img, _short_side_size(hw, s))
                rh, rw = r.shape[:2]
                out.extend([_crop(r, 0, 0, s, s), _crop(r, 0, rw - s, s, s),
                            _crop(r, rh - s, 0, s, s), _crop(r, rh - s, rw - s, s, s),
                            _crop(r, _center_offset(rh, s), _center_offset(rw, s), s, s)])
        return out

    def combine_views(self, descriptors: Sequence[np.ndarray]) -> np.ndarray:
        """View descriptors (one (B, D) per view, scale-major) -> (B, rows_per_image, D)."""
        n_scales, crops = len(self.sizes), self.crops
        if len(descriptors) != n_scales * crops:
            raise ValueError(f"expected {n_scales * crops} views, got {len(descriptors)}")
        per_scale = np.stack([np.stack(descriptors[i * crops:(i + 1) * crops], 1)
                              for i in range(n_scales)], 0)     # (S, B, C, D)
        combined = combine_scales(per_scale, self.combine, self.renormalize)  # (B, C, D)
        if self.method == "five_crops":
            combined = combined.mean(1, keepdims=True)
        return combined


def _scale_sizes(scales, model_size) -> tuple[tuple[int, int], ...]:
    scales = [float(s) for s in scales]
    bad = [s for s in scales if not np.isfinite(s) or s <= 0]
    if bad:
        raise ValueError(f"test.scales must be positive factors, got {bad}")
    return tuple(scaled_size(model_size, s) for s in scales)


def combine_scales(per_scale: np.ndarray, method: str, renormalize: bool = False) -> np.ndarray:
    """Elementwise combination over axis 0 (the scales) of descriptors (S, ..., D).

    With one scale every method returns its input unchanged (bit for bit), so multi-scale
    testing with `scales=[1]` equals single-scale testing.
    """
    if method not in MULTISCALE_METHODS:
        raise ValueError(f"test.multiscale_method={method!r} is not one of {MULTISCALE_METHODS}")
    if per_scale.shape[0] == 1:
        out = per_scale[0]
    elif method == "avg":
        out = per_scale.mean(0)
    elif method == "sum":
        out = per_scale.sum(0)
    elif method == "max":
        out = per_scale.max(0)
    else:
        out = per_scale.min(0)
    if renormalize:
        norm = np.linalg.norm(out, axis=-1, keepdims=True)
        out = out / np.maximum(norm, 1e-12)
    return out.astype(np.float32, copy=False)


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
