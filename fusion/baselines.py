"""Classical IR/VIS fusion baselines: the rows a reader expects beside learned methods.

Every method in :data:`BASELINES` is a pure function ``(ir_y, vi_y) -> fused_y`` on gray float32
arrays in [0, 1] of one shape, returning float32 in [0, 1]. :func:`fuse_baseline` applies the
project's color policy (the S4Fusion / MMIF one): fuse IR with the VIS luminance Y and recolor
with the VIS Cb/Cr (BT.601 full range); a gray VIS image gives a gray result.

Methods (details and references in docs/metrics.md):
``ir``, ``vi`` (sources as-is), ``average``, ``max`` (pixel-wise), ``dwt`` (Haar, 4 levels, average
low band, max-abs details with 3x3 majority consistency check; Li, Manjunath & Mitra 1995),
``laplacian`` (Burt-Adelson pyramid, 4 levels, average top, max-abs details), ``gff`` (guided
filtering fusion; Li, Kang & Hu 2013), ``msvd`` (multi-resolution SVD, one level; Naidu 2011).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pywt
from scipy import ndimage

from data.color import merge_luma, split_luma, to_gray

FusionFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _check(ir: np.ndarray, vi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ir, vi = np.asarray(ir), np.asarray(vi)
    if ir.ndim != 2 or ir.shape != vi.shape:
        raise ValueError(f"baselines fuse two gray (H, W) arrays of one shape, got {ir.shape} and {vi.shape}")
    return ir.astype(np.float64), vi.astype(np.float64)


def _out(fused: np.ndarray) -> np.ndarray:
    return np.clip(fused, 0.0, 1.0).astype(np.float32)


def _max_abs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.where(np.abs(a) >= np.abs(b), a, b)


def fuse_ir(ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
    return _out(_check(ir, vi)[0])


def fuse_vi(ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
    return _out(_check(ir, vi)[1])


def fuse_average(ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
    ir, vi = _check(ir, vi)
    return _out((ir + vi) / 2.0)


def fuse_max(ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
    ir, vi = _check(ir, vi)
    return _out(np.maximum(ir, vi))


# ---------------------------------------------------------------- DWT
DWT_WAVELET, DWT_LEVELS = "db1", 4


def _consistent_choice(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Max-abs selection, then a 3x3 majority vote so neighbours come from the same source."""
    from_a = (np.abs(a) >= np.abs(b)).astype(np.float64)
    from_a = ndimage.uniform_filter(from_a, size=3, mode="reflect") > 0.5
    return np.where(from_a, a, b)


def fuse_dwt(ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
    ir, vi = _check(ir, vi)
    levels = min(DWT_LEVELS, pywt.dwtn_max_level(ir.shape, DWT_WAVELET))
    coef_ir = pywt.wavedec2(ir, DWT_WAVELET, level=levels)
    coef_vi = pywt.wavedec2(vi, DWT_WAVELET, level=levels)
    fused = [(coef_ir[0] + coef_vi[0]) / 2.0]
    for details_ir, details_vi in zip(coef_ir[1:], coef_vi[1:]):
        fused.append(tuple(_consistent_choice(d_ir, d_vi) for d_ir, d_vi in zip(details_ir, details_vi)))
    out = pywt.waverec2(fused, DWT_WAVELET)
    return _out(out[: ir.shape[0], : ir.shape[1]])


# ---------------------------------------------------------------- Laplacian pyramid
PYRAMID_LEVELS = 4
_BINOMIAL = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0  # Burt & Adelson's generating kernel (a = 0.375)


def _blur(img: np.ndarray, kernel: np.ndarray = _BINOMIAL) -> np.ndarray:
    img = ndimage.correlate1d(img, kernel, axis=0, mode="reflect")
    return ndimage.correlate1d(img, kernel, axis=1, mode="reflect")


def _reduce(img: np.ndarray) -> np.ndarray:
    return _blur(img)[::2, ::2]


def _expand(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    up = np.zeros(shape, dtype=np.float64)
    up[::2, ::2] = img
    return _blur(up, 2.0 * _BINOMIAL)  # x2 per axis restores the energy of the inserted zeros


def laplacian_pyramid(img: np.ndarray, levels: int = PYRAMID_LEVELS) -> list[np.ndarray]:
    """[L_0, ..., L_{levels-1}, G_levels]: band-pass layers then the low-pass residual."""
    pyramid, current = [], img
    for _ in range(levels):
        if min(current.shape) < 2:
            break
        smaller = _reduce(current)
        pyramid.append(current - _expand(smaller, current.shape))
        current = smaller
    pyramid.append(current)
    return pyramid


def reconstruct_laplacian(pyramid: list[np.ndarray]) -> np.ndarray:
    img = pyramid[-1]
    for band in reversed(pyramid[:-1]):
        img = band + _expand(img, band.shape)
    return img


def fuse_laplacian(ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
    ir, vi = _check(ir, vi)
    pyr_ir, pyr_vi = laplacian_pyramid(ir), laplacian_pyramid(vi)
    fused = [_max_abs(a, b) for a, b in zip(pyr_ir[:-1], pyr_vi[:-1])]
    fused.append((pyr_ir[-1] + pyr_vi[-1]) / 2.0)
    return _out(reconstruct_laplacian(fused))


# ---------------------------------------------------------------- GFF (Li, Kang & Hu 2013)
GFF_BASE_SIZE = 31  # mean filter for the two-scale decomposition
GFF_SALIENCY_RADIUS, GFF_SALIENCY_SIGMA = 5, 5.0
GFF_R1, GFF_EPS1, GFF_R2, GFF_EPS2 = 45, 0.3, 7, 1e-6  # the paper's guided-filter settings


def _box(img: np.ndarray, radius: int) -> np.ndarray:
    return ndimage.uniform_filter(img, size=2 * radius + 1, mode="reflect")


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """He, Sun & Tang (2010) gray-guide guided filter with box windows of radius ``radius``."""
    mean_i, mean_p = _box(guide, radius), _box(src, radius)
    cov_ip = _box(guide * src, radius) - mean_i * mean_p
    var_i = _box(guide * guide, radius) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return _box(a, radius) * guide + _box(b, radius)


def _normalized_weights(w_ir: np.ndarray, w_vi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w_ir, w_vi = np.clip(w_ir, 0.0, None), np.clip(w_vi, 0.0, None)
    total = w_ir + w_vi
    safe = np.where(total > 0, total, 1.0)
    return np.where(total > 0, w_ir / safe, 0.5), np.where(total > 0, w_vi / safe, 0.5)


def fuse_gff(ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
    ir, vi = _check(ir, vi)
    base_ir = ndimage.uniform_filter(ir, GFF_BASE_SIZE, mode="reflect")
    base_vi = ndimage.uniform_filter(vi, GFF_BASE_SIZE, mode="reflect")
    truncate = GFF_SALIENCY_RADIUS / GFF_SALIENCY_SIGMA  # an 11x11 Gaussian window
    sal_ir = ndimage.gaussian_filter(
        np.abs(ndimage.laplace(ir, mode="reflect")), GFF_SALIENCY_SIGMA, truncate=truncate, mode="reflect"
    )
    sal_vi = ndimage.gaussian_filter(
        np.abs(ndimage.laplace(vi, mode="reflect")), GFF_SALIENCY_SIGMA, truncate=truncate, mode="reflect"
    )
    pick_ir = (sal_ir >= sal_vi).astype(np.float64)  # ties go to IR
    wb_ir, wb_vi = _normalized_weights(
        guided_filter(ir, pick_ir, GFF_R1, GFF_EPS1), guided_filter(vi, 1.0 - pick_ir, GFF_R1, GFF_EPS1)
    )
    wd_ir, wd_vi = _normalized_weights(
        guided_filter(ir, pick_ir, GFF_R2, GFF_EPS2), guided_filter(vi, 1.0 - pick_ir, GFF_R2, GFF_EPS2)
    )
    base = wb_ir * base_ir + wb_vi * base_vi
    detail = wd_ir * (ir - base_ir) + wd_vi * (vi - base_vi)
    return _out(base + detail)


# ---------------------------------------------------------------- MSVD (Naidu 2011)
def _msvd(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One MSVD level: 2x2 blocks as columns of a 4 x (HW/4) matrix, rotated onto its eigenvectors."""
    h, w = img.shape
    blocks = img.reshape(h // 2, 2, w // 2, 2).transpose(3, 1, 0, 2).reshape(4, -1)
    u, _, _ = np.linalg.svd(blocks @ blocks.T)
    return u.T @ blocks, u  # row 0: approximation, rows 1-3: details


def _imsvd(coeffs: np.ndarray, u: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    h, w = shape
    return (u @ coeffs).reshape(2, 2, h // 2, w // 2).transpose(2, 1, 3, 0).reshape(h, w)


def fuse_msvd(ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
    ir, vi = _check(ir, vi)
    h, w = ir.shape
    pad = ((0, h % 2), (0, w % 2))  # MSVD needs even sides: mirror one row/column, crop afterwards
    ir_p, vi_p = np.pad(ir, pad, mode="symmetric"), np.pad(vi, pad, mode="symmetric")
    t_ir, u_ir = _msvd(ir_p)
    t_vi, u_vi = _msvd(vi_p)
    fused = np.empty_like(t_ir)
    fused[0] = (t_ir[0] + t_vi[0]) / 2.0
    fused[1:] = _max_abs(t_ir[1:], t_vi[1:])
    out = _imsvd(fused, (u_ir + u_vi) / 2.0, ir_p.shape)
    return _out(out[:h, :w])


BASELINES: dict[str, FusionFn] = {
    "ir": fuse_ir,
    "vi": fuse_vi,
    "average": fuse_average,
    "max": fuse_max,
    "dwt": fuse_dwt,
    "laplacian": fuse_laplacian,
    "gff": fuse_gff,
    "msvd": fuse_msvd,
}


def fuse_baseline(name: str, ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
    """Fuse uint8 images with baseline ``name``: gray VIS -> uint8 (H, W); color VIS -> uint8 (H, W, 3)
    (fused Y recolored with the VIS Cb/Cr)."""
    if name not in BASELINES:
        raise KeyError(f"unknown baseline {name!r}; expected one of {sorted(BASELINES)}")
    ir, vi = np.asarray(ir), np.asarray(vi)
    for what, img in (("ir", ir), ("vi", vi)):
        if img.dtype != np.uint8 or img.ndim not in (2, 3):
            raise ValueError(
                f"{what}: expected a uint8 (H, W) or (H, W, 3) image, got {img.dtype} {img.shape}"
            )
    if ir.shape[:2] != vi.shape[:2]:
        raise ValueError(f"ir {ir.shape[:2]} and vi {vi.shape[:2]} differ in size")
    y, chroma = split_luma(vi)  # the one colour policy (data.color)
    fused_y = BASELINES[name](to_gray(ir) / 255.0, y / 255.0)
    return merge_luma(fused_y.astype(np.float64) * 255.0, chroma)
