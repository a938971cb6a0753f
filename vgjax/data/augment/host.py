"""Training-query augmentations in the reference's order (`train.augment_on=host`).

The reference augments each training query on the host, on the full-size PIL image, with
torchvision's PIL functions (`ColorJitter`, `RandomPerspective`, `RandomResizedCrop`,
`RandomRotation`), and only then resizes it to the model size; every op rounds to uint8.
With `train.augment_on=host` vgjax does the same: the query is decoded at full size, the
per-query ops of `train.query_augment` run on it in the order given (PIL's enhancers and
resamplers, as torchvision's `_functional_pil` calls them), and the result is centre-cropped
to the training ratio and resized as every training query is (`data.train_query_crop`),
unless an op (`resized_crop`) already brought it to the model size. `randaugment` makes
torchvision's RandAugment PIL calls (`randaugment_op`), its translations sized to the
full-size image. Whole-batch ops (`hflip` with per_query=False: the reference flips the
whole batch on the device) stay in the train step.

    augment = HostQueryAugment(["brightness(0.1)"], size=(480, 640), seed=0,
                               read_full=reader, finish=train_query)
    image = augment(path, step=12, index=3)   # uint8 (480, 640, 3)

Draws come from `numpy.random.default_rng([seed, step, index, 4])`: the step is the global
train step and `index` the query's place in the step's batch, so the same run draws the
same, on any number of processes or loader threads, and a resumed run draws what the
uninterrupted one did. The distributions are torchvision's; the draws are not torch's.
The spec syntax and argument checks are those of the device ops (`vgjax.data.augment.specs`).
"""
from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from vgjax.data.augment.ops import CROP_ATTEMPTS, CROP_RATIO
from vgjax.data.augment.randaugment import OPS, affine_matrix, augmentation_space, op_magnitude
from vgjax.data.augment.specs import AUGMENTATIONS, check_specs
from vgjax.data.ops import PIL, resize, train_query
from vgjax.data.settings import DataSettings
from vgjax.registry import Registry

__all__ = ["AUGMENT_ON", "HOST_OPS", "HostQueryAugment", "adjust_hue", "host_query_augment",
           "perspective_coeffs", "perspective_params", "randaugment_op", "resized_crop_params",
           "split_specs"]

_STREAM = 4  # the last word of every host augmentation seed (other streams use 0..3)

HOST_OPS: dict[str, Callable] = {}


def _op(name: str):
    """Registers `fn(image: PIL.Image, rng, size, *checked args) -> PIL.Image` for the device
    op `name`; it is called with what that op's `check_args` returns."""
    def add(fn):
        HOST_OPS[name] = fn
        return fn
    return add


def _apply(rng, p: float) -> bool:
    """torchvision's `torch.rand(1) < p` (no draw when p is 0 or 1)."""
    return p >= 1.0 or (p > 0.0 and rng.random() < p)


# Colour: torchvision's `_functional_pil` ------------------------------------------------------

def adjust_hue(image: Image.Image, factor: float) -> Image.Image:
    """torchvision's PIL `adjust_hue`: the H channel of PIL's HSV (uint8) plus
    uint8(factor * 255), wrapping around."""
    if not -0.5 <= factor <= 0.5:
        raise ValueError(f"hue factor {factor} is not in [-0.5, 0.5]")
    h, s, v = image.convert("HSV").split()
    shift = int(factor * 255) % 256  # as numpy casts a negative float to uint8: truncated, wrapped
    h = Image.fromarray((np.asarray(h, np.uint8) + np.uint8(shift)).astype(np.uint8), "L")
    return Image.merge("HSV", (h, s, v)).convert(image.mode)


_JITTER = (lambda img, f: ImageEnhance.Brightness(img).enhance(f),
           lambda img, f: ImageEnhance.Contrast(img).enhance(f),
           lambda img, f: ImageEnhance.Color(img).enhance(f),
           adjust_hue)


@_op("brightness")
def _brightness(image, rng, size, low, high, p):
    f = low if low == high else rng.uniform(low, high)
    return _JITTER[0](image, f) if _apply(rng, p) else image


@_op("colour_jitter")
def _colour_jitter(image, rng, size, *ranges):
    """ColorJitter: the four ops in a random order, each factor drawn in its range."""
    for i in rng.permutation(4):
        if ranges[i] is not None:
            image = _JITTER[i](image, rng.uniform(*ranges[i]))
    return image


# Geometry ---------------------------------------------------------------------------------

def perspective_params(rng, height: int, width: int, distortion_scale: float):
    """RandomPerspective.get_params: (startpoints, endpoints), lists of 4 [x, y] (top-left,
    top-right, bottom-right, bottom-left); each end corner moves inwards by up to
    int(distortion_scale * half size) pixels."""
    dx, dy = int(distortion_scale * (width // 2)), int(distortion_scale * (height // 2))
    x_in, x_out = (0, dx + 1), (width - dx - 1, width)
    y_in, y_out = (0, dy + 1), (height - dy - 1, height)
    end = [[int(rng.integers(*x)), int(rng.integers(*y))]
           for x, y in ((x_in, y_in), (x_out, y_in), (x_out, y_out), (x_in, y_out))]
    start = [[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]]
    return start, end


def perspective_coeffs(startpoints, endpoints) -> list[float]:
    """torchvision's `_get_perspective_coeffs`: the 8 coefficients of the map from output
    (end) points to input (start) points that PIL's PERSPECTIVE transform takes, by least
    squares in float64."""
    a, b = [], []
    for (x, y), (u, v) in zip(endpoints, startpoints):
        a.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        a.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        b.extend([u, v])
    coeffs = np.linalg.lstsq(np.asarray(a, np.float64), np.asarray(b, np.float64), rcond=None)[0]
    return [float(c) for c in coeffs]


@_op("perspective")
def _perspective(image, rng, size, distortion_scale, p):
    if not _apply(rng, p):
        return image
    start, end = perspective_params(rng, image.height, image.width, distortion_scale)
    fill = (0,) * len(image.getbands())
    return image.transform(image.size, Image.Transform.PERSPECTIVE,
                           perspective_coeffs(start, end), Image.Resampling.BILINEAR,
                           fillcolor=fill)


def resized_crop_params(rng, height: int, width: int, scale: tuple[float, float],
                        ratio: tuple[float, float] = CROP_RATIO) -> tuple[int, int, int, int]:
    """RandomResizedCrop.get_params: (top, left, h, w). Up to ten candidates (area fraction
    uniform in `scale`, aspect log-uniform in `ratio`, sides rounded half to even); the first
    that fits is placed uniformly; if none fits, the central crop of the aspect clipped to
    `ratio` (the whole image when its aspect is inside `ratio`)."""
    area = height * width
    for _ in range(CROP_ATTEMPTS):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        w, h = int(round(height * max(ratio))), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


@_op("resized_crop")
def _resized_crop(image, rng, size, r):
    """RandomResizedCrop(size, scale=(1 - r, 1)) on the full-size image: to the model size."""
    top, left, h, w = resized_crop_params(rng, image.height, image.width, (1.0 - r, 1.0))
    return image.crop((left, top, left + w, top + h)).resize(
        (int(size[1]), int(size[0])), Image.Resampling.BILINEAR)


@_op("rotation")
def _rotation(image, rng, size, low, high):
    """RandomRotation: counter-clockwise, nearest, no expand, fill 0."""
    angle = low if low == high else rng.uniform(low, high)
    return image.rotate(angle, Image.Resampling.NEAREST, expand=False,
                        fillcolor=(0,) * len(image.getbands()))


@_op("hflip")
def _hflip(image, rng, size, p, per_query):  # per_query=True only: see split_specs
    return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if _apply(rng, p) else image


# RandAugment ------------------------------------------------------------------------------

_RESAMPLE = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR}


def randaugment_op(image: Image.Image, name: str, magnitude: float,
                   interpolation: str = "nearest", fill: float = 0.0) -> Image.Image:
    """torchvision's `autoaugment._apply_op` on a PIL image: op `name` of RandAugment with
    its (signed) magnitude, through the PIL calls torchvision makes (`F.affine` /
    `F.rotate` -> PIL's AFFINE transform and `rotate`, ImageEnhance, ImageOps); `fill` in
    [0, 1] becomes the uint8 fill colour."""
    resample = _RESAMPLE[interpolation]
    fillcolor = (int(round(fill * 255)),) * len(image.getbands())
    if name == "Rotate":
        return image.rotate(magnitude, resample, expand=False, fillcolor=fillcolor)
    matrix = affine_matrix(name, magnitude, image.height, image.width)
    if matrix is not None:
        return image.transform(image.size, Image.Transform.AFFINE, matrix, resample,
                               fillcolor=fillcolor)
    enhancers = {"Brightness": ImageEnhance.Brightness, "Color": ImageEnhance.Color,
                 "Contrast": ImageEnhance.Contrast, "Sharpness": ImageEnhance.Sharpness}
    if name in enhancers:
        return enhancers[name](image).enhance(1.0 + magnitude)
    if name == "Posterize":
        return ImageOps.posterize(image, int(magnitude))
    if name == "Solarize":
        return ImageOps.solarize(image, 255.0 * magnitude)
    if name == "AutoContrast":
        return ImageOps.autocontrast(image)
    if name == "Equalize":
        return ImageOps.equalize(image)
    return image  # Identity


@_op("randaugment")
def _randaugment(image, rng, size, num_ops, magnitude, num_bins, interpolation, fill):
    """RandAugment.forward: `num_ops` ops drawn uniformly with replacement, a signed op
    negated with probability 0.5, the magnitudes of the full-size image."""
    space = augmentation_space(num_bins, image.height, image.width)
    for _ in range(num_ops):
        name = OPS[int(rng.integers(len(OPS)))]
        negative = space[name][1] and bool(rng.integers(2))
        image = randaugment_op(image, name, op_magnitude(space, name, magnitude, negative),
                               interpolation, fill)
    return image


# The loader ---------------------------------------------------------------------------------

def split_specs(specs: Sequence[str] | str) -> tuple[list, list[str]]:
    """(per-query ops for the host: [(name, checked args)], whole-batch specs left for the
    train step), in the order given. Bad specs are ConfigErrors (`check_specs`)."""
    host, device = [], []
    for spec in check_specs(specs):
        op = AUGMENTATIONS.get(spec.name)
        if op.whole_batch(**spec.kwargs):
            device.append(str(spec))
            continue
        args = op.check_args(**spec.kwargs)
        host.append((spec.name, args if isinstance(args, tuple) else (args,)))
    return host, device


class HostQueryAugment:
    """`augment(path, step, index) -> uint8 (H, W, 3)` at `size`: the query read at full
    size by `read_full(path)`, the per-query ops of `specs` applied in order on the PIL
    image, then `finish(image, size)` (the training query's crop and resize) unless it is
    already at `size`. `device_specs`: the whole-batch ops the train step still runs."""

    def __init__(self, specs: Sequence[str] | str, size: Sequence[int], seed: int,
                 read_full: Callable[[str], np.ndarray],
                 finish: Callable[[np.ndarray, Sequence[int]], np.ndarray]):
        self.ops, self.device_specs = split_specs(specs)
        self.size = (int(size[0]), int(size[1]))
        self.seed = int(seed)
        self.read_full = read_full
        self.finish = finish

    def __call__(self, path: str, step: int, index: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, int(step), int(index), _STREAM])
        image = Image.fromarray(self.read_full(path))
        for name, args in self.ops:
            image = HOST_OPS[name](image, rng, self.size, *args)
        out = np.asarray(image)
        return out if out.shape[:2] == self.size else self.finish(out, self.size)


# Where the queries are augmented (train.augment_on) -----------------------------------------

# (config, the source's reader) -> HostQueryAugment, or None: the train step augments them;
# each entry's `reads_files` says whether it decodes the queries from their files itself
AUGMENT_ON = Registry("train.augment_on")


@AUGMENT_ON.register("device")
def _on_device(config, source_reader) -> None:
    """The train step augments the model-sized queries on the device."""
    return None


@AUGMENT_ON.register("host")
def _on_host(config, source_reader) -> HostQueryAugment:
    """The query read at full size from its file (`source_reader`, never a decoded cache),
    augmented, then cropped and resized as training queries are."""
    data = DataSettings.from_config(config)
    finish = train_query if data.train_query_crop else functools.partial(resize, resampling=PIL)
    return HostQueryAugment(config.train.query_augment, data.resize, config.seed,
                            read_full=source_reader, finish=finish)


_on_device.reads_files = False  # the queries come from wherever the train steps read them
_on_host.reads_files = True     # every query decoded again from its file at full size


def host_query_augment(config, source_reader) -> HostQueryAugment | None:
    """`train.augment_on`: what augments each training query on the host as it is loaded,
    or None where the train step augments the queries."""
    return AUGMENT_ON.get(config.train.augment_on)(config, source_reader)
