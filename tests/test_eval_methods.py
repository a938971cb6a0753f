"""Test methods, multi-scale testing and extraction with a model-free stand-in describer.

The stand-in downsamples any input to 8x8 (antialiased), projects it with a fixed random
matrix and L2-normalises: deterministic, resolution-agnostic, and a solid-colour image gives
the same descriptor at every size and crop, which makes known-answer cases easy.
"""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from configs.default import get_config
from vgjax.data.dataset import load_split
from vgjax.data.format import make_filename
from vgjax.eval import evaluate, query_domains
from vgjax.eval.extract import extract_descriptors
from vgjax.data.ops import PIL
from vgjax.eval.methods import TEST_METHODS, ViewPlan, combine_scales

PROJ = jnp.asarray(np.random.default_rng(0).standard_normal((8 * 8 * 3, 16)), jnp.float32)


@jax.jit
def describe(images):
    """uint8 pixels or float in [0, 1] (views resampled in float), like the network."""
    x = images.astype(jnp.float32) / 255.0 if images.dtype == jnp.uint8 else images
    x = jax.image.resize(x, (x.shape[0], 8, 8, 3), "linear")
    d = x.reshape(x.shape[0], -1) @ PROJ
    return d / jnp.linalg.norm(d, axis=1, keepdims=True)


MODEL_SIZE = (16, 24)


def _cfgs(**test):
    """(test, data) config sections: the defaults at a tiny model size, small blocks."""
    cfg = get_config()
    cfg.data.resize, cfg.data.num_workers = MODEL_SIZE, 2
    cfg.test.batch_size, cfg.test.search_chunk_mb, cfg.test.pca_max_images = 4, 1.0, 1000
    cfg.test.update(test)
    return cfg.test, cfg.data


def _write(path, arr):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(arr).save(path)


def _colour(i):
    return np.array([(37 * i) % 256, (91 * i + 40) % 256, (173 * i + 80) % 256], np.uint8)


@pytest.fixture(scope="module")
def colour_dataset(tmp_path_factory):
    """Database: solid colours 100 m apart (20x30). Queries: the same colours, other sizes,
    3 m from their database image; the last query is far from everything (a sure miss)."""
    root = tmp_path_factory.mktemp("colours") / "colours"
    base = root / "images" / "test"
    notes = ["day", "night", "sunset", "night_rain", "", "day"]
    sizes = [(30, 50), (40, 30), (24, 32), (30, 50), (35, 45), (30, 50)]
    for i in range(10):
        name = make_filename(500000.0 + 100 * i, 4100000.0, ".png")
        _write(str(base / "database" / name), np.broadcast_to(_colour(i), (20, 30, 3)).copy())
    for j, (note, size) in enumerate(zip(notes, sizes)):
        east = 500000.0 + 100 * (2 * j) + 3.0 if j < 5 else 900000.0
        name = make_filename(east, 4100000.0, ".png", note=note)
        _write(str(base / "queries" / name), np.broadcast_to(_colour(2 * j), (*size, 3)).copy())
    return load_split(root, "test")


@pytest.mark.parametrize("method", TEST_METHODS)
def test_each_method_known_answer(colour_dataset, method):
    test_cfg, data_cfg = _cfgs(method=method)
    r = evaluate(colour_dataset, describe, test_cfg, data_cfg)
    # k = max(recall_values) = 20 > 10 database images: the rest is padded with -1.
    assert r.topk_indices.shape == r.topk_distances.shape == (6, 20)
    assert (r.topk_indices[:, :10] >= 0).all() and (r.topk_indices[:, 10:] == -1).all()
    # Queries 0..4 find their colour first; query 5 has no positive and counts as a miss.
    assert r.topk_indices[:5, 0].tolist() == [0, 2, 4, 6, 8]
    assert r.recalls["R@1"] == pytest.approx(500 / 6)
    assert r.recalls["R@20"] == pytest.approx(500 / 6)
    assert r.domain_counts == {"day": 2, "sunset": 1, "night": 2}
    assert r.domain_recalls["night"]["R@1"] == 100.0
    assert r.domain_recalls["day"]["R@1"] == 50.0


def test_domains_from_note():
    paths = [make_filename(1, 2, ".jpg", note=n) for n in ["Night", "night_sideways", "", "dusk"]]
    assert query_domains(paths).tolist() == ["night", "night", "", ""]


def test_view_shapes_and_crops():
    img = np.arange(30 * 50 * 3, dtype=np.uint8).reshape(30, 50, 3)
    size = (16, 24)
    assert [v.shape for v in ViewPlan("hard_resize", (size,)).views(img)] == [(16, 24, 3)]
    assert [v.shape for v in ViewPlan("single_query", (size,)).views(img)] == [(16, 26, 3)]
    assert ViewPlan("single_query", (size,)).view_shapes((30, 50)) == ((16, 26),)
    assert [v.shape for v in ViewPlan("central_crop", (size,)).views(img)] == [(16, 24, 3)]
    five = ViewPlan("five_crops", (size, (8, 12)), resampling=PIL)
    views = five.views(img)
    assert [v.shape[:2] for v in views] == [(16, 16)] * 5 + [(8, 8)] * 5
    assert five.view_shapes() == tuple([(16, 16)] * 5 + [(8, 8)] * 5)
    # The four corners and the centre of the short-side-resized image (16 x 26).
    resized = np.asarray(Image.fromarray(img).resize((26, 16), Image.BILINEAR))
    for v, (top, left) in zip(views[:5], [(0, 0), (0, 10), (0, 0), (0, 10), (0, 5)]):
        np.testing.assert_array_equal(v, resized[top:top + 16, left:left + 16])
    assert ViewPlan.for_queries(_cfgs(scales=[0.5, 1, 1.5])[0], (480, 640)).sizes == \
        ((240, 320), (480, 640), (720, 960))


def test_extraction_matches_direct_calls(colour_dataset):
    """Padding of the last batch, grouping by shape and row order do not change anything."""
    paths = list(colour_dataset.queries.paths)
    plan = ViewPlan("single_query", (MODEL_SIZE,))
    store, stats = extract_descriptors(paths, describe, plan, batch_size=4, num_workers=2)
    assert stats["compiled_shapes"] == 4  # short side 16: (16,26) (21,16) (16,21) (16,20)
    for i, p in enumerate(paths):
        view = plan.load_views(p)[0]
        np.testing.assert_allclose(store.read(i, i + 1), np.asarray(describe(view[None])),
                                   rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def random_split(tmp_path_factory):
    from conftest import write_dataset
    return load_split(write_dataset(tmp_path_factory.mktemp("rand"), splits=("test",),
                                    n_db=9, n_q=5), "test")


@pytest.mark.parametrize("method", ["hard_resize", "five_crops"])
def test_multiscale_one_scale_equals_single_scale(random_split, method):
    single = evaluate(random_split, describe, *_cfgs(method=method))
    for combine in ["avg", "sum", "max", "min"]:
        multi = evaluate(random_split, describe, *_cfgs(
            method=method, scales=[1], multiscale_method=combine, multiscale_database=True))
        np.testing.assert_array_equal(multi.topk_indices, single.topk_indices)
        np.testing.assert_array_equal(multi.topk_distances, single.topk_distances)
        assert multi.recalls == single.recalls


def test_avg_and_sum_rank_identically(random_split):
    """sum = n * avg for every descriptor of both sides (same scales on queries and database),
    so every L2 distance is multiplied by n (squared distances by n^2): rankings are equal."""
    scales = [0.5, 1.0, 1.5]
    avg = evaluate(random_split, describe, *_cfgs(scales=scales, multiscale_database=True))
    tot = evaluate(random_split, describe, *_cfgs(scales=scales, multiscale_database=True,
                                                  multiscale_method="sum"))
    np.testing.assert_array_equal(avg.topk_indices, tot.topk_indices)
    np.testing.assert_allclose(tot.topk_distances, 9 * avg.topk_distances, rtol=1e-4)
    assert avg.recalls == tot.recalls


def test_max_min_differ_from_avg(random_split):
    paths = list(random_split.queries.paths)
    out = {}
    for m in ["avg", "max", "min"]:
        plan = ViewPlan("hard_resize", ((8, 12), MODEL_SIZE, (24, 36)), combine=m)
        out[m] = extract_descriptors(paths, describe, plan, batch_size=4, num_workers=2)[0].read()
    assert not np.allclose(out["max"], out["avg"])
    assert not np.allclose(out["min"], out["avg"])
    assert (out["max"] >= out["avg"] - 1e-6).all() and (out["min"] <= out["avg"] + 1e-6).all()
    renorm = combine_scales(np.stack([out["max"], out["min"]]), "sum", renormalize=True)
    np.testing.assert_allclose(np.linalg.norm(renorm, axis=1), 1.0, rtol=1e-5)


def test_pca_and_float16_store(random_split, tmp_path):
    test_cfg, data_cfg = _cfgs(pca_dim=4, store_float16=True,
                               descriptors_dir=str(tmp_path / "desc"))
    r = evaluate(random_split, describe, test_cfg, data_cfg)
    assert (r.model_dim, r.descriptor_dim) == (16, 4)
    assert np.load(tmp_path / "desc" / "toy" / "database.npy").dtype == np.float16
    assert np.load(tmp_path / "desc" / "toy" / "queries_pca.npy").shape == (5, 4)
    with pytest.raises(ValueError, match="test.pca_dim"):
        evaluate(random_split, describe, *_cfgs(pca_dim=50))
    # Fitted on a folder of images: here the database folder itself, resized like the
    # database, so the same samples as fitting on the database descriptors, hence the same
    # projection and ranking.
    folder = os.path.dirname(random_split.database.paths[0])
    r2 = evaluate(random_split, describe, *_cfgs(pca_dim=4, pca_dataset=folder,
                                                 pca_native_size=False))
    r3 = evaluate(random_split, describe, *_cfgs(pca_dim=4))
    assert r2.descriptor_dim == 4
    np.testing.assert_array_equal(r2.topk_indices, r3.topk_indices)
    with pytest.raises(ValueError, match="test.pca_dataset"):
        evaluate(random_split, describe, *_cfgs(pca_dim=4, pca_dataset=folder + "_nope"))


def test_bad_options_name_the_field(random_split):
    with pytest.raises(ValueError, match="test.method"):
        evaluate(random_split, describe, *_cfgs(method="sideways"))
    with pytest.raises(ValueError, match="test.multiscale_method"):
        evaluate(random_split, describe, *_cfgs(multiscale_method="median"))
    with pytest.raises(ValueError, match="test.scales"):
        evaluate(random_split, describe, *_cfgs(scales=[0.0]))
    with pytest.raises(ValueError, match="test.index"):
        evaluate(random_split, describe, *_cfgs(index="hnsw"))
