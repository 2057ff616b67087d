"""RGB <-> YCbCr (ITU-R BT.601 full range, the JPEG / MMIF convention) and gray conversion.

Fusion methods fuse IR with the VIS luminance Y and put the VIS chroma back afterwards;
fusion/ uses these functions so every method shares one definition.
"""

from __future__ import annotations

import numpy as np

# Rows: Y, Cb, Cr as linear combinations of R, G, B (offsets 0, 128, 128 added separately).
_RGB_TO_YCBCR = np.array(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], dtype=np.float64
)
_YCBCR_TO_RGB = np.linalg.inv(_RGB_TO_YCBCR)


def _check_rgb(rgb: np.ndarray) -> None:
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an RGB array of shape (H, W, 3), got {rgb.shape}")


def rgb_to_ycbcr(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split an RGB image (uint8, or float on the 0-255 scale) into float32 Y, Cb, Cr in [0, 255]."""
    _check_rgb(rgb)
    ycc = rgb.astype(np.float64) @ _RGB_TO_YCBCR.T
    ycc[..., 1:] += 128.0
    ycc = np.clip(ycc, 0.0, 255.0).astype(np.float32)
    return ycc[..., 0], ycc[..., 1], ycc[..., 2]


def ycbcr_to_rgb(y: np.ndarray, cb: np.ndarray, cr: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_ycbcr`: float planes on the 0-255 scale -> uint8 (H, W, 3), rounded and clipped."""
    if not (np.shape(y) == np.shape(cb) == np.shape(cr)) or np.ndim(y) != 2:
        raise ValueError(
            f"Y, Cb, Cr must be 2-D planes of one shape, got {np.shape(y)}, {np.shape(cb)}, {np.shape(cr)}"
        )
    ycc = np.stack(
        [np.asarray(y, np.float64), np.asarray(cb, np.float64) - 128.0, np.asarray(cr, np.float64) - 128.0],
        axis=-1,
    )
    rgb = ycc @ _YCBCR_TO_RGB.T
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def to_gray(img: np.ndarray) -> np.ndarray:
    """float32 luminance: Y of an RGB image (H, W, 3), the image itself for gray (H, W) or (H, W, 1)."""
    if img.ndim == 2:
        return img.astype(np.float32)
    if img.ndim == 3 and img.shape[2] == 1:
        return img[..., 0].astype(np.float32)
    return rgb_to_ycbcr(img)[0]


# ---- the colour policy of every fusion method (S4Fusion and the baselines) ---------------------
def is_color(img: np.ndarray) -> bool:
    """True for (H, W, 3) images whose channels differ somewhere (gray stored as RGB is gray)."""
    return img.ndim == 3 and not (
        np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 0], img[..., 2])
    )


def split_luma(vi: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
    """The policy's first half: the VIS luminance to fuse (float32, 0-255) and, for a colour VIS,
    its (Cb, Cr) to put back; a gray VIS (also one stored as 3 equal channels) has no chroma."""
    if is_color(vi):
        y, cb, cr = rgb_to_ycbcr(vi)
        return y, (cb, cr)
    return to_gray(vi), None


def merge_luma(fused_y: np.ndarray, chroma: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
    """The policy's second half: fused Y (float, 0-255) -> uint8 gray (H, W), or RGB recoloured with
    the VIS chroma."""
    if chroma is not None:
        return ycbcr_to_rgb(np.asarray(fused_y, np.float64), *chroma)
    return np.clip(np.rint(np.asarray(fused_y, np.float64)), 0, 255).astype(np.uint8)
