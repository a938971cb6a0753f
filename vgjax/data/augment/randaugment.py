"""torchvision's RandAugment (`randaugment(num_ops=2, magnitude=9, num_magnitude_bins=31,
interpolation="nearest", fill=0.0)`) as a training-query augmentation run inside the train
step, with the semantics of torchvision's PIL path (the published recipes run RandAugment on
PIL uint8 images).

Each query gets `num_ops` ops, each drawn uniformly from the 14 of torchvision >= 0.15
(`RandAugment._augmentation_space`), with replacement, and applied in sequence: Identity,
ShearX, ShearY, TranslateX, TranslateY, Rotate, Brightness, Color, Contrast, Sharpness,
Posterize, Solarize, AutoContrast, Equalize. All use the magnitude in bin `magnitude` of
`num_magnitude_bins`, built as torchvision builds them (float32 `linspace`s: shear 0 .. 0.3,
translate 0 .. 150/331 of the width or height in pixels, rotate 0 .. 30 degrees, the enhance
factors 1 + (0 .. 0.9), posterize 8 .. 4 bits, solarize thresholds 255 .. 0); the signed ops
(geometry and enhance) flip the sign with probability 0.5.

The ops are PIL's, as torchvision calls them on PIL images:
- shear (`F.affine`, centre (0, 0)), translate (`F.affine` about the centre, whole pixels,
  truncated towards 0) and rotate (PIL's `rotate` about the centre, counter-clockwise):
  PIL's affine transform, the output pixel centre (x + 0.5, y + 0.5) mapped to the input,
  nearest (floored, in PIL's 16.16 fixed point) or bilinear (edge pixels repeated inside
  the image), `fill` outside;
- Brightness, Color, Contrast, Sharpness: PIL's ImageEnhance, a blend with a degenerate image
  (black; PIL's integer grey "L"; the rounded mean of that grey; PIL's 3x3 SMOOTH filter,
  [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13, border pixels unchanged), the degenerate image on
  uint8 levels as PIL makes it;
- Posterize, Solarize, AutoContrast, Equalize (uint8 ops): on the image rounded to uint8
  levels (round(x * 255)), PIL's ImageOps luts (per-channel min/max stretch, truncated;
  PIL's histogram-step equalization), returned as level / 255.

Where this differs from torchvision: it runs on the model-sized float image inside the step
(the MixVPR recipe's order: resize, then RandAugment), with no rounding to uint8 after the
geometric and enhance ops (PIL truncates their blends to integers; here they stay exact, at
most one grey level apart); the draws come from `jax.random`, not torch's generator (the
distributions are torchvision's). `train.augment_on=host` runs torchvision's PIL calls
themselves on the full-size query (`vgjax.data.augment.host`).
"""
from __future__ import annotations

import math
import numbers

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from vgjax.data.augment.specs import register

OPS = ("Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness",
       "Color", "Contrast", "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize")
INTERPOLATIONS = ("nearest", "bilinear")
SMOOTH = np.asarray([[1, 1, 1], [1, 5, 1], [1, 1, 1]], np.float32) / 13  # PIL ImageFilter.SMOOTH


# Argument checks (Python, at parse time) -------------------------------------------------------

def _int(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value!r}")
    return int(value)


def randaugment_args(num_ops=2, magnitude=9, num_magnitude_bins=31, interpolation="nearest",
                     fill=0.0):
    """(num_ops, magnitude, num_magnitude_bins, interpolation, fill), checked."""
    num_ops = _int("num_ops", num_ops, 0)
    bins = _int("num_magnitude_bins", num_magnitude_bins, 2)
    magnitude = _int("magnitude", magnitude, 0)
    if magnitude >= bins:
        raise ValueError(f"magnitude must be < num_magnitude_bins ({bins}), got {magnitude}")
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got "
                         f"{interpolation!r}")
    if isinstance(fill, bool) or not isinstance(fill, numbers.Real) or \
            not 0.0 <= float(fill) <= 1.0:
        raise ValueError(f"fill must be a number in [0, 1], got {fill!r}")
    return num_ops, magnitude, bins, interpolation, float(fill)


# The magnitudes (Python, static) --------------------------------------------------------------

def _linspace(start: float, end: float, steps: int) -> np.ndarray:
    """torch.linspace in float32, as torch's CPU kernel computes it: step = (end - start) /
    (steps - 1), then start + step * i up to the halfway point and end - step * (steps - 1 -
    i) after it, each a fused multiply-add (one rounding; the float32 product is exact in
    float64)."""
    start, end = np.float32(start), np.float32(end)
    step = np.float64((end - start) / np.float32(steps - 1))
    i = np.arange(steps, dtype=np.float64)
    up = (step * i + np.float64(start)).astype(np.float32)
    down = (-step * (steps - 1 - i) + np.float64(end)).astype(np.float32)
    return np.where(i < steps // 2, up, down)


def augmentation_space(num_bins: int, height: int, width: int) -> dict:
    """torchvision's `RandAugment._augmentation_space(num_bins, (height, width))`: op name ->
    (magnitudes (num_bins,), or a 0-d 0.0 for the ops without one; signed)."""
    zero = np.float32(0.0)
    bins = np.arange(num_bins, dtype=np.float32)
    return {
        "Identity": (zero, False),
        "ShearX": (_linspace(0.0, 0.3, num_bins), True),
        "ShearY": (_linspace(0.0, 0.3, num_bins), True),
        "TranslateX": (_linspace(0.0, 150.0 / 331.0 * width, num_bins), True),
        "TranslateY": (_linspace(0.0, 150.0 / 331.0 * height, num_bins), True),
        "Rotate": (_linspace(0.0, 30.0, num_bins), True),
        "Brightness": (_linspace(0.0, 0.9, num_bins), True),
        "Color": (_linspace(0.0, 0.9, num_bins), True),
        "Contrast": (_linspace(0.0, 0.9, num_bins), True),
        "Sharpness": (_linspace(0.0, 0.9, num_bins), True),
        "Posterize": (8 - np.round(bins / np.float32((num_bins - 1) / 4)).astype(np.int32), False),
        "Solarize": (_linspace(1.0, 0.0, num_bins), False),
        "AutoContrast": (zero, False),
        "Equalize": (zero, False),
    }


def op_magnitude(space: dict, name: str, magnitude: int, negative: bool = False) -> float:
    """The magnitude RandAugment.forward passes to `_apply_op` for op `name`: bin
    `magnitude`, negated for a signed op when `negative` (0.0 for the ops without one)."""
    values, signed = space[name]
    m = float(values[magnitude]) if np.ndim(values) else 0.0
    return -m if signed and negative else m


def inverse_affine_matrix(center, angle, translate, scale, shear) -> list[float]:
    """torchvision's `_get_inverse_affine_matrix` (inverted=True): the 6 coefficients of
    the map from output to input points that PIL's AFFINE transform takes."""
    rot = math.radians(angle)
    sx, sy = math.radians(shear[0]), math.radians(shear[1])
    cx, cy = center
    tx, ty = translate
    a = math.cos(rot - sy) / math.cos(sy)
    b = -math.cos(rot - sy) * math.tan(sx) / math.cos(sy) - math.sin(rot)
    c = math.sin(rot - sy) / math.cos(sy)
    d = -math.sin(rot - sy) * math.tan(sx) / math.cos(sy) + math.cos(rot)
    matrix = [x / scale for x in (d, -b, 0.0, -c, a, 0.0)]
    matrix[2] += matrix[0] * (-cx - tx) + matrix[1] * (-cy - ty)
    matrix[5] += matrix[3] * (-cx - tx) + matrix[4] * (-cy - ty)
    matrix[2] += cx
    matrix[5] += cy
    return matrix


def rotate_matrix(angle: float, height: int, width: int) -> list[float]:
    """PIL's `Image.rotate(angle)` matrix (no expand, about (width / 2, height / 2))."""
    angle = -math.radians(angle % 360.0)
    matrix = [round(math.cos(angle), 15), round(math.sin(angle), 15), 0.0,
              round(-math.sin(angle), 15), round(math.cos(angle), 15), 0.0]
    cx, cy = width / 2.0, height / 2.0
    matrix[2] = matrix[0] * -cx + matrix[1] * -cy + cx
    matrix[5] = matrix[3] * -cx + matrix[4] * -cy + cy
    return matrix


def affine_matrix(name: str, magnitude: float, height: int, width: int) -> list[float] | None:
    """The PIL AFFINE coefficients torchvision's `_apply_op` uses for a geometric op (None
    for the others)."""
    if name == "ShearX":
        return inverse_affine_matrix([0, 0], 0.0, [0, 0], 1.0,
                                     [math.degrees(math.atan(magnitude)), 0.0])
    if name == "ShearY":
        return inverse_affine_matrix([0, 0], 0.0, [0, 0], 1.0,
                                     [0.0, math.degrees(math.atan(magnitude))])
    centre = [width * 0.5, height * 0.5]
    if name == "TranslateX":
        return inverse_affine_matrix(centre, 0.0, [float(int(magnitude)), 0.0], 1.0, [0.0, 0.0])
    if name == "TranslateY":
        return inverse_affine_matrix(centre, 0.0, [0.0, float(int(magnitude))], 1.0, [0.0, 0.0])
    if name == "Rotate":
        return rotate_matrix(magnitude, height, width)
    return None


# Branches of the op switch: identity, affine, the 4 enhancers, the 4 uint8 ops
_BRANCH = (0, 1, 1, 1, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9)
_IDENTITY = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]


def op_table(num_bins: int, magnitude: int, height: int, width: int):
    """Static per-op parameters for both signs: (matrix (14, 2, 6) float32, the inverse
    affine map of the geometric ops (identity elsewhere); fixed (14, 2, 6) int32, the same
    in PIL's fixed point (`pil_fixed`); factor (14, 2) float32, the
    enhance factor 1 + magnitude; level (14,) int32, posterize's bits and solarize's
    threshold as the first inverted uint8 level, ceil(255 * magnitude))."""
    space = augmentation_space(num_bins, height, width)
    matrix = np.zeros((len(OPS), 2, 6), np.float64)
    factor = np.ones((len(OPS), 2), np.float64)
    level = np.zeros(len(OPS), np.int64)
    for i, name in enumerate(OPS):
        for s in (0, 1):
            m = op_magnitude(space, name, magnitude, negative=bool(s))
            matrix[i, s] = affine_matrix(name, m, height, width) or _IDENTITY
            if name in ("Brightness", "Color", "Contrast", "Sharpness"):
                factor[i, s] = 1.0 + m
        if name == "Posterize":
            level[i] = int(op_magnitude(space, name, magnitude))
        elif name == "Solarize":
            level[i] = math.ceil(255.0 * op_magnitude(space, name, magnitude))
    fixed = np.asarray([[pil_fixed(m) for m in pair] for pair in matrix], np.int64)
    return (matrix.astype(np.float32), fixed.astype(np.int32), factor.astype(np.float32),
            level.astype(np.int32))


# The ops on one image (H, W, 3) float32 in [0, 1] ---------------------------------------------

def pil_fixed(matrix) -> list[int]:
    """PIL's 16.16 fixed-point form of AFFINE coefficients (a, b, c, d, e, f), as its
    nearest-neighbour affine loop uses them: (FIX(a), FIX(b), FIX(c + a / 2 + b / 2), FIX(d),
    FIX(e), FIX(f + d / 2 + e / 2)), FIX(v) = floor(v * 65536 + 0.5)."""
    a, b, c, d, e, f = (float(v) for v in matrix)
    fix = lambda v: math.floor(v * 65536.0 + 0.5)
    return [fix(a), fix(b), fix(c + a * 0.5 + b * 0.5), fix(d), fix(e), fix(f + d * 0.5 + e * 0.5)]


def warp_nearest(image, fixed, fill: float = 0.0):
    """PIL's AFFINE transform with NEAREST of (H, W, 3), from the `pil_fixed` coefficients
    (6,) int32: output pixel (i, j) takes input pixel ((c' + a j + b i) >> 16,
    (f' + d j + e i) >> 16) (the output centre mapped in 16.16 fixed point, floored), `fill`
    where that is outside the image."""
    height, width = image.shape[:2]
    a, b, c, d, e, f = (fixed[k] for k in range(6))
    j = jnp.arange(width, dtype=jnp.int32)[None, :]
    i = jnp.arange(height, dtype=jnp.int32)[:, None]
    u = jnp.right_shift(c + a * j + b * i, 16)
    v = jnp.right_shift(f + d * j + e * i, 16)
    inside = (u >= 0) & (u < width) & (v >= 0) & (v < height)
    pixels = image[jnp.clip(v, 0, height - 1), jnp.clip(u, 0, width - 1)]
    return jnp.where(inside[..., None], pixels, fill)


def warp_bilinear(image, matrix, fill: float = 0.0):
    """PIL's AFFINE transform with BILINEAR of (H, W, 3) by the output -> input coefficients
    `matrix` (6,): output pixel (i, j) samples the input at (a, b, c) . (j + 0.5, i + 0.5, 1),
    (d, e, f) . (...), pixel k spanning [k, k + 1): if that point is inside the image, the
    blend of the 4 nearest pixel centres (edge pixels repeated), else `fill`."""
    height, width = image.shape[:2]
    a, b, c, d, e, f = (matrix[k] for k in range(6))
    x = jnp.arange(width, dtype=jnp.float32)[None, :] + 0.5
    y = jnp.arange(height, dtype=jnp.float32)[:, None] + 0.5
    u = a * x + b * y + c
    v = d * x + e * y + f
    inside = (u >= 0) & (u < width) & (v >= 0) & (v < height)
    u, v = jnp.nan_to_num(u) - 0.5, jnp.nan_to_num(v) - 0.5
    u0, v0 = jnp.floor(u), jnp.floor(v)
    du, dv = (u - u0)[..., None], (v - v0)[..., None]
    x0 = jnp.clip(u0, 0, width - 1).astype(jnp.int32)
    x1 = jnp.clip(u0 + 1, 0, width - 1).astype(jnp.int32)
    y0 = jnp.clip(v0, 0, height - 1).astype(jnp.int32)
    y1 = jnp.clip(v0 + 1, 0, height - 1).astype(jnp.int32)
    top = image[y0, x0] + (image[y0, x1] - image[y0, x0]) * du
    bottom = image[y1, x0] + (image[y1, x1] - image[y1, x0]) * du
    return jnp.where(inside[..., None], top + (bottom - top) * dv, fill)


def _levels(image):
    """float [0, 1] -> int32 uint8 levels round(x * 255)."""
    return jnp.clip(jnp.round(image * 255.0), 0, 255).astype(jnp.int32)


def pil_grey(image):
    """(H, W, 3) -> (H, W) int32: PIL's RGB -> L, (19595 R + 38470 G + 7471 B + 2^15) >> 16
    on the uint8 levels (exact in float32: every term stays below 2^24)."""
    q = jnp.round(image * 255.0)
    lum = q[..., 0] * 19595.0 + q[..., 1] * 38470.0 + q[..., 2] * 7471.0
    return jnp.floor((lum + 32768.0) / 65536.0).astype(jnp.int32)


def _blend(degenerate, image, factor):
    """PIL's Image.blend(degenerate, image, factor), without its truncation, in [0, 1]."""
    return jnp.clip(degenerate + factor * (image - degenerate), 0.0, 1.0)


def enhance_brightness(image, factor):
    return _blend(jnp.zeros_like(image), image, factor)


def enhance_color(image, factor):
    """ImageEnhance.Color: blend with PIL's grey image."""
    grey = pil_grey(image).astype(jnp.float32) / 255.0
    return _blend(grey[..., None], image, factor)


def enhance_contrast(image, factor):
    """ImageEnhance.Contrast: blend with int(mean of PIL's grey image + 0.5)."""
    grey = pil_grey(image)
    n = grey.size
    mean = (2 * jnp.sum(grey) + n) // (2 * n)       # int(sum / n + 0.5), in integers
    return _blend(mean.astype(jnp.float32) / 255.0, image, factor)


def enhance_sharpness(image, factor):
    """ImageEnhance.Sharpness: blend with PIL's SMOOTH filter (rounded to uint8 levels,
    border pixels unchanged)."""
    height, width = image.shape[:2]
    q = jnp.round(image * 255.0)
    inner = sum(float(SMOOTH[dy, dx]) * q[dy:height - 2 + dy, dx:width - 2 + dx]
                for dy in range(3) for dx in range(3))
    smooth = image.at[1:-1, 1:-1].set(jnp.floor(inner + 0.5) / 255.0)
    return _blend(smooth, image, factor)


def posterize(image, bits):
    """ImageOps.posterize: the top `bits` bits of each uint8 level."""
    drop = jnp.left_shift(1, 8 - bits)
    return (_levels(image) // drop * drop).astype(jnp.float32) / 255.0


def solarize(image, first):
    """ImageOps.solarize: levels >= `first` (the threshold rounded up) become 255 - level."""
    q = _levels(image)
    return jnp.where(q >= first, 255 - q, q).astype(jnp.float32) / 255.0


def autocontrast(image):
    """ImageOps.autocontrast (cutoff 0): each channel's levels stretched from [lo, hi] to
    [0, 255], truncated; a channel with hi == lo is unchanged."""
    q = _levels(image)
    lo = jnp.min(q, axis=(0, 1))
    hi = jnp.max(q, axis=(0, 1))
    span = jnp.maximum(hi - lo, 1)
    stretched = jnp.clip((255 * (q - lo)) // span, 0, 255)
    return jnp.where(hi > lo, stretched, q).astype(jnp.float32) / 255.0


def equalize(image):
    """Pillow's ImageOps.equalize, per channel: step = (pixels - the count of the last
    non-empty level) // 255; lut[i] = (step // 2 + pixels below level i) // step, clipped
    to 255; the channel unchanged when step is 0 or it has a single level."""
    q = _levels(image).reshape(-1, 3)
    n = q.shape[0]
    hist = jax.vmap(lambda c: jnp.bincount(c, length=256))(q.T)           # (3, 256)
    levels = jnp.arange(256)
    last = jnp.max(jnp.where(hist > 0, levels, -1), axis=1)
    last_count = jnp.take_along_axis(hist, last[:, None], axis=1)[:, 0]
    step = (n - last_count) // 255
    used = jnp.sum(hist > 0, axis=1)
    below = jnp.cumsum(hist, axis=1) - hist
    lut = jnp.clip((step[:, None] // 2 + below) // jnp.maximum(step, 1)[:, None], 0, 255)
    lut = jnp.where(((step > 0) & (used > 1))[:, None], lut, levels[None, :])
    out = jnp.stack([lut[c][q[:, c]] for c in range(3)], axis=-1)
    return out.reshape(image.shape).astype(jnp.float32) / 255.0


def apply_op(image, op, sign, table, interpolation: str = "nearest", fill: float = 0.0):
    """(H, W, 3): RandAugment op `op` (traced int, index in OPS) with sign `sign` (traced
    int, 1 = negated magnitude) and the static `op_table` `table`."""
    matrix, fixed, factor, level = (jnp.asarray(t) for t in table)
    if interpolation == "nearest":
        matrix, warp = fixed, warp_nearest
    else:
        warp = warp_bilinear
    branches = [
        lambda img, m, f, l: img,
        lambda img, m, f, l: warp(img, m, fill),
        lambda img, m, f, l: enhance_brightness(img, f),
        lambda img, m, f, l: enhance_color(img, f),
        lambda img, m, f, l: enhance_contrast(img, f),
        lambda img, m, f, l: enhance_sharpness(img, f),
        lambda img, m, f, l: posterize(img, l),
        lambda img, m, f, l: solarize(img, l),
        lambda img, m, f, l: autocontrast(img),
        lambda img, m, f, l: equalize(img),
    ]
    branch = jnp.asarray(_BRANCH, jnp.int32)[op]
    return lax.switch(branch, branches, image, matrix[op, sign], factor[op, sign], level[op])


def randaugment_draws(key, num_ops: int):
    """(ops (num_ops,) int32 uniform in 0..13, with replacement; signs (num_ops,) int32,
    1 = negate, each with probability 0.5)."""
    k_op, k_sign = jax.random.split(key)
    return (jax.random.randint(k_op, (num_ops,), 0, len(OPS), jnp.int32),
            jax.random.randint(k_sign, (num_ops,), 0, 2, jnp.int32))


@register("randaugment", randaugment_args)
def randaugment(image, key, num_ops=2, magnitude=9, num_magnitude_bins=31,
                interpolation="nearest", fill=0.0):
    """torchvision RandAugment(num_ops, magnitude, num_magnitude_bins, interpolation, fill)
    on PIL semantics: `num_ops` of the 14 ops drawn uniformly with replacement, each with a
    random sign where signed, applied in order (see the module docstring)."""
    num_ops, magnitude, bins, interpolation, fill = randaugment_args(
        num_ops, magnitude, num_magnitude_bins, interpolation, fill)
    if num_ops == 0:
        return image
    table = op_table(bins, magnitude, image.shape[0], image.shape[1])
    ops, signs = randaugment_draws(key, num_ops)

    def body(t, img):
        return apply_op(img, ops[t], signs[t], table, interpolation, fill)

    return lax.fori_loop(0, num_ops, body, image)
