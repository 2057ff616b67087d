"""Chunked selective scan in pure torch: the GPU fallback when mamba-ssm's CUDA kernel is missing.

The sequence is cut into ``n_chunks`` chunks of length T (~sqrt(L)), all chunks advance together:

1. local pass, T steps: every chunk scans from a zero state (vectorised over chunks) -> its final local state;
2. carry pass, n_chunks steps: the true state entering chunk c is
   ``x0[c] = exp(A * sum(delta over chunk c-1)) * x0[c-1] + local_final[c-1]``; the chunk's total log-decay is
   the cumulative sum of delta times A (A is constant over time), so no (L, N) decay tensor is built;
3. output pass, T steps: rerun every chunk from its true entering state and emit y.

Every exponent is delta*A <= 0 (or a sum of them), so nothing can overflow in float32 however long L is; the
intra-chunk segsum (T x T x N) form of Mamba-2 is not used because here the decay depends on the state index
N, which would make that matrix N times larger than the state itself. Python steps are ~3*sqrt(L), each over
(batch, D, n_chunks, N) tensors, so it is launch-bound on small inputs but needs no custom kernel.
Autograd differentiates it directly.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def scan_chunked(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, chunk_size: int | None = None
) -> tuple[Tensor, Tensor]:
    """Same contract as :func:`fusion.ops.scan_reference.scan_reference`."""
    batch, dim, length = u.shape
    groups, d_state = B.shape[1], A.shape[1]
    per_group = dim // groups
    chunk = chunk_size or max(1, math.isqrt(length - 1) + 1)
    n_chunks = -(-length // chunk)
    # Zero padding at the end is inert: delta=0 means decay 1 and no input, so the last state is unchanged.
    pad = n_chunks * chunk - length

    def time_major(t: Tensor) -> Tensor:  # (..., L) -> (T, ..., n_chunks), contiguous per time step
        return F.pad(t, (0, pad)).unflatten(-1, (n_chunks, chunk)).movedim(-1, 0).contiguous()

    delta_c = time_major(delta).view(chunk, batch, groups, per_group, n_chunks)
    delta_u = time_major(delta * u).view(chunk, batch, groups, per_group, n_chunks)
    B_c = time_major(B).transpose(-1, -2).contiguous()[:, :, :, None]  # (T, b, g, 1, n_chunks, N)
    C_c = time_major(C).transpose(-1, -2).contiguous()[:, :, :, None]
    A_g = A.view(groups, per_group, 1, d_state)  # broadcasts over (b, g, h, n_chunks, N)
    steps = list(zip(delta_c.unbind(0), delta_u.unbind(0), B_c.unbind(0), C_c.unbind(0)))

    # 1. local scans from zero, all chunks at once (decays are recomputed in pass 3 rather than kept:
    #    holding all of them would be a full (b, D, L, N) tensor even without autograd)
    local = torch.zeros(batch, groups, per_group, n_chunks, d_state, dtype=u.dtype, device=u.device)
    for delta_t, du_t, B_t, _ in steps:
        local = torch.exp(delta_t[..., None] * A_g) * local + du_t[..., None] * B_t

    # 2. carry states across chunk boundaries
    chunk_decay = torch.exp(delta_c.sum(0)[..., None] * A_g)  # (b, g, h, n_chunks, N)
    state = torch.zeros_like(local[:, :, :, 0])
    entering = []
    for decay_c, local_c in zip(chunk_decay.unbind(3), local.unbind(3)):
        entering.append(state)
        state = decay_c * state + local_c
    x = torch.stack(entering, dim=3)

    # 3. rerun each chunk from its true entering state
    ys = []
    for delta_t, du_t, B_t, C_t in steps:
        x = torch.exp(delta_t[..., None] * A_g) * x + du_t[..., None] * B_t
        ys.append((x * C_t).sum(-1))
    y = torch.stack(ys, dim=-1).reshape(batch, dim, n_chunks * chunk)[..., :length]  # (b, g, h, n_chunks, T)
    return y, state.reshape(batch, dim, d_state)
