"""Training-query augmentations against torchvision's formulas.

torchvision is not installed, so the reference side is written here with plain torch tensor
ops (CHW float images), following torchvision's `transforms/_functional_tensor.py` as
documented: `_blend`, `rgb_to_grayscale`, `adjust_brightness`, `adjust_contrast`,
`adjust_saturation`, `adjust_hue` with `_rgb2hsv` / `_hsv2rgb`, `rotate` (the inverse affine
matrix of `functional._get_inverse_affine_matrix` and `_gen_affine_grid`), `perspective`
(`functional._get_perspective_coeffs`' least squares, `_perspective_grid`, the fill mask of
`_apply_grid_transform`) and `resized_crop` (crop + `interpolate(bilinear, antialias=True)`).
"""
import inspect
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vgjax.config import ConfigError
from vgjax.data import augment as A

H, W = 24, 32


def _sample_image(seed=0, size=(H, W)):
    """Random uint8 pixels with saturated primaries/secondaries and greys planted in row 0."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    planted = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255),
               (255, 0, 255), (128, 128, 128), (0, 0, 0), (255, 255, 255), (200, 10, 10),
               (10, 200, 10), (10, 10, 200), (60, 60, 61)]
    img[0, :len(planted)] = planted
    return img.astype(np.float32) / np.float32(255)


def _chw(img):
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)


def _hwc(t):
    return t.permute(1, 2, 0).numpy()


# The reference (torch, CHW) -------------------------------------------------------------------

def t_blend(img1, img2, ratio):
    return (ratio * img1 + (1.0 - ratio) * img2).clamp(0, 1)


def t_gray(img):
    r, g, b = img.unbind(-3)
    return (0.2989 * r + 0.587 * g + 0.114 * b).unsqueeze(-3)


def t_brightness(img, f):
    return t_blend(img, torch.zeros_like(img), f)


def t_contrast(img, f):
    return t_blend(img, t_gray(img).mean(dim=(-3, -2, -1), keepdim=True), f)


def t_saturation(img, f):
    return t_blend(img, t_gray(img), f)


def t_rgb2hsv(img):
    r, g, b = img.unbind(-3)
    maxc, minc = img.max(dim=-3).values, img.min(dim=-3).values
    eqc = maxc == minc
    cr = maxc - minc
    ones = torch.ones_like(maxc)
    s = cr / torch.where(eqc, ones, maxc)
    div = torch.where(eqc, ones, cr)
    rc, gc, bc = (maxc - r) / div, (maxc - g) / div, (maxc - b) / div
    h = ((maxc == r) * (bc - gc) + ((maxc == g) & (maxc != r)) * (2.0 + rc - bc)
         + ((maxc != g) & (maxc != r)) * (4.0 + gc - rc))
    return torch.stack([torch.fmod(h / 6.0 + 1.0, 1.0), s, maxc], dim=-3)


def t_hsv2rgb(hsv):
    h, s, v = hsv.unbind(-3)
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    i = i.to(torch.int32) % 6
    p = (v * (1.0 - s)).clamp(0, 1)
    q = (v * (1.0 - s * f)).clamp(0, 1)
    t = (v * (1.0 - s * (1.0 - f))).clamp(0, 1)
    mask = (i.unsqueeze(-3) == torch.arange(6).view(-1, 1, 1)).to(hsv.dtype)
    table = torch.stack([torch.stack(c, dim=-3) for c in
                         ((v, q, p, p, t, v), (t, v, v, q, p, p), (p, p, t, v, v, q))], dim=-4)
    return torch.einsum("...ijk,...xijk->...xjk", mask, table)


def t_hue(img, f):
    h, s, v = t_rgb2hsv(img).unbind(-3)
    return t_hsv2rgb(torch.stack([(h + f) % 1.0, s, v], dim=-3))


T_JITTER = (t_brightness, t_contrast, t_saturation, t_hue)


def t_rotate(img, angle):
    """torchvision F.rotate on a tensor: nearest, no expand, fill 0."""
    _, h, w = img.shape
    rot = math.radians(-angle)             # F.rotate passes -angle to the inverse matrix
    a, b, c, d = math.cos(rot), -math.sin(rot), math.sin(rot), math.cos(rot)
    theta = torch.tensor([[d, -b, 0.0], [-c, a, 0.0]], dtype=torch.float32)[None]
    base = torch.empty(1, h, w, 3)
    base[..., 0] = torch.linspace(-w * 0.5 + 0.5, w * 0.5 - 0.5, w)
    base[..., 1] = torch.linspace(-h * 0.5 + 0.5, h * 0.5 - 0.5, h)[:, None]
    base[..., 2] = 1.0
    grid = base.view(1, h * w, 3).bmm(theta.transpose(1, 2) / torch.tensor([0.5 * w, 0.5 * h]))
    out = F.grid_sample(img[None], grid.view(1, h, w, 2), mode="nearest",
                        padding_mode="zeros", align_corners=False)
    return out[0]


def t_perspective_coeffs(start, end):
    a = torch.zeros(8, 8, dtype=torch.float64)
    for i, (p1, p2) in enumerate(zip(end, start)):
        a[2 * i] = torch.tensor([p1[0], p1[1], 1, 0, 0, 0, -p2[0] * p1[0], -p2[0] * p1[1]])
        a[2 * i + 1] = torch.tensor([0, 0, 0, p1[0], p1[1], 1, -p2[1] * p1[0], -p2[1] * p1[1]])
    b = torch.tensor(start, dtype=torch.float64).view(8)
    return torch.linalg.lstsq(a, b, driver="gels").solution.to(torch.float32)


def t_perspective(img, coeffs):
    """torchvision F.perspective on a tensor: bilinear, fill [0, 0, 0] (mask multiplied)."""
    _, h, w = img.shape
    c = coeffs.tolist()
    theta1 = torch.tensor([[[c[0], c[1], c[2]], [c[3], c[4], c[5]]]])
    theta2 = torch.tensor([[[c[6], c[7], 1.0], [c[6], c[7], 1.0]]])
    base = torch.empty(1, h, w, 3)
    base[..., 0] = torch.linspace(0.5, w - 0.5, w)
    base[..., 1] = torch.linspace(0.5, h - 0.5, h)[:, None]
    base[..., 2] = 1.0
    g1 = base.view(1, h * w, 3).bmm(theta1.transpose(1, 2) / torch.tensor([0.5 * w, 0.5 * h]))
    g2 = base.view(1, h * w, 3).bmm(theta2.transpose(1, 2))
    grid = (g1 / g2 - 1.0).view(1, h, w, 2)
    x = torch.cat([img, torch.ones(1, h, w)])[None]
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]
    return out[:3] * out[3:]


def t_resized_crop(img, top, left, h, w):
    crop = img[:, top:top + h, left:left + w][None]
    return F.interpolate(crop, size=img.shape[1:], mode="bilinear", align_corners=False,
                         antialias=True)[0]


# Colour ---------------------------------------------------------------------------------------

_colour_ops = jax.jit(lambda img, f: (A.adjust_brightness(img, f[0]),
                                      A.adjust_contrast(img, f[1]),
                                      A.adjust_saturation(img, f[2]),
                                      A.adjust_hue(img, f[3])))


@pytest.mark.parametrize("factors", [(0.3, 0.4, 0.0, 0.1), (1.5, 1.8, 2.5, -0.45),
                                     (1.0, 1.0, 1.0, 0.5), (0.05, 0.0, 0.6, -0.2)])
def test_colour_ops_match_torchvision(factors):
    img = _sample_image()
    got = _colour_ops(img, jnp.asarray(factors, jnp.float32))
    for fn, f, out in zip(T_JITTER, factors, got):
        want = _hwc(fn(_chw(img), f))
        np.testing.assert_allclose(np.asarray(out), want, atol=2e-6, err_msg=fn.__name__)
    # hue on saturated and grey pixels: greys stay grey, primaries rotate
    hue = np.asarray(got[3])[0]
    np.testing.assert_array_equal(hue[6:9], img[0, 6:9])


def test_hue_half_turn_swaps_to_complements():
    img = _sample_image()
    out = np.asarray(_colour_ops(img, jnp.asarray([1, 1, 1, 0.5], jnp.float32))[3])[0]
    np.testing.assert_allclose(out[:6], img[0, [4, 5, 3, 2, 0, 1]], atol=1e-6)


def test_brightness_fixed_factor_is_exact_product():
    img = _sample_image()
    run = jax.jit(lambda x, k: (A.brightness(x, k, 0.3), A.brightness(x, k, factor=1.5),
                                A.brightness(x, k, 0.3, p=0.0)))
    dark, bright, off = (np.asarray(o) for o in run(img, jax.random.key(0)))
    np.testing.assert_array_equal(dark, np.clip(img * np.float32(0.3), 0, 1))
    np.testing.assert_array_equal(bright, np.clip(img * np.float32(1.5), 0, 1))
    np.testing.assert_array_equal(off, img)


def test_colour_jitter_matches_reference_in_its_drawn_order():
    img = _sample_image()
    ranges = A.colour_jitter_ranges(0.4, 0.4, 0.4, 0.2)
    run = jax.jit(lambda x, k: (A.colour_jitter(x, k, 0.4, 0.4, 0.4, 0.2),
                                *A.colour_jitter_params(k, ranges)))
    orders = set()
    for seed in range(6):
        out, order, factors = run(img, jax.random.key(seed))
        order, factors = np.asarray(order).tolist(), np.asarray(factors).tolist()
        orders.add(tuple(order))
        assert sorted(order) == [0, 1, 2, 3]
        want = _chw(img)
        for i in order:
            want = T_JITTER[i](want, factors[i])
        np.testing.assert_allclose(np.asarray(out), _hwc(want), atol=1e-5)
    assert len(orders) > 1


def test_colour_jitter_factor_ranges_and_keys():
    grey = np.full((64, 2, 2, 3), 128, np.uint8)     # group_size 1: every row is a query
    aug = jax.jit(A.make_query_augment(["colour_jitter(brightness=0.4)"], 1))
    out = np.asarray(aug(grey, jax.random.key(0)))
    f = out[:, 0, 0, 0] / np.float32(128 / 255)
    assert f.min() >= 0.6 - 1e-6 and f.max() <= 1.4 + 1e-6
    assert f.max() - f.min() > 0.5                   # spread over the range
    np.testing.assert_array_equal(out, np.asarray(aug(grey, jax.random.key(0))))
    assert not np.array_equal(out, np.asarray(aug(grey, jax.random.key(1))))
    # hue only, on pure red (hue 0): shifts lie in [-0.2, 0.2]
    red = np.zeros((64, 1, 1, 3), np.uint8)
    red[..., 0] = 255
    hue = jax.jit(A.make_query_augment(["colour_jitter(hue=0.2)"], 1))
    shifted = np.asarray(hue(red, jax.random.key(2)))
    h = np.asarray(A.rgb_to_hsv(jnp.asarray(shifted)))[:, 0, 0, 0]
    h = np.where(h > 0.5, h - 1.0, h)
    assert np.abs(h).max() <= 0.2 + 1e-6 and h.min() < -0.1 and h.max() > 0.1
    # strength 0 = skipped: identity, bit for bit
    assert A.colour_jitter_ranges(0, 0, 0, 0) == (None, None, None, None)


# Geometry -------------------------------------------------------------------------------------

def test_rotate_matches_torchvision_and_turns_counter_clockwise():
    img = _sample_image()
    rot = jax.jit(A.rotate)
    for angle in (30.0, -12.5, 90.0):
        np.testing.assert_array_equal(np.asarray(rot(img, angle)),
                                      _hwc(t_rotate(_chw(img), angle)), err_msg=str(angle))
    marked = np.zeros((H, W, 3), np.float32)
    marked[2, 20] = 1.0                              # above and right of the centre
    op = jax.jit(lambda x, k: A.rotation(x, k, degrees=[90, 90]))
    out = np.asarray(op(marked, jax.random.key(0)))
    assert out.shape == (H, W, 3)
    # output (i, j) <- input (j - 4, 27 - i): (2, 20) lands at (7, 6), above and left
    assert out[7, 6, 0] == 1.0 and out.sum() == 3.0


def test_perspective_matches_torchvision():
    img = _sample_image()
    start = [[0, 0], [W - 1, 0], [W - 1, H - 1], [0, H - 1]]
    end = [[5, 2], [28, 4], [30, 20], [3, 23]]
    coeffs = A.perspective_coeffs(start, end)
    want = t_perspective_coeffs(start, end)
    np.testing.assert_allclose(np.asarray(coeffs), want.numpy(), rtol=1e-4, atol=1e-5)
    got = np.asarray(jax.jit(A.warp_perspective)(img, coeffs))
    np.testing.assert_allclose(got, _hwc(t_perspective(_chw(img), want)), atol=1e-4)
    # the corners' images: end points map to start points
    s = np.asarray(start, np.float64)
    e = np.asarray(end, np.float64)
    c = np.asarray(coeffs, np.float64)
    den = c[6] * e[:, 0] + c[7] * e[:, 1] + 1
    np.testing.assert_allclose((c[0] * e[:, 0] + c[1] * e[:, 1] + c[2]) / den, s[:, 0], atol=1e-3)
    np.testing.assert_allclose((c[3] * e[:, 0] + c[4] * e[:, 1] + c[5]) / den, s[:, 1], atol=1e-3)


def test_perspective_params_ranges_and_zero_distortion_identity():
    _, end = jax.jit(jax.vmap(lambda k: A.perspective_params(k, H, W, 0.5)))(
        jax.random.split(jax.random.key(0), 200))
    end = np.asarray(end)
    dx, dy = int(0.5 * (W // 2)), int(0.5 * (H // 2))
    assert end[:, [0, 3], 0].min() == 0 and end[:, [0, 3], 0].max() == dx
    assert end[:, [1, 2], 0].min() == W - dx - 1 and end[:, [1, 2], 0].max() == W - 1
    assert end[:, [0, 1], 1].min() == 0 and end[:, [0, 1], 1].max() == dy
    assert end[:, [2, 3], 1].min() == H - dy - 1 and end[:, [2, 3], 1].max() == H - 1
    img = _sample_image()
    out = jax.jit(lambda x, k: A.perspective(x, k, distortion_scale=0.0, p=1.0))(
        img, jax.random.key(3))
    np.testing.assert_allclose(np.asarray(out), img, atol=1e-5)


def test_resized_crop_matches_torch_and_r0_is_identity():
    img = _sample_image()
    crop = jax.jit(A.crop_resize)
    for box in ((3, 5, 13, 20), (0, 0, H, W), (10, 1, 7, 31)):
        np.testing.assert_allclose(np.asarray(crop(img, *box)),
                                   _hwc(t_resized_crop(_chw(img), *box)), atol=1e-5)
    square = _sample_image(size=(24, 24))
    op = jax.jit(lambda x, k: A.resized_crop(x, k, 0.0))
    for seed in range(3):
        np.testing.assert_array_equal(np.asarray(op(square, jax.random.key(seed))), square)
    params = jax.jit(jax.vmap(lambda k: A.resized_crop_params(k, H, W, (0.5, 1.0))))(
        jax.random.split(jax.random.key(1), 200))
    top, left, h, w = (np.asarray(p) for p in params)
    assert (h >= 1).all() and (w >= 1).all() and (top + h <= H).all() and (left + w <= W).all()
    area = h * w / (H * W)
    assert area.min() >= 0.5 - 0.1 and area.max() <= 1.0
    assert (w / h).min() >= 0.75 - 0.1 and (w / h).max() <= 4 / 3 + 0.1
    assert len(set(zip(top, left, h, w))) > 50


def _batch(seed=0, groups=2, negatives=3, size=(H, W)):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (groups * (2 + negatives), *size, 3), dtype=np.uint8)


def test_hflip_queries_only_or_whole_batch():
    images = _batch()
    base = images.astype(np.float32) / np.float32(255)
    q = np.arange(len(images)) % 5 == 0
    per_query = np.asarray(A.make_query_augment(["hflip(p=1, per_query=True)"], 5)(
        images, jax.random.key(0)))
    np.testing.assert_array_equal(per_query[q], base[q][:, :, ::-1])
    np.testing.assert_array_equal(per_query[~q], base[~q])
    whole = np.asarray(A.make_query_augment(["hflip(p=1)"], 5)(images, jax.random.key(0)))
    np.testing.assert_array_equal(whole, base[:, :, ::-1])


# The builder ----------------------------------------------------------------------------------

ALL = ["colour_jitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.1)",
       "perspective(0.5, p=1.0)", "resized_crop(0.4)", "rotation(10)",
       "brightness(low=0.5, high=1.5, p=0.5)", "hflip(per_query=True)"]


def test_builder_jits_keeps_other_rows_and_is_keyed():
    images = _batch()                                # (2 * (2 + 3), 24, 32, 3)
    aug = jax.jit(A.make_query_augment(ALL, group_size=5))
    out = np.asarray(aug(images, jax.random.key(0)))
    assert out.shape == images.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    q = np.arange(len(images)) % 5 == 0
    plain = images.astype(np.float32) / np.float32(255)
    np.testing.assert_array_equal(out[~q], plain[~q])          # positives, negatives
    assert not np.allclose(out[q], plain[q], atol=0.05)
    np.testing.assert_array_equal(out, np.asarray(aug(images, jax.random.key(0))))
    assert not np.array_equal(out[q], np.asarray(aug(images, jax.random.key(1)))[q])
    # each query its own draw
    assert not np.array_equal(out[0], np.asarray(aug(images[[5, 6, 7, 8, 9, 0, 1, 2, 3, 4]],
                                                     jax.random.key(0)))[5])
    assert A.make_query_augment([], 5) is None


@pytest.mark.parametrize("spec", ["brightness(0.1, low=0.2)", "rotation(degrees=-1)", "blur(3)",
                                  "brightness", "brightness(low=0.2)", "colour_jitter(hue=0.6)",
                                  "colour_jitter(contrast=-1)", "perspective(1.5)",
                                  "perspective(p=2)", "resized_crop(1.0)", "resized_crop",
                                  "hflip(per_query='yes')", "rotation(degrees=[5, -5])",
                                  "brightness('a')", "hflip(q=1)"])
def test_bad_specs_refused_before_running(spec, monkeypatch):
    for name in A.AUGMENTATIONS.names():
        monkeypatch.setitem(A.AUGMENTATIONS._items, name, _Guard(A.AUGMENTATIONS.get(name)))
    with pytest.raises(ConfigError, match="train.query_augment"):
        A.check_specs(["hflip", spec])
    with pytest.raises(ConfigError, match="train.query_augment"):
        A.make_query_augment([spec], 5)


class _Guard:
    """An op with the real one's signature and checks that fails if it is ever run."""

    def __init__(self, fn):
        self.__signature__ = inspect.signature(fn)
        self.check_args, self.whole_batch = fn.check_args, fn.whole_batch

    def __call__(self, *args, **kwargs):
        raise AssertionError("an op ran while its spec was being checked")


def test_good_specs_parse():
    specs = A.check_specs(["brightness(0.1)", "brightness(1.5, p=0.5)", "hflip",
                           "colour_jitter(brightness=[0.5, 1.2], hue=0.5)", "rotation([-5, 10])"])
    assert [s.name for s in specs] == ["brightness", "brightness", "hflip", "colour_jitter",
                                       "rotation"]
    assert dict(specs[0].kwargs) == {"factor": 0.1}
