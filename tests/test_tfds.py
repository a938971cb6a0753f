"""TFDS copies: same images, UTMs, paths and order as the folder; random access; errors."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vgjax.data import dataset as ds
from vgjax.data import format as fmt
from vgjax.data import pipeline
from vgjax.data import tfds_builder as tb

SIZE = (16, 24)  # (H, W) model size used in the tests


def _write(folder: Path, utms, rng, big_jpeg: bool = False):
    folder.mkdir(parents=True)
    for i, (east, north) in enumerate(utms):
        big = big_jpeg and i == 0  # large enough for JPEG draft decoding at SIZE
        ext = ".jpg" if big else (".jpg", ".png", ".jpeg")[i % 3]
        h, w = (96, 128) if big else (20 + i, 30 + 2 * i)
        # Smooth gradients plus noise: JPEG-like content, not incompressible noise.
        yy, xx = np.mgrid[:h, :w]
        img = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) * 127 // (h + w)], -1)
        img = np.clip(img + rng.integers(0, 40, img.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / fmt.make_filename(east, north, ext, note=f"n{i}"))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A tiny `sf-xs`-named dataset (train + test) and its TFDS copy in 2 shards per split."""
    pytest.importorskip("tensorflow_datasets")
    tmp = tmp_path_factory.mktemp("tfds")
    rng = np.random.default_rng(0)
    root = tmp / "data" / "sf-xs"
    e0, n0 = 549000.0, 4180000.0
    _write(root / "images/train/database", [(e0 + 20 * i, n0) for i in range(4)], rng,
           big_jpeg=True)
    # The last training query has no database image within 10 m: dropped.
    _write(root / "images/train/queries", [(e0 + 3, n0), (e0 + 41, n0 + 2), (e0 + 500, n0)],
           rng)
    _write(root / "images/test/database", [(e0, n0 + 100 * i) for i in range(3)], rng)
    # The last test query has no positive within 25 m: kept, counts as a miss.
    _write(root / "images/test/queries", [(e0 + 5, n0 + 101), (e0 + 900, n0)], rng)
    out = tmp / "tfds"
    directory = tb.build(root, out, num_shards=2)
    return root, out, directory


def test_import_needs_no_tfds():
    code = ("import sys, vgjax.data.tfds_builder; "
            "assert 'tensorflow_datasets' not in sys.modules; "
            "assert 'tensorflow' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])


def test_layout_and_names(built):
    root, out, directory = built
    assert directory == out / "sf_xs" / tb.COPY_VERSION
    shards = sorted(p.name for p in directory.glob("*.array_record-*"))
    assert len(shards) == 8 and shards[0].startswith("sf_xs-test_database.array_record-")
    assert not (out / "downloads").exists()
    assert "tensorflow" not in sys.modules


@pytest.mark.parametrize("split", ["train", "test"])
def test_records_match_folder_in_order(built, split):
    import tensorflow_datasets as tfds

    root, out, directory = built
    builder = tfds.builder_from_directory(os.fspath(directory))
    for role in fmt.ROLES:
        files = fmt.list_images(root / "images" / split / role)
        source = builder.as_data_source(split=tb.tfds_split_name(split, role),
                                        decoders={"image": tfds.decode.SkipDecoding()})
        assert len(source) == len(files)
        for i, file in enumerate(files):  # record i == file i, across the two shards
            record = source[i]
            assert record["path"].decode() == os.path.relpath(file, root)
            assert bytes(record["image"]) == Path(file).read_bytes()  # not re-encoded
            np.testing.assert_array_equal(record["utm"], fmt.parse_utm(file))
            assert record["role"].decode() == role and record["split"].decode() == split


@pytest.mark.parametrize("split", ["train", "test"])
def test_open_split_same_index_and_pixels(built, split):
    root, out, _ = built
    database, queries, images = tb.open_split(out, "sf-xs", split)
    for index, role in ((database, "database"), (queries, "queries")):
        folder = ds.load_index(root / "images" / split / role)
        assert list(index.paths) == [os.path.relpath(p, root) for p in folder.paths]
        np.testing.assert_array_equal(index.utm, folder.utm)
        np.testing.assert_array_equal(index.notes, folder.notes)
        for path, file in zip(index.paths, folder.paths):
            for size in (None, SIZE, (40, 60)):
                np.testing.assert_array_equal(images(path, size), pipeline.load_image(file, size))


def test_random_access_and_batch_loader(built):
    root, out, _ = built
    database, queries, images = tb.open_split(out, "sf-xs", "train")
    paths = list(database.paths) + list(queries.paths)
    files = [str(root / p) for p in paths]
    order = np.random.default_rng(1).permutation(len(paths))
    for i in order:
        np.testing.assert_array_equal(images(paths[i], SIZE), pipeline.load_image(files[i], SIZE))
    shuffled = [paths[i] for i in order]
    expected = pipeline.BatchLoader([files[i] for i in order], SIZE, 3, num_workers=3)
    loader = pipeline.BatchLoader(shuffled, SIZE, 3, num_workers=3, load_fn=images.loader(SIZE))
    got = list(loader)
    assert len(got) == len(expected)
    for (a, n_a), (b, n_b) in zip(got, expected):
        assert n_a == n_b
        np.testing.assert_array_equal(a, b)
    with pytest.raises(pipeline.ImageError, match="not in this TFDS copy"):
        images("images/train/database/missing.jpg")


@pytest.mark.parametrize("split", ["train", "test"])
def test_load_split_tfds_equals_load_split(built, split):
    root, out, _ = built
    expected = ds.load_split(root, split, soft_dist=25.0, hard_dist=10.0)
    got, images = tb.load_split_tfds(out, "sf-xs", split, soft_dist=25.0, hard_dist=10.0)
    assert (got.dataset, got.split) == ("sf-xs", split)
    relative = lambda paths: [os.path.relpath(p, root) for p in paths]  # noqa: E731
    for role in fmt.ROLES:
        assert list(getattr(got, role).paths) == relative(getattr(expected, role).paths)
        np.testing.assert_array_equal(getattr(got, role).utm, getattr(expected, role).utm)
    assert list(got.dropped_queries) == relative(expected.dropped_queries)
    assert len(got.dropped_queries) == (1 if split == "train" else 0)
    for a, b in zip(got.soft_positives, expected.soft_positives, strict=True):
        np.testing.assert_array_equal(a, b)
    if split == "train":
        for a, b in zip(got.hard_positives, expected.hard_positives, strict=True):
            np.testing.assert_array_equal(a, b)
    else:
        assert got.hard_positives is None and len(got.soft_positives[-1]) == 0
    assert all(p in images for p in got.queries.paths)


def test_bad_input_errors(built, tmp_path, capsys):
    root, out, directory = built
    missing = tmp_path / "nowhere" / "pitts30k"
    with pytest.raises(fmt.DatasetFormatError, match=f"{missing}.*does not exist"):
        tb.build(missing, tmp_path / "out")
    assert tb.main(["--dataset", str(missing), "--out", str(tmp_path / "out")]) == 2
    assert str(missing) in capsys.readouterr().err

    no_queries = tmp_path / "data" / "tokyo-xs"
    _write(no_queries / "images/test/database", [(1.0, 2.0)], np.random.default_rng(2))
    with pytest.raises(fmt.DatasetFormatError, match="test/queries does not exist"):
        tb.build(no_queries, tmp_path / "out")
    assert not (tmp_path / "out" / "tokyo_xs").exists()

    with pytest.raises(fmt.DatasetFormatError, match="TFDS folder .* does not exist"):
        tb.open_split(tmp_path / "no_tfds", "sf-xs", "test")
    with pytest.raises(fmt.DatasetFormatError, match="no TFDS copy of 'pitts30k'.*tfds_builder"):
        tb.open_split(out, "pitts30k", "test")
    with pytest.raises(fmt.DatasetFormatError, match=r"no split 'val'.*\['test', 'train'\]"):
        tb.load_split_tfds(out, "sf-xs", "val")


def test_cli_builds_and_keeps_existing_copy(built, tmp_path, capsys):
    root, out, directory = built
    result = subprocess.run(
        [sys.executable, "-m", "vgjax.data.tfds_builder", "--dataset", str(root),
         "--out", str(tmp_path / "cli"), "--splits", "test"],
        capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert result.returncode == 0, result.stderr
    assert "sf-xs ->" in result.stdout and "test_database 3, test_queries 2 (" in result.stdout
    assert (tmp_path / "cli" / "sf_xs" / tb.COPY_VERSION / "dataset_info.json").is_file()

    before = directory.stat().st_mtime_ns
    assert tb.main(["--dataset", str(root), "--out", str(out)]) == 0
    assert "train_database 4" in capsys.readouterr().out
    assert directory.stat().st_mtime_ns == before


def test_open_split_switches_between_folder_and_tfds(tmp_path):
    """`data.source` selects the folder or its TFDS copy; both give the same split and pixels."""
    pytest.importorskip("tensorflow_datasets")
    import ml_collections

    from conftest import write_dataset
    from vgjax.data.sources import open_split
    from vgjax.data.tfds_builder import build

    root = tmp_path / "root"
    write_dataset(root, name="toy-set", splits=("test",), n_db=4, n_q=2, ext=".jpg")
    build(root / "toy-set", tmp_path / "tfds")
    cfg = ml_collections.ConfigDict(dict(source="folder", root=str(root), tfds_dir="",
                                         soft_positives_dist=25.0, hard_positives_dist=10.0))
    folder_split, folder_reader = open_split(cfg, "toy-set", "test")
    with pytest.raises(ValueError, match="data.tfds_dir"):
        open_split(ml_collections.ConfigDict({**cfg.to_dict(), "source": "tfds"}), "toy-set", "test")
    cfg.source, cfg.tfds_dir = "tfds", str(tmp_path / "tfds")
    tfds_split, tfds_reader = open_split(cfg, "toy-set", "test")
    assert tfds_split.dataset == folder_split.dataset == "toy-set"
    assert np.array_equal(tfds_split.database.utm, folder_split.database.utm)
    a = folder_reader.loader((8, 12))(folder_split.queries.paths[1])
    b = tfds_reader.loader((8, 12))(tfds_split.queries.paths[1])
    assert np.array_equal(a, b)
    assert tfds_reader.size(tfds_split.queries.paths[1]) == (24, 32)  # header only
    assert folder_reader.size(folder_split.queries.paths[1]) == (24, 32)
