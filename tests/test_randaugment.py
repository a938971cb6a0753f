"""randaugment: torchvision's RandAugment on PIL semantics, on the device. Each op against
PIL itself (the calls torchvision's `_apply_op` makes on PIL images), the magnitude table
against torchvision's formulas, the draws, and the argument checks."""
import functools
import math

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

HW = (24, 32)       # 768 pixels: enough for a non-trivial PIL equalize (step >= 1)
BINS, MAGNITUDE = 31, 20
OPS = ("Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness",
       "Color", "Contrast", "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize")
SIGNED = {"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color",
          "Contrast", "Sharpness"}
GEOMETRIC = {"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"}


def _image(seed=0, hw=HW):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:hw[0], :hw[1]]
    base = np.stack([x * 6, y * 9, (x + y) * 4], -1) % 180 + 30
    return np.clip(base + rng.integers(-30, 30, (*hw, 3)), 0, 255).astype(np.uint8)


# torchvision's formulas, written out here ----------------------------------------------------

def _torch_space(num_bins, height, width):
    """torchvision (>= 0.15) RandAugment._augmentation_space."""
    torch = pytest.importorskip("torch")
    return {
        "Identity": (torch.tensor(0.0), False),
        "ShearX": (torch.linspace(0.0, 0.3, num_bins), True),
        "ShearY": (torch.linspace(0.0, 0.3, num_bins), True),
        "TranslateX": (torch.linspace(0.0, 150.0 / 331.0 * width, num_bins), True),
        "TranslateY": (torch.linspace(0.0, 150.0 / 331.0 * height, num_bins), True),
        "Rotate": (torch.linspace(0.0, 30.0, num_bins), True),
        "Brightness": (torch.linspace(0.0, 0.9, num_bins), True),
        "Color": (torch.linspace(0.0, 0.9, num_bins), True),
        "Contrast": (torch.linspace(0.0, 0.9, num_bins), True),
        "Sharpness": (torch.linspace(0.0, 0.9, num_bins), True),
        "Posterize": (8 - (torch.arange(num_bins) / ((num_bins - 1) / 4)).round().int(), False),
        "Solarize": (torch.linspace(1.0, 0.0, num_bins), False),
        "AutoContrast": (torch.tensor(0.0), False),
        "Equalize": (torch.tensor(0.0), False),
    }


def _tv_inverse_affine(center, angle, translate, scale, shear):
    """torchvision's _get_inverse_affine_matrix."""
    rot = math.radians(angle)
    sx, sy = math.radians(shear[0]), math.radians(shear[1])
    cx, cy = center
    tx, ty = translate
    a = math.cos(rot - sy) / math.cos(sy)
    b = -math.cos(rot - sy) * math.tan(sx) / math.cos(sy) - math.sin(rot)
    c = math.sin(rot - sy) / math.cos(sy)
    d = -math.sin(rot - sy) * math.tan(sx) / math.cos(sy) + math.cos(rot)
    m = [d / scale, -b / scale, 0.0, -c / scale, a / scale, 0.0]
    m[2] += m[0] * (-cx - tx) + m[1] * (-cy - ty)
    m[5] += m[3] * (-cx - tx) + m[4] * (-cy - ty)
    m[2] += cx
    m[5] += cy
    return m


def _tv_apply_op(img, name, magnitude, resample, fill=0):
    """torchvision's autoaugment._apply_op on a PIL image, through the PIL calls it makes."""
    w, h = img.size
    fillcolor = (fill,) * 3
    affine = functools.partial(img.transform, img.size, Image.Transform.AFFINE,
                               resample=resample, fillcolor=fillcolor)
    if name == "ShearX":
        return affine(_tv_inverse_affine([0, 0], 0.0, [0, 0], 1.0,
                                         [math.degrees(math.atan(magnitude)), 0.0]))
    if name == "ShearY":
        return affine(_tv_inverse_affine([0, 0], 0.0, [0, 0], 1.0,
                                         [0.0, math.degrees(math.atan(magnitude))]))
    if name == "TranslateX":
        return affine(_tv_inverse_affine([w * 0.5, h * 0.5], 0.0, [float(int(magnitude)), 0.0],
                                         1.0, [0.0, 0.0]))
    if name == "TranslateY":
        return affine(_tv_inverse_affine([w * 0.5, h * 0.5], 0.0, [0.0, float(int(magnitude))],
                                         1.0, [0.0, 0.0]))
    if name == "Rotate":
        return img.rotate(magnitude, resample, expand=False, fillcolor=fillcolor)
    if name in ("Brightness", "Color", "Contrast", "Sharpness"):
        return getattr(ImageEnhance, name)(img).enhance(1.0 + magnitude)
    if name == "Posterize":
        return ImageOps.posterize(img, int(magnitude))
    if name == "Solarize":
        return ImageOps.solarize(img, 255.0 * magnitude)
    if name == "AutoContrast":
        return ImageOps.autocontrast(img)
    if name == "Equalize":
        return ImageOps.equalize(img)
    return img


def _magnitude(name, negative, num_bins=BINS, magnitude=MAGNITUDE, hw=HW):
    """RandAugment.forward's magnitude for op `name`."""
    values, signed = _torch_space(num_bins, *hw)[name]
    m = float(values[magnitude].item()) if values.ndim > 0 else 0.0
    return -m if signed and negative else m


# The device ops, one compilation per interpolation ---------------------------------------------

@functools.lru_cache(maxsize=None)
def _device(interpolation):
    import jax
    from vgjax.data.augment.randaugment import apply_op, op_table
    table = op_table(BINS, MAGNITUDE, *HW)
    return jax.jit(lambda image, op, sign: apply_op(image, op, sign, table, interpolation))


def _run(image, name, negative, interpolation="nearest"):
    out = _device(interpolation)(image / np.float32(255), OPS.index(name), int(negative))
    return np.asarray(out) * 255


@pytest.mark.parametrize("name", OPS)
def test_each_op_is_torchvisions_pil_op(name):
    image = _image()
    resample = Image.Resampling.NEAREST
    for negative in ((False, True) if name in SIGNED else (False,)):
        m = _magnitude(name, negative)
        expected = np.asarray(_tv_apply_op(Image.fromarray(image), name, m, resample), np.float64)
        got = _run(image, name, negative)
        if name in GEOMETRIC:
            # nearest: the same pixel (float32 here, float64 in PIL: rare ties may differ)
            same = np.all(np.round(got) == expected, axis=-1)
            assert same.mean() >= 0.99, (name, negative, same.mean())
        else:
            # PIL truncates its blends to uint8; here they stay exact
            assert np.abs(got - expected).max() <= 1.01, (name, negative,
                                                          np.abs(got - expected).max())
        assert not (name != "Identity" and np.array_equal(expected, image)), \
            f"{name}: the reference does nothing at this magnitude: a weak test"


def test_geometric_ops_bilinear_are_pils_bilinear():
    image = _image(1)
    for name in sorted(GEOMETRIC):
        for negative in (False, True):
            expected = np.asarray(_tv_apply_op(Image.fromarray(image), name,
                                               _magnitude(name, negative),
                                               Image.Resampling.BILINEAR), np.float64)
            got = _run(image, name, negative, "bilinear")
            close = np.all(np.abs(got - expected) <= 1.01, axis=-1)  # PIL rounds to uint8
            assert close.mean() >= 0.99, (name, negative, close.mean())


def test_host_op_is_torchvisions_pil_op():
    from vgjax.data.augment.host import randaugment_op
    image = Image.fromarray(_image(2))
    for name in OPS:
        for negative in (False, True):
            m = _magnitude(name, negative)
            for interpolation, resample in (("nearest", Image.Resampling.NEAREST),
                                            ("bilinear", Image.Resampling.BILINEAR)):
                np.testing.assert_array_equal(
                    np.asarray(randaugment_op(image, name, m, interpolation)),
                    np.asarray(_tv_apply_op(image, name, m, resample)), err_msg=name)


@pytest.mark.parametrize("num_bins, magnitude, hw", [(31, 9, (320, 320)), (31, 20, HW),
                                                     (10, 9, (48, 64)), (2, 1, (7, 5))])
def test_magnitude_table_is_torchvisions(num_bins, magnitude, hw):
    from vgjax.data.augment.randaugment import (affine_matrix, augmentation_space, op_magnitude,
                                                op_table, pil_fixed)
    ours = augmentation_space(num_bins, *hw)
    theirs = _torch_space(num_bins, *hw)
    assert list(ours) == list(OPS) == list(theirs)
    for name in OPS:
        assert ours[name][1] == theirs[name][1], name
        np.testing.assert_array_equal(np.asarray(ours[name][0]), theirs[name][0].numpy(),
                                      err_msg=name)
    matrix, fixed, factor, level = op_table(num_bins, magnitude, *hw)
    for i, name in enumerate(OPS):
        for s in (0, 1):
            m = _magnitude(name, bool(s), num_bins, magnitude, hw)
            assert op_magnitude(ours, name, magnitude, bool(s)) == m
            if name in GEOMETRIC:
                np.testing.assert_allclose(matrix[i, s], affine_matrix(name, m, *hw), atol=1e-5)
                np.testing.assert_array_equal(fixed[i, s], pil_fixed(affine_matrix(name, m, *hw)))
            if name in ("Brightness", "Color", "Contrast", "Sharpness"):
                assert factor[i, s] == np.float32(1.0 + m)
    assert level[OPS.index("Posterize")] == int(_magnitude("Posterize", False, num_bins,
                                                           magnitude, hw))
    threshold = 255.0 * _magnitude("Solarize", False, num_bins, magnitude, hw)
    first = level[OPS.index("Solarize")]       # the first level PIL's solarize inverts
    assert (first - 1 < threshold or first == 0) and first >= threshold


def test_draws_are_uniform_with_replacement_and_signs_even():
    import jax
    from vgjax.data.augment.randaugment import randaugment_draws
    keys = jax.random.split(jax.random.PRNGKey(0), 1000)
    ops, signs = jax.vmap(lambda k: randaugment_draws(k, 3))(keys)
    ops, signs = np.asarray(ops), np.asarray(signs)
    assert ops.shape == signs.shape == (1000, 3)
    counts = np.bincount(ops.ravel(), minlength=14)
    assert counts.size == 14 and counts.min() > 3000 / 14 * 0.7, counts
    assert 0.45 < signs.mean() < 0.55
    assert np.any(ops[:, 0] == ops[:, 1])          # with replacement


def test_randaugment_applies_the_drawn_ops_in_order_and_is_keyed():
    import jax
    from vgjax.data.augment import make_query_augment
    from vgjax.data.augment.randaugment import randaugment_draws
    images = np.stack([_image(3), _image(4)])
    augment = jax.jit(make_query_augment(
        [f"randaugment(num_ops=2, magnitude={MAGNITUDE})"], group_size=1))
    key = jax.random.PRNGKey(7)
    out = np.asarray(augment(images, key))
    assert out.shape == images.shape and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0
    np.testing.assert_array_equal(out, np.asarray(augment(images, key)))
    others = [np.asarray(augment(images, jax.random.PRNGKey(k))) for k in range(3)]
    assert any(not np.array_equal(out, o) for o in others)
    # make_query_augment: op 0 with fold_in(key, 0), one key per query
    keys = jax.random.split(jax.random.fold_in(key, 0), 2)
    for q in range(2):
        ops, signs = randaugment_draws(keys[q], 2)
        x = images[q].astype(np.float32)
        for op, sign in zip(np.asarray(ops), np.asarray(signs)):
            x = _device("nearest")(x / 255, int(op), int(sign)) * 255
        np.testing.assert_allclose(out[q] * 255, np.asarray(x), atol=1e-3)


def test_host_randaugment_is_seeded_and_keeps_the_size():
    from vgjax.data.augment.host import HOST_OPS, split_specs
    host, device = split_specs(["randaugment(num_ops=3, interpolation='bilinear')"])
    assert device == [] and host == [("randaugment", (3, 9, 31, "bilinear", 0.0))]
    image = Image.fromarray(_image(5))
    run = lambda seed: np.asarray(HOST_OPS["randaugment"](
        image, np.random.default_rng(seed), HW, *host[0][1]))
    assert run(0).shape == (*HW, 3)
    np.testing.assert_array_equal(run(0), run(0))
    assert any(not np.array_equal(run(0), run(s)) for s in range(1, 4))


@pytest.mark.parametrize("spec, message", [
    ("randaugment(num_ops=-1)", "num_ops must be >= 0"),
    ("randaugment(num_ops=1.5)", "num_ops must be an integer"),
    ("randaugment(num_ops=True)", "num_ops must be an integer"),
    ("randaugment(magnitude=31)", "magnitude must be < num_magnitude_bins"),
    ("randaugment(magnitude=-1)", "magnitude must be >= 0"),
    ("randaugment(num_magnitude_bins=1, magnitude=0)", "num_magnitude_bins must be >= 2"),
    ("randaugment(interpolation='bicubic')", "interpolation must be one of"),
    ("randaugment(fill=1.5)", r"fill must be a number in \[0, 1\]"),
    ("randaugment(fill='x')", r"fill must be a number in \[0, 1\]"),
    ("randaugment(ops=3)", "ops"),
])
def test_bad_arguments_are_config_errors(spec, message):
    from vgjax.config import ConfigError
    from vgjax.data.augment import check_specs
    with pytest.raises(ConfigError, match=message):
        check_specs([spec])


def test_good_specs_pass():
    from vgjax.data.augment import check_specs
    assert [s.name for s in check_specs(["randaugment", "randaugment(num_ops=3, "
                                         "interpolation='bilinear', fill=0.5)"])] == \
        ["randaugment", "randaugment"]
