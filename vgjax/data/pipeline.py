"""Images -> fixed-shape uint8 batches `(N, H, W, 3)`, decoded in parallel and prefetched.

Batches stay uint8 on the host (4x fewer bytes to the device than float32); the network
normalises them on the device. The pipeline never knows about the model.

Decoding: Pillow (libjpeg-turbo) in a thread pool; Pillow releases the GIL while decoding
and resizing. For JPEGs much larger than the target, `draft` lets libjpeg decode directly
at 1/2, 1/4 or 1/8 scale (never below the target size), which is several times faster.
"""
from __future__ import annotations

import collections
import concurrent.futures as cf
import io
import os
from typing import Callable, Iterator, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

class ImageError(IOError):
    """An image that cannot be read or decoded; the message names the file."""


def _decode(source, size: tuple[int, int] | None, name: str) -> np.ndarray:
    try:
        with Image.open(source) as img:
            if size is not None and img.format == "JPEG":
                img.draft("RGB", (size[1], size[0]))  # keeps at least the target size
            img = img.convert("RGB")
            if size is not None and (img.height, img.width) != tuple(size):
                img = img.resize((size[1], size[0]), Image.BILINEAR)
            return np.asarray(img, dtype=np.uint8)
    except FileNotFoundError:
        raise ImageError(f"{name}: file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{name}: cannot decode image ({e})") from None


def load_image(path: str | os.PathLike, size: tuple[int, int] | None = None) -> np.ndarray:
    """Decodes an image file to RGB uint8 (H, W, 3), resized to `size` = (H, W) if given.

    Resizing is bilinear with antialiasing (Pillow), like torchvision's `Resize`.
    """
    return _decode(os.fspath(path), size, os.fspath(path))


def decode_image_bytes(data: bytes, size: tuple[int, int] | None = None,
                       name: str = "<bytes>") -> np.ndarray:
    """`load_image` for encoded JPEG/PNG bytes (e.g. a TFDS record); `name` goes into errors."""
    return _decode(io.BytesIO(data), size, name)


def image_size(path, name: str | None = None) -> tuple[int, int]:
    """(H, W) from the header only, of a file path or a file-like object."""
    try:
        with Image.open(path) as img:
            return img.height, img.width
    except (UnidentifiedImageError, OSError) as e:
        raise ImageError(f"{name or path}: cannot read image header ({e})") from None


def encoded_image_size(data: bytes, name: str = "<bytes>") -> tuple[int, int]:
    """`image_size` for encoded JPEG/PNG bytes (header only)."""
    return image_size(io.BytesIO(data), name)


class BatchLoader:
    """Iterates `(batch, n_valid)` over `paths` in order, `batch` uint8 (batch_size, H, W, 3).

    The last batch is padded with copies of its last image so that every batch has the same
    shape (one compilation); `n_valid` says how many rows are real. `load_fn(path)` overrides
    decoding (e.g. a TFDS source or a crop); it must return uint8 (H, W, 3) of `size`.

    With `views` = ((h1, w1), (h2, w2), ...), `load_fn(path)` returns one array per view
    (e.g. crops or scales of one decoded image) and `batch` is a list of arrays
    (batch_size, h_v, w_v, 3), one per view.
    """

    def __init__(self, paths: Sequence[str], size: tuple[int, int] | None, batch_size: int,
                 num_workers: int = 8, prefetch: int = 2,
                 load_fn: Callable[[str], np.ndarray] | None = None,
                 views: Sequence[tuple[int, int]] | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if (views is None) == (size is None):
            raise ValueError("give either size (one view) or views")
        if views is not None and load_fn is None:
            raise ValueError("several views need a load_fn that returns them")
        self.paths = list(paths)
        self.size = None if size is None else tuple(int(s) for s in size)
        self.views = None if views is None else [tuple(int(s) for s in v) for v in views]
        self.batch_size = batch_size
        self.num_workers = max(1, num_workers)
        self.prefetch = max(1, prefetch)
        self.load_fn = load_fn or (lambda p: load_image(p, self.size))

    def __len__(self) -> int:
        return -(-len(self.paths) // self.batch_size)

    def _assemble(self, start: int):
        chunk = self.paths[start:start + self.batch_size]
        shapes = self.views or [self.size]
        loaded = [arrays if self.views is not None else (arrays,)
                  for arrays in self._pool.map(self.load_fn, chunk)]
        out = []
        for v, hw in enumerate(shapes):
            # uint8 unless a loader resampled in float (then float32 in [0, 1], exact for
            # the uint8 images beside it)
            floats = any(arrays[v].dtype != np.uint8 for arrays in loaded if len(arrays) > v)
            out.append(np.empty((self.batch_size, *hw, 3), np.float32 if floats else np.uint8))
        for i, arrays in enumerate(loaded):
            if len(arrays) != len(shapes):
                raise ImageError(f"{chunk[i]}: loader returned {len(arrays)} views, "
                                 f"expected {len(shapes)}")
            for v, (img, hw) in enumerate(zip(arrays, shapes)):
                if img.shape != (*hw, 3):
                    raise ImageError(f"{chunk[i]}: loader returned shape {img.shape} for view "
                                     f"{v}, expected {(*hw, 3)}")
                out[v][i] = img / np.float32(255.0) if (
                    img.dtype == np.uint8 and out[v].dtype == np.float32) else img
        for arr in out:
            arr[len(chunk):] = arr[len(chunk) - 1]
        return (out if self.views is not None else out[0]), len(chunk)

    def __iter__(self) -> Iterator[tuple[np.ndarray, int]]:
        starts = range(0, len(self.paths), self.batch_size)
        with cf.ThreadPoolExecutor(self.num_workers) as self._pool, \
                cf.ThreadPoolExecutor(1) as assembler:
            pending: collections.deque = collections.deque()
            for start in starts:
                pending.append(assembler.submit(self._assemble, start))
                if len(pending) > self.prefetch:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()


def load_batch(paths: Sequence[str], size: tuple[int, int], num_workers: int = 8) -> np.ndarray:
    """All `paths` as one uint8 array (N, H, W, 3) (small sets: tests, mining samples)."""
    if not paths:
        return np.zeros((0, *size, 3), np.uint8)
    loader = BatchLoader(paths, size, len(paths), num_workers=num_workers)
    return next(iter(loader))[0]
