"""Reference selective scan: a plain sequential loop in torch, the oracle every backend is tested against.

Inputs arrive normalised by :mod:`fusion.ops.selective_scan` (B/C grouped as (batch, G, N, L), delta already
biased and softplus-ed, all in the compute dtype). The loop walks time with ``unbind`` so autograd's backward
is one ``stack`` per input (linear in L) instead of a full-size zero gradient per step; the state tensor is
never materialised over time, and grouped B/C broadcast over each group's channels without being repeated.
"""

from __future__ import annotations

import torch
from torch import Tensor


def scan_reference(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor) -> tuple[Tensor, Tensor]:
    """x_t = exp(delta_t A) x_{t-1} + delta_t u_t B_t; y_t = <x_t, C_t>. Returns (y (b, d, L), last state (b, d, N))."""
    batch, dim, _ = u.shape
    groups, d_state = B.shape[1], A.shape[1]
    per_group = dim // groups
    A = A.view(groups, per_group, d_state)
    x = u.new_zeros(batch, groups, per_group, d_state)
    ys = []
    steps = zip(
        delta.view(batch, groups, per_group, -1).unbind(-1),
        u.view(batch, groups, per_group, -1).unbind(-1),
        B.unbind(-1),
        C.unbind(-1),
    )
    for delta_t, u_t, B_t, C_t in steps:  # delta_t, u_t: (b, g, h); B_t, C_t: (b, g, N)
        x = torch.exp(delta_t[..., None] * A) * x + (delta_t * u_t)[..., None] * B_t[:, :, None, :]
        ys.append((x * C_t[:, :, None, :]).sum(-1))
    y = torch.stack(ys, dim=-1).view(batch, dim, -1)
    return y, x.reshape(batch, dim, d_state)
