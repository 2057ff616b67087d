"""Patch-level layers: overlap patch embedding, 2x merging/expanding, and the fold head.

All feature maps are channels-last (B, H, W, C) as in VMamba; LayerNorm eps is 1e-5.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class OverlapPatchEmbed(nn.Module):
    """Conv2d(k=patch, s=stride, no padding) -> channels-last -> LayerNorm.

    With patch 4 / stride 3 an input of 12k+1 pixels gives 4k tokens per axis.
    """

    def __init__(self, in_chans: int = 1, dim: int = 48, patch_size: int = 4, stride: int = 3):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=stride)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class PatchMerging(nn.Module):
    """2x downsampling: gather each 2x2 neighbourhood (order (0,0), (1,0), (0,1), (1,1)),
    LayerNorm(4C), Linear 4C -> 2C."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[1] % 2 or x.shape[2] % 2:
            raise ValueError(f"PatchMerging needs even H and W, got {tuple(x.shape[1:3])}")
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x))


class PatchExpand(nn.Module):
    """2x upsampling: Linear C -> 2C, rearrange (p1 p2 c) into a 2x2 neighbourhood of C/2, LayerNorm."""

    def __init__(self, dim: int):
        super().__init__()
        self.expand = nn.Linear(dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(dim // 2)

    def forward(self, x: Tensor) -> Tensor:
        x = self.expand(x)
        b, h, w, c4 = x.shape
        c = c4 // 4
        x = x.view(b, h, w, 2, 2, c).permute(0, 1, 3, 2, 4, 5).reshape(b, 2 * h, 2 * w, c)
        return self.norm(x)


class FoldHead(nn.Module):
    """Final head: Linear C -> out_chans·k² per token, then F.fold (kernel k, stride s), which
    SUMS overlapping contributions (channel index c·k² + kh·k + kw), then a 1x1 conv to 1 channel.

    ``norm`` exists only so official checkpoints load: the official head defines a LayerNorm it
    never calls, and so do we (it is not used in forward).
    """

    def __init__(
        self, dim: int = 48, fold_chans: int = 12, kernel: int = 4, stride: int = 3, out_chans: int = 1
    ):
        super().__init__()
        self.kernel, self.stride, self.fold_chans = kernel, stride, fold_chans
        self.expand = nn.Linear(dim, fold_chans * kernel * kernel, bias=False)
        self.norm = nn.LayerNorm(fold_chans)  # checkpoint compatibility only; never applied
        self.conv = nn.Conv2d(fold_chans, out_chans, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        b, h, w, _ = x.shape
        out_size = ((h - 1) * self.stride + self.kernel, (w - 1) * self.stride + self.kernel)
        cols = self.expand(x).permute(0, 3, 1, 2).flatten(2)
        folded = F.fold(cols, output_size=out_size, kernel_size=self.kernel, stride=self.stride)
        return self.conv(folded)
