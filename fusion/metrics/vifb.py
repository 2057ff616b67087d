"""``convention="vifb"``: the 13 metrics of VIFB (Zhang et al., CVPRW 2020) exactly as its MATLAB code
computes them, validated against VIFB's stored per-image values.

Reading rule: images are used as stored (no gray conversion). When the fused image has three
channels every metric is computed per channel on (VI[..., k], IR[..., k] or the gray IR, F[..., k])
and averaged -- except SF, which VIFB computes on the H x 3W side-by-side concatenation of the
channels (MATLAB's ``size`` folds trailing dimensions), so the two channel seams count as edges.
A gray fused image with color sources uses MATLAB's ``rgb2gray`` (rounded) on the sources.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fusion.metrics import core

# key -> f(vi, ir, fused) on one channel (VIFB passes VI first)
_PER_CHANNEL: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], float]] = {
    "EN": lambda vi, ir, f: core.entropy(f),
    "SD": lambda vi, ir, f: core.std(f),
    "AG": lambda vi, ir, f: core.average_gradient_sum_over_r1c1(f),
    "EI": lambda vi, ir, f: core.edge_intensity(f),
    "CE": lambda vi, ir, f: (core.cross_entropy(vi, f) + core.cross_entropy(ir, f)) / 2.0,
    "MI": lambda vi, ir, f: (
        core.mutual_information(core.minmax_levels(vi), core.minmax_levels(f))
        + core.mutual_information(core.minmax_levels(ir), core.minmax_levels(f))
    ),
    "PSNR": lambda vi, ir, f: _psnr(vi, ir, f),
    "RMSE": lambda vi, ir, f: (core.vifb_mse(vi, f) + core.vifb_mse(ir, f)) / 2.0,
    "SSIM": lambda vi, ir, f: core.ssim_gaussian(vi, f) + core.ssim_gaussian(ir, f),
    "Qabf": lambda vi, ir, f: core.qabf(vi, ir, f),
    "Qcb": lambda vi, ir, f: core.qcb(vi, ir, f),
    "Qcv": lambda vi, ir, f: core.qcv(vi, ir, f),
}
METRICS: tuple[str, ...] = (
    "AG",
    "CE",
    "EI",
    "EN",
    "MI",
    "PSNR",
    "Qabf",
    "Qcb",
    "Qcv",
    "RMSE",
    "SF",
    "SSIM",
    "SD",
)
# VIFB's metric names (its CSV / MATLAB files) -> our keys
VIFB_NAMES: dict[str, str] = {
    "Avg_gradient": "AG",
    "Cross_entropy": "CE",
    "Edge_intensity": "EI",
    "Entropy": "EN",
    "Mutinf": "MI",
    "Psnr": "PSNR",
    "Qabf": "Qabf",
    "Qcb": "Qcb",
    "Qcv": "Qcv",
    "Rmse": "RMSE",
    "Spatial_frequency": "SF",
    "Ssim": "SSIM",
    "Variance": "SD",
}


def _psnr(vi: np.ndarray, ir: np.ndarray, f: np.ndarray) -> float:
    mes = (core.vifb_mse(vi, f) + core.vifb_mse(ir, f)) / 2.0
    return 20.0 * np.log10(255.0 / np.sqrt(mes)) if mes > 0 else core.NAN


def _matlab_rgb2gray(img: np.ndarray) -> np.ndarray:
    # MATLAB rgb2gray on uint8: these coefficients, rounded back to uint8.
    return core.matlab_round(img @ np.array([0.298936021293775, 0.587043074451121, 0.114020904255103]))


def compute(ir: np.ndarray, vi: np.ndarray, fused: np.ndarray, metrics: tuple[str, ...]) -> dict[str, float]:
    """Arrays as read (uint8, (H, W) or (H, W, 3)); returns the requested VIFB metrics."""
    ir, vi, fused = (np.asarray(x, dtype=np.float64) for x in (ir, vi, fused))
    if fused.ndim == 3:
        channels = [
            (vi[..., k] if vi.ndim == 3 else vi, ir[..., k] if ir.ndim == 3 else ir, fused[..., k])
            for k in range(fused.shape[2])
        ]
    else:
        channels = [
            (
                _matlab_rgb2gray(vi) if vi.ndim == 3 else vi,
                _matlab_rgb2gray(ir) if ir.ndim == 3 else ir,
                fused,
            )
        ]
    out: dict[str, float] = {}
    for key in metrics:
        if key == "SF":
            side_by_side = np.concatenate([c[2] for c in channels], axis=1)
            out[key] = core.spatial_frequency_sum_over_mn(side_by_side)
        else:
            out[key] = float(np.mean([_PER_CHANNEL[key](*c) for c in channels]))
    return out
