"""Images -> fixed-shape uint8 batches `(N, H, W, 3)`, decoded in parallel and prefetched.

Batches stay uint8 on the host (4x fewer bytes to the device than float32); the network
normalises them on the device. The pipeline never knows about the model.

Decoding: Pillow (libjpeg-turbo) in a thread pool; Pillow releases the GIL while decoding
and resizing. Every image mode becomes 8-bit RGB by a stated rule or is refused
(`load_image`). For JPEGs much larger than the target, `draft=True` lets libjpeg decode
directly at 1/2, 1/4 or 1/8 scale (never below the target size), several times faster but
with slightly different pixels; off by default.
"""
from __future__ import annotations

import collections
import concurrent.futures as cf
import dataclasses
import io
import os
from typing import Callable, Iterator, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

class ImageError(IOError):
    """An image that cannot be read or decoded; the message names the file."""


class UnsupportedImageError(ImageError):
    """An image that decodes, but whose pixels have no safe 8-bit RGB meaning (its mode or
    value range); the message names the file and the mode."""


# EXIF tag 0x0112: 1 = upright; 2..8 = mirrored and/or rotated.
EXIF_ORIENTATION = 0x0112

# How each source kind becomes 8-bit RGB; None: as is. What `inspect` reports.
CONVERSIONS: dict[str, str | None] = {
    "8-bit RGB": None,
    "8-bit grayscale": "converted to RGB (grey replicated)",
    "1-bit": "converted to 8-bit RGB (0 / 255)",
    "palette": "converted to RGB",
    "palette with transparency": "converted to RGB, transparency dropped (transparent "
                                 "pixels keep their colour, as the reference)",
    "8-bit with alpha": "converted to RGB, alpha dropped (transparent pixels keep their "
                        "colour, as the reference)",
    "16-bit grayscale": "converted to 8-bit RGB (value >> 8)",
    "16-bit RGB": "converted to 8-bit RGB (value >> 8)",
    "16-bit with alpha": "converted to 8-bit RGB (value >> 8), alpha dropped",
    "CMYK": "converted to RGB",
    "YCbCr": "converted to RGB",
    "HSV": "converted to RGB",
    "RGBX": "converted to RGB (padding byte dropped)",
    "32-bit float": "converted to 8-bit RGB (truncated, as the reference)",
}

_16BIT_GREY = ("I;16", "I;16L", "I;16B", "I;16N")


def _png_16bit(img: Image.Image) -> bool:
    """True for a PNG stored with 16 bits per sample (Pillow opens 16-bit RGB(A) PNGs as
    8-bit RGB(A), keeping each sample's high byte)."""
    return img.format == "PNG" and any(
        isinstance(t[3], str) and ";16" in t[3] for t in (img.tile or []))


def _unsupported(name: str, mode: str, why: str) -> UnsupportedImageError:
    return UnsupportedImageError(f"{name}: unsupported image mode {mode} ({why}); "
                                 f"save it as 8-bit RGB or grayscale")


def source_kind(img: Image.Image, name: str) -> str:
    """The kind of an opened (not yet loaded) image, a key of `CONVERSIONS`; raises
    UnsupportedImageError for the modes `load_image` refuses (from the header alone)."""
    mode = img.mode
    if mode in ("RGB", "RGBA", "LA") and _png_16bit(img):
        # Pillow opens 16-bit LA PNGs as RGBA
        return "16-bit RGB" if mode == "RGB" else "16-bit with alpha"
    if mode == "RGB":
        return "8-bit RGB"
    if mode == "L":
        return "8-bit grayscale"
    if mode == "1":
        return "1-bit"
    if mode == "P":
        return ("palette with transparency" if "transparency" in img.info
                else "palette")
    if mode in ("RGBA", "LA", "PA"):
        return "8-bit with alpha"
    if mode in _16BIT_GREY:
        return "16-bit grayscale"
    if mode == "I":
        if img.format == "PNG":  # Pillow < 11 opens 16-bit grayscale PNGs as mode I
            return "16-bit grayscale"
        raise _unsupported(name, mode, "32-bit integers: their value range is unknown")
    if mode in ("CMYK", "YCbCr", "HSV", "RGBX"):
        return mode
    if mode == "F":
        return "32-bit float"
    if mode == "LAB":
        raise _unsupported(name, mode, "Pillow converts Lab to RGB without colour science")
    if mode in ("RGBa", "La"):
        raise _unsupported(name, mode, "premultiplied alpha")
    raise _unsupported(name, mode, "no known conversion to 8-bit RGB")


def _to_rgb(img: Image.Image, kind: str, name: str) -> Image.Image:
    """8-bit RGB of an opened image of `kind` (see `load_image` for the rules)."""
    if kind == "8-bit RGB":
        img.load()
        return img
    if kind == "16-bit grayscale":
        values = np.asarray(img)
        if img.mode == "I" and values.size and (values.min() < 0 or values.max() > 65535):
            raise _unsupported(name, img.mode, f"values {values.min()}..{values.max()} are "
                                               f"outside the 16-bit range")
        grey = (values.astype(np.uint32) >> 8).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if kind == "32-bit float":
        values = np.asarray(img, np.float32)
        if values.size and not np.isfinite(values).all():
            raise _unsupported(name, "F", "float values that are NaN or infinite")
        lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
        if lo < 0 or hi > 255:
            raise _unsupported(name, "F", f"float values {lo:g}..{hi:g} outside [0, 255]")
        if 0 < hi <= 1:
            raise _unsupported(name, "F", f"float values {lo:g}..{hi:g} look like a [0, 1] "
                                          f"scale, not [0, 255]")
        return img.convert("RGB")
    if kind in ("palette with transparency", "8-bit with alpha", "16-bit with alpha"):
        return img.convert("RGBA").convert("RGB")
    return img.convert("RGB")


def _decode(source, size: tuple[int, int] | None, name: str,
            draft: bool = False) -> np.ndarray:
    try:
        with Image.open(source) as img:
            if draft and size is not None and img.format == "JPEG":
                img.draft("RGB", (size[1], size[0]))  # keeps at least the target size
            img = _to_rgb(img, source_kind(img, name), name)
            if size is not None and (img.height, img.width) != tuple(size):
                img = img.resize((size[1], size[0]), Image.BILINEAR)
            return np.asarray(img, dtype=np.uint8)
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"{name}: file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{name}: cannot decode image ({e})") from None


def load_image(path: str | os.PathLike, size: tuple[int, int] | None = None, *,
               draft: bool = False) -> np.ndarray:
    """Decodes an image file to RGB uint8 (H, W, 3), resized to `size` = (H, W) if given.

    Resizing is bilinear with antialiasing (Pillow), like torchvision's `Resize`.

    Pixels are those of the reference (PIL `open` + `convert("RGB")`) wherever that is
    right; where it would be wrong, the image is converted correctly or refused:

    - 8-bit RGB, grayscale, 1-bit, palette: as the reference.
    - Transparency (RGBA, LA, PA, palette with transparency): alpha is dropped and
      transparent pixels keep their colour, as the reference; done explicitly through RGBA.
    - 16-bit grayscale (modes I;16*, or I from a PNG) and 16-bit RGB(A) PNGs: each sample's
      high byte (`value >> 8`; what Pillow's PNG decoder keeps for 16-bit RGB), never
      clipped to white as `convert("RGB")` would.
    - CMYK (Adobe-inverted JPEGs included), YCbCr, HSV, RGBX: Pillow's conversion to RGB.
    - Float (F): values in [0, 255] are truncated to 8 bits, as the reference; values
      outside [0, 255], NaN, or all within (0, 1] (a [0, 1] scale) are refused.
    - Refused with UnsupportedImageError naming the file and mode: 32-bit integers (I,
      except from a PNG), Lab, premultiplied alpha (RGBa, La) and any other mode.

    The EXIF orientation is NOT applied (the reference ignores it too): a photo stored
    sideways with an orientation tag is read sideways. `inspect` counts such images.

    `draft=True` with a `size` lets libjpeg decode JPEGs at 1/2, 1/4 or 1/8 scale (never
    below `size`) before the resize: several times faster for large JPEGs, but the pixels
    differ slightly from a full decode. Off by default.
    """
    return _decode(os.fspath(path), size, os.fspath(path), draft)


def decode_image_bytes(data: bytes, size: tuple[int, int] | None = None,
                       name: str = "<bytes>", *, draft: bool = False) -> np.ndarray:
    """`load_image` for encoded JPEG/PNG bytes (e.g. a TFDS record); `name` goes into errors."""
    return _decode(io.BytesIO(data), size, name, draft)



# A whole file ends with its format's end marker: a JPEG's end-of-image, a PNG's IEND chunk.
END_MARKERS = ((b"\xff\xd8", b"\xff\xd9"), (b"\x89PNG", b"IEND"))
TAIL_BYTES = 64  # where the marker is looked for (some writers pad a few bytes after it)


def _file_problem(path: str) -> str | None:
    """Why `path` cannot be a whole image, or None. Reads its first and last bytes; a JPEG
    or PNG without its end marker there is decoded to be sure (some cameras append data
    after a JPEG's end), and refused only if that fails."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - TAIL_BYTES))
            tail = f.read()
    except FileNotFoundError:
        return "file not found"
    except OSError as e:
        return f"cannot read ({e.strerror or e})"
    if size == 0:
        return "empty file"
    end = next((e for magic, e in END_MARKERS if head.startswith(magic)), None)
    if end is None or end in tail:
        return None
    try:
        load_image(path)
    except ImageError as e:
        return f"truncated or damaged ({str(e).removeprefix(path + ': ')})"
    return None


def check_image_files(paths: Sequence[str], what: str, num_workers: int = 8) -> None:
    """Raises ImageError naming the files of `paths` that cannot be whole images (missing,
    empty, truncated): a check of every file's ends, before any image is described, so a
    broken query is found before a database is. `what` names the set in the message."""
    paths = list(paths)
    with cf.ThreadPoolExecutor(max(1, num_workers)) as pool:
        problems = [(p, why) for p, why in zip(paths, pool.map(_file_problem, paths)) if why]
    if problems:
        shown = "; ".join(f"{p}: {why}" for p, why in problems[:3])
        more = f"; ... {len(problems) - 3} more" if len(problems) > 3 else ""
        raise ImageError(f"{len(problems)} of the {len(paths)} images of {what} cannot be "
                         f"read: {shown}{more}")


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


@dataclasses.dataclass(frozen=True)
class ImageInfo:
    """What an image's header says: (H, W), its kind (a key of `CONVERSIONS`), its EXIF
    orientation (1 when absent)."""
    height: int
    width: int
    kind: str
    exif_orientation: int = 1

    @property
    def conversion(self) -> str | None:
        """How decoding turns it into 8-bit RGB; None: used as is."""
        return CONVERSIONS[self.kind]


def image_info(source, name: str | None = None) -> ImageInfo:
    """`ImageInfo` of a file path or file-like object from its header only; raises
    ImageError if unreadable and UnsupportedImageError for a mode `load_image` refuses."""
    if name is None:
        name = os.fspath(source) if isinstance(source, (str, os.PathLike)) else "<bytes>"
    try:
        with Image.open(source) as img:
            kind = source_kind(img, name)
            try:
                orientation = int(img.getexif().get(EXIF_ORIENTATION, 1))
            except (TypeError, ValueError, OSError, SyntaxError):
                orientation = 1  # an unreadable EXIF block: the pixels are still fine
            return ImageInfo(img.height, img.width, kind, orientation)
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"{name}: file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{name}: cannot read image header ({e})") from None


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
