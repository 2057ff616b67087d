"""Cross-modal interaction blocks for the Table V ablations.

Every block maps (x_ir, x_vis), both (B, H, W, C) channels-last, to residual updates
(d_ir, d_vis); :class:`fusion.modules.cmsa.FusionLayer` stacks K of them and adds the residuals.
Sizes are chosen so each block has a parameter count of the same order as a CMSA block.

- ``cmsa``: Cross SS2D (the paper's module); ``patch_mark=False`` gives "CMSA w/o Patch Mark".
- ``add``: no exchange inside the block: each modality is refined by its own SS2D, the two only
  meet in the layer's final addition.
- ``cnn``: both modalities concatenated -> 1x1 conv -> depthwise 3x3 -> GELU -> 1x1 conv -> split.
- ``channel_cross_attention``: transposed (channel-wise, C x C) attention with queries from one
  modality and keys/values from the other (both directions).
- ``spatial_cross_attention``: token-wise multi-head attention, queries from one modality,
  keys/values from the other (both directions). Memory grows as L².
- ``vanilla_attention``: multi-head self-attention over the concatenated 2L tokens of both.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fusion.modules.cmsa import CrossSS2D
from fusion.modules.ss2d import SS2D


class SeparateSS2D(nn.Module):
    def __init__(self, dim: int, d_state: int, expand: float, scan_backend: str):
        super().__init__()
        self.ir = SS2D(dim, d_state, expand, scan_backend=scan_backend)
        self.vis = SS2D(dim, d_state, expand, scan_backend=scan_backend)

    def forward(self, x_ir: Tensor, x_vis: Tensor) -> tuple[Tensor, Tensor]:
        return self.ir(x_ir), self.vis(x_vis)


class ConvInteraction(nn.Module):
    def __init__(self, dim: int, expand: float = 1.5):
        super().__init__()
        hidden = int(2 * expand * dim)
        self.mix_in = nn.Conv2d(2 * dim, hidden, 1)
        self.spatial = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.mix_out = nn.Conv2d(hidden, 2 * dim, 1)

    def forward(self, x_ir: Tensor, x_vis: Tensor) -> tuple[Tensor, Tensor]:
        x = torch.cat([x_ir, x_vis], dim=-1).permute(0, 3, 1, 2)
        out = self.mix_out(F.gelu(self.spatial(self.mix_in(x)))).permute(0, 2, 3, 1)
        return out.chunk(2, dim=-1)


def _heads(x: Tensor, num_heads: int) -> Tensor:
    """(B, L, C) -> (B, heads, L, C/heads)."""
    b, length, c = x.shape
    return x.view(b, length, num_heads, c // num_heads).transpose(1, 2)


class _CrossAttentionBase(nn.Module):
    """Pre-norm q/kv projections for both modalities and an output projection."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.norm_ir, self.norm_vis = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv_ir, self.qkv_vis = nn.Linear(dim, 3 * dim), nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def qkv(self, x_ir: Tensor, x_vis: Tensor) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
        ir = self.qkv_ir(self.norm_ir(x_ir).flatten(1, 2)).chunk(3, dim=-1)
        vis = self.qkv_vis(self.norm_vis(x_vis).flatten(1, 2)).chunk(3, dim=-1)
        return tuple(_heads(t, self.num_heads) for t in ir), tuple(_heads(t, self.num_heads) for t in vis)

    def out(self, y: Tensor, like: Tensor) -> Tensor:
        """(B, heads, L, C/heads) -> (B, H, W, C)."""
        return self.proj(y.transpose(1, 2).flatten(2)).view_as(like)


class SpatialCrossAttention(_CrossAttentionBase):
    def forward(self, x_ir: Tensor, x_vis: Tensor) -> tuple[Tensor, Tensor]:
        (q_i, k_i, v_i), (q_v, k_v, v_v) = self.qkv(x_ir, x_vis)
        return (
            self.out(F.scaled_dot_product_attention(q_i, k_v, v_v), x_ir),
            self.out(F.scaled_dot_product_attention(q_v, k_i, v_i), x_vis),
        )


class ChannelCrossAttention(_CrossAttentionBase):
    """Restormer-style transposed attention: the attention map is (C/heads x C/heads) per head."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__(dim, num_heads)
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))

    def _attend(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        q, k, v = (t.transpose(-1, -2) for t in (q, k, v))  # (B, heads, c, L)
        attn = (F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-1, -2)) * self.temperature
        return (attn.softmax(dim=-1) @ v).transpose(-1, -2)

    def forward(self, x_ir: Tensor, x_vis: Tensor) -> tuple[Tensor, Tensor]:
        (q_i, k_i, v_i), (q_v, k_v, v_v) = self.qkv(x_ir, x_vis)
        return self.out(self._attend(q_i, k_v, v_v), x_ir), self.out(self._attend(q_v, k_i, v_i), x_vis)


class JointSelfAttention(_CrossAttentionBase):
    def forward(self, x_ir: Tensor, x_vis: Tensor) -> tuple[Tensor, Tensor]:
        (q_i, k_i, v_i), (q_v, k_v, v_v) = self.qkv(x_ir, x_vis)
        y = F.scaled_dot_product_attention(
            torch.cat([q_i, q_v], 2), torch.cat([k_i, k_v], 2), torch.cat([v_i, v_v], 2)
        )
        y_ir, y_vis = y.chunk(2, dim=2)
        return self.out(y_ir, x_ir), self.out(y_vis, x_vis)


def _num_heads(dim: int) -> int:
    return max(1, dim // 32)


INTERACTIONS: dict[str, Callable[..., nn.Module]] = {
    "cmsa": lambda dim, d_state, expand, scan_backend, patch_mark: CrossSS2D(
        dim, d_state, expand, patch_mark=patch_mark, scan_backend=scan_backend
    ),
    "add": lambda dim, d_state, expand, scan_backend, patch_mark: SeparateSS2D(
        dim, d_state, expand, scan_backend
    ),
    "cnn": lambda dim, d_state, expand, scan_backend, patch_mark: ConvInteraction(dim, expand),
    "channel_cross_attention": lambda dim, *_: ChannelCrossAttention(dim, _num_heads(dim)),
    "spatial_cross_attention": lambda dim, *_: SpatialCrossAttention(dim, _num_heads(dim)),
    "vanilla_attention": lambda dim, *_: JointSelfAttention(dim, _num_heads(dim)),
}


def build_interaction(
    kind: str, dim: int, d_state: int, expand: float, scan_backend: str = "auto", patch_mark: bool = True
) -> nn.Module:
    if kind not in INTERACTIONS:
        raise ValueError(f"unknown interaction {kind!r}; choose one of {sorted(INTERACTIONS)}")
    if kind != "cmsa" and not patch_mark:
        raise ValueError(f"patch_mark=False only applies to interaction='cmsa', not {kind!r}")
    return INTERACTIONS[kind](dim, d_state, expand, scan_backend, patch_mark)
