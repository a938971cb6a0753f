"""Host image ops: resize, resize_short_side, central_crop, five_crops, scale.

Each op takes an RGB image (H, W, 3) (uint8, or float32 in [0, 1]) and returns one image or
a list of them; test methods (`vgjax.eval.methods`) chain them. How pixels are resampled is
one `Resampling` setting shared by every op:

- `pil`: Pillow's bilinear with antialiasing, on uint8 (rounded). What torchvision's
  `Resize` does to PIL images: the reference's training images.
- `float`: `torch.nn.functional.interpolate(mode="bilinear", align_corners=False)` on float
  pixels, with or without antialias (`antialias`): what the reference's evaluation does to
  its normalised float tensors (torchvision 0.8.1: no antialias; >= 0.17: antialias). Output
  is float32 in [0, 1], never rounded. Normalising is affine per channel and the weights sum
  to one, so resizing [0, 1] pixels and normalising afterwards (on the device) gives the
  reference's numbers to float precision.

`central_crop` scales by max(H/h, W/w) and crops the centre; the reference interpolates that
scale with `interpolate(scale_factor=s)` (nearest, size floored) -- `crop_resize="nearest"`
-- or vgjax's earlier bilinear resize to the rounded size (`"bilinear"`). Each mode is an
entry of `RESAMPLING_MODES` (`data.eval_resize`), each crop scaling one of `CROP_RESIZES`
(`test.central_crop_resize`); `resampling(data_cfg, test_cfg)` is evaluation's setting.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image

from vgjax.registry import Registry

IMAGE_OPS = Registry("image op", fixed=("image",))


# Weights of torch's separable resizes ---------------------------------------------------------

@functools.lru_cache(maxsize=256)
def bilinear_weights(in_size: int, out_size: int, antialias: bool) -> np.ndarray:
    """(out_size, in_size) float32 matrix of torch's bilinear interpolation (align_corners
    False); with `antialias`, torch's `_upsample_bilinear2d_aa` (triangle filter widened by
    the scale when downsampling, weights renormalised at the borders)."""
    scale = in_size / out_size
    w = np.zeros((out_size, in_size), np.float64)
    if antialias:
        support = scale if scale >= 1.0 else 1.0
        invscale = 1.0 / scale if scale >= 1.0 else 1.0
        for i in range(out_size):
            center = scale * (i + 0.5)
            xmin = max(int(center - support + 0.5), 0)
            xmax = min(int(center + support + 0.5), in_size)
            j = np.arange(xmin, xmax)
            f = np.maximum(0.0, 1.0 - np.abs((j - center + 0.5) * invscale))
            total = f.sum()
            w[i, xmin:xmax] = f / total if total else f
    else:
        src = np.maximum(scale * (np.arange(out_size) + 0.5) - 0.5, 0.0)
        i0 = np.floor(src).astype(np.int64)
        i0 = np.minimum(i0, in_size - 1)
        i1 = np.minimum(i0 + 1, in_size - 1)
        l1 = src - i0
        rows = np.arange(out_size)
        np.add.at(w, (rows, i0), 1.0 - l1)
        np.add.at(w, (rows, i1), l1)
    return w.astype(np.float32)


def nearest_indices(in_size: int, out_size: int, scale_factor: float | None = None) -> np.ndarray:
    """Source index of every output pixel of torch's nearest interpolation (`scale_factor`
    given: scale 1/scale_factor, computed in float32 as torch does; else in/out)."""
    if out_size == in_size:
        return np.arange(out_size)
    if out_size == 2 * in_size:
        return np.arange(out_size) >> 1
    scale = np.float32(1.0 / scale_factor) if scale_factor else np.float32(in_size / out_size)
    src = np.floor(np.arange(out_size, dtype=np.float32) * scale).astype(np.int64)
    return np.minimum(src, in_size - 1)


def to_float(image: np.ndarray) -> np.ndarray:
    """uint8 -> float32 in [0, 1] (ToTensor); float32 unchanged."""
    return image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image


@functools.lru_cache(maxsize=256)
def bilinear_taps(in_size: int, out_size: int, antialias: bool):
    """`bilinear_weights` as its few non-zero taps: (indices (out, K), weights (out, K))."""
    w = bilinear_weights(in_size, out_size, antialias)
    k = max(1, int((w != 0).sum(1).max()))
    idx = np.argsort(w == 0, axis=1, kind="stable")[:, :k]   # the non-zero columns first
    return idx, np.take_along_axis(w, idx, 1).astype(np.float32)


def _float_resize(image: np.ndarray, hw: tuple[int, int], antialias: bool) -> np.ndarray:
    """Separable: rows, then columns, each a weighted sum of a few gathered taps (several
    times faster than the dense weight matrices on a CPU)."""
    x = to_float(image)
    rows, row_w = bilinear_taps(x.shape[0], hw[0], antialias)
    cols, col_w = bilinear_taps(x.shape[1], hw[1], antialias)
    t = row_w[:, 0, None, None] * x[rows[:, 0]]                   # (oh, w, 3)
    for k in range(1, rows.shape[1]):
        t += row_w[:, k, None, None] * x[rows[:, k]]
    out = col_w[None, :, 0, None] * t[:, cols[:, 0]]              # (oh, ow, 3)
    for k in range(1, cols.shape[1]):
        out += col_w[None, :, k, None] * t[:, cols[:, k]]
    return out


def _pil_resize(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    if image.dtype != np.uint8:
        raise ValueError("Pillow resampling needs uint8 images")
    return np.asarray(Image.fromarray(image).resize((hw[1], hw[0]), Image.BILINEAR))


# Resampling modes (data.eval_resize), the central crop's scaling (test.central_crop_resize) ---

@dataclasses.dataclass(frozen=True)
class Resampler:
    """One resampling mode: `resize(image, (H, W), antialias)`. `floats`: its images come
    out float32 in [0, 1], never rounded (else uint8). `decoder_resizes`: its resize is the
    decoder's own (`load_image(path, size)`, Pillow), so an image may be read at its
    target size directly."""
    resize: Callable[[np.ndarray, tuple[int, int], bool], np.ndarray]
    floats: bool
    decoder_resizes: bool


RESAMPLING_MODES = Registry("data.eval_resize")
RESAMPLING_MODES.register("float")(Resampler(_float_resize, floats=True, decoder_resizes=False))
RESAMPLING_MODES.register("pil")(Resampler(lambda image, hw, antialias: _pil_resize(image, hw),
                                           floats=False, decoder_resizes=True))

# (image, (H, W), scale s, Resampling) -> the image scaled by s, at least (H, W)
CROP_RESIZES = Registry("test.central_crop_resize")


@CROP_RESIZES.register("nearest")
def _scale_nearest(image: np.ndarray, hw: tuple[int, int], s: float,
                   resampling: Resampling) -> np.ndarray:
    """The reference's `interpolate(scale_factor=s)`: nearest, sizes floor(h * s),
    floor(w * s), never below the target."""
    ih, iw = image.shape[:2]
    # where floating point puts floor(h * s) one pixel short of the target (the
    # reference then fails its own shape assertion), the scaled size is the target
    oh, ow = max(hw[0], math.floor(ih * s)), max(hw[1], math.floor(iw * s))
    rows = nearest_indices(ih, oh, s)
    cols = nearest_indices(iw, ow, s)
    scaled = image[rows][:, cols]
    if RESAMPLING_MODES.get(resampling.mode).floats:
        scaled = to_float(scaled)
    return scaled


@CROP_RESIZES.register("bilinear")
def _scale_bilinear(image: np.ndarray, hw: tuple[int, int], s: float,
                    resampling: Resampling) -> np.ndarray:
    """vgjax's earlier crop: `resize` to max(H, round(h * s)) x max(W, round(w * s))."""
    ih, iw = image.shape[:2]
    return resize(image, (max(hw[0], round(ih * s)), max(hw[1], round(iw * s))), resampling)


@dataclasses.dataclass(frozen=True)
class Resampling:
    """How ops resample: `mode` float | pil, `antialias` (float mode), and the central
    crop's own interpolation `crop_resize` nearest | bilinear. The defaults are the
    reference's evaluation path with torchvision 0.8.1, what its published numbers used."""
    mode: str = "float"
    antialias: bool = False
    crop_resize: str = "nearest"

    def __post_init__(self):
        if self.mode not in RESAMPLING_MODES:
            raise ValueError(f"resampling mode {self.mode!r}: expected one of "
                             f"{tuple(RESAMPLING_MODES)}")
        if self.crop_resize not in CROP_RESIZES:
            raise ValueError(f"test.central_crop_resize={self.crop_resize!r}: expected one of "
                             f"{tuple(CROP_RESIZES)}")


REFERENCE = Resampling()
PIL = Resampling(mode="pil", antialias=True, crop_resize="bilinear")


def resampling(data_cfg, test_cfg) -> Resampling:
    """How evaluation resamples images (`data.eval_resize`, `data.resize_antialias`,
    `test.central_crop_resize`)."""
    return Resampling(mode=data_cfg.eval_resize, antialias=bool(data_cfg.resize_antialias),
                      crop_resize=test_cfg.central_crop_resize)


# The ops --------------------------------------------------------------------------------------

@IMAGE_OPS.register("resize")
def resize(image: np.ndarray, size: Sequence[int],
           resampling: Resampling = REFERENCE) -> np.ndarray:
    """To (H, W), aspect ignored (the reference's hard_resize); unchanged if already there."""
    hw = (int(size[0]), int(size[1]))
    if image.shape[:2] == hw:
        return image
    return RESAMPLING_MODES.get(resampling.mode).resize(image, hw, resampling.antialias)


def short_side_size(hw: Sequence[int], short: int) -> tuple[int, int]:
    """Aspect-kept size with the short side `short` (long side truncated, as torchvision)."""
    h, w = int(hw[0]), int(hw[1])
    if h <= w:
        return short, max(short, int(short * w / h))
    return max(short, int(short * h / w)), short


@IMAGE_OPS.register("resize_short_side")
def resize_short_side(image: np.ndarray, short: int,
                      resampling: Resampling = REFERENCE) -> np.ndarray:
    """Short side to `short`, aspect kept (torchvision `resize(img, int)`)."""
    return resize(image, short_side_size(image.shape[:2], int(short)), resampling)


def crop(image: np.ndarray, top: int, left: int, h: int, w: int) -> np.ndarray:
    return image[top:top + h, left:left + w]


def center_offset(total: int, size: int) -> int:
    """torchvision's centre-crop offset: int(round((total - size) / 2))."""
    return int(round((total - size) / 2.0))


def center_crop(image: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """The central (h, w) crop; zero-padded first where the image is smaller (torchvision)."""
    h, w = int(size[0]), int(size[1])
    ph, pw = max(0, h - image.shape[0]), max(0, w - image.shape[1])
    if ph or pw:
        image = np.pad(image, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    return crop(image, center_offset(image.shape[0], h), center_offset(image.shape[1], w), h, w)


@IMAGE_OPS.register("central_crop")
def central_crop(image: np.ndarray, size: Sequence[int],
                 resampling: Resampling = REFERENCE) -> np.ndarray:
    """The largest central crop of aspect H:W, at (H, W): scale by s = max(H/h, W/w), crop.

    nearest (the reference): `interpolate(scale_factor=s)`, sizes floor(h * s), floor(w * s)
    (never below the target);
    bilinear: resize to max(H, round(h * s)) x max(W, round(w * s)) with `resampling`.
    """
    hw = (int(size[0]), int(size[1]))
    ih, iw = image.shape[:2]
    s = max(hw[0] / ih, hw[1] / iw)
    return center_crop(CROP_RESIZES.get(resampling.crop_resize)(image, hw, s, resampling), hw)


@IMAGE_OPS.register("five_crops")
def five_crops(image: np.ndarray, short: int,
               resampling: Resampling = REFERENCE) -> list[np.ndarray]:
    """Short side to S, then the S x S crops top-left, top-right, bottom-left, bottom-right
    and centre (torchvision `five_crop`)."""
    s = int(short)
    r = resize_short_side(image, s, resampling)
    rh, rw = r.shape[:2]
    return [crop(r, 0, 0, s, s), crop(r, 0, rw - s, s, s), crop(r, rh - s, 0, s, s),
            crop(r, rh - s, rw - s, s, s), center_crop(r, (s, s))]


@IMAGE_OPS.register("ratio_crop")
def ratio_crop(image: np.ndarray, low: float = 3 / 4, high: float = 4 / 3) -> np.ndarray:
    """The central crop of aspect ratio (W / H) clamped to [low, high]; in-range images are
    unchanged. What the reference's RandomResizedCrop(scale=(1, 1)) does to a training
    query: no crop of full area fits another ratio, so torchvision falls back to this
    central crop (its offsets floor-divided)."""
    h, w = image.shape[:2]
    ratio = w / h
    if ratio < low:
        ch, cw = round(w / low), w
    elif ratio > high:
        ch, cw = h, round(h * high)
    else:
        return image
    return crop(image, (h - ch) // 2, (w - cw) // 2, ch, cw)


def train_query(image: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """A training query as the reference loads it: `ratio_crop`, then Pillow's resize."""
    return resize(ratio_crop(image), size, PIL)


@IMAGE_OPS.register("scale")
def scale(size: Sequence[int], factor: float) -> tuple[int, int]:
    """(H, W) times `factor`, rounded, at least 1 pixel each (multi-scale testing)."""
    return max(1, round(size[0] * factor)), max(1, round(size[1] * factor))


@IMAGE_OPS.register("identity")
def identity(image: np.ndarray) -> np.ndarray:
    """The image unchanged (e.g. PCA images at their native size, as the reference fits)."""
    return image
