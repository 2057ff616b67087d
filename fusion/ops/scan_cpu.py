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

Speed: without Intel SVML numba calls the scalar libm ``expf`` for each of the N decays per step, which was
~70% of the kernels' time. For float32 the decays come from a polynomial ``exp`` (Cephes ``expf``'s range
reduction and minimax polynomial: max relative error 6e-8 over [-87, 0], the same as libm's float32 rounding)
that LLVM vectorises over N; float64 keeps libm ``exp`` (it is the precision path that matches the official
vectors). The kernels allow re-association (``fastmath`` reassoc/contract), so the per-step sums over N are
vectorised too; the summation order is still fixed by the compiled code, not by threads.
Kernels are compiled once per dtype (float32/float64) and cached on disk.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import tempfile

import numba
import numpy as np
import torch
from numba import prange
from numba.extending import overload
from torch import Tensor

from fusion.ops.denormals import enter_flush_to_zero, restore_float_mode

logger = logging.getLogger(__name__)

CHECKPOINT_EVERY = 64  # time steps between stored states: memory b*D*N*L/64, recompute buffer 64*N per item
_CHANNEL_BLOCKS_PER_GROUP = 8  # gradient reduction granularity for B/C; fixed so results are deterministic


_KERNEL_FASTMATH = {"reassoc", "contract"}  # vectorise the sums over N; no nnan/ninf: NaNs must propagate


def _njit_cached(fn, **options):
    """numba.njit(cache=True, **options), falling back to a temp cache dir, then to no disk cache."""
    try:
        return numba.njit(cache=True, **options)(fn)
    except RuntimeError as first_error:  # numba raises this when no cache location is writable
        numba.config.CACHE_DIR = os.path.join(tempfile.gettempdir(), "s4fuse-numba-cache")
        try:
            return numba.njit(cache=True, **options)(fn)
        except RuntimeError:
            logger.warning(
                "numba cannot cache %s (%s); it will be recompiled in every process", fn.__name__, first_error
            )
            return numba.njit(**options)(fn)


def _njit_parallel_cached(fn):
    return _njit_cached(fn, parallel=True, fastmath=_KERNEL_FASTMATH)


def _bits_view(values):
    """The same memory as integers of the same width (float32 -> int32, float64 -> int64)."""
    return values.view(np.int32 if values.itemsize == 4 else np.int64)


@overload(_bits_view)
def _bits_view_jitted(values):  # numba types each dtype's view statically
    if values.dtype.bitwidth == 32:
        return lambda values: values.view(np.int32)
    return lambda values: values.view(np.int64)


@functools.partial(_njit_cached, inline="always")  # a call per time step costs more than the exps
def _fill_decays(delta_t, A, d, out, out_bits, row, polynomial_exp):  # pragma: no cover - jitted
    """out[row, n] = exp(delta_t * A[d, n]); ``polynomial_exp`` (float32 only) uses the vectorisable polynomial.

    Indices instead of row views: a view per time step costs numba a reference count update. Inlined, it
    compiles with the kernels' reassoc/contract flags; the range reduction x - k*ln2 keeps its accuracy
    under them (tests/fusion/ops/test_selective_scan.py measures the kernel's decays against float64 exp).
    Arguments below -87 (subnormal results, only from decays < 1.7e-38) return exp(-87); above 88, exp(88).
    """
    if not polynomial_exp:
        for n in range(A.shape[1]):
            out[row, n] = math.exp(delta_t * A[d, n])
        return
    for n in range(A.shape[1]):
        x = min(max(delta_t * A[d, n], np.float32(-87.0)), np.float32(88.0))
        k = math.floor(x * np.float32(1.4426950408889634) + np.float32(0.5))  # exp(x) = 2^k exp(r)
        r = x - k * np.float32(0.693359375)  # ln 2 in two parts: k * 0.693359375 is exact in float32
        r = r - k * np.float32(-2.12194440e-4)
        p = np.float32(1.9875691500e-4)  # minimax polynomial of (exp(r) - 1 - r) / r^2 on |r| <= ln(2)/2
        p = p * r + np.float32(1.3981999507e-3)
        p = p * r + np.float32(8.3334519073e-3)
        p = p * r + np.float32(4.1665795894e-2)
        p = p * r + np.float32(1.6666665459e-1)
        p = p * r + np.float32(5.0000001201e-1)
        p = p * r * r + r + np.float32(1.0)
        out_bits[row, n] = (np.int32(k) + np.int32(127)) << np.int32(
            23
        )  # the float32 2^k, written as its bits
        out[row, n] = out[row, n] * p


@_njit_parallel_cached
def _forward_kernel(
    u, delta, A, B, C, checkpoint_every, polynomial_exp, y, checkpoints, last_state
):  # pragma: no cover - jitted
    batch, dim, length = u.shape
    groups, d_state = B.shape[1], A.shape[1]
    per_group = dim // groups
    for item in prange(batch * dim):
        float_mode = enter_flush_to_zero()
        b = item // dim
        d = item % dim
        g = d // per_group
        x = np.zeros(d_state, dtype=A.dtype)
        decay = np.empty((1, d_state), dtype=A.dtype)
        decay_bits = _bits_view(decay)
        for t in range(length):
            if t % checkpoint_every == 0:
                checkpoints[b, d, t // checkpoint_every, :] = x
            delta_t = delta[b, d, t]
            delta_u = delta_t * u[b, d, t]
            _fill_decays(delta_t, A, d, decay, decay_bits, 0, polynomial_exp)
            acc = 0.0
            for n in range(d_state):
                x[n] = decay[0, n] * x[n] + delta_u * B[b, g, t, n]
                acc += x[n] * C[b, g, t, n]
            y[b, d, t] = acc
        last_state[b, d, :] = x
        restore_float_mode(float_mode)


@_njit_parallel_cached
def _backward_kernel(
    u,
    delta,
    A,
    B,
    C,
    checkpoints,
    checkpoint_every,
    polynomial_exp,
    dy,
    dlast,
    du,
    ddelta,
    dA_per_batch,
    dB_blocks,
    dC_blocks,
):  # pragma: no cover - jitted
    batch, dim, length = u.shape
    groups, d_state = B.shape[1], A.shape[1]
    per_group = dim // groups
    n_blocks = dB_blocks.shape[0]
    block_size = -(-per_group // n_blocks)
    n_checkpoints = checkpoints.shape[2]
    for item in prange(batch * groups * n_blocks):
        float_mode = enter_flush_to_zero()
        b = item // (groups * n_blocks)
        g = (item // n_blocks) % groups
        blk = item % n_blocks
        states = np.empty((checkpoint_every + 1, d_state), dtype=A.dtype)  # states[i+1] = x at step t0+i
        decays = np.empty((checkpoint_every, d_state), dtype=A.dtype)
        decays_bits = _bits_view(decays)
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
                    _fill_decays(delta_t, A, d, decays, decays_bits, i, polynomial_exp)
                    for n in range(d_state):
                        states[i + 1, n] = decays[i, n] * states[i, n] + delta_u * B[b, g, t, n]
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
        restore_float_mode(float_mode)


def _set_numba_threads() -> None:
    """numba follows torch's intra-op thread count, the one knob users set (torch.set_num_threads)."""
    threads = torch.get_num_threads()
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    # Starting numba's OpenMP layer (first call in a process) sets the process-wide OpenMP thread count to
    # NUMBA_NUM_THREADS, which torch reads: OMP_NUM_THREADS=1 processes then ran torch on every core.
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


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
        _forward_kernel(
            u.numpy(),
            delta.numpy(),
            A.numpy(),
            B.numpy(),
            C.numpy(),
            CHECKPOINT_EVERY,
            u.dtype == torch.float32,
            y.numpy(),
            checkpoints.numpy(),
            last_state.numpy(),
        )
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
        _backward_kernel(
            u.numpy(),
            delta.numpy(),
            A.numpy(),
            B.numpy(),
            C.numpy(),
            checkpoints.numpy(),
            CHECKPOINT_EVERY,
            u.dtype == torch.float32,
            dy.contiguous().numpy(),
            dlast.contiguous().numpy(),
            du.numpy(),
            ddelta.numpy(),
            dA_per_batch.numpy(),
            dB_blocks.numpy(),
            dC_blocks.numpy(),
        )
        return du, ddelta, dA_per_batch.sum(0), dB_blocks.sum(0), dC_blocks.sum(0)


def scan_cpu(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor) -> tuple[Tensor, Tensor]:
    """Same contract as :func:`fusion.ops.scan_reference.scan_reference`; float32 or float64 CPU tensors."""
    # time-major B/C make the inner loop over N contiguous; they are small (b, G, L, N) copies
    return _CpuScanFn.apply(
        u.contiguous(),
        delta.contiguous(),
        A.contiguous(),
        B.transpose(-1, -2).contiguous(),
        C.transpose(-1, -2).contiguous(),
    )
