"""Classical baselines on the shared samples: shape, range, determinism, self-fusion, color policy."""

from __future__ import annotations

import numpy as np
import pytest

from data.color import rgb_to_ycbcr
from data.io import read_image
from fusion.baselines import BASELINES, fuse_baseline, laplacian_pyramid, reconstruct_laplacian


@pytest.fixture(scope="module")
def tno(shared_data):
    ir = read_image(shared_data / "samples" / "TNO" / "ir" / "01.png", "gray")[:200, :250]
    vi = read_image(shared_data / "samples" / "TNO" / "vi" / "01.png", "gray")[:200, :250]
    return ir.astype(np.float32) / 255, vi.astype(np.float32) / 255


@pytest.fixture(scope="module")
def roadscene(shared_data):
    folder = shared_data / "samples" / "RoadScene"
    name = sorted(p.name for p in (folder / "ir").iterdir())[0]
    return read_image(folder / "ir" / name, "gray"), read_image(folder / "vi" / name, "unchanged")


def test_names():
    assert list(BASELINES) == ["ir", "vi", "average", "max", "dwt", "laplacian", "gff", "msvd"]


@pytest.mark.parametrize("name", list(BASELINES))
def test_gray_contract(name, tno):
    ir, vi = tno
    out = BASELINES[name](ir, vi)
    assert out.dtype == np.float32 and out.shape == ir.shape
    assert out.min() >= 0.0 and out.max() <= 1.0
    np.testing.assert_array_equal(out, BASELINES[name](ir, vi))  # deterministic
    # fusing an image with itself: float64 inside (filters of values <= 1: ~1e-15), float32 out (2^-25)
    np.testing.assert_allclose(BASELINES[name](vi, vi), vi, atol=1e-6)
    odd = BASELINES[name](ir[:37, :51], vi[:37, :51])  # odd sides survive
    assert odd.shape == (37, 51)
    with pytest.raises(ValueError, match="one shape"):
        BASELINES[name](ir, vi[:-1])


def test_simple_rules(tno):
    ir, vi = tno
    np.testing.assert_array_equal(BASELINES["ir"](ir, vi), ir)
    # float64 mean, rounded to float32 (<= 2^-25 = 3e-8) vs the float32 mean (<= 2^-25): 6e-8 apart at most
    np.testing.assert_allclose(BASELINES["average"](ir, vi), (ir + vi) / 2, atol=1e-7)
    np.testing.assert_array_equal(BASELINES["max"](ir, vi), np.maximum(ir, vi))


def test_pyramid_is_exactly_invertible(tno):
    ir, _ = tno
    img = ir[:61, :77].astype(np.float64)
    np.testing.assert_allclose(reconstruct_laplacian(laplacian_pyramid(img)), img, atol=1e-12)


def test_multiscale_methods_keep_both_sources(tno):
    ir, vi = tno
    for name in ("dwt", "laplacian", "gff", "msvd"):
        out = BASELINES[name](ir, vi)
        assert np.abs(out - ir).mean() > 0.01 and np.abs(out - vi).mean() > 0.01, (
            name
        )  # not a copy of a source
    for name in ("dwt", "laplacian", "msvd"):  # low band averaged: the global mean is the average's
        assert abs(BASELINES[name](ir, vi).mean() - (ir.mean() + vi.mean()) / 2) < 0.02, name


def test_color_policy(roadscene):
    ir, vi = roadscene
    assert vi.ndim == 3
    for name in BASELINES:
        out = fuse_baseline(name, ir, vi)
        assert out.dtype == np.uint8 and out.shape == vi.shape
    # chroma comes from VIS: VI-only through the policy is VIS up to the YCbCr round trip
    assert np.abs(fuse_baseline("vi", ir, vi).astype(int) - vi).max() <= 2
    _, cb, cr = rgb_to_ycbcr(vi)
    _, cb_out, cr_out = rgb_to_ycbcr(fuse_baseline("average", ir, vi))
    assert np.median(np.abs(cb_out - cb)) <= 1 and np.median(np.abs(cr_out - cr)) <= 1
    gray = fuse_baseline("dwt", ir, ir)  # gray in -> gray out
    assert gray.ndim == 2 and np.abs(gray.astype(int) - ir).max() <= 1
    with pytest.raises(KeyError, match="unknown baseline"):
        fuse_baseline("nope", ir, vi)
