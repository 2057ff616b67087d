"""CMSA: the cross-modal spatial awareness block (Cross SS2D) and the fusion layer.

Cross SS2D shares everything between IR and VIS except the projections that produce the
selective parameters (delta, B, C) — ``x_proj_weight_ir`` / ``x_proj_weight_vis``. Per scan
direction it computes a Patch Mark from both modalities, adds it to both sequences,
interleaves them (IR at even, VIS at odd positions) and runs ONE selective scan, so A and the
hidden state are shared across modalities; the outputs are then recovered per modality.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fusion.modules.ss2d import ScanParameters
from fusion.ops.cross_scan import cross_scan, interleave_modalities, recover_modalities


class CrossSS2D(ScanParameters):
    """One CMSA block: (x_ir, x_vis) (B, H, W, C) -> (update_ir, update_vis), no residual."""

    def __init__(
        self, d_model: int, d_state: int = 18, expand: float = 1.5, patch_mark: bool = True, **kwargs
    ):
        super().__init__(d_model, d_state, expand, **kwargs)
        self.x_proj_weight_ir = self.new_x_proj()
        self.x_proj_weight_vis = self.new_x_proj()
        self.patch_mark = patch_mark
        # The mark is a linear map of both modalities' channels; kept even when disabled so
        # checkpoints of both variants share one layout.
        bound = (2 * self.d_inner) ** -0.5
        self.mark_proj = nn.Parameter(torch.empty(self.d_inner, 2 * self.d_inner).uniform_(-bound, bound))
        # Hook point (no parameters, identity): its output is the interleaved delta the scan receives,
        # before delta_bias and softplus; fusion.analysis reads it with a forward hook (Table VIII).
        self.delta_tap = nn.Identity()

    def forward(self, x_ir: Tensor, x_vis: Tensor) -> tuple[Tensor, Tensor]:
        feats_ir, z_ir = self.project_in(x_ir)
        feats_vis, z_vis = self.project_in(x_vis)
        xs, ys = cross_scan(feats_ir), cross_scan(feats_vis)  # (B, 4, d_inner, L)
        # Selective parameters come from the un-marked sequences; only u (and so the D skip) sees the mark.
        delta_ir, b_ir, c_ir = self.delta_b_c(xs, self.x_proj_weight_ir)
        delta_vis, b_vis, c_vis = self.delta_b_c(ys, self.x_proj_weight_vis)
        if self.patch_mark:
            mark = torch.einsum("bkcl,dc->bkdl", torch.cat([xs, ys], dim=2), self.mark_proj)
            xs, ys = xs + mark, ys + mark
        delta = self.delta_tap(interleave_modalities(delta_ir, delta_vis))
        out = self.scan(
            interleave_modalities(xs, ys),
            delta,
            interleave_modalities(b_ir, b_vis),
            interleave_modalities(c_ir, c_vis),
        )
        out_ir, out_vis = recover_modalities(out)
        return self.project_out(out_ir, z_ir), self.project_out(out_vis, z_vis)


class FusionLayer(nn.Module):
    """K interaction blocks with a residual per block; returns the fused skip x_ir + x_vis."""

    def __init__(self, blocks: list[nn.Module]):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x_ir: Tensor, x_vis: Tensor) -> Tensor:
        for block in self.blocks:
            d_ir, d_vis = block(x_ir, x_vis)
            x_ir, x_vis = x_ir + d_ir, x_vis + d_vis
        return x_ir + x_vis
