"""data.color and data.io: BT.601 conversions, image reading conventions, atomic writes."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from data.classes import M3FD_CLASSES, class_id
from data.color import rgb_to_ycbcr, to_gray, ycbcr_to_rgb
from data.io import ImageReadError, image_size, read_image, write_png_atomic, write_text_atomic


def test_ycbcr_matches_bt601_full_range_definition():
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [128, 128, 128]]], np.uint8)
    y, cb, cr = rgb_to_ycbcr(rgb)
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    # float64 products of exact uint8 values, stored as float32: <= 255 * 2^-24 = 1.5e-5 off
    np.testing.assert_allclose(y, 0.299 * r + 0.587 * g + 0.114 * b, atol=1e-4)
    np.testing.assert_allclose(cb, np.clip(128 - 0.168736 * r - 0.331264 * g + 0.5 * b, 0, 255), atol=1e-4)
    np.testing.assert_allclose(cr, np.clip(128 + 0.5 * r - 0.418688 * g - 0.081312 * b, 0, 255), atol=1e-4)
    assert y.dtype == cb.dtype == cr.dtype == np.float32
    assert cb[0, 3] == pytest.approx(128) and cr[0, 3] == pytest.approx(128)  # gray has no chroma


def test_ycbcr_round_trip_is_exact_on_random_colors():
    rgb = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    back = ycbcr_to_rgb(*rgb_to_ycbcr(rgb))
    assert back.dtype == np.uint8 and back.shape == rgb.shape
    # clipping Cb/Cr at 255 can move saturated colors by one level at most
    assert np.abs(back.astype(int) - rgb).max() <= 1
    assert (back == rgb).mean() > 0.99


def test_to_gray():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    np.testing.assert_array_equal(to_gray(gray), gray.astype(np.float32))
    rgb = np.stack([gray] * 3, -1)
    np.testing.assert_allclose(
        to_gray(rgb), gray, atol=1e-3
    )  # Y row sums to 1 (+-1 u64), stored float32: < 1e-5


def test_class_ids_are_frozen_by_name():
    assert M3FD_CLASSES == ("People", "Car", "Bus", "Motorcycle", "Lamp", "Truck")
    assert class_id("Lamp") == 4
    with pytest.raises(KeyError, match="unknown class name 'Pedestrian'"):
        class_id("Pedestrian")


def test_read_gray_stored_as_rgb(tmp_path):
    gray = np.random.default_rng(1).integers(0, 256, (20, 30), dtype=np.uint8)
    Image.fromarray(np.stack([gray] * 3, -1)).save(tmp_path / "g.png")
    np.testing.assert_array_equal(read_image(tmp_path / "g.png", "gray"), gray)
    np.testing.assert_array_equal(read_image(tmp_path / "g.png", "unchanged"), gray)
    assert read_image(tmp_path / "g.png", "rgb").shape == (20, 30, 3)


def test_read_color_modes(tmp_path):
    rgb = np.random.default_rng(2).integers(0, 256, (10, 12, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "c.bmp")
    np.testing.assert_array_equal(read_image(tmp_path / "c.bmp", "unchanged"), rgb)
    np.testing.assert_array_equal(read_image(tmp_path / "c.bmp", "rgb"), rgb)
    expected = np.clip(np.rint(rgb_to_ycbcr(rgb)[0]), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(read_image(tmp_path / "c.bmp", "gray"), expected)
    Image.fromarray(np.dstack([rgb, np.full((10, 12), 255, np.uint8)])).save(tmp_path / "a.png")  # RGBA
    np.testing.assert_array_equal(read_image(tmp_path / "a.png", "rgb"), rgb)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_read_16bit_ir_is_min_max_stretched(tmp_path, suffix):
    # a radiometric frame occupying a narrow band of the 16-bit range
    raw = np.linspace(7000, 9000, 40 * 50).reshape(40, 50).astype(np.uint16)
    Image.fromarray(raw).save(tmp_path / f"ir{suffix}")
    out = read_image(tmp_path / f"ir{suffix}", "gray")
    assert out.dtype == np.uint8 and out.min() == 0 and out.max() == 255
    np.testing.assert_array_equal(out, np.rint((raw - 7000.0) * 255 / 2000).astype(np.uint8))


def test_read_errors_name_the_file(tmp_path):
    with pytest.raises(ImageReadError, match="missing.png.*does not exist"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "junk.png").write_bytes(b"not an image at all")
    with pytest.raises(ImageReadError, match="junk.png.*unreadable or corrupt"):
        read_image(tmp_path / "junk.png")
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (64, 64), dtype=np.uint8)).save(
        tmp_path / "t.png"
    )
    data = (tmp_path / "t.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(ImageReadError, match="t.png"):
        read_image(tmp_path / "t.png")
    with pytest.raises(ImageReadError, match="junk.png"):
        image_size(tmp_path / "junk.png")


def test_atomic_writes_leave_only_the_target(tmp_path):
    img = np.random.default_rng(4).integers(0, 256, (8, 9, 3), dtype=np.uint8)
    write_png_atomic(tmp_path / "sub" / "x.png", img)
    write_text_atomic(tmp_path / "sub" / "x.txt", "hello\n")
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["x.png", "x.txt"]
    np.testing.assert_array_equal(read_image(tmp_path / "sub" / "x.png", "rgb"), img)
    assert image_size(tmp_path / "sub" / "x.png") == (9, 8)
    with pytest.raises(ValueError, match="expected uint8"):
        write_png_atomic(tmp_path / "bad.png", img.astype(np.float32))
    assert not (tmp_path / "bad.png").exists()
