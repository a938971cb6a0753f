"""train.augment_on=host: the query augmentations in the reference's order, on the full-size
query with torchvision's PIL functions, before its crop and resize."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parent.parent


def _image(seed=0, hw=(30, 40)):
    rng = np.random.default_rng(seed)
    # smooth colours plus noise: hue and saturation are not degenerate anywhere
    y, x = np.mgrid[:hw[0], :hw[1]]
    base = np.stack([x * 5, y * 7, (x + y) * 3], -1) % 200 + 20
    return np.clip(base + rng.integers(-20, 20, (*hw, 3)), 0, 255).astype(np.uint8)


def _device(op, image, factor):
    from vgjax.data import augment
    return np.asarray(getattr(augment, f"adjust_{op}")(image / np.float32(255), factor)) * 255


@pytest.mark.parametrize("op, enhancer, factor", [
    ("brightness", "Brightness", 0.3), ("brightness", "Brightness", 1.4),
    ("contrast", "Contrast", 0.5), ("contrast", "Contrast", 1.6),
    ("saturation", "Color", 0.2), ("saturation", "Color", 1.8)])
def test_colour_ops_are_pil_enhancers_within_a_grey_level_of_the_device_formulas(
        op, enhancer, factor):
    from PIL import ImageEnhance
    from vgjax.data.augment.host import _JITTER
    image = _image()
    index = ("brightness", "contrast", "saturation").index(op)
    host = np.asarray(_JITTER[index](Image.fromarray(image), factor))
    expected = np.asarray(getattr(ImageEnhance, enhancer)(Image.fromarray(image)).enhance(factor))
    np.testing.assert_array_equal(host, expected)
    # the same formula on floats, up to PIL's uint8 rounding (and its integer grey levels)
    assert np.abs(host - _device(op, image, factor)).max() <= 2.0


@pytest.mark.parametrize("factor", [0.1, -0.1, 0.5, -0.5, 0.27])
def test_hue_shifts_pil_hsv_hue_as_torchvision_pil(factor):
    from vgjax.data.augment.host import adjust_hue
    image = Image.fromarray(_image(1))
    h, s, v = (np.asarray(c) for c in image.convert("HSV").split())
    # torchvision's PIL adjust_hue: np_h += np.array(hue_factor * 255).astype(np.uint8)
    shifted = (h + np.array(factor * 255).astype(np.uint8)).astype(np.uint8)
    expected = Image.merge("HSV", [Image.fromarray(c, "L") for c in (shifted, s, v)]).convert("RGB")
    np.testing.assert_array_equal(np.asarray(adjust_hue(image, factor)), np.asarray(expected))
    # the device formula turns hue the same way, up to PIL's 8-bit HSV
    assert np.abs(np.asarray(adjust_hue(image, factor)) - _device("hue", _image(1), factor)).mean() < 3
    with pytest.raises(ValueError, match="not in"):
        adjust_hue(image, 0.6)


def test_resized_crop_params_fall_back_to_the_ratio_crop_and_stay_inside():
    from vgjax.data.augment.host import resized_crop_params
    rng = np.random.default_rng(0)
    assert resized_crop_params(rng, 60, 80, (1.0, 1.0)) == (0, 0, 60, 80)  # in ratio: whole
    assert resized_crop_params(rng, 60, 200, (1.0, 1.0)) == (0, 60, 60, 80)  # too wide
    assert resized_crop_params(rng, 200, 60, (1.0, 1.0)) == (60, 0, 80, 60)  # too tall
    for _ in range(200):
        top, left, h, w = resized_crop_params(rng, 60, 80, (0.5, 1.0))
        assert 0 <= top <= 60 - h and 0 <= left <= 80 - w
        assert 0.5 * 4800 - 200 <= h * w <= 4800
        assert 3 / 4 - 0.05 <= w / h <= 4 / 3 + 0.05


def test_geometric_ops_on_known_points():
    from vgjax.data.augment.host import (HOST_OPS, perspective_coeffs, perspective_params)
    rng = np.random.default_rng(0)
    square = Image.fromarray(_image(2, (24, 24)))
    img = np.asarray(square)
    # RandomRotation: counter-clockwise; 90 degrees on a square is an exact turn
    turned = np.asarray(HOST_OPS["rotation"](square, rng, (24, 24), 90.0, 90.0))
    np.testing.assert_array_equal(turned, np.rot90(img))
    np.testing.assert_array_equal(
        np.asarray(HOST_OPS["rotation"](square, rng, (24, 24), 0.0, 0.0)), img)
    # zero distortion: the corners stay; the transform is the identity, up to the grey
    # level PIL's bilinear sampling loses on coefficients a rounding error off 1 and 0
    start, end = perspective_params(rng, 24, 24, 0.0)
    assert start == end == [[0, 0], [23, 0], [23, 23], [0, 23]]
    same = np.asarray(HOST_OPS["perspective"](square, rng, (24, 24), 0.0, 1.0))
    assert np.abs(same.astype(int) - img).max() <= 1
    # the coefficients map each end point onto its start point
    start, end = perspective_params(rng, 60, 80, 0.5)
    a, b, c, d, e, f, g, h = perspective_coeffs(start, end)
    for (x, y), (u, v) in zip(end, start):
        den = g * x + h * y + 1
        assert math.isclose((a * x + b * y + c) / den, u, abs_tol=1e-6)
        assert math.isclose((d * x + e * y + f) / den, v, abs_tol=1e-6)
    # resized_crop brings the full-size image to the model size
    full = Image.fromarray(_image(3, (60, 80)))
    assert np.asarray(HOST_OPS["resized_crop"](full, rng, (48, 64), 0.3)).shape == (48, 64, 3)
    flipped = np.asarray(HOST_OPS["hflip"](full, rng, (48, 64), 1.0, True))
    np.testing.assert_array_equal(flipped, np.asarray(full)[:, ::-1])


def test_specs_split_into_host_ops_and_whole_batch_ones():
    from vgjax.config import ConfigError
    from vgjax.data.augment.host import split_specs
    host, device = split_specs(["brightness(0.2)", "hflip", "hflip(per_query=True)",
                                "resized_crop(0.1)", "colour_jitter(hue=0.1)"])
    assert [name for name, _ in host] == ["brightness", "hflip", "resized_crop", "colour_jitter"]
    assert host[0][1] == (0.2, 0.2, 1.0) and host[2][1] == (0.1,)
    assert device == ["hflip"]
    with pytest.raises(ConfigError, match="train.query_augment"):
        split_specs(["brightness(-1)"])


def test_host_augment_is_keyed_and_finishes_at_the_model_size(tmp_path):
    from vgjax.data.ops import train_query
    from vgjax.data.pipeline import load_image
    from vgjax.data.augment.host import HostQueryAugment
    path = tmp_path / "q.png"
    full = _image(4, (60, 90))  # out of ratio: the finish crops it
    Image.fromarray(full).save(path)
    calls = []

    def finish(image, size):
        calls.append(image.shape)
        return train_query(image, size)

    identity = HostQueryAugment(["brightness(1.0)"], (48, 64), 0, load_image, finish)
    np.testing.assert_array_equal(identity(str(path), 0, 0), train_query(full, (48, 64)))
    assert calls == [(60, 90, 3)]

    jitter = HostQueryAugment(["colour_jitter(brightness=0.5, hue=0.2)"], (48, 64), 7,
                              load_image, finish)
    a, b = jitter(str(path), 3, 1), jitter(str(path), 3, 1)
    np.testing.assert_array_equal(a, b)  # the same step and place draw the same
    assert not np.array_equal(a, jitter(str(path), 3, 2))
    assert not np.array_equal(a, jitter(str(path), 4, 1))

    calls.clear()
    crop = HostQueryAugment(["resized_crop(0.2)"], (48, 64), 0, load_image, finish)
    assert crop(str(path), 0, 0).shape == (48, 64, 3) and calls == []  # already model-sized

    # the reference's order: darkened at full size, then resized; both linear, so within
    # the two roundings (PIL's blend truncates, its resize rounds) of darkening the resized
    # query
    dark = HostQueryAugment(["brightness(0.3)"], (48, 64), 0, load_image, train_query)
    plain = train_query(full, (48, 64)).astype(np.float32)
    assert np.abs(dark(str(path), 0, 0) - 0.3 * plain).max() <= 2


def test_batch_places_load_queries_through_the_host_augment():
    from types import SimpleNamespace
    from vgjax.train.rounds import _load_augmented
    seen = []
    ctx = SimpleNamespace(size=(4, 4), reader=lambda path, size: ("plain", path),
                          host_augment=lambda path, step, index: seen.append(
                              (path, step, index)) or ("augmented", path))
    paths = np.array([f"p{i}" for i in range(12)])  # 2 steps of 2 groups of 3
    out = [_load_augmented(ctx, paths, 3, 6, 10, place) for place in range(12)]
    assert [kind for kind, _ in out] == ["augmented", "plain", "plain"] * 4
    assert seen == [("p0", 10, 0), ("p3", 10, 1), ("p6", 11, 0), ("p9", 11, 1)]


def _config(root, *extra):
    from vgjax.cli.config import load_config
    return load_config(REPO / "configs" / "smoke.py", [
        f"data.root={root}", "data.test_datasets=[pitts30k]", "train.queries_per_epoch=8",
        "train.epochs=1", "test.save_predictions=false", *extra])


def test_training_with_host_augment_darkens_only_the_queries(tiny_city, tmp_path, monkeypatch):
    from vgjax.train import loop
    real = loop.make_train_step
    batches = []

    def recording(*args, **kwargs):
        step = real(*args, **kwargs)

        def wrapped(state, images, *rest):
            batches.append(np.asarray(images))
            return step(state, images, *rest)
        return wrapped

    monkeypatch.setattr(loop, "make_train_step", recording)
    loop.train_and_evaluate(_config(tiny_city), tmp_path / "plain")
    plain = batches[0]
    batches.clear()
    loop.train_and_evaluate(_config(tiny_city, "train.augment_on=host",
                                    "train.query_augment=[brightness(0.2)]"),
                            tmp_path / "host")
    host = batches[0]
    # the first batch: the same groups (same seed, same untrained model mined them)
    group = 2 + 3
    queries = np.arange(len(plain)) % group == 0
    np.testing.assert_array_equal(host[~queries], plain[~queries])
    assert np.abs(host[queries] - 0.2 * plain[queries].astype(np.float32)).max() <= 2
    assert host[queries].mean() < 0.3 * plain[queries].mean()
    records = [json.loads(l) for l in (tmp_path / "host" / "metrics.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r["loss"]) for r in records if r["type"] == "step")
    config = json.loads((tmp_path / "host" / "config.json").read_text())
    assert config["train"]["augment_on"] == "host"


def test_host_augment_with_a_device_cache_is_refused(tiny_city):
    from vgjax.train.settings import validate_training
    from vgjax.config import ConfigError
    with pytest.raises(ConfigError, match="train.augment_on: host .*data.cache_decoded=host or none"):
        validate_training(_config(tiny_city, "train.augment_on=host", "data.cache_decoded=device"))
    with pytest.raises(ConfigError, match="train.augment_on: unknown value 'gpu'"):
        validate_training(_config(tiny_city, "train.augment_on=gpu"))


@pytest.mark.parametrize("on", ["device", "host"])
def test_augment_preview_draws_on_the_device_or_the_host(tmp_path, on, capsys):
    import importlib.util
    spec = importlib.util.spec_from_file_location("augment_preview",
                                                  REPO / "scripts" / "augment_preview.py")
    preview = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(preview)
    Image.fromarray(_image(5, (60, 80))).save(tmp_path / "q.png")
    out = tmp_path / f"{on}.png"
    assert preview.main(["--image", str(tmp_path / "q.png"), "--size", "48", "64", "--on", on,
                         "--augment", "brightness(0.2)", "hflip(p=1.0)", "--out", str(out)]) == 0
    assert f"48x64, on the {on}, panels: original, brightness(0.2), hflip(p=1.0)" in \
        capsys.readouterr().out
    assert Image.open(out).size[0] > Image.open(out).size[1] > 0
