"""Fused CPU selective scan: numba kernels with a hand-written backward, parallel over batch x channels.

Forward: one pass over time per (batch, channel) keeping the N-vector state in registers/L1; it writes y, the
last state and a checkpoint of the state every ``CHECKPOINT_EVERY`` steps, never the (batch, D, L, N) states.
Backward: per chunk, newest first, recompute the chunk's states from its checkpoint, then run the adjoint
recurrence backwards in time,

    g_t = dy_t C_t + exp(delta_{t+1} A) g_{t+1}            (gradient reaching x_t)
    dC_t += dy_t x_t,  dB_t += g_t delta_t u_t,  du_t = delta_t <g_t, B_t>
    ddelta_t = <g_t, B_t> u_t + sum_n g_tn x_{t-1,n} exp(delta_t A_n) A_n,  dA_n += sum_t (same term) delta_t

B and C are shared by the channels of a group, so their gradients are reduced over channels: each parallel
work item owns a fixed block of channels and writes its own slice of a (blocks, batch, G, L, N) buffer that is
summed afterwards — a fixed summation order, so results do not depend on thread count or scheduling.
Kernels are compiled once per dtype (float32/float64) and cached on disk.
"""
from __future__ import annotations

import logging
import math
import os
import tempfile

import numba
import numpy as np
import torch
from numba import prange
from torch import Tensor

logger = logging.getLogger(__name__)

CHECKPOINT_EVERY = 64  # time steps between stored states: memory b*D*N*L/64, recompute buffer 64*N per item
_CHANNEL_BLOCKS_PER_GROUP = 8  # gradient reduction granularity for B/C; fixed so results are deterministic


def _njit_parallel_cached(fn):
    """numba.njit(parallel=True, cache=True), falling back to a temp cache dir, then to no disk cache."""
    try:
        return numba.njit(parallel=True, cache=True)(fn)
    except RuntimeError as first_error:  # numba raises this when no cache location is writable
        numba.config.CACHE_DIR = os.path.join(tempfile.gettempdir(), "s4fuse-numba-cache")
        try:
            return numba.njit(parallel=True, cache=True)(fn)
        except RuntimeError:
            logger.warning("numba cannot cache %s (%s); it will be recompiled in every process", fn.__name__,
                           first_error)
            return numba.njit(parallel=True)(fn)


@_njit_parallel_cached
def _forward_kernel(u, delta, A, B, C, checkpoint_every, y, checkpoints, last_state):  # pragma: no cover - jitted
    batch, dim, length = u.shape
    groups, d_state = B.shape[1], A.shape[1]
    per_group = dim // groups
    for item in prange(batch * dim):
        b = item // dim
        d = item % dim
        g = d // per_group
        x = np.zeros_like(A[d])
        for t in range(length):
            if t % checkpoint_every == 0:
                checkpoints[b, d, t // checkpoint_every, :] = x
            delta_t = delta[b, d, t]
            delta_u = delta_t * u[b, d, t]
            acc = 0.0
            for n in range(d_state):
                x[n] = math.exp(delta_t * A[d, n]) * x[n] + delta_u * B[b, g, t, n]
                acc += x[n] * C[b, g, t, n]
            y[b, d, t] = acc
        last_state[b, d, :] = x


@_njit_parallel_cached
def _backward_kernel(u, delta, A, B, C, checkpoints, checkpoint_every, dy, dlast,
                     du, ddelta, dA_per_batch, dB_blocks, dC_blocks):  # pragma: no cover - jitted
    batch, dim, length = u.shape
    groups, d_state = B.shape[1], A.shape[1]
    per_group = dim // groups
    n_blocks = dB_blocks.shape[0]
    block_size = -(-per_group // n_blocks)
    n_checkpoints = checkpoints.shape[2]
    for item in prange(batch * groups * n_blocks):
        b = item // (groups * n_blocks)
        g = (item // n_blocks) % groups
        blk = item % n_blocks
        states = np.empty((checkpoint_every + 1, d_state), dtype=A.dtype)  # states[i+1] = x at step t0+i
        decays = np.empty((checkpoint_every, d_state), dtype=A.dtype)
        grad_x = np.empty(d_state, dtype=A.dtype)
        grad_A = np.empty(d_state, dtype=np.float64)
        d_start = g * per_group + blk * block_size
        d_stop = min(d_start + block_size, (g + 1) * per_group)
        for d in range(d_start, d_stop):
            grad_x[:] = dlast[b, d, :]
            grad_A[:] = 0.0
            for c in range(n_checkpoints - 1, -1, -1):
                t0 = c * checkpoint_every
                t1 = min(t0 + checkpoint_every, length)
                states[0, :] = checkpoints[b, d, c, :]
                for t in range(t0, t1):
                    i = t - t0
                    delta_t = delta[b, d, t]
                    delta_u = delta_t * u[b, d, t]
                    for n in range(d_state):
                        decay = math.exp(delta_t * A[d, n])
                        decays[i, n] = decay
                        states[i + 1, n] = decay * states[i, n] + delta_u * B[b, g, t, n]
                for t in range(t1 - 1, t0 - 1, -1):
                    i = t - t0
                    delta_t = delta[b, d, t]
                    u_t = u[b, d, t]
                    dy_t = dy[b, d, t]
                    grad_Bx = 0.0  # <g_t, B_t>
                    grad_logdecay = 0.0  # sum_n g_tn x_{t-1,n} decay_tn A_n
                    for n in range(d_state):
                        g_n = grad_x[n] + dy_t * C[b, g, t, n]
                        dC_blocks[blk, b, g, t, n] += dy_t * states[i + 1, n]
                        dB_blocks[blk, b, g, t, n] += g_n * delta_t * u_t
                        grad_Bx += g_n * B[b, g, t, n]
                        through_decay = g_n * states[i, n] * decays[i, n]
                        grad_logdecay += through_decay * A[d, n]
                        grad_A[n] += through_decay * delta_t
                        grad_x[n] = g_n * decays[i, n]
                    du[b, d, t] = grad_Bx * delta_t
                    ddelta[b, d, t] = grad_Bx * u_t + grad_logdecay
            dA_per_batch[b, d, :] = grad_A


def _set_numba_threads() -> None:
    # torch's intra-op thread count is the one knob users set (torch.set_num_threads); numba follows it.
    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))


class _CpuScanFn(torch.autograd.Function):
    """Inputs: u, delta (b, D, L); A (D, N); B, C time-major (b, G, L, N). Outputs: y (b, D, L), last (b, D, N)."""

    @staticmethod
    def forward(ctx, u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor) -> tuple[Tensor, Tensor]:
        batch, dim, length = u.shape
        d_state = A.shape[1]
        y = torch.empty_like(u)
        last_state = u.new_empty(batch, dim, d_state)
        checkpoints = u.new_empty(batch, dim, -(-length // CHECKPOINT_EVERY), d_state)
        _set_numba_threads()
        _forward_kernel(u.numpy(), delta.numpy(), A.numpy(), B.numpy(), C.numpy(), CHECKPOINT_EVERY,
                        y.numpy(), checkpoints.numpy(), last_state.numpy())
        ctx.save_for_backward(u, delta, A, B, C, checkpoints)
        return y, last_state

    @staticmethod
    def backward(ctx, dy: Tensor, dlast: Tensor):
        u, delta, A, B, C, checkpoints = ctx.saved_tensors
        batch, dim, _ = u.shape
        groups = B.shape[1]
        n_blocks = min(_CHANNEL_BLOCKS_PER_GROUP, dim // groups)
        du, ddelta = torch.empty_like(u), torch.empty_like(delta)
        dA_per_batch = A.new_empty(batch, *A.shape)
        dB_blocks = B.new_zeros(n_blocks, *B.shape)
        dC_blocks = C.new_zeros(n_blocks, *C.shape)
        _set_numba_threads()
        _backward_kernel(u.numpy(), delta.numpy(), A.numpy(), B.numpy(), C.numpy(), checkpoints.numpy(),
                         CHECKPOINT_EVERY, dy.contiguous().numpy(), dlast.contiguous().numpy(), du.numpy(),
                         ddelta.numpy(), dA_per_batch.numpy(), dB_blocks.numpy(), dC_blocks.numpy())
        return du, ddelta, dA_per_batch.sum(0), dB_blocks.sum(0), dC_blocks.sum(0)


def scan_cpu(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor) -> tuple[Tensor, Tensor]:
    """Same contract as :func:`fusion.ops.scan_reference.scan_reference`; float32 or float64 CPU tensors."""
    # time-major B/C make the inner loop over N contiguous; they are small (b, G, L, N) copies
    return _CpuScanFn.apply(u.contiguous(), delta.contiguous(), A.contiguous(),
                            B.transpose(-1, -2).contiguous(), C.transpose(-1, -2).contiguous())
