import numpy as np
import pytest
from PIL import Image

from conftest import write_image
from vgjax.models.network import IMAGENET_MEAN, IMAGENET_STD, normalize
from vgjax.data.pipeline import (BatchLoader, ImageError,
                                 load_batch, load_image)


@pytest.fixture
def images(tmp_path):
    paths = []
    for i in range(7):
        p = tmp_path / f"img{i}.png"
        write_image(str(p), (20 + i, 30), seed=i)
        paths.append(str(p))
    return paths


def test_batches_fixed_shape_order_and_padding(images):
    loader = BatchLoader(images, (16, 24), batch_size=3, num_workers=2, prefetch=1)
    batches = list(loader)
    assert len(loader) == 3 and [n for _, n in batches] == [3, 3, 1]
    assert all(b.shape == (3, 16, 24, 3) and b.dtype == np.uint8 for b, _ in batches)
    last, _ = batches[-1]
    assert np.array_equal(last[1], last[0]) and np.array_equal(last[2], last[0])
    flat = np.concatenate([b[:n] for b, n in batches])
    want = np.stack([load_image(p, (16, 24)) for p in images])
    assert np.array_equal(flat, want)
    assert np.array_equal(load_batch(images, (16, 24), num_workers=1), want)


def test_resize_matches_pillow_bilinear(images):
    img = Image.open(images[3]).convert("RGB").resize((24, 16), Image.BILINEAR)
    assert np.array_equal(load_image(images[3], (16, 24)), np.asarray(img))
    assert load_image(images[0]).shape == (20, 30, 3)


def test_jpeg_draft_keeps_target_size(tmp_path):
    p = tmp_path / "big.jpg"
    write_image(str(p), (480, 640))
    out = load_image(p, (60, 80))
    assert out.shape == (60, 80, 3)
    assert load_image(p, (481, 641)).shape == (481, 641, 3)


def test_errors_name_the_file(tmp_path, images):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"garbage")
    with pytest.raises(ImageError, match="bad.jpg: cannot decode"):
        load_image(bad)
    with pytest.raises(ImageError, match="missing.png: file not found"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ImageError, match="bad.jpg"):
        list(BatchLoader(images[:2] + [str(bad)], (8, 8), batch_size=2, num_workers=2))
    with pytest.raises(ValueError, match="batch_size"):
        BatchLoader(images, (8, 8), batch_size=0)


def test_normalize_uint8_and_float_agree():
    x = np.random.default_rng(0).integers(0, 256, (2, 3, 4, 3), dtype=np.uint8)
    a = normalize(x)
    b = normalize(x.astype(np.float32) / 255.0)
    assert a.dtype == np.float32 and np.allclose(a, b)
    assert np.allclose(a, (x / 255.0 - IMAGENET_MEAN) / IMAGENET_STD, atol=1e-6)


def test_several_views_per_image(images):
    def two_views(path):
        img = load_image(path, (16, 24))
        return [img, img[:8, :8]]

    loader = BatchLoader(images, None, 3, num_workers=2, load_fn=two_views,
                         views=[(16, 24), (8, 8)])
    batches = list(loader)
    assert [n for _, n in batches] == [3, 3, 1]
    full, crop = batches[0][0]
    assert full.shape == (3, 16, 24, 3) and crop.shape == (3, 8, 8, 3)
    assert np.array_equal(crop[1], load_image(images[1], (16, 24))[:8, :8])
    with pytest.raises(ValueError, match="either size"):
        BatchLoader(images, (8, 8), 2, views=[(8, 8)], load_fn=two_views)
    bad = BatchLoader(images, None, 2, load_fn=lambda p: [load_image(p, (8, 8))],
                      views=[(8, 8), (4, 4)])
    with pytest.raises(ImageError, match="returned 1 views, expected 2"):
        list(bad)


def test_check_image_files_finds_truncated_empty_and_missing_files(tmp_path):
    """Every file's ends are checked before any image is described: a JPEG or PNG cut
    short, an empty file and a missing one are named; a JPEG with data after its end (as
    some cameras write) and whole files pass."""
    from vgjax.data.pipeline import check_image_files
    good_jpg, good_png = tmp_path / "a.jpg", tmp_path / "b.png"
    write_image(str(good_jpg), (40, 60), seed=1)
    write_image(str(good_png), (40, 60), seed=2)
    appended = tmp_path / "c.jpg"
    appended.write_bytes(good_jpg.read_bytes() + b"\0" * 500)
    cut_jpg, cut_png = tmp_path / "d.jpg", tmp_path / "e.png"
    cut_jpg.write_bytes(good_jpg.read_bytes()[:-200])
    cut_png.write_bytes(good_png.read_bytes()[:-30])
    empty = tmp_path / "f.jpg"
    empty.write_bytes(b"")
    check_image_files([str(good_jpg), str(good_png), str(appended)], "set")
    with pytest.raises(ImageError) as e:
        check_image_files([str(p) for p in (good_jpg, cut_jpg, cut_png, empty,
                                             tmp_path / "g.jpg")], "pitts30k queries")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("4 of the 5 images of pitts30k queries")
    assert f"{cut_jpg}: truncated or damaged" in msg and f"{cut_png}: truncated" in msg
    assert f"{empty}: empty file" in msg and "1 more" in msg
