"""Every image mode decodes to the right 8-bit RGB pixels or is refused, naming the file."""
import io
import json
import struct
import warnings
import zlib

import numpy as np
import pytest
from conftest import write_dataset
from PIL import Image

from vgjax.data import pipeline as pl
from vgjax.data.format import make_filename
from vgjax.data.inspect import main as inspect_main
from vgjax.data.pipeline import (
    ImageError,
    UnsupportedImageError,
    decode_image_bytes,
    image_info,
    load_image,
)

RNG = np.random.default_rng(0)


def png16(values: np.ndarray) -> bytes:
    """A 16-bit PNG (grayscale (H, W), gray+alpha (H, W, 2), RGB (H, W, 3) or RGBA
    (H, W, 4)) written by hand: Pillow cannot write 16-bit colour PNGs."""
    h, w = values.shape[:2]
    channels = 1 if values.ndim == 2 else values.shape[2]
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    raw = b"".join(b"\x00" + values[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


def encoded(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def reference(data: bytes) -> np.ndarray:
    """What the reference benchmark does: PIL open + convert("RGB")."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def decode(data: bytes, size=None) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no Pillow warning on any supported mode
        out = decode_image_bytes(data, size, name="img.png")
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
    return out


def kind(data: bytes) -> str:
    return image_info(io.BytesIO(data)).kind


@pytest.mark.parametrize("mode", ["RGB", "L", "P", "1"])
def test_8bit_modes_as_the_reference(mode):
    rgb = Image.fromarray(RNG.integers(0, 256, (6, 7, 3), dtype=np.uint8))
    img = rgb.quantize(16) if mode == "P" else rgb.convert(mode)
    data = encoded(img, "PNG")
    np.testing.assert_array_equal(decode(data), reference(data))
    np.testing.assert_array_equal(decode(data, (3, 4)),
                                  np.asarray(Image.fromarray(reference(data))
                                             .resize((4, 3), Image.BILINEAR)))


def test_16bit_grayscale_high_byte_not_white():
    values = RNG.integers(0, 65536, (5, 6)).astype(np.uint16)
    data = encoded(Image.fromarray(values), "PNG")  # Pillow writes 16-bit grayscale PNGs
    assert (reference(data) == 255).all()  # what convert("RGB") makes of it
    out = decode(data)
    np.testing.assert_array_equal(out, np.repeat((values >> 8).astype(np.uint8)[..., None], 3, 2))
    assert kind(data) == "16-bit grayscale"
    # big-endian 16-bit (TIFF I;16B) reads the same
    big = Image.frombytes("I;16B", (6, 5), values.astype(">u2").tobytes())
    np.testing.assert_array_equal(decode(encoded(big, "TIFF")), out)


def test_mode_I_from_png_is_16bit_elsewhere_refused():
    values = RNG.integers(0, 65536, (4, 5)).astype(np.int32)
    img = Image.fromarray(values)  # what Pillow < 11 opens a 16-bit grayscale PNG as
    assert img.mode == "I"
    img.format = "PNG"
    out = np.asarray(pl._to_rgb(img, pl.source_kind(img, "x.png"), "x.png"))
    np.testing.assert_array_equal(out[..., 0], (values >> 8).astype(np.uint8))
    with pytest.raises(UnsupportedImageError, match=r"^img.png: unsupported image mode I "):
        decode(encoded(Image.fromarray(values), "TIFF"))


@pytest.mark.parametrize("channels", [3, 4, 2])
def test_16bit_color_png_high_byte(channels):
    values = RNG.integers(0, 65536, (5, 6, channels)).astype(np.uint16)
    data = png16(values)
    out = decode(data)
    colour = values[..., :3] if channels >= 3 else np.repeat(values[..., :1], 3, 2)
    np.testing.assert_array_equal(out, (colour >> 8).astype(np.uint8))
    assert np.abs(out.astype(int) - np.rint(colour / 257)).max() <= 1
    assert kind(data) == ("16-bit RGB" if channels == 3 else "16-bit with alpha")


def test_transparency_dropped_colour_kept_without_warning():
    rgb = RNG.integers(0, 256, (6, 7, 3), dtype=np.uint8)
    rgba = np.concatenate([rgb, np.zeros((6, 7, 1), np.uint8)], 2)  # fully transparent
    data = encoded(Image.fromarray(rgba), "PNG")
    np.testing.assert_array_equal(decode(data), rgb)
    la = encoded(Image.fromarray(rgba[..., :2].copy(), "LA"), "PNG")
    np.testing.assert_array_equal(decode(la), np.repeat(rgba[..., :1], 3, 2))
    palette = Image.fromarray(rgb).quantize(8)
    alpha = bytes([0, 128] + [255] * 6)  # transparency as bytes: convert("RGB") warns
    data = encoded(palette, "PNG", transparency=alpha)
    assert kind(data) == "palette with transparency"
    np.testing.assert_array_equal(decode(data), reference(data))
    gif = encoded(palette, "GIF", transparency=2)
    np.testing.assert_array_equal(decode(gif), reference(gif))


def test_cmyk_jpeg_not_inverted():
    src = np.zeros((32, 48, 3), np.uint8)
    src[:, :16], src[:, 16:32], src[:, 32:] = [200, 30, 30], [20, 180, 60], [240, 240, 240]
    data = encoded(Image.fromarray(src).convert("CMYK"), "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK" and kind(data) == "CMYK"
    assert np.abs(decode(data).astype(int) - src).max() <= 12


def test_exif_orientation_not_applied():
    arr = RNG.integers(0, 256, (8, 12, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[pl.EXIF_ORIENTATION] = 6  # "rotate 90° clockwise to display"
    data = encoded(Image.fromarray(arr), "JPEG", exif=exif, quality=95)
    out = decode(data)
    assert out.shape == (8, 12, 3)  # as stored, like the reference
    np.testing.assert_array_equal(out, reference(data))
    assert image_info(io.BytesIO(data)).exif_orientation == 6
    assert image_info(io.BytesIO(encoded(Image.fromarray(arr), "JPEG"))).exif_orientation == 1


def test_other_modes_converted():
    rgb = RNG.integers(0, 256, (6, 7, 3), dtype=np.uint8)
    ycc = encoded(Image.fromarray(rgb).convert("YCbCr"), "TIFF")
    assert kind(ycc) == "YCbCr"
    assert np.abs(decode(ycc).astype(int) - rgb).max() <= 3
    values = RNG.uniform(0, 255, (4, 5)).astype(np.float32)
    f = encoded(Image.fromarray(values, "F"), "TIFF")
    assert kind(f) == "32-bit float"
    np.testing.assert_array_equal(decode(f)[..., 0], values.astype(np.uint8))  # truncated


@pytest.mark.parametrize("values, why", [
    (np.array([[0, 300.0]], np.float32), r"outside \[0, 255\]"),
    (np.array([[-1, 20.0]], np.float32), r"outside \[0, 255\]"),
    (np.array([[0, np.nan]], np.float32), "NaN"),
    (np.array([[0, 0.5]], np.float32), r"\[0, 1\] scale"),
])
def test_float_out_of_range_refused(values, why):
    with pytest.raises(UnsupportedImageError, match=rf"^img.png: unsupported image mode F .*{why}"):
        decode(encoded(Image.fromarray(values, "F"), "TIFF"))


def test_lab_refused():
    lab = Image.new("LAB", (4, 3), (50, 20, 30))
    with pytest.raises(UnsupportedImageError, match="^img.png: unsupported image mode LAB"):
        decode(encoded(lab, "TIFF"))
    with pytest.raises(UnsupportedImageError, match="unsupported image mode LAB"):
        image_info(io.BytesIO(encoded(lab, "TIFF")))


def test_draft_only_when_asked(tmp_path):
    p = tmp_path / "big.jpg"
    yy, xx = np.mgrid[:240, :320]
    arr = np.stack([xx * 255 // 320, yy * 255 // 240, (xx * yy) % 256], -1).astype(np.uint8)
    Image.fromarray(arr).save(p, quality=90)
    full = np.asarray(Image.open(p).convert("RGB").resize((40, 30), Image.BILINEAR))
    np.testing.assert_array_equal(load_image(p, (30, 40)), full)
    with Image.open(p) as img:
        img.draft("RGB", (40, 30))
        drafted = np.asarray(img.convert("RGB").resize((40, 30), Image.BILINEAR))
    assert not np.array_equal(drafted, full)
    np.testing.assert_array_equal(load_image(p, (30, 40), draft=True), drafted)
    np.testing.assert_array_equal(decode_image_bytes(p.read_bytes(), (30, 40), draft=True),
                                  drafted)
    assert load_image(p, draft=True).shape == (240, 320, 3)  # no size: full decode


def test_decode_errors_still_name_the_file():
    with pytest.raises(ImageError, match="^img.png: cannot decode image"):
        decode(b"garbage")


def test_inspect_reports_conversions_orientation_and_unsupported(tmp_path, capsys):
    ds = write_dataset(tmp_path, splits=("test",), n_db=4, n_q=1)
    db = ds / "images" / "test" / "database"
    gray16 = Image.fromarray(RNG.integers(0, 65536, (24, 32)).astype(np.uint16))
    for i in range(3):
        gray16.save(db / make_filename(500000.0 + i, 4100000.0, ".png", pano_id=f"g{i}"))
    exif = Image.Exif()
    exif[pl.EXIF_ORIENTATION] = 8
    Image.new("RGB", (32, 24)).save(db / make_filename(500001.0, 4100000.0, ".jpg"), exif=exif)
    assert inspect_main([str(ds), "--verify-images", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["test"]
    assert report["source_modes"]["16-bit grayscale"] == 3
    assert report["conversions"]["16-bit grayscale"] == "converted to 8-bit RGB (value >> 8)"
    assert report["exif_orientations"] == {"8": 1}
    assert inspect_main([str(ds), "--verify-images"]) == 0
    out = capsys.readouterr().out
    assert "3 images are 16-bit grayscale: converted to 8-bit RGB" in out
    assert "1 image carries an EXIF orientation" in out

    bad = db / make_filename(500002.0, 4100000.0, ".png", pano_id="f")  # a TIFF by content
    Image.fromarray(np.array([[0, 1000.0]], np.float32), "F").save(bad, "TIFF")
    assert inspect_main([str(ds)]) == 0  # the header alone cannot tell
    capsys.readouterr()
    assert inspect_main([str(ds), "--verify-images"]) == 1
    err = capsys.readouterr().err
    assert "1 image(s) in an unsupported mode" in err and f"{bad}: unsupported image mode F" in err
