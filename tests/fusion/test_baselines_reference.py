"""Classical baselines against independent references (docs/metrics.md "Baselines against
independent references"): GFF against VIFB's own GFF outputs, the Laplacian pyramid against one
written here on OpenCV's pyrDown / pyrUp."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from data.io import read_image
from fusion.baselines import BASELINES, PYRAMID_LEVELS, fuse_laplacian, laplacian_pyramid
from fusion.metrics.core import ssim_gaussian

# The four 254x328 VIFB pairs where VIFB's GFF is far from ours (PSNR 19.8-22.0 dB, measured
# 2026-12-03): there VIFB's GFF takes much more IR detail than ours (detail correlation with IR
# 0.24-0.75 vs ours -0.06-0.39), and re-encoding the inputs as VIFB's run_GFF does changes nothing.
# Unexplained; recorded so a change in either direction is noticed (docs/metrics.md).
GFF_UNEXPLAINED = {"manWalking", "running", "walking2", "walkingnight"}


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / np.mean((a - b) ** 2)))


def test_gff_agrees_with_vifbs_gff_outputs(shared_data):
    """Luminance of our GFF vs VIFB's GFF JPEGs on VIFB's 21 pairs. Known differences (VIFB's GFF.m):
    VIFB fuses the RGB channels with weights from rgb2gray (Y of its output = GFF of the sources' Y,
    as the filters are linear, so we compare Y); it uses 'replicate' borders and He's guided filter
    with windows cut at the border (ours: 'reflect'), quantises the weight maps to 1/255, breaks
    saliency ties towards VIS (ours: IR), and stores its output as a quality-75 JPEG (a ~35-45 dB
    ceiling on any agreement). Measured on the other 17 pairs: PSNR 32.3-43.4 dB (45-px border left
    out: 36.7-54.7 dB), SSIM 0.968-0.997; our Laplacian and average fusions score 15-29 dB against
    the same JPEGs, so the bound below separates GFF from "any fusion"."""
    root = shared_data / "vifb"
    scores = {}
    for path in sorted((root / "input" / "IR").glob("*.jpg")):
        ir, vi = (read_image(root / "input" / side / path.name, "gray") / 255.0 for side in ("IR", "VI"))
        theirs = read_image(root / "fused" / f"{path.stem}_GFF.jpg", "gray").astype(np.float64)
        ours = BASELINES["gff"](ir, vi).astype(np.float64) * 255.0
        scores[path.stem] = (_psnr(ours, theirs), ssim_gaussian(ours, theirs))
    assert len(scores) == 21
    agreeing = {k: v for k, v in scores.items() if k not in GFF_UNEXPLAINED}
    assert all(psnr >= 30.0 and ssim >= 0.95 for psnr, ssim in agreeing.values()), agreeing
    assert all(scores[k][0] < 25.0 for k in GFF_UNEXPLAINED), {k: scores[k] for k in GFF_UNEXPLAINED}


# ---- Laplacian pyramid vs OpenCV ---------------------------------------------------------------
# OpenCV's pyrDown uses the same 5-tap binomial kernel; with BORDER_REFLECT it is our REDUCE exactly.
# pyrUp only has BORDER_REFLECT_101 and mirrors the coarse image before inserting zeros, while our
# EXPAND mirrors the zero-inserted image ('reflect'), which swaps the zero / sample phase at the
# border: the two EXPANDs differ on the outermost 2 pixels of each level (measured: distance 0 and 1
# only; beyond, 6.7e-16). A level-k difference reaches 2 * 2^k pixels at full resolution, so fused
# images are compared 2 * 2^PYRAMID_LEVELS = 32 pixels in from the border.
BORDER = 2 * 2**PYRAMID_LEVELS


def _cv_pyramid(img: np.ndarray) -> list[np.ndarray]:
    bands, current = [], img
    for _ in range(PYRAMID_LEVELS):
        smaller = cv2.pyrDown(current, borderType=cv2.BORDER_REFLECT)
        bands.append(current - cv2.pyrUp(smaller, dstsize=current.shape[::-1]))
        current = smaller
    return bands + [current]


def _cv_fuse_laplacian(ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
    """The same rule (max-abs bands, averaged residual) on the OpenCV pyramid, rebuilt with pyrUp."""
    a, b = _cv_pyramid(ir), _cv_pyramid(vi)
    img = (a[-1] + b[-1]) / 2
    for x, y in reversed(list(zip(a[:-1], b[:-1]))):
        img = np.where(np.abs(x) >= np.abs(y), x, y) + cv2.pyrUp(img, dstsize=x.shape[::-1])
    return np.clip(img, 0.0, 1.0)


def _distance_to_border(shape: tuple[int, int]) -> np.ndarray:
    rows, cols = (np.minimum(np.arange(n), np.arange(n)[::-1]) for n in shape)
    return np.minimum.outer(rows, cols)


@pytest.fixture(scope="module")
def tno_pairs(shared_data):
    folder = shared_data / "samples" / "TNO"
    return [
        tuple(read_image(folder / side / p.name, "gray") / 255.0 for side in ("ir", "vi"))
        for p in sorted((folder / "ir").glob("*.png"))
    ]


def test_laplacian_pyramid_equals_opencvs_away_from_the_border(tno_pairs):
    assert len(tno_pairs) == 25
    for pair in tno_pairs:
        for img in pair:
            for level, (ours, theirs) in enumerate(zip(laplacian_pyramid(img), _cv_pyramid(img))):
                assert ours.shape == theirs.shape, level
                interior = _distance_to_border(ours.shape) >= 2
                # float64 sums of 5-25 dyadic weights: a few ulp of values <= 1 (measured 6.7e-16)
                np.testing.assert_allclose(
                    ours[interior], theirs[interior], rtol=0, atol=1e-12, err_msg=str(level)
                )


def test_laplacian_fusion_equals_opencvs_away_from_the_border(tno_pairs):
    """Beyond BORDER pixels the fused images agree to float32 output rounding (ours returns float32,
    2^-25 of values <= 1) except where the max-abs choice meets a near-tie, |a| = |b| up to 1e-16,
    that the two computations break differently: measured at most 0.041% of those pixels per image."""
    for ir, vi in tno_pairs:
        differs = np.abs(fuse_laplacian(ir, vi) - _cv_fuse_laplacian(ir, vi)) > 1e-6
        assert differs[_distance_to_border(ir.shape) >= BORDER].mean() <= 1e-3
