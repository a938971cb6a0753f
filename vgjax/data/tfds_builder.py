"""TFDS copies of standard-format dataset folders (`array_record`), read with random access.

A copy holds the same images, in the same order, as the folder: record `i` of TFDS split
`<split>_<role>` is image `i` of `format.list_images(<dataset>/images/<split>/<role>)`.
Encoded bytes are stored as they are (JPEG or PNG, never re-encoded), so decoding a record
gives the same pixels as decoding the file. Neither building nor reading needs TensorFlow;
tensorflow_datasets is imported inside the functions, so the rest of vgjax runs without it.

Layout: `<tfds_dir>/<tfds_name>/<version>/` with `dataset_info.json`, `features.json`,
`metadata.json` (source folder, dataset name, paths per split) and the record shards
`<tfds_name>-<split>_<role>.array_record-<i>-of-<n>`. `tfds_name` is the folder name with
every character other than letters, digits and `_` turned into `_` (`sf-xs` -> `sf_xs`),
as TFDS names allow no `-`.

Features of one record:
    image  encoded bytes (tfds Image feature, so TFDS/tf.data readers decode it too)
    utm    float64 (2,) east, north in metres
    path   the file path relative to the dataset folder (`images/test/queries/@...@.jpg`)
    role   'database' | 'queries'
    split  'train' | 'val' | 'test'

Build:  python -m vgjax.data.tfds_builder --dataset ROOT/pitts30k ROOT/sf-xs --out TFDS_DIR
Read:   split, images = load_split_tfds(TFDS_DIR, "pitts30k", "test")
        BatchLoader(split.queries.paths, size, 32, load_fn=images.loader(size))
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from vgjax.data import dataset as ds
from vgjax.data import format as fmt
from vgjax.data.pipeline import ImageError, decode_image_bytes


COPY_VERSION = "1.0.0"
FILE_FORMAT = "array_record"
METADATA_FILE = "metadata.json"


def tfds_name(dataset: str) -> str:
    """The TFDS name of a dataset folder name: `sf-xs` -> `sf_xs`."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", dataset)
    if not name or not name[0].isalpha():
        name = "vg_" + name
    return name


def tfds_split_name(split: str, role: str) -> str:
    """`train`, `database` -> `train_database`."""
    return f"{split}_{role}"


def _tfds():
    """tensorflow_datasets, imported on first use (the rest of vgjax runs without it)."""
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise ImportError(f"TFDS copies need tensorflow-datasets and array-record "
                          f"(pip install tensorflow-datasets array-record): {e}") from None
    return tfds


# Building ----------------------------------------------------------------------------------

def _features():
    tfds = _tfds()
    return tfds.features.FeaturesDict({
        # Bytes are stored as given; shape only tells TFDS readers to decode to RGB.
        "image": tfds.features.Image(shape=(None, None, 3)),
        "utm": tfds.features.Tensor(shape=(2,), dtype=np.float64),
        "path": tfds.features.Text(),
        "role": tfds.features.Text(),
        "split": tfds.features.Text(),
    })


def _relative(path: str, dataset_dir: Path) -> str:
    return Path(os.path.relpath(path, dataset_dir)).as_posix()


def list_folder(dataset_dir: str | os.PathLike,
                splits: Sequence[str] | None = None) -> dict[tuple[str, str], list[str]]:
    """`(split, role) -> sorted image paths` of a dataset folder, checked like `load_split`.

    `splits=None` takes every split folder present. Raises DatasetFormatError naming the
    missing or empty folder, or the files without UTM in their names.
    """
    dataset_dir = Path(dataset_dir)
    if splits is None:
        splits = ds.present_splits(dataset_dir)
    listing = {}
    for split in splits:
        if split not in fmt.SPLITS:
            raise fmt.DatasetFormatError(f"{dataset_dir}: unknown split {split!r} "
                                         f"(expected one of {fmt.SPLITS})")
        folder = ds.split_folder(dataset_dir, split)
        indexes = {role: ds.load_index(folder / role)  # checks presence, images, UTM names
                   for role in fmt.ROLES}
        ds.check_zones(str(folder), indexes)  # a database and queries in other UTM zones
        for role, index in indexes.items():
            listing[split, role] = [str(p) for p in index.paths]
    return listing


def make_builder(dataset_dir: str | os.PathLike, tfds_dir: str | os.PathLike,
                 splits: Sequence[str] | None = None):
    """A `tfds.core.GeneratorBasedBuilder` converting one dataset folder into `tfds_dir`.

    The folder is listed (and checked) here, before anything is written.
    """
    tfds = _tfds()
    dataset_dir = Path(dataset_dir).resolve()
    dataset = ds.dataset_name(dataset_dir)
    listing = list_folder(dataset_dir, splits)
    builder_name = tfds_name(dataset)

    class FolderBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        name = builder_name
        VERSION = tfds.core.Version(COPY_VERSION)
        RELEASE_NOTES = {COPY_VERSION: "Copy of a standard-format VG dataset folder."}
        # Nothing is downloaded, so there is no checksums file to locate; this also skips
        # tfds' lookup of the defining module's files (it imports `importlib_resources`,
        # which tfds 4.9.10 does not install on Python >= 3.9).
        code_path = None

        def _info(self):
            # DatasetInfo directly: `dataset_info_from_configs` looks for README/CITATIONS
            # files beside the defining module, which fails under `python -m`.
            return tfds.core.DatasetInfo(
                builder=self,
                description=f"Visual geo-localization dataset {dataset!r} converted from "
                            "the standard folder format; record order = sorted listing.",
                features=_features(),
                disable_shuffling=True,  # record i == image i of the sorted folder listing
                metadata=tfds.core.MetadataDict(
                    dataset=dataset,
                    source=str(dataset_dir),
                    paths={tfds_split_name(s, r): [_relative(p, dataset_dir) for p in ps]
                           for (s, r), ps in listing.items()},
                ),
            )

        def _split_generators(self, dl_manager):
            return {tfds_split_name(s, r): self._generate_examples(s, r, ps)
                    for (s, r), ps in listing.items()}

        def _generate_examples(self, split, role, paths):
            for i, path in enumerate(paths):
                try:
                    data = Path(path).read_bytes()
                except OSError as e:
                    raise ImageError(f"{path}: cannot read ({e.strerror or e})") from None
                yield i, {"image": data, "utm": np.array(fmt.parse_utm(path), np.float64),
                          "path": _relative(path, dataset_dir), "role": role, "split": split}

    return FolderBuilder(data_dir=os.fspath(tfds_dir), file_format=FILE_FORMAT)


def build(dataset_dir: str | os.PathLike, tfds_dir: str | os.PathLike,
          splits: Sequence[str] | None = None, overwrite: bool = False,
          num_shards: int | None = None) -> Path:
    """Writes the TFDS copy of `dataset_dir`; returns its directory.

    An existing copy is kept unless `overwrite`. `num_shards` fixes the shards per TFDS
    split (default: TFDS picks them from the size).
    """
    tfds = _tfds()
    builder = make_builder(dataset_dir, tfds_dir, splits)
    mode = (tfds.download.GenerateMode.FORCE_REDOWNLOAD if overwrite
            else tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS)
    config = tfds.download.DownloadConfig(download_mode=mode, num_shards=num_shards)
    # nothing is downloaded: keep out empty dirs. The builder was made with FILE_FORMAT;
    # passing it again fails on an existing copy with --overwrite (its info is restored)
    with tempfile.TemporaryDirectory() as downloads:
        builder.download_and_prepare(download_dir=downloads, download_config=config)
    return Path(builder.data_dir)


# Reading -----------------------------------------------------------------------------------

def copy_dir(tfds_dir: str | os.PathLike, dataset: str) -> Path:
    """`<tfds_dir>/<tfds_name>/<newest version>`; the error says how to build a missing copy."""
    tfds_dir = Path(tfds_dir)
    if not tfds_dir.is_dir():
        raise fmt.DatasetFormatError(f"TFDS folder {tfds_dir} does not exist")
    root = tfds_dir / tfds_name(dataset)
    versions = sorted((p for p in root.glob("*.*.*") if (p / "dataset_info.json").is_file()),
                      key=lambda p: tuple(int(x) if x.isdigit() else -1
                                          for x in p.name.split(".")))
    if not versions:
        present = sorted(p.name for p in tfds_dir.iterdir() if p.is_dir())
        raise fmt.DatasetFormatError(
            f"{root}: no TFDS copy of {dataset!r} (copies present in {tfds_dir}: "
            f"{present or 'none'}); build it with `python -m vgjax.data.tfds_builder "
            f"--dataset <root>/{dataset} --out {tfds_dir}`")
    return versions[-1]


def _read_metadata(directory: Path) -> dict:
    path = directory / METADATA_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise fmt.DatasetFormatError(f"{path}: cannot read the copy's metadata ({e})") from None


class TfdsImages:
    """Images of a TFDS copy, addressed by the paths of its Index (random access).

    `images(path, size)` has the signature of `pipeline.load_image`; `images.loader(size)`
    is the `load_fn` for `pipeline.BatchLoader`. Safe to call from several threads.
    """

    def __init__(self, sources: Mapping[str, Sequence], paths: Mapping[str, Sequence[str]]):
        self._sources = dict(sources)
        self._where = {p: (key, i) for key, ps in paths.items() for i, p in enumerate(ps)}

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, path: str) -> bool:
        return path in self._where

    def record(self, path: str) -> dict:
        """The record of `path` with its image still encoded."""
        try:
            key, i = self._where[path]
        except KeyError:
            raise ImageError(f"{path}: not in this TFDS copy") from None
        record = self._sources[key][i]
        stored = record["path"]
        stored = stored.decode() if isinstance(stored, bytes) else str(stored)
        if stored != path:
            raise ImageError(f"{path}: record {i} of {key} holds {stored!r}; the copy's "
                             f"metadata and records disagree, rebuild it")
        return record

    def encoded(self, path: str) -> bytes:
        return bytes(self.record(path)["image"])

    def __call__(self, path: str, size: tuple[int, int] | None = None,
                 draft: bool = False) -> np.ndarray:
        """RGB uint8 (H, W, 3) of `path`, resized to `size` = (H, W) if given."""
        if draft:
            return decode_image_bytes(self.encoded(path), size, name=path, draft=True)
        return decode_image_bytes(self.encoded(path), size, name=path)

    def loader(self, size: tuple[int, int] | None) -> Callable[[str], np.ndarray]:
        return lambda path: self(path, size)


def _open(tfds_dir: str | os.PathLike, dataset: str, split: str):
    """(copy directory, metadata, {role: Index}, TfdsImages) of one split of a copy."""
    tfds = _tfds()
    directory = copy_dir(tfds_dir, dataset)
    metadata = _read_metadata(directory)
    keys = {role: tfds_split_name(split, role) for role in fmt.ROLES}
    missing = [k for k in keys.values() if k not in metadata["paths"]]
    if missing:
        present = sorted({k.rsplit("_", 1)[0] for k in metadata["paths"]})
        raise fmt.DatasetFormatError(
            f"{directory}: no split {split!r} in this copy (splits present: {present})")
    builder = tfds.builder_from_directory(os.fspath(directory))
    decoders = {"image": tfds.decode.SkipDecoding()}
    sources, indexes, paths = {}, {}, {}
    for role, key in keys.items():
        sources[key] = builder.as_data_source(split=key, decoders=decoders)
        paths[key] = metadata["paths"][key]
        if len(sources[key]) != len(paths[key]):
            raise fmt.DatasetFormatError(
                f"{directory}: split {key} has {len(sources[key])} records but its metadata "
                f"lists {len(paths[key])} paths; rebuild the copy")
        indexes[role] = ds.Index(paths=np.array(paths[key]), utm=fmt.utm_array(paths[key]))
    return directory, metadata, indexes, TfdsImages(sources, paths)


def open_split(tfds_dir: str | os.PathLike, dataset: str, split: str
               ) -> tuple[ds.Index, ds.Index, TfdsImages]:
    """(database, queries, images) of `split` of the copy of `dataset` (folder name).

    Index paths are relative to the dataset folder (`images/<split>/<role>/<file>`), in the
    order of the folder listing; `images` reads them.
    """
    _, _, indexes, images = _open(tfds_dir, dataset, split)
    return indexes["database"], indexes["queries"], images


def load_split_tfds(tfds_dir: str | os.PathLike, dataset: str, split: str,
                    soft_dist: float = 25.0, hard_dist: float = 10.0
                    ) -> tuple[ds.Split, TfdsImages]:
    """`dataset.load_split` for a TFDS copy: the same Split (paths relative to the dataset
    folder) plus the image reader its paths go through."""
    directory, metadata, indexes, images = _open(tfds_dir, dataset, split)
    result = ds.split_from_indexes(metadata["dataset"], split, indexes["database"],
                                indexes["queries"], soft_dist, hard_dist,
                                where=f"{directory} ({split})")
    return result, images


# CLI ---------------------------------------------------------------------------------------

def _parse_args(argv: Iterable[str] | None):
    p = argparse.ArgumentParser(
        prog="python -m vgjax.data.tfds_builder",
        description="Convert standard-format dataset folders into TFDS array_record copies.")
    p.add_argument("--dataset", required=True, nargs="+",
                   help="dataset folder(s): <root>/<name> holding images/<split>/...")
    p.add_argument("--out", required=True, help="TFDS folder; copies go to <out>/<tfds_name>/")
    p.add_argument("--splits", nargs="+", choices=fmt.SPLITS,
                   help="splits to convert (default: every split folder present)")
    p.add_argument("--overwrite", action="store_true", help="rebuild an existing copy")
    p.add_argument("--num_shards", type=int, default=None,
                   help="shards per TFDS split (default: chosen from the size)")
    args = p.parse_args(argv)
    if args.num_shards is not None and args.num_shards < 1:  # before any work
        p.error(f"--num_shards {args.num_shards}: expected at least 1")
    if not all(args.dataset):
        p.error("--dataset: an empty folder name")
    names = [tfds_name(Path(d).resolve().name) for d in args.dataset]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:  # one copy per TFDS name: the second would replace or reuse the first
        p.error(f"--dataset: several folders would be written to the same copy "
                f"{', '.join(twice)} in --out")
    problem = _out_problem(Path(args.out)) if args.out else "an empty folder name"
    if problem:
        p.error(f"--out {args.out}: {problem}".replace("--out : ", "--out: "))
    return args


def _out_problem(out: Path) -> str | None:
    """Why the TFDS folder `out` cannot be created (a file, or under a file), or None."""
    folder = out
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if folder.exists() and not folder.is_dir():
        return ("is a file, not a folder" if folder == out
                else f"{folder} is a file, not a folder")
    return None


def main(argv: Iterable[str] | None = None) -> int:
    args = _parse_args(argv)
    for dataset_dir in args.dataset:
        start = time.perf_counter()
        try:
            directory = build(dataset_dir, args.out, args.splits, args.overwrite,
                              args.num_shards)
        except (fmt.DatasetFormatError, ImageError) as e:
            print(f"error: --dataset {dataset_dir}: {e}", file=sys.stderr)
            return 2
        except OSError as e:  # e.g. no permission or a full disk under --out
            print(f"error: --out {args.out}: {e.strerror or e}", file=sys.stderr)
            return 2
        metadata = _read_metadata(directory)
        counts = ", ".join(f"{k} {len(v)}" for k, v in metadata["paths"].items())
        print(f"{metadata['dataset']} -> {directory}: {counts} "
              f"({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
