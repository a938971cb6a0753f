"""Training-query augmentations with torchvision's formulas, run inside the jitted train step.

The reference augments every training query on the host with torchvision (`ColorJitter`,
`RandomPerspective`, `RandomResizedCrop`, `RandomRotation`) and flips whole batches with
`RandomHorizontalFlip`; the paper's Table IV sweeps a fixed brightness factor. Here the same
operations run on the device, inside the train step, on the batch the host already decoded:
the host pipeline stays a plain decoder, and the step passes a key derived from the seed and
the step number, so the same key gives the same augmented batch and a resumed run draws what
the uninterrupted one did.

    augment = make_query_augment(["colour_jitter(brightness=0.2, hue=0.1)", "rotation(5)",
                                  "hflip"], group_size=2 + negatives_per_query)
    images = augment(images, key)   # (B * (2 + N), H, W, 3) uint8 -> float32 in [0, 1]

Rows `g * (2 + N)` of the batch are the queries; only they are augmented, each with its own
key, by the ops in the order given. Positives and negatives come out as `images / 255`,
bit for bit, except under `hflip` with `per_query=False` (the reference's flip), which flips
every row of the batch together.

Each registered op takes ONE image (H, W, 3) float32 in [0, 1] and a key and returns the
same shape in [0, 1]; the builder vmaps it over the queries. The formulas are torchvision's
tensor path (`transforms/_functional_tensor.py`), not dm-pix's or TF's: brightness is a
product (TF adds), contrast blends with the mean of the grayscale image (TF: per-channel
means), grayscale is 0.2989 R + 0.587 G + 0.114 B, hue rotates in torchvision's HSV.

Each op registers in `AUGMENTATIONS` (`vgjax.data.augment.specs`) with the check of its
arguments, which runs in Python when a spec is parsed (`check_specs`), before any work: a bad
value is a ConfigError naming `train.query_augment`.

Where this differs from the reference: the reference runs these transforms on PIL images at
their original resolution (uint8 after every op, PIL's enhancers and resamplers) before
resizing to the model size; here they run on the already model-sized float image (no
rounding between ops), so `resized_crop` crops the model-sized query and upsamples the crop.
`train.augment_on=host` runs the reference's order instead (`vgjax.data.augment.host`).
Random numbers come from `jax.random`, not torch's generator: the distributions are
torchvision's, the draws are not. Arithmetic is float32 throughout, so where torchvision
solves the perspective system in float64, or sits exactly on a rounding tie (nearest
rotation, crop sides), results can differ in the last bits.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from vgjax.data.augment.ops import (adjust_brightness, adjust_contrast, adjust_hue,
                                    adjust_saturation, crop_resize, perspective_coeffs,
                                    perspective_params, resized_crop_params, rotate,
                                    warp_perspective)
from vgjax.data.augment.specs import AUGMENTATIONS, check_specs, register

# uint8 -> float32 k / 255, correctly rounded: under jit XLA turns `x / 255.0` into
# `x * (1 / 255)`, which is off by one ulp for about half the values
UINT8_TO_FLOAT = np.arange(256, dtype=np.float32) / np.float32(255)


# Argument checks (Python, at parse time) -------------------------------------------------------

def _number(name: str, value, low: float | None = None, high: float | None = None,
            high_open: bool = False) -> float:
    """`value` as a float, or ValueError if it is not a finite number in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or \
            not math.isfinite(float(value)):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    v = float(value)
    if low is not None and v < low:
        raise ValueError(f"{name} must be >= {low}, got {value!r}")
    if high is not None and (v >= high if high_open else v > high):
        raise ValueError(f"{name} must be {'<' if high_open else '<='} {high}, got {value!r}")
    return v


def _probability(p) -> float:
    return _number("p", p, 0.0, 1.0)


def _maybe(key, p: float, changed, unchanged):
    """`changed` with probability p (torchvision: `torch.rand(1) < p`), else `unchanged`."""
    if p >= 1.0:
        return changed
    if p <= 0.0:
        return unchanged
    return jnp.where(jax.random.uniform(key) < p, changed, unchanged)


def _brightness_args(factor=None, low=None, high=None, p=1.0):
    if factor is not None and (low is not None or high is not None):
        raise ValueError("give either a fixed factor (brightness(0.3)) or a range "
                         "(brightness(low=0.5, high=1.5)), not both")
    if factor is not None:
        f = _number("factor", factor, 0.0)
        return f, f, _probability(p)
    if low is None or high is None:
        raise ValueError("give a fixed factor (brightness(0.3)) or both low and high "
                         "(brightness(low=0.5, high=1.5))")
    lo, hi = _number("low", low, 0.0), _number("high", high, 0.0)
    if lo > hi:
        raise ValueError(f"low must be <= high, got low={low!r}, high={high!r}")
    return lo, hi, _probability(p)


@register("brightness", _brightness_args)
def brightness(image, key, factor=None, low=None, high=None, p=1.0):
    """clamp(image * f, 0, 1) with probability p: f fixed (`factor`; < 1 darkens, > 1
    brightens; the paper's Table IV: 0.05 .. 0.5) or uniform in [low, high)."""
    lo, hi, p = _brightness_args(factor, low, high, p)
    k_factor, k_apply = jax.random.split(key)
    f = lo if lo == hi else jax.random.uniform(k_factor, (), jnp.float32, lo, hi)
    return _maybe(k_apply, p, adjust_brightness(image, f), image)


def _jitter_range(name, value, center=1.0, bound=(0.0, math.inf), clip_first_on_zero=True):
    """torchvision ColorJitter._check_input: a strength s -> [center - s, center + s] (the
    low end clipped at 0 for the factors), or an explicit [low, high]; None = skip."""
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ValueError(f"{name} must be a number or [low, high], got {value!r}")
        lo, hi = (_number(name, v) for v in value)
    else:
        s = _number(name, value, 0.0)
        lo, hi = center - s, center + s
        if clip_first_on_zero:
            lo = max(lo, 0.0)
    if not bound[0] <= lo <= hi <= bound[1]:
        raise ValueError(f"{name} range must lie in [{bound[0]}, {bound[1]}] with low <= "
                         f"high, got [{lo}, {hi}] from {value!r}")
    return None if lo == hi == center else (lo, hi)


def colour_jitter_ranges(brightness=0, contrast=0, saturation=0, hue=0):
    """The four (low, high) factor ranges of ColorJitter (None: the op is skipped)."""
    return (_jitter_range("brightness", brightness),
            _jitter_range("contrast", contrast),
            _jitter_range("saturation", saturation),
            _jitter_range("hue", hue, center=0.0, bound=(-0.5, 0.5), clip_first_on_zero=False))


_JITTER_OPS = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)
_JITTER_NEUTRAL = (1.0, 1.0, 1.0, 0.0)


def colour_jitter_params(key, ranges):
    """ColorJitter.get_params: (order (4,) int32, a random permutation of the ops 0
    brightness, 1 contrast, 2 saturation, 3 hue; factors (4,) float32, each uniform in its
    range, the neutral value where the range is None)."""
    k_order, *k_factors = jax.random.split(key, 5)
    factors = [jnp.float32(n) if r is None else
               jax.random.uniform(k, (), jnp.float32, r[0], r[1])
               for k, r, n in zip(k_factors, ranges, _JITTER_NEUTRAL)]
    return jax.random.permutation(k_order, 4).astype(jnp.int32), jnp.stack(factors)


def apply_colour_jitter(image, order, factors, active: Sequence[bool]):
    """(H, W, 3): op `order[t]` with `factors[order[t]]` for t = 0..3; ops not `active`
    (static) are skipped."""
    active = [i for i in range(4) if active[i]]
    if not active:
        return image
    if len(active) == 1:
        return _JITTER_OPS[active[0]](image, factors[active[0]])
    # branch 0 = skip; op i -> its branch if active
    branches = [lambda img: img] + [
        (lambda img, i=i: _JITTER_OPS[i](img, factors[i])) for i in active]
    branch_of = jnp.asarray([active.index(i) + 1 if i in active else 0 for i in range(4)])

    def body(step, img):
        return lax.switch(branch_of[order[step]], branches, img)

    return lax.fori_loop(0, 4, body, image)


@register("colour_jitter", colour_jitter_ranges)
def colour_jitter(image, key, brightness=0, contrast=0, saturation=0, hue=0):
    """torchvision ColorJitter: brightness/contrast/saturation factors uniform in
    [max(0, 1 - s), 1 + s], hue uniform in [-h, h] (h <= 0.5), or explicit [low, high]
    ranges; the ops with a non-trivial range applied in a random order (a permutation per
    image, as torchvision's `randperm(4)` per call)."""
    ranges = colour_jitter_ranges(brightness, contrast, saturation, hue)
    order, factors = colour_jitter_params(key, ranges)
    return apply_colour_jitter(image, order, factors, [r is not None for r in ranges])


# Perspective ----------------------------------------------------------------------------------

def _perspective_args(distortion_scale=0.5, p=0.5):
    return _number("distortion_scale", distortion_scale, 0.0, 1.0), _probability(p)


@register("perspective", _perspective_args)
def perspective(image, key, distortion_scale=0.5, p=0.5):
    """torchvision RandomPerspective(distortion_scale, p): random inward corner moves,
    bilinear, fill 0."""
    distortion_scale, p = _perspective_args(distortion_scale, p)
    k_points, k_apply = jax.random.split(key)
    start, end = perspective_params(k_points, image.shape[0], image.shape[1], distortion_scale)
    warped = warp_perspective(image, perspective_coeffs(start, end))
    return _maybe(k_apply, p, warped, image)


# Random resized crop --------------------------------------------------------------------------

def _resized_crop_args(r):
    return _number("r", r, 0.0, 1.0, high_open=True)


@register("resized_crop", _resized_crop_args)
def resized_crop(image, key, r):
    """torchvision RandomResizedCrop(size=(H, W), scale=(1 - r, 1), ratio=(3/4, 4/3)) on the
    model-sized query, bilinear."""
    r = _resized_crop_args(r)
    top, left, h, w = resized_crop_params(key, image.shape[0], image.shape[1], (1.0 - r, 1.0))
    return crop_resize(image, top, left, h, w)


# Rotation -------------------------------------------------------------------------------------

def _rotation_args(degrees):
    if isinstance(degrees, (list, tuple)):
        if len(degrees) != 2:
            raise ValueError(f"degrees must be a number or [low, high], got {degrees!r}")
        lo, hi = (_number("degrees", d) for d in degrees)
        if lo > hi:
            raise ValueError(f"degrees [low, high] needs low <= high, got {degrees!r}")
        return lo, hi
    d = _number("degrees", degrees, 0.0)
    return -d, d


@register("rotation", _rotation_args)
def rotation(image, key, degrees):
    """torchvision RandomRotation(degrees): angle uniform in [-degrees, degrees] (or in
    [low, high] for a pair), counter-clockwise, nearest, no expand, fill 0."""
    lo, hi = _rotation_args(degrees)
    angle = lo if lo == hi else jax.random.uniform(key, (), jnp.float32, lo, hi)
    return rotate(image, angle)


# Horizontal flip ------------------------------------------------------------------------------

def _hflip_args(p=0.5, per_query=False):
    if not isinstance(per_query, bool):
        raise TypeError(f"per_query must be True or False, got {per_query!r}")
    return _probability(p), per_query


@register("hflip", _hflip_args, whole_batch=lambda p=0.5, per_query=False: not per_query)
def hflip(image, key, p=0.5, per_query=False):
    """Mirror left-right with probability p. `image` is (..., H, W, 3): one query
    (`per_query=True`, each query its own draw) or, with `per_query=False` (the reference's
    `RandomHorizontalFlip()(images)` on the whole batch), every row together, one draw."""
    p, _ = _hflip_args(p, per_query)
    return _maybe(key, p, jnp.flip(image, axis=-2), image)


# The builder ----------------------------------------------------------------------------------

def make_query_augment(specs: Sequence[str] | str, group_size: int) -> Callable | None:
    """`augment(images (B * group_size, H, W, 3) uint8 or float32 in [0, 1], key) -> float32
    images in [0, 1]`, same shape: rows `g * group_size` (the queries) transformed by the ops
    in the order given (op k with key `fold_in(key, k)`, split into one key per query);
    every other row is `images / 255` (uint8) unchanged, except where a whole-batch op
    (`hflip` with per_query=False) acts on all rows. None for an empty list. Specs are
    checked here (ConfigError before any work); the function is jit-friendly."""
    parsed = check_specs(specs)
    if not parsed:
        return None
    group_size = int(group_size)
    if group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    ops = [(AUGMENTATIONS.get(s.name), dict(s.kwargs)) for s in parsed]

    def augment(images, key):
        n = images.shape[0]
        if n % group_size:
            raise ValueError(f"{AUGMENTATIONS.option}: a batch of {n} rows is not whole "
                             f"groups of {group_size} (query, positive, negatives)")
        if images.dtype == jnp.uint8:
            x = jnp.take(jnp.asarray(UINT8_TO_FLOAT), images.astype(jnp.int32))
        else:
            x = images.astype(jnp.float32)
        x = x.reshape(n // group_size, group_size, *images.shape[1:])
        for index, (fn, kwargs) in enumerate(ops):
            k = jax.random.fold_in(key, index)
            if fn.whole_batch(**kwargs):
                x = fn(image=x, key=k, **kwargs)
                continue
            keys = jax.random.split(k, x.shape[0])
            one = lambda image, kk, fn=fn, kwargs=kwargs: fn(image=image, key=kk, **kwargs)
            x = x.at[:, 0].set(jax.vmap(one)(x[:, 0], keys))
        return x.reshape(images.shape)

    return augment
