"""convention="mmif": definitions checked against independent implementations and hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fusion.metrics import (
    ALL_METRICS,
    CONVENTIONS,
    DEFAULT_METRICS,
    METRIC_DIRECTIONS,
    compute_metrics,
    core,
    summarize,
)
from fusion.metrics.mmif import to_gray_levels


def _pair(seed: int = 0, shape=(96, 120)):
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 200, shape[1])[None, :] + np.linspace(0, 40, shape[0])[:, None]
    ir = np.clip(base + rng.normal(0, 20, shape), 0, 255).astype(np.uint8)
    vi = np.clip(255 - base + rng.normal(0, 25, shape), 0, 255).astype(np.uint8)
    fused = ((ir.astype(np.float64) + vi) / 2 + rng.normal(0, 5, shape)).clip(0, 255).astype(np.uint8)
    return ir, vi, fused


def test_api_keys_and_directions():
    assert set(METRIC_DIRECTIONS) == set(ALL_METRICS) and set(DEFAULT_METRICS) <= set(ALL_METRICS)
    assert set(CONVENTIONS["mmif"]) == set(ALL_METRICS)
    ir, vi, fused = _pair(shape=(170, 180))  # MS-SSIM needs >= 161 px per side
    out = compute_metrics(ir, vi, fused)
    assert list(out) == [m for m in DEFAULT_METRICS if m in CONVENTIONS["mmif"]]
    assert all(isinstance(v, float) and math.isfinite(v) for v in out.values()), out
    assert set(compute_metrics(ir, vi, fused, convention="vifb")) == set(CONVENTIONS["vifb"])
    assert list(compute_metrics(ir, vi, fused, metrics=["SF", "EN"])) == ["SF", "EN"]
    with pytest.raises(ValueError, match="unknown metric"):
        compute_metrics(ir, vi, fused, convention="vifb", metrics=["VIF"])
    with pytest.raises(ValueError, match="unknown metric convention"):
        compute_metrics(ir, vi, fused, convention="nope")
    with pytest.raises(ValueError, match="same height and width"):
        compute_metrics(ir, vi, fused[:-1])
    with pytest.raises(FileNotFoundError, match="missing.png"):
        compute_metrics("missing.png", vi, fused)


def test_paths_equal_arrays(tmp_path):
    from data.io import write_png_atomic

    ir, vi, fused = _pair(1)
    paths = [write_png_atomic(tmp_path / f"{n}.png", a) for n, a in (("ir", ir), ("vi", vi), ("f", fused))]
    from_files, from_arrays = compute_metrics(*paths), compute_metrics(ir, vi, fused)
    assert list(from_files) == list(from_arrays)
    np.testing.assert_array_equal(list(from_files.values()), list(from_arrays.values()))  # NaN == NaN here


def test_color_inputs_use_rounded_bt601_luma():
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]]], np.uint8)
    expected = np.rint(rgb @ np.array([0.299, 0.587, 0.114]))
    np.testing.assert_array_equal(to_gray_levels(rgb), expected)


def test_hand_computed_small_cases():
    img = np.array([[0, 0, 255, 255]] * 4, np.float64)
    assert core.entropy(img) == pytest.approx(1.0)  # two equiprobable levels -> 1 bit
    assert core.std(img) == pytest.approx(127.5)
    # row differences: one step of 255 per row out of 3 -> mean 255^2/3; no vertical change
    assert core.spatial_frequency_mean(img) == pytest.approx(255 / math.sqrt(3))
    gx = np.array([0, 127.5, 127.5, 0])  # np.gradient of [0, 0, 255, 255]
    assert core.average_gradient_mean(img) == pytest.approx(np.mean(np.abs(gx) / math.sqrt(2)))
    a = np.array([[0, 0, 255, 255]], np.float64)
    assert core.mutual_information(a, a) == pytest.approx(math.log(2))  # nats
    assert core.mutual_information(a, np.array([[0, 255, 0, 255]], np.float64)) == pytest.approx(0.0)
    # KL of {0: .5, 255: .5} from {0: .25, 255: .75} in bits
    kl = 0.5 * math.log2(0.5 / 0.25) + 0.5 * math.log2(0.5 / 0.75)
    assert core.cross_entropy(a, np.array([[0, 255, 255, 255]], np.float64)) == pytest.approx(kl)


def test_mi_matches_sklearn_on_raw_labels():
    from sklearn.metrics import mutual_info_score

    ir, vi, fused = (x.astype(np.float64) for x in _pair(2))
    expected = mutual_info_score(fused.ravel(), ir.ravel()) + mutual_info_score(fused.ravel(), vi.ravel())
    assert compute_metrics(*_pair(2), metrics=["MI"])["MI"] == pytest.approx(expected, rel=1e-12)


def test_ssim_matches_pytorch_msssim_and_skimage():
    from pytorch_msssim import ssim
    from skimage.metrics import structural_similarity

    ir, vi, fused = (x.astype(np.float64) for x in _pair(3))
    ours = core.ssim_gaussian(ir, fused)
    t = lambda x: torch.from_numpy(x)[None, None]  # noqa: E731
    # both float64, but pytorch_msssim builds its Gaussian window in float32 (mass 1 - 6.1e-8, each tap
    # within 2^-24): that moves SSIM by ~1e-6 at most on these images, hence abs 1e-5 only
    assert ours == pytest.approx(float(ssim(t(ir), t(fused), data_range=255.0)), abs=1e-5)
    sk = structural_similarity(
        ir, fused, data_range=255.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert ours == pytest.approx(sk, abs=1e-6)
    out = compute_metrics(*_pair(3), metrics=["SSIM"])
    assert out["SSIM"] == pytest.approx(ours + core.ssim_gaussian(vi, fused))


def test_ms_ssim_matches_pytorch_msssim():
    from pytorch_msssim import ms_ssim

    ir, vi, fused = (x.astype(np.float64) for x in _pair(4, shape=(175, 190)))  # odd sides: padded pooling
    t = lambda x: torch.from_numpy(x)[None, None]  # noqa: E731
    for src in (ir, vi):
        expected = float(ms_ssim(t(src), t(fused), data_range=255.0))
        assert core.ms_ssim_gaussian(src, fused) == pytest.approx(expected, abs=1e-5)  # float32 window there
    assert math.isnan(core.ms_ssim_gaussian(ir[:150], fused[:150]))  # too small for 5 scales


def test_vif_matches_torchmetrics_vifp():
    from torchmetrics.functional.image import visual_information_fidelity

    ir, vi, fused = (x.astype(np.float64) for x in _pair(5, shape=(90, 110)))
    t = lambda x: torch.from_numpy(x)[None, None]  # noqa: E731
    for src in (ir, vi):
        expected = float(visual_information_fidelity(t(fused), t(src), sigma_n_sq=2.0))
        assert core.vifp(src, fused) == pytest.approx(expected, rel=1e-9)
    assert core.vifp(fused, fused) == pytest.approx(1.0)  # identical images carry all information


def test_psnr_rmse_cc_scd_by_definition():
    ir, vi, fused = (x.astype(np.float64) for x in _pair(6))
    mse = (np.mean((ir - fused) ** 2) + np.mean((vi - fused) ** 2)) / 2
    out = compute_metrics(*_pair(6), metrics=["PSNR", "RMSE", "CC", "SCD"])
    assert out["PSNR"] == pytest.approx(10 * math.log10(255**2 / mse))
    assert out["RMSE"] == pytest.approx(math.sqrt(mse))
    r = lambda a, b: np.corrcoef(a.ravel(), b.ravel())[0, 1]  # noqa: E731
    assert out["CC"] == pytest.approx((r(ir, fused) + r(vi, fused)) / 2)
    assert out["SCD"] == pytest.approx(r(fused - vi, ir) + r(fused - ir, vi))


def test_qabf_and_nabf_reference_points():
    ir, vi, fused = (x.astype(np.float64) for x in _pair(7))
    # F == A == B: every edge kept -> the constants' ceiling Tg/(1+e^{kg*(G-0.5)}) * Ta/(1+e^{ka*0.2})
    q = core.qabf(ir, ir, ir)
    assert 0.95 < q <= 0.9994 * 0.9879
    assert core.qabf(ir, vi, fused) < q
    assert core.nabf(ir, ir, ir) == 0.0  # no edge of F is stronger than both sources
    noisy = fused + np.random.default_rng(0).normal(0, 40, fused.shape)
    assert core.nabf(ir, vi, noisy) > core.nabf(ir, vi, fused)  # noise adds artifacts


def _nabf_case(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fixed 40x52 uint8 inputs from integer formulas (no RNG): ramps, blocks, a disc, a pseudo-texture,
    and flat left columns (edge strength < 2 there, so the 0.001 weight branch is exercised)."""
    i, j = np.mgrid[0:40, 0:52]
    texture = (i * 37 + j * 91 + i * j * 13) % 29 - 14
    ir = 20 + 4 * j + 60 * ((i // 10 + j // 13) % 2) + texture // 2
    vi = 230 - 3 * i - 2 * j + 50 * (((i - 20) ** 2 + (j - 26) ** 2) < 120) + (i * j * 7) % 11 - 5
    ir[:, :8], vi[:, :8] = 50, 90
    fused = {
        "average_plus_texture": (ir + vi) // 2 + texture,
        "maximum": np.maximum(ir, vi),
        "maximum_minus_pattern": np.maximum(ir, vi) - (i * 5 + j * 3) % 7 * 4,
    }[name]
    return tuple(np.clip(x, 0, 255).astype(np.uint8) for x in (ir, vi, fused))


# Oracle for Nabf: B. K. Shreyamsha Kumar's own MATLAB code, objective_fusion_perform_fn.m (NABF output)
# with sobel_fn.m and per_extn_im_fn.m, as shipped in github.com/xingchenzhang/VIFB at commit
# 22b2ea9d91499cc5962d9bdcae9c290270f0fade, methods/CBF/ (unchanged since 5d29ee7). Computed out of tree
# with GNU Octave 7.3.0: the _nabf_case arrays were written as integer text, read with dlmread, passed as
# objective_fusion_perform_fn(fused, {ir, vi}) and NABF printed with %.17g. Only the numbers are kept here.
KUMAR_NABF = {
    "average_plus_texture": 0.035637092895765464,
    "maximum": 3.0382276089957459e-06,
    "maximum_minus_pattern": 0.032527093524747225,
}


@pytest.mark.parametrize("name", sorted(KUMAR_NABF))
def test_nabf_matches_kumar_matlab_reference(name):
    ir, vi, fused = _nabf_case(name)
    assert compute_metrics(ir, vi, fused, metrics=["Nabf"])["Nabf"] == pytest.approx(
        KUMAR_NABF[name], rel=1e-12
    )


def test_degenerate_inputs_never_crash():
    ir, vi, fused = _pair(8)
    flat = np.full_like(ir, 128)
    out = compute_metrics(ir, vi, ir)  # F equal to a source
    assert math.isnan(out["SCD"])
    out = compute_metrics(flat, flat, flat)  # constant everything
    assert out["EN"] == 0.0 and out["SD"] == 0.0 and out["SF"] == 0.0
    assert math.isnan(out["CC"]) and math.isnan(out["PSNR"]) and out["MI"] == 0.0 and out["RMSE"] == 0.0
    tiny = compute_metrics(ir[:8, :8], vi[:8, :8], fused[:8, :8])  # smaller than every window
    assert math.isnan(tiny["SSIM"]) and math.isnan(tiny["VIF"]) and math.isnan(tiny["MS_SSIM"])
    flat_vifb = compute_metrics(flat, flat, flat, convention="vifb")
    assert all(flat_vifb[k] == 0.0 for k in ("EN", "SD", "SF", "AG", "MI", "CE", "EI", "RMSE")), flat_vifb
    assert math.isnan(flat_vifb["PSNR"]) and math.isnan(flat_vifb["Qcb"]) and math.isnan(flat_vifb["Qcv"])
    row = [np.asarray(x[:1, :5]) for x in (ir, vi, fused)]
    one_row = compute_metrics(*row, convention="vifb")
    assert (
        math.isnan(one_row["SF"]) and math.isnan(one_row["AG"]) and math.isnan(one_row["SSIM"])
    )  # no 2-D support
    _, counts = np.unique(row[2], return_counts=True)
    p = counts / counts.sum()
    assert one_row["EN"] == pytest.approx(-(p * np.log2(p)).sum())  # EN needs no neighbourhood


def test_summarize_ignores_and_counts_nan():
    import pandas as pd

    frame = pd.DataFrame({"method": ["a", "a", "a", "b"], "SCD": [1.0, 3.0, np.nan, 2.0], "EN": [1, 2, 3, 4]})
    s = summarize(frame).set_index("method")
    assert s.loc["a", "SCD_mean"] == 2.0 and s.loc["a", "SCD_std"] == pytest.approx(math.sqrt(2))
    assert s.loc["a", "SCD_n"] == 2 and s.loc["a", "SCD_dropped"] == 1 and s.loc["b", "SCD_dropped"] == 0
    assert s.loc["b", "EN_std"] == 0.0


def test_perceptual_needs_pyiqa_with_clear_message():
    import importlib.util

    from fusion.metrics.perceptual import perceptual_scores

    if importlib.util.find_spec("pyiqa") is not None:
        pytest.skip("pyiqa is installed here; this test covers the message when it is absent")
    with pytest.raises(ImportError, match="s4fuse\\[iqa\\]"):
        perceptual_scores(np.zeros((8, 8), np.uint8))
