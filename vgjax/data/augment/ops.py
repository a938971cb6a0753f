"""The image arithmetic of the query augmentations, with torchvision's formulas on float
images (H, W, 3) in [0, 1]: colour adjustments (`adjust_*`, HSV), bilinear / nearest
sampling, perspective, crop-and-resize and rotation. Pure jnp functions of arrays and
already drawn parameters; `vgjax.data.augment.device` draws the parameters and registers
the ops.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

GRAY_WEIGHTS = (0.2989, 0.587, 0.114)   # torchvision's rgb_to_grayscale
CROP_RATIO = (3.0 / 4.0, 4.0 / 3.0)     # RandomResizedCrop's default aspect-ratio range
CROP_ATTEMPTS = 10                       # RandomResizedCrop.get_params's attempts


# Colour: torchvision's adjust_* on float images ------------------------------------------------

def blend(image1, image2, ratio):
    """clamp(ratio * image1 + (1 - ratio) * image2, 0, 1) (torchvision `_blend`, float)."""
    return jnp.clip(ratio * image1 + (1.0 - ratio) * image2, 0.0, 1.0)


def rgb_to_grayscale(image):
    """(..., 3) -> (...,): 0.2989 R + 0.587 G + 0.114 B."""
    r, g, b = image[..., 0], image[..., 1], image[..., 2]
    return GRAY_WEIGHTS[0] * r + GRAY_WEIGHTS[1] * g + GRAY_WEIGHTS[2] * b


def adjust_brightness(image, factor):
    """(H, W, 3) -> clamp(image * factor, 0, 1)."""
    return blend(image, jnp.zeros_like(image), factor)


def adjust_contrast(image, factor):
    """(H, W, 3): blend with the mean of the grayscale image (one scalar for all channels)."""
    mean = jnp.mean(rgb_to_grayscale(image))
    return blend(image, mean, factor)


def adjust_saturation(image, factor):
    """(H, W, 3): blend with the grayscale image."""
    return blend(image, rgb_to_grayscale(image)[..., None], factor)


def rgb_to_hsv(image):
    """(..., 3) RGB in [0, 1] -> (..., 3) HSV, all in [0, 1] (torchvision `_rgb2hsv`)."""
    r, g, b = image[..., 0], image[..., 1], image[..., 2]
    maxc = jnp.max(image, axis=-1)
    minc = jnp.min(image, axis=-1)
    eqc = maxc == minc
    cr = maxc - minc
    ones = jnp.ones_like(maxc)
    s = cr / jnp.where(eqc, ones, maxc)
    cr_divisor = jnp.where(eqc, ones, cr)
    rc = (maxc - r) / cr_divisor
    gc = (maxc - g) / cr_divisor
    bc = (maxc - b) / cr_divisor
    hr = (maxc == r) * (bc - gc)
    hg = ((maxc == g) & (maxc != r)) * (2.0 + rc - bc)
    hb = ((maxc != g) & (maxc != r)) * (4.0 + gc - rc)
    h = jnp.fmod((hr + hg + hb) / 6.0 + 1.0, 1.0)
    return jnp.stack([h, s, maxc], axis=-1)


def hsv_to_rgb(hsv):
    """(..., 3) HSV -> (..., 3) RGB (torchvision `_hsv2rgb`)."""
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    i = jnp.floor(h * 6.0)
    f = h * 6.0 - i
    i = jnp.mod(i.astype(jnp.int32), 6)
    p = jnp.clip(v * (1.0 - s), 0.0, 1.0)
    q = jnp.clip(v * (1.0 - s * f), 0.0, 1.0)
    t = jnp.clip(v * (1.0 - s * (1.0 - f)), 0.0, 1.0)
    sectors = [i == k for k in range(6)]
    r = jnp.select(sectors, [v, q, p, p, t, v])
    g = jnp.select(sectors, [t, v, v, q, p, p])
    b = jnp.select(sectors, [p, p, t, v, v, q])
    return jnp.stack([r, g, b], axis=-1)


def adjust_hue(image, factor):
    """(H, W, 3): hue h -> (h + factor) mod 1 in HSV; factor in [-0.5, 0.5]."""
    hsv = rgb_to_hsv(image)
    h = jnp.mod(hsv[..., 0] + factor, 1.0)
    return hsv_to_rgb(jnp.concatenate([h[..., None], hsv[..., 1:]], axis=-1))


# Sampling -------------------------------------------------------------------------------------

def _index(coord, size: int):
    """Float pixel index -> int32, with NaN/inf and far-out values kept safely out of range."""
    coord = jnp.clip(jnp.nan_to_num(coord, nan=-2.0), -2.0, size + 1.0)
    return coord.astype(jnp.int32)


def sample_bilinear(image, x, y):
    """`image` (H, W, C) at float pixel coordinates x (column), y (row) of shape S, pixel
    centres at integers: torch `grid_sample(bilinear, padding_mode="zeros")` after
    unnormalising. Returns (values (*S, C), coverage (*S,): the weight that fell inside)."""
    height, width = image.shape[:2]
    x0f, y0f = jnp.floor(x), jnp.floor(y)
    x0, y0 = _index(x0f, width), _index(y0f, height)
    x1, y1 = x0 + 1, y0 + 1
    wx = (x0f + 1.0 - x, x - x0f)         # weights of x0, x1
    wy = (y0f + 1.0 - y, y - y0f)
    values = jnp.zeros(x.shape + image.shape[2:], image.dtype)
    coverage = jnp.zeros(x.shape, image.dtype)
    for yy, wyy in ((y0, wy[0]), (y1, wy[1])):
        for xx, wxx in ((x0, wx[0]), (x1, wx[1])):
            inside = (xx >= 0) & (xx < width) & (yy >= 0) & (yy < height)
            w = jnp.where(inside, wyy * wxx, 0.0)
            pixels = image[jnp.clip(yy, 0, height - 1), jnp.clip(xx, 0, width - 1)]
            values = values + w[..., None] * pixels
            coverage = coverage + w
    return values, coverage


def sample_nearest(image, x, y):
    """`image` (H, W, C) at the nearest pixel (round half to even, as torch's nearbyint) of
    float coordinates x, y; 0 outside."""
    height, width = image.shape[:2]
    xi, yi = _index(jnp.round(x), width), _index(jnp.round(y), height)
    inside = (xi >= 0) & (xi < width) & (yi >= 0) & (yi < height)
    pixels = image[jnp.clip(yi, 0, height - 1), jnp.clip(xi, 0, width - 1)]
    return jnp.where(inside[..., None], pixels, 0.0)


# Perspective, crop, rotation ----------------------------------------------------------------

def perspective_params(key, height: int, width: int, distortion_scale: float):
    """RandomPerspective.get_params: (startpoints, endpoints), each (4, 2) int32 (x, y) of
    the corners top-left, top-right, bottom-right, bottom-left; each end corner moves
    inwards by up to int(distortion_scale * half size) pixels."""
    dx = int(distortion_scale * (width // 2))
    dy = int(distortion_scale * (height // 2))
    lo = jnp.asarray([[0, 0], [width - dx - 1, 0], [width - dx - 1, height - dy - 1],
                      [0, height - dy - 1]], jnp.int32)
    hi = jnp.asarray([[dx + 1, dy + 1], [width, dy + 1], [width, height],
                      [dx + 1, height]], jnp.int32)
    end = jax.random.randint(key, (4, 2), lo, hi)
    start = jnp.asarray([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]],
                        jnp.int32)
    return start, end


def perspective_coeffs(startpoints, endpoints):
    """(8,) float32 (a, b, c, d, e, f, g, h) of the map from output (end) points to input
    (start) points, (x, y) -> ((a x + b y + c) / (g x + h y + 1), (d x + e y + f) / (...)):
    the 8x8 system of torchvision's `_get_perspective_coeffs`, solved in coordinates scaled
    to ~[0, 1] (float32 is then well conditioned) and scaled back."""
    start = jnp.asarray(startpoints, jnp.float32)
    end = jnp.asarray(endpoints, jnp.float32)
    scale = 1.0 / jnp.maximum(1.0, jnp.max(jnp.abs(jnp.concatenate([start, end]))))
    s, e = start * scale, end * scale
    x, y, u, v = e[:, 0], e[:, 1], s[:, 0], s[:, 1]
    one, zero = jnp.ones_like(x), jnp.zeros_like(x)
    rows_u = jnp.stack([x, y, one, zero, zero, zero, -u * x, -u * y], axis=1)
    rows_v = jnp.stack([zero, zero, zero, x, y, one, -v * x, -v * y], axis=1)
    a = jnp.stack([rows_u, rows_v], axis=1).reshape(8, 8)
    b = jnp.stack([u, v], axis=1).reshape(8)
    c = jnp.linalg.solve(a, b)
    unscale = jnp.stack([1.0, 1.0, 1.0 / scale, 1.0, 1.0, 1.0 / scale, scale, scale])
    return c * unscale


def warp_perspective(image, coeffs):
    """(H, W, 3) under torchvision's tensor `perspective` with fill 0: output pixel (i, j)
    samples the input bilinearly at coeffs(j + 0.5, i + 0.5) - 0.5, and is multiplied by
    the fraction of that sample inside the image (torchvision's fill mask)."""
    height, width = image.shape[:2]
    a, b, c, d, e, f, g, h = (coeffs[k] for k in range(8))
    x = jnp.arange(width, dtype=jnp.float32)[None, :] + 0.5
    y = jnp.arange(height, dtype=jnp.float32)[:, None] + 0.5
    den = g * x + h * y + 1.0
    u = (a * x + b * y + c) / den - 0.5
    v = (d * x + e * y + f) / den - 0.5
    values, coverage = sample_bilinear(image, u, v)
    return values * coverage[..., None]


def resized_crop_params(key, height: int, width: int, scale: tuple[float, float],
                        ratio: tuple[float, float] = CROP_RATIO):
    """RandomResizedCrop.get_params: (top, left, h, w) int32 scalars. Ten candidates (area
    fraction uniform in `scale`, aspect log-uniform in `ratio`, sides rounded half to even);
    the first that fits is placed uniformly; if none fits, the central crop of the aspect
    clipped to `ratio` (the whole image when its aspect is inside `ratio`)."""
    k_area, k_ratio, k_top, k_left = jax.random.split(key, 4)
    area = float(height * width)
    target = area * jax.random.uniform(k_area, (CROP_ATTEMPTS,), jnp.float32, scale[0], scale[1])
    aspect = jnp.exp(jax.random.uniform(k_ratio, (CROP_ATTEMPTS,), jnp.float32,
                                        math.log(ratio[0]), math.log(ratio[1])))
    w = jnp.round(jnp.sqrt(target * aspect)).astype(jnp.int32)
    h = jnp.round(jnp.sqrt(target / aspect)).astype(jnp.int32)
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = jnp.argmax(fits)
    # the fallback, static: the image's aspect clipped to `ratio`, centred
    in_ratio = width / height
    if in_ratio < min(ratio):
        fw, fh = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        fw, fh = round(height * max(ratio)), height
    else:
        fw, fh = width, height
    found = jnp.any(fits)
    h_sel = jnp.where(found, h[first], fh)
    w_sel = jnp.where(found, w[first], fw)
    top = jnp.where(found, jax.random.randint(k_top, (), 0, height - h_sel + 1),
                    (height - fh) // 2)
    left = jnp.where(found, jax.random.randint(k_left, (), 0, width - w_sel + 1),
                     (width - fw) // 2)
    return top, left, h_sel, w_sel


def _resize_taps(out_size: int, start, size):
    """Source rows (or columns) and weight of torch's bilinear resize (align_corners=False)
    of `size` pixels from `start` to `out_size`: (index0, index1, weight of index1)."""
    size = jnp.asarray(size, jnp.int32)
    step = size.astype(jnp.float32) / out_size
    src = jnp.maximum((jnp.arange(out_size, dtype=jnp.float32) + 0.5) * step - 0.5, 0.0)
    i0 = jnp.minimum(jnp.floor(src).astype(jnp.int32), size - 1)
    i1 = jnp.minimum(i0 + 1, size - 1)
    return start + i0, start + i1, src - i0.astype(jnp.float32)


def crop_resize(image, top, left, h, w):
    """The crop image[top:top + h, left:left + w] (traced ints) bilinearly resized back to
    the image's (H, W): torch `interpolate(bilinear, align_corners=False)`; the crop is
    never larger than the image, so antialiasing (torchvision's default) changes nothing."""
    height, width = image.shape[:2]
    r0, r1, wr = _resize_taps(height, top, h)
    c0, c1, wc = _resize_taps(width, left, w)
    rows = (image[r0] * (1.0 - wr)[:, None, None] + image[r1] * wr[:, None, None])
    return rows[:, c0] * (1.0 - wc)[None, :, None] + rows[:, c1] * wc[None, :, None]


def rotate(image, angle):
    """(H, W, 3) rotated by `angle` degrees counter-clockwise about the image centre, same
    size, nearest, fill 0 (torchvision `rotate` on tensors: output pixel (i, j), centred at
    (x, y) = (j - W/2 + 0.5, i - H/2 + 0.5), takes the input at (x cos a - y sin a,
    x sin a + y cos a))."""
    height, width = image.shape[:2]
    t = jnp.deg2rad(jnp.asarray(angle, jnp.float32))
    cos, sin = jnp.cos(t), jnp.sin(t)
    x = jnp.arange(width, dtype=jnp.float32)[None, :] - width * 0.5 + 0.5
    y = jnp.arange(height, dtype=jnp.float32)[:, None] - height * 0.5 + 0.5
    src_x = cos * x - sin * y + width * 0.5 - 0.5
    src_y = sin * x + cos * y + height * 0.5 - 0.5
    return sample_nearest(image, src_x, src_y)
