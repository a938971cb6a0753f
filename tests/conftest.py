"""Shared test fixtures: tiny datasets written in the standard folder format."""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Many tests build the same small networks and train steps, each behind a new `jax.jit`:
# a persistent compilation cache for the session (inherited by the tests' subprocesses)
# loads what an earlier test compiled instead of compiling it again. Same executables,
# same results; removed when the session ends.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="vgjax_test_xla_")
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.3")

import numpy as np
import pytest
from PIL import Image

from vgjax.data.format import make_filename


def write_image(path, size=(24, 32), seed=0, ext=None):
    """A random RGB image at `path` (JPEG or PNG by extension)."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(arr).save(path)
    return arr


def write_dataset(root, name="toy", splits=("train", "val", "test"), n_db=12, n_q=5,
                  size=(24, 32), ext=".png", spacing=20.0, query_note=lambda j: "day"):
    """Database on a line every `spacing` m; queries 3 m beside db images 0, 2, 4, ...;
    query j's file-name note is `query_note(j)`."""
    base = root / name / "images"
    for s, split in enumerate(splits):
        east0 = 500000.0 + s * 10000.0
        for i in range(n_db):
            fname = make_filename(east0 + i * spacing, 4100000.0, ext, pano_id=f"d{i}")
            write_image(str(base / split / "database" / fname), size, seed=1000 * s + i)
        for j in range(n_q):
            fname = make_filename(east0 + 2 * j * spacing + 3.0, 4100000.0, ext,
                                  pano_id=f"q{j}", note=query_note(j))
            write_image(str(base / split / "queries" / fname), size, seed=5000 + 1000 * s + j)
    return root / name


@pytest.fixture
def toy_dataset(tmp_path):
    return write_dataset(tmp_path)


@pytest.fixture(scope="session")
def tiny_city(tmp_path_factory):
    """The tiny synthetic city (pitts30k, sf-xs and the night-target folder), rendered once
    for the whole test session; tests must not write into it."""
    from vgjax.synthetic import generate
    root = tmp_path_factory.mktemp("tiny-city")
    generate(root, "tiny", seed=0, workers=2, datasets=("pitts30k", "sf-xs", "night-target"))
    return root
