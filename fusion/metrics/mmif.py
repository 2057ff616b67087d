"""``convention="mmif"`` (default): the metrics as MMIF papers (CDDFuse, EMMA, S4Fusion, ...) print them.

Reading rule: every image becomes one gray plane on the 0-255 scale -- gray images as stored, color
images as their BT.601 luminance rounded to integers (``cv2.cvtColor(BGR2GRAY)`` + round, which is
what the widely shared MMIF evaluator reads; also the Y our fusion methods fuse). Every metric is
then computed once on (IR, VI, F). Choices and differences from other evaluators: docs/metrics.md.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from data.color import to_gray
from fusion.metrics import core


def _mse(ir: np.ndarray, vi: np.ndarray, f: np.ndarray) -> float:
    return (core.mse(ir, f) + core.mse(vi, f)) / 2.0


def _psnr(ir: np.ndarray, vi: np.ndarray, f: np.ndarray) -> float:
    m = _mse(ir, vi, f)
    return float(10.0 * np.log10(255.0**2 / m)) if m > 0 else core.NAN


# key -> f(ir, vi, fused), gray float64 planes
_METRICS: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], float]] = {
    "EN": lambda ir, vi, f: core.entropy(f),
    "SD": lambda ir, vi, f: core.std(f),
    "SF": lambda ir, vi, f: core.spatial_frequency_mean(f),
    "AG": lambda ir, vi, f: core.average_gradient_mean(f),
    "MI": lambda ir, vi, f: core.mutual_information(ir, f) + core.mutual_information(vi, f),
    "SCD": core.scd,
    "CC": core.cc,
    "VIF": lambda ir, vi, f: core.vifp(ir, f) + core.vifp(vi, f),
    "Qabf": core.qabf,
    "Nabf": core.nabf,
    "SSIM": lambda ir, vi, f: core.ssim_gaussian(ir, f) + core.ssim_gaussian(vi, f),
    "MS_SSIM": lambda ir, vi, f: (core.ms_ssim_gaussian(ir, f) + core.ms_ssim_gaussian(vi, f)) / 2.0,
    "PSNR": _psnr,
    "RMSE": lambda ir, vi, f: float(np.sqrt(_mse(ir, vi, f))),
    "CE": lambda ir, vi, f: (core.cross_entropy(ir, f) + core.cross_entropy(vi, f)) / 2.0,
    "EI": lambda ir, vi, f: core.edge_intensity(f),
    "Qcb": core.qcb,
    "Qcv": core.qcv,
}
METRICS: tuple[str, ...] = tuple(_METRICS)


def to_gray_levels(img: np.ndarray) -> np.ndarray:
    """uint8 (H, W) / (H, W, 1) / (H, W, 3) -> float64 gray plane (rounded BT.601 Y for color)."""
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[2] == 3:
        return np.rint(to_gray(img)).astype(np.float64)
    return np.asarray(to_gray(img), dtype=np.float64)


def compute(ir: np.ndarray, vi: np.ndarray, fused: np.ndarray, metrics: tuple[str, ...]) -> dict[str, float]:
    ir, vi, fused = (to_gray_levels(x) for x in (ir, vi, fused))
    return {key: float(_METRICS[key](ir, vi, fused)) for key in metrics}
