"""Cross-scan and modality interleaving: pure index shuffles, no parameters.

The 4 scan directions of VMamba/S4Fusion over a (H, W) map, flattened to L = H*W:
k0 row-major (index h*W + w), k1 column-major (index w*H + h), k2 = k0 reversed, k3 = k1 reversed.
CMSA interleaves the IR and VIS sequences of each direction into one sequence of length 2L,
IR at even positions and VIS at odd positions, so a single selective scan carries one hidden
state across both modalities.
"""

from __future__ import annotations

import torch
from torch import Tensor

NUM_DIRECTIONS = 4


def cross_scan(x: Tensor) -> Tensor:
    """(B, C, H, W) -> (B, 4, C, H*W) sequences in the directions k0..k3."""
    b, c, h, w = x.shape
    xs = x.new_empty(b, 4, c, h * w)  # written in place: this runs on every block's largest tensor
    xs[:, 0].view(b, c, h, w).copy_(x)
    xs[:, 1].view(b, c, w, h).copy_(x.transpose(2, 3))
    xs[:, 2:] = xs[:, :2].flip(-1)
    return xs


def cross_unscan(ys: Tensor, height: int, width: int) -> Tensor:
    """(B, 4, C, L) -> (B, 4, C, H, W): each direction mapped back to the spatial grid.

    Exact inverse of :func:`cross_scan` per direction.
    """
    b, k, c, length = ys.shape
    if k != NUM_DIRECTIONS or length != height * width:
        raise ValueError(f"expected (B, 4, C, {height * width}) sequences, got {tuple(ys.shape)}")
    unflipped = torch.cat([ys[:, :2], ys[:, 2:].flip(-1)], dim=1)
    row = unflipped[:, 0::2].reshape(b, 2, c, height, width)
    col = unflipped[:, 1::2].reshape(b, 2, c, width, height).transpose(-1, -2)
    # back to direction order k0, k1, k2, k3
    return torch.stack([row[:, 0], col[:, 0], row[:, 1], col[:, 1]], dim=1)


def cross_merge(ys: Tensor, height: int, width: int) -> Tensor:
    """(B, 4, C, L) -> (B, C, L) row-major: undo each direction and sum the four."""
    b, _, c, length = ys.shape
    y = ys[:, :2] + ys[:, 2:].flip(-1)  # k0 + rev(k2), k1 + rev(k3)
    col = y[:, 1].reshape(b, c, width, height).transpose(-1, -2).reshape(b, c, length)
    return y[:, 0] + col


def interleave_modalities(ir: Tensor, vis: Tensor) -> Tensor:
    """(..., L), (..., L) -> (..., 2L) with IR token l at 2l and VIS token l at 2l+1."""
    if ir.shape != vis.shape:
        raise ValueError(f"modalities must have equal shapes, got {tuple(ir.shape)} and {tuple(vis.shape)}")
    return torch.stack([ir, vis], dim=-1).flatten(-2)


def recover_modalities(seq: Tensor) -> tuple[Tensor, Tensor]:
    """Inverse of :func:`interleave_modalities`: (..., 2L) -> ((..., L) IR, (..., L) VIS)."""
    if seq.shape[-1] % 2:
        raise ValueError(f"interleaved sequence must have even length, got {seq.shape[-1]}")
    pairs = seq.unflatten(-1, (seq.shape[-1] // 2, 2))
    return pairs[..., 0], pairs[..., 1]
