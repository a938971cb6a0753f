"""Test sets over the same database files are described once per evaluation run
(tokyo-night beside tokyo-xs), with the recalls of describing each on its own."""
import shutil

import numpy as np
import pytest

from conftest import write_dataset
from vgjax.cli.config import load_config
from vgjax.eval import evaluators
from vgjax.eval.shared_database import DatabaseMemo, database_keys

DEFAULT_CONFIG = "configs/default.py"


class CountingDescribe:
    """Raw pixels of a 4x4 grid, L2-normalised (no model, no compilation); counts the
    images it describes."""

    def __init__(self):
        self.images = 0

    def __call__(self, images):
        x = np.asarray(images, np.float32)
        self.images += len(x)
        b, h, w, _ = x.shape
        d = x[:, :: max(h // 4, 1), :: max(w // 4, 1)].reshape(b, -1)
        return d / np.linalg.norm(d, axis=1, keepdims=True).clip(1e-6)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """'day' (8 database images, 4 queries); 'night': a copy of day's database with 2 of its
    queries; 'other': another database."""
    root = tmp_path_factory.mktemp("shared")
    day = write_dataset(root, name="day", splits=("test",), n_db=8, n_q=4, ext=".jpg")
    write_dataset(root, name="other", splits=("test",), n_db=8, n_q=4, ext=".jpg",
                  spacing=25.0)
    night = root / "night" / "images" / "test"
    shutil.copytree(day / "images" / "test" / "database", night / "database")
    night.joinpath("queries").mkdir()
    for q in sorted((day / "images" / "test" / "queries").iterdir())[:2]:
        shutil.copy(q, night / "queries" / q.name)
    return root


def _config(root, datasets):
    c = load_config(DEFAULT_CONFIG, [])
    c.data.root = str(root)
    c.data.resize = (24, 32)
    c.data.num_workers = 1
    c.data.test_datasets = list(datasets)
    c.test.recall_values = (1, 3)
    c.test.batch_size = 4
    return c


def test_a_copied_database_is_described_once_with_the_same_recalls(root):
    describe = CountingDescribe()
    results = evaluators.build(_config(root, ["day", "other", "night"]), "test").run(describe)
    # batches of 4 (night's 2 queries padded to 4): night's database came from day's
    assert describe.images == 8 + 4 + 8 + 4 + 4
    alone = CountingDescribe()
    night_alone, = evaluators.build(_config(root, ["night"]), "test").run(alone)
    assert alone.images == 8 + 4
    night = results[2]
    assert night.recalls == night_alone.recalls
    assert np.array_equal(night.topk_indices, night_alone.topk_indices)
    assert np.array_equal(night.topk_distances, night_alone.topk_distances)
    assert night.timings["database_s"] == 0.0 and results[0].timings["database_s"] > 0


def test_keys_need_the_same_names_sizes_bytes_and_reader(root, tmp_path):
    def paths(name):
        return sorted(str(p) for p in (root / name / "images" / "test" / "database").iterdir())

    keys = database_keys({d: (paths(d), "folder") for d in ("day", "other", "night")})
    assert set(keys) == {"day", "night"} and keys["day"] == keys["night"]
    assert database_keys({"day": (paths("day"), "folder"),
                          "night": (paths("night"), "another reader")}) == {}
    assert database_keys({"day": (paths("day"), "folder"),
                          "night": (paths("night")[::-1], "folder")}) == {}
    # the same names and sizes over other bytes
    for folder, text in (("a", b"one"), ("b", b"two")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "x.jpg").write_bytes(text)
    assert database_keys({f: ([str(tmp_path / f / "x.jpg")], "folder") for f in "ab"}) == {}
    # paths that are not files (records of a TFDS copy) are never shared
    assert database_keys({"a": (["tfds:0", "tfds:1"], "folder"),
                          "b": (["tfds:0", "tfds:1"], "folder")}) == {}


def test_the_memo_keeps_a_copy_only_until_its_last_user():
    memo = DatabaseMemo({"a": "k", "b": "k", "c": "k"}, ["a", "b", "c"])
    assert memo.slot("a").get() is None and memo.slot("a").wanted()
    memo.slot("a").put(np.ones((2, 3), np.float32))
    assert not memo.slot("a").wanted()
    assert memo.slot("b").get()[1] == "a"
    assert memo.slot("c").get()[1] == "a"
    assert memo._kept == {}
    assert DatabaseMemo().slot("x").get() is None
