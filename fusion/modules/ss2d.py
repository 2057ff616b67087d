"""SS2D (2D selective scan) and the VSS block/layer built on it (VMamba v0 formulation).

SS2D: in_proj -> (x, z); x -> depthwise 3x3 conv + SiLU -> cross-scan in 4 directions ->
per-direction projections to (delta, B, C) -> selective scan -> merge directions ->
LayerNorm -> gate by SiLU(z) -> out_proj.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fusion.modules.patch import PatchExpand, PatchMerging
from fusion.modules.scan import selective_scan
from fusion.ops.cross_scan import NUM_DIRECTIONS, cross_merge, cross_scan


def dt_rank_for(d_model: int) -> int:
    return math.ceil(d_model / 16)


class ScanParameters(nn.Module):
    """Parameters shared by SS2D and CrossSS2D: in/out projections, the depthwise conv, and per
    direction the delta up-projection, A (as A_logs) and the D skip.

    Initialisation follows Mamba: A = -[1..N], D = 1, delta bias = softplus⁻¹ of a log-uniform
    draw in [dt_min, dt_max], projections uniform with fan-in bounds.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int,
        expand: float,
        dt_min: float = 1e-3,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
        scan_backend: str = "auto",
    ):
        super().__init__()
        self.d_model, self.d_state = d_model, d_state
        self.d_inner = d_inner = int(expand * d_model)
        self.dt_rank = dt_rank = dt_rank_for(d_model)
        self.scan_backend = scan_backend
        k = NUM_DIRECTIONS

        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=False)
        self.conv2d = nn.Conv2d(d_inner, d_inner, kernel_size=3, padding=1, groups=d_inner, bias=True)
        self.dt_projs_weight = nn.Parameter(
            torch.empty(k, d_inner, dt_rank).uniform_(-(dt_rank**-0.5), dt_rank**-0.5)
        )
        dt = torch.exp(torch.rand(k, d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_init_floor)
        self.dt_projs_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # softplus inverse
        self.A_logs = nn.Parameter(
            torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(k * d_inner, 1)
        )
        self.Ds = nn.Parameter(torch.ones(k * d_inner))
        self.out_norm = nn.LayerNorm(d_inner)
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)

    def new_x_proj(self) -> nn.Parameter:
        """A per-direction projection d_inner -> (dt_rank + 2N), as one (4, R+2N, d_inner) tensor."""
        bound = self.d_inner**-0.5
        return nn.Parameter(
            torch.empty(NUM_DIRECTIONS, self.dt_rank + 2 * self.d_state, self.d_inner).uniform_(-bound, bound)
        )

    def project_in(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(B, H, W, C) -> conv features (B, d_inner, H, W) and gate z (B, H, W, d_inner)."""
        x, z = self.in_proj(x).chunk(2, dim=-1)
        return F.silu(self.conv2d(x.permute(0, 3, 1, 2))), z

    def delta_b_c(self, xs: Tensor, x_proj_weight: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Sequences (B, 4, d_inner, L) -> delta (B, 4, d_inner, L), B and C (B, 4, N, L)."""
        x_dbl = torch.einsum("bkdl,kcd->bkcl", xs, x_proj_weight)
        dts, bs, cs = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=2)
        return torch.einsum("bkrl,kdr->bkdl", dts, self.dt_projs_weight), bs, cs

    def scan(self, u: Tensor, delta: Tensor, bs: Tensor, cs: Tensor) -> Tensor:
        """u, delta (B, 4, d_inner, L'); B, C (B, 4, N, L') -> (B, 4, d_inner, L')."""
        b, k, d, length = u.shape
        out = selective_scan(
            u.reshape(b, k * d, length),
            delta.reshape(b, k * d, length),
            -torch.exp(self.A_logs),
            bs,
            cs,
            self.Ds,
            self.dt_projs_bias.reshape(-1),
            backend=self.scan_backend,
        )
        return out.view(b, k, d, length)

    def project_out(self, ys: Tensor, z: Tensor) -> Tensor:
        """Direction outputs (B, 4, d_inner, L) + gate (B, H, W, d_inner) -> (B, H, W, d_model)."""
        b, h, w, _ = z.shape
        y = cross_merge(ys, h, w).transpose(1, 2).reshape(b, h, w, -1)
        return self.out_proj(self.out_norm(y) * F.silu(z))


class SS2D(ScanParameters):
    """Single-modality 2D selective scan."""

    def __init__(self, d_model: int, d_state: int = 12, expand: float = 1.5, **kwargs):
        super().__init__(d_model, d_state, expand, **kwargs)
        self.x_proj_weight = self.new_x_proj()

    def forward(self, x: Tensor) -> Tensor:
        feats, z = self.project_in(x)
        xs = cross_scan(feats)
        delta, bs, cs = self.delta_b_c(xs, self.x_proj_weight)
        return self.project_out(self.scan(xs, delta, bs, cs), z)


class VSSBlock(nn.Module):
    """x + SS2D(LayerNorm(x)) (drop path 0, as in the released model)."""

    def __init__(self, dim: int, d_state: int = 12, expand: float = 1.5, scan_backend: str = "auto"):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.ss2d = SS2D(dim, d_state=d_state, expand=expand, scan_backend=scan_backend)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.ss2d(self.norm(x))


class VSSLayer(nn.Module):
    """A stage: optional 2x upsample (decoder), VSS blocks, optional 2x downsample (encoder)."""

    def __init__(
        self,
        dim: int,
        depth: int,
        d_state: int = 12,
        expand: float = 1.5,
        scan_backend: str = "auto",
        downsample: bool = False,
        upsample_from: int | None = None,
    ):
        super().__init__()
        self.upsample = PatchExpand(upsample_from) if upsample_from is not None else None
        self.blocks = nn.ModuleList(VSSBlock(dim, d_state, expand, scan_backend) for _ in range(depth))
        self.downsample = PatchMerging(dim) if downsample else None

    def forward(self, x: Tensor) -> Tensor:
        if self.upsample is not None:
            x = self.upsample(x)
        for block in self.blocks:
            x = block(x)
        if self.downsample is not None:
            x = self.downsample(x)
        return x
