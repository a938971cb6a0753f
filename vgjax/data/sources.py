"""One entry point for a split, whatever holds its images (folder or TFDS copy).

Training and evaluation call `open_split` and then read pixels only through the returned
`ImageReader`, so `data.source` switches between a folder and its TFDS copy transparently.
"""
from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from vgjax.data.dataset import Split
from vgjax.data.pipeline import check_image_files, encoded_image_size, image_size, load_image
from vgjax.data.readers import read_split, reader_name
from vgjax.registry import Registry

SOURCES = Registry("data.source", fixed=("data_cfg", "dataset", "split", "data_format"))


@dataclasses.dataclass(frozen=True)
class ImageReader:
    """`reader(path, size)` -> uint8 (H, W, 3); `reader.loader(size)` for `BatchLoader`;
    `reader.size(path)` -> (H, W) without decoding the pixels. With `draft`, JPEGs read at
    a size at most half theirs are decoded at reduced scale (`data.jpeg_draft`)."""
    read: Callable[..., np.ndarray]
    size: Callable[[str], tuple[int, int]]
    draft: bool = False
    # check(paths, what): raises ImageError naming the files that cannot be read, before
    # any is described (image files: `check_image_files`); None where the source checks
    check: Callable[[Sequence[str], str], None] | None = None

    def __call__(self, path: str, size: tuple[int, int] | None = None) -> np.ndarray:
        if self.draft and size is not None:
            return self.read(path, size, draft=True)
        return self.read(path, size)

    def with_draft(self, draft: bool) -> "ImageReader":
        return dataclasses.replace(self, draft=bool(draft))

    def loader(self, size: tuple[int, int] | None) -> Callable[[str], np.ndarray]:
        return functools.partial(self, size=size)


FOLDER_READER = ImageReader(load_image, image_size, check=check_image_files)


def with_view(reader: ImageReader, paths, view: Callable) -> ImageReader:
    """A reader that decodes `paths` at full size and returns `view(image, size)` for them
    (e.g. the training queries' centre crop); every other path reads as with `reader`."""
    special = frozenset(paths)

    def read(path, size=None, draft=False):
        if path in special and size is not None:
            return view(reader(path), size)
        return reader(path, size)

    return ImageReader(read, reader.size, check=reader.check)


def folder_location(data_cfg, name_or_path) -> str:
    """Where a dataset given by name (under `data.root`) or path lives, for data.source=folder."""
    p = Path(name_or_path)
    under_root = Path(data_cfg.root) / p
    if p.is_absolute() or len(p.parts) > 1 or (p.is_dir() and not under_root.is_dir()):
        return str(p)
    return str(under_root)


def _source(name: str, *, folders: bool):
    """Registers `open(data_cfg, dataset, split) -> (Split, ImageReader)` as the `data.source`
    `name`. `folders`: its datasets are folders in the standard format (by name under
    `data.root`, or by path), whose files other code may list directly."""
    def add(fn):
        fn.folders = folders
        return SOURCES.register(name)(fn)
    return add


@_source("folder", folders=True)
def _open_folder(data_cfg, dataset, split: str,
                 data_format: str = "") -> tuple[Split, ImageReader]:
    location = folder_location(data_cfg, dataset)
    reader = FOLDER_READER if data_cfg.get("check_images", True) else dataclasses.replace(
        FOLDER_READER, check=None)
    name = reader_name(data_cfg.get("format", "folder"), data_format)
    return read_split(data_cfg, location, split, name), reader


@_source("tfds", folders=False)
def _open_tfds(data_cfg, dataset, split: str,
               data_format: str = "") -> tuple[Split, ImageReader]:
    if reader_name(data_cfg.get("format", "folder"), data_format) != "folder":
        raise ValueError(f"data.source='tfds' holds @UTM folders only, not data.format="
                         f"{data_format or data_cfg.format!r}")
    if not data_cfg.tfds_dir:
        raise ValueError("data.source='tfds' needs data.tfds_dir (where tfds_builder wrote "
                         "the copies)")
    from vgjax.data.tfds_builder import load_split_tfds  # tensorflow-datasets is heavy
    result, images = load_split_tfds(data_cfg.tfds_dir, Path(dataset).name, split,
                                     data_cfg.soft_positives_dist, data_cfg.hard_positives_dist)
    return result, ImageReader(
        images, lambda path: encoded_image_size(images.encoded(path), name=path))


def open_split(data_cfg, dataset: str | os.PathLike, split: str,
               data_format: str = "") -> tuple[Split, ImageReader]:
    """The `Split` of `dataset` (name or folder) and the reader for its image paths, from
    the source `data.source` names; a folder is read by the evaluation reader of
    `data_format` or else of `data.format` (`vgjax.data.readers.reader_name`)."""
    split_, reader = SOURCES.get(data_cfg.source)(data_cfg, dataset, split,
                                                  data_format=data_format)
    return split_, reader.with_draft(data_cfg.get("jpeg_draft", False))
