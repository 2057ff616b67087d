"""PairedAugment: identical geometry for IR and VIS (pixel-exact), boxes follow, padding, seeding."""

from __future__ import annotations

import numpy as np
import pytest

from data.transforms import PairedAugment


def _pair(h: int, w: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    ir = np.random.default_rng(seed).integers(1, 255, (h, w), dtype=np.uint8)
    vi = np.stack([ir, 255 - ir, np.roll(ir, 1, axis=1)], axis=-1)  # VIS is a known function of IR
    return ir, vi


def _occurs_in(window: np.ndarray, image: np.ndarray) -> bool:
    h, w = window.shape
    return any(
        np.array_equal(image[y : y + h, x : x + w], window)
        for y in range(image.shape[0] - h + 1)
        for x in range(image.shape[1] - w + 1)
    )


def test_ir_and_vis_get_identical_geometry():
    ir, vi = _pair(30, 34)
    aug = PairedAugment(crop_size=21, seed=0)
    flips_seen = set()
    for _ in range(12):
        out = aug(ir, vi)
        assert out.ir.shape == (21, 21) and out.vi.shape == (21, 21, 3)
        np.testing.assert_array_equal(out.vi[..., 0], out.ir)
        np.testing.assert_array_equal(out.vi[..., 1], 255 - out.ir)
        # the crop is a true window of one of the four flipped versions of the source
        variants = {(fh, fv): ir[:: -1 if fv else 1, :: -1 if fh else 1] for fh in (0, 1) for fv in (0, 1)}
        matches = [k for k, v in variants.items() if _occurs_in(out.ir, v)]
        assert matches
        flips_seen.update(matches)
    assert len(flips_seen) == 4  # every flip combination was exercised


def test_boxes_follow_the_pixels():
    ir, vi = _pair(80, 90, seed=1)
    ir[20:45, 30:50] = 255  # object pixels carry a value found nowhere else
    vi = np.stack([ir, 255 - ir, ir], axis=-1)
    aug = PairedAugment(crop_size=61, seed=3)
    kept = 0
    for _ in range(20):
        out = aug(ir, vi, np.array([[30, 20, 50, 45]], np.float32), np.array([4]))
        ys, xs = np.nonzero(out.ir == 255)
        if len(out.boxes) == 0:
            assert len(ys) == 0
            continue
        kept += 1
        expected = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        # integer pixel edges shifted by an integer crop offset in float32 (exact below 2^24)
        np.testing.assert_allclose(out.boxes[0], expected, atol=1e-3)
        assert out.classes.tolist() == [4] and out.boxes.dtype == np.float32
    assert kept > 5


def test_smaller_images_are_zero_padded_to_the_crop():
    ir, vi = _pair(100, 120, seed=2)
    out = PairedAugment(seed=0)(
        ir, vi, np.array([[10, 10, 30, 40]]), np.array([1])
    )  # default crop 229 = 12*19+1
    assert out.ir.shape == (229, 229) and out.vi.shape == (229, 229, 3)
    assert np.count_nonzero(out.ir) == ir.size  # source has no zeros: everything else is padding
    np.testing.assert_array_equal(out.vi[..., 0], out.ir)
    w, h = out.boxes[0, 2] - out.boxes[0, 0], out.boxes[0, 3] - out.boxes[0, 1]
    assert (w, h) == pytest.approx((20, 30), abs=1e-3)  # integer offsets in float32: exact


def test_seed_reproducible_and_input_checks():
    ir, vi = _pair(50, 50, seed=4)
    aug1, aug2 = PairedAugment(crop_size=25, seed=9), PairedAugment(crop_size=25, seed=9)
    outs = [aug1(ir, vi).ir for _ in range(5)]
    for out in outs:
        np.testing.assert_array_equal(out, aug2(ir, vi).ir)
    assert any(not np.array_equal(outs[0], o) for o in outs[1:])  # the draws do vary within a sequence
    with pytest.raises(ValueError, match="same height and width"):
        PairedAugment()(ir, vi[:40])
    with pytest.raises(ValueError, match="class ids"):
        PairedAugment()(ir, vi, np.zeros((2, 4)), np.zeros(1))
