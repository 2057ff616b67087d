"""Applying a fusion model: padding to valid sizes, the color policy, files and folders.

Sizes: S4Fusion needs H, W = 12k+1. Like the official test script we zero-pad each axis to the
next valid size, ``before = rest // 2`` and ``after = rest - before``, and crop the output back.
Color: the one policy of data.color (split_luma / merge_luma), shared with the baselines: IR is
used as gray; a color VIS image is converted to YCbCr (BT.601 full range, the MMIF convention), its
Y is fused with IR and the result is recolored with the VIS Cb/Cr; a gray VIS -- also one stored
as three equal channels -- gives a gray result.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from data.color import merge_luma, split_luma, to_gray
from data.io import read_image, write_png_atomic
from fusion.model import S4Fusion
from fusion.shipped_weights import resolve_checkpoint


def padding_for(size: int, multiple: int = 12) -> tuple[int, int]:
    """(before, after) zero padding taking ``size`` to the smallest ``multiple*k + 1 >= size`` (k >= 1)."""
    k = max(1, -(-(size - 1) // multiple))
    rest = multiple * k + 1 - size
    return rest // 2, rest - rest // 2


def fuse(model: nn.Module, ir: Tensor, vi: Tensor, clamp: bool = True) -> Tensor:
    """Fuse (B,1,H,W) tensors in [0,1] of any size; returns (B,1,H,W) on the inputs' device."""
    if ir.shape != vi.shape or ir.dim() != 4 or ir.shape[1] != 1:
        raise ValueError(f"ir and vi must both be (B,1,H,W), got {tuple(ir.shape)} and {tuple(vi.shape)}")
    multiple = model.cfg.size_multiple if isinstance(model, S4Fusion) else 12
    (top, bottom), (left, right) = padding_for(ir.shape[-2], multiple), padding_for(ir.shape[-1], multiple)
    pad = (left, right, top, bottom)
    param = next(model.parameters())
    out = model(F.pad(ir, pad).to(param), F.pad(vi, pad).to(param))
    out = out[..., top : top + ir.shape[-2], left : left + ir.shape[-1]].to(ir)
    return out.clamp(0.0, 1.0) if clamp else out


def _to_tensor(gray_u8_or_float: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(gray_u8_or_float, dtype=np.float32) / 255.0)[None, None]


@torch.no_grad()
def fuse_image_arrays(model: nn.Module, ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
    """uint8 IR (H,W[,3]) + VIS (H,W) gray or (H,W,3) RGB -> uint8 fused, gray or RGB like VIS."""
    if ir.shape[:2] != vi.shape[:2]:
        raise ValueError(f"IR {ir.shape[:2]} and VIS {vi.shape[:2]} sizes differ")
    was_training = model.training
    model.eval()
    y, chroma = split_luma(vi)  # the one colour policy (data.color), shared with the baselines
    fused_y = fuse(model, _to_tensor(to_gray(ir)), _to_tensor(y))[0, 0].cpu().numpy() * 255.0
    model.train(was_training)
    return merge_luma(fused_y, chroma)


def fuse_files(
    model: nn.Module, ir_path: str | os.PathLike, vi_path: str | os.PathLike, out_path: str | os.PathLike
) -> Path:
    """Read an IR/VIS pair, fuse (color policy above) and write an 8-bit PNG atomically."""
    fused = fuse_image_arrays(model, read_image(ir_path, "gray"), read_image(vi_path, "unchanged"))
    return write_png_atomic(out_path, fused)


def load_model(
    path: str | os.PathLike, device: str | torch.device = "cpu", scan_backend: str | None = None
) -> S4Fusion:
    """Load any checkpoint :meth:`S4Fusion.load` accepts (or ``"demo"``), in eval mode on ``device``."""
    overrides = {"scan_backend": scan_backend} if scan_backend else {}
    return S4Fusion.load(resolve_checkpoint(path), **overrides).to(device).eval()
