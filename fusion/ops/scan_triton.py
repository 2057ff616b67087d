"""Selective scan in Triton: fused forward and backward, no mamba-ssm needed (torch ships Triton with CUDA).

Same contract as :func:`fusion.ops.scan_mamba.scan_mamba`: raw delta, bias and softplus, the D skip and the
z gate are fused; B, C are (batch, G, N, L); float32/float16/bfloat16 inputs, float32 state and arithmetic.

Grid: one program per (batch, group, block of ``BLOCK_D`` channels of that group), so every channel of a
program reads the same B_t, C_t. Per time step t and channel d (state index n)::

    dt_t  = softplus(delta_t + bias)                    (bias / softplus optional)
    a_tn  = exp(dt_t A_n),   x_t = a_t x_{t-1} + dt_t u_t B_t,   y_t = <x_t, C_t>
    out_t = (y_t + D u_t) silu(z_t)                      (D / z optional)

Forward: the program walks t = 0..L-1 with x[BLOCK_D, N] in registers and stores x every ``K`` steps
(checkpoints, b*D*N*L/K floats); it writes out and the last state, never the (b, D, L, N) states.

Backward: chunks of K steps, newest first. Each chunk reruns the forward from its checkpoint, writing the K
states it passes through to a per-program scratch buffer (K*BLOCK_D*N floats), then walks the chunk
backwards in time (scratch read in reversed order; no reversed Triton scans) with the adjoint
g_t = dL/dx_t, carried as h = a_{t+1} g_{t+1} (h = dL/d last_state at t = L-1)::

    s_t = y_t + D u_t;  dz_t = dout_t s_t silu'(z_t);  dy_t = dout_t silu(z_t)
    g_t = h + dy_t C_t;   h <- a_t g_t
    dC_t += sum_d dy_t x_t,   dB_t += sum_d g_t dt_t u_t
    du_t = dt_t <g_t, B_t> + D dy_t,   dD += dy_t u_t
    ddt_t = u_t <g_t, B_t> + sum_n g_tn x_{t-1,n} a_tn A_n,   dA_n += g_tn x_{t-1,n} a_tn dt_t
    ddelta_t = ddt_t softplus'(delta_t + bias),   dbias += ddelta_t

B/C are shared by a group's channels, so dB/dC are sums over channels: each program writes its block's
partial sum (``tl.sum`` over its channels) to its own slice of a (blocks, b, G, N, L) buffer, and torch sums
the blocks; dA, dD, dbias are written per batch and summed by torch. Every sum has a fixed order: results
are deterministic. Memory: O(b*D*L) for inputs and gradients plus O(b*D*N*L/K) checkpoints.

Only ``tl.exp``/``tl.log`` are used (no libdevice externs), softplus' log1p via log(w)*e/(w-1), w = 1+e.
With ``TRITON_INTERPRET=1`` in the environment before Triton is first imported (Triton decorates its own
standard library, e.g. ``tl.sum``, at import), the kernels run in Triton's CPU interpreter on CPU tensors:
that is how the tests check them without a GPU.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor
from triton.runtime.interpreter import InterpretedFunction

CHECKPOINT_EVERY = 64  # K: time steps between stored states (memory b*D*N*L/K, scratch K*BLOCK_D*N per program)
BLOCK_D = 16  # most channels per program; fewer when batch*D is small (see _launch_config)
MIN_BLOCK_D = 4  # fewest: the dB/dC partial-sum buffer holds per_group/BLOCK_D copies of B's size
TARGET_PROGRAMS = 1024  # time is sequential, so parallelism comes from programs alone (not tuned on a GPU yet)


@triton.jit
def _softplus(x):
    """log(1 + e^x), with log1p(e) as log(w) * e / (w - 1), w = 1 + e (no libdevice log1p); x > 20: x."""
    e = tl.exp(tl.minimum(x, 20.0))
    w = 1.0 + e
    log1p_e = tl.where(w == 1.0, e, tl.log(w) * e / tl.where(w == 1.0, 1.0, w - 1.0))
    return tl.where(x > 20.0, x, log1p_e)


@triton.jit
def _program_coords(pid, n_blocks, n_groups, per_group, d_state, BLOCK_D: tl.constexpr, N_PAD: tl.constexpr):
    """Program id -> (channel block, group, batch), the block's channels d with their mask, state indices."""
    blk = pid % n_blocks
    g = (pid // n_blocks) % n_groups
    b = pid // (n_blocks * n_groups)
    offs_c = blk * BLOCK_D + tl.arange(0, BLOCK_D)  # channel within the group
    offs_n = tl.arange(0, N_PAD)
    return blk, g, b, g * per_group + offs_c, offs_c < per_group, offs_n, offs_n < d_state


@triton.jit
def _channel_params(A_ptr, D_ptr, bias_ptr, d, mask_d, offs_n, mask_dn, d_state, BLOCK_D: tl.constexpr,
                    HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr):
    """The block's A (BLOCK_D, N_PAD), delta bias and D skip (zeros when absent: adding 0 is exact)."""
    A = tl.load(A_ptr + d[:, None] * d_state + offs_n[None, :], mask=mask_dn, other=0.0).to(tl.float32)
    bias = tl.zeros((BLOCK_D,), dtype=tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + d, mask=mask_d, other=0.0).to(tl.float32)
    skip = tl.zeros((BLOCK_D,), dtype=tl.float32)
    if HAS_D:
        skip = tl.load(D_ptr + d, mask=mask_d, other=0.0).to(tl.float32)
    return A, bias, skip


@triton.jit
def _step_inputs(u_ptr, delta_ptr, B_ptr, row, bc_row, t, length, mask_d, mask_n, bias, SOFTPLUS: tl.constexpr):
    """Time step t's u, biased delta before/after softplus (0 on padded steps and channels: decay 1,
    no input) and B, with the step's channel mask."""
    mask_t = mask_d & (t < length)
    u = tl.load(u_ptr + row + t, mask=mask_t, other=0.0).to(tl.float32)
    raw_dt = tl.load(delta_ptr + row + t, mask=mask_t, other=0.0).to(tl.float32) + bias
    dt = raw_dt
    if SOFTPLUS:
        dt = _softplus(raw_dt)
    dt = tl.where(mask_t, dt, 0.0)
    Bt = tl.load(B_ptr + bc_row + t, mask=mask_n & (t < length), other=0.0).to(tl.float32)
    return mask_t, u, raw_dt, dt, Bt


@triton.jit
def _forward_kernel(u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr,
                    out_ptr, last_ptr, ckpt_ptr,
                    dim, length, d_state, per_group, n_groups, n_blocks, n_chunks,
                    BLOCK_D: tl.constexpr, N_PAD: tl.constexpr, K: tl.constexpr, HAS_D: tl.constexpr,
                    HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    pid = tl.program_id(0)
    blk, g, b, d, mask_d, offs_n, mask_n = _program_coords(pid, n_blocks, n_groups, per_group, d_state, BLOCK_D, N_PAD)
    mask_dn = mask_d[:, None] & mask_n[None, :]
    A, bias, skip = _channel_params(A_ptr, D_ptr, bias_ptr, d, mask_d, offs_n, mask_dn, d_state, BLOCK_D, HAS_D,
                                    HAS_BIAS)
    row = (b.to(tl.int64) * dim + d) * length  # (BLOCK_D,) offsets of the channels' time rows
    bc_row = ((b.to(tl.int64) * n_groups + g) * d_state + offs_n) * length  # (N_PAD,)
    ckpt = ((b.to(tl.int64) * dim + d[:, None]) * n_chunks * d_state + offs_n[None, :])  # + chunk * d_state
    x = tl.zeros((BLOCK_D, N_PAD), dtype=tl.float32)
    for c in range(0, n_chunks):
        tl.store(ckpt_ptr + ckpt + c * d_state, x, mask=mask_dn)
        for i in range(K):
            t = c * K + i
            mask_t, u, raw_dt, dt, Bt = _step_inputs(u_ptr, delta_ptr, B_ptr, row, bc_row, t, length, mask_d,
                                                     mask_n, bias, SOFTPLUS)
            Ct = tl.load(C_ptr + bc_row + t, mask=mask_n & (t < length), other=0.0).to(tl.float32)
            x = tl.exp(dt[:, None] * A) * x + (dt * u)[:, None] * Bt[None, :]
            y = tl.sum(x * Ct[None, :], axis=1)
            if HAS_D:
                y += skip * u
            if HAS_Z:
                zt = tl.load(z_ptr + row + t, mask=mask_t, other=0.0).to(tl.float32)
                y = y * zt / (1.0 + tl.exp(-zt))
            tl.store(out_ptr + row + t, y.to(out_ptr.dtype.element_ty), mask=mask_t)
    tl.store(last_ptr + (b.to(tl.int64) * dim + d[:, None]) * d_state + offs_n[None, :], x, mask=mask_dn)


@triton.jit
def _backward_kernel(u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, ckpt_ptr,
                     dout_ptr, dlast_ptr, scratch_ptr,
                     du_ptr, ddelta_ptr, dz_ptr, dA_ptr, dD_ptr, dbias_ptr, dB_ptr, dC_ptr,
                     batch, dim, length, d_state, per_group, n_groups, n_blocks, n_chunks,
                     BLOCK_D: tl.constexpr, N_PAD: tl.constexpr, K: tl.constexpr, HAS_D: tl.constexpr,
                     HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    pid = tl.program_id(0)
    blk, g, b, d, mask_d, offs_n, mask_n = _program_coords(pid, n_blocks, n_groups, per_group, d_state, BLOCK_D, N_PAD)
    mask_dn = mask_d[:, None] & mask_n[None, :]
    A, bias, skip = _channel_params(A_ptr, D_ptr, bias_ptr, d, mask_d, offs_n, mask_dn, d_state, BLOCK_D, HAS_D,
                                    HAS_BIAS)
    row = (b.to(tl.int64) * dim + d) * length
    bc_row = ((b.to(tl.int64) * n_groups + g) * d_state + offs_n) * length
    # this block's slice of the (blocks, b, G, N, L) dB/dC partial sums
    part_row = (((blk.to(tl.int64) * batch + b) * n_groups + g) * d_state + offs_n) * length
    ckpt = ((b.to(tl.int64) * dim + d[:, None]) * n_chunks * d_state + offs_n[None, :])
    state_dn = (b.to(tl.int64) * dim + d[:, None]) * d_state + offs_n[None, :]
    scratch = pid.to(tl.int64) * K * BLOCK_D * N_PAD + tl.arange(0, BLOCK_D)[:, None] * N_PAD + offs_n[None, :]
    h = tl.load(dlast_ptr + state_dn, mask=mask_dn, other=0.0).to(tl.float32)
    dA_acc = tl.zeros((BLOCK_D, N_PAD), dtype=tl.float32)
    dD_acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
    dbias_acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
    for c_rev in range(0, n_chunks):
        c = n_chunks - 1 - c_rev
        # 1. rerun the chunk from its checkpoint; scratch[i] = x_{t-1} for t = c*K + i
        x = tl.load(ckpt_ptr + ckpt + c * d_state, mask=mask_dn, other=0.0)
        for i in range(K):
            t = c * K + i
            tl.store(scratch_ptr + scratch + i * BLOCK_D * N_PAD, x)
            mask_t, u, raw_dt, dt, Bt = _step_inputs(u_ptr, delta_ptr, B_ptr, row, bc_row, t, length, mask_d,
                                                     mask_n, bias, SOFTPLUS)
            x = tl.exp(dt[:, None] * A) * x + (dt * u)[:, None] * Bt[None, :]
        tl.debug_barrier()  # scratch written by all threads before any reads it back
        # 2. adjoint, newest step first
        for i_rev in range(K):
            i = K - 1 - i_rev
            t = c * K + i
            x_prev = tl.load(scratch_ptr + scratch + i * BLOCK_D * N_PAD)
            mask_t, u, raw_dt, dt, Bt = _step_inputs(u_ptr, delta_ptr, B_ptr, row, bc_row, t, length, mask_d,
                                                     mask_n, bias, SOFTPLUS)
            Ct = tl.load(C_ptr + bc_row + t, mask=mask_n & (t < length), other=0.0).to(tl.float32)
            decay = tl.exp(dt[:, None] * A)
            x = decay * x_prev + (dt * u)[:, None] * Bt[None, :]
            dy = tl.load(dout_ptr + row + t, mask=mask_t, other=0.0).to(tl.float32)
            if HAS_Z:
                zt = tl.load(z_ptr + row + t, mask=mask_t, other=0.0).to(tl.float32)
                sig = 1.0 / (1.0 + tl.exp(-zt))
                s = tl.sum(x * Ct[None, :], axis=1)
                if HAS_D:
                    s += skip * u
                tl.store(dz_ptr + row + t, dy * s * sig * (1.0 + zt * (1.0 - sig)), mask=mask_t)
                dy = dy * zt * sig
            g_x = h + dy[:, None] * Ct[None, :]
            gB = tl.sum(g_x * Bt[None, :], axis=1)
            through_decay = g_x * x_prev * decay
            ddt = gB * u + tl.sum(through_decay * A, axis=1)
            dA_acc += through_decay * dt[:, None]
            h = g_x * decay
            du = gB * dt
            if HAS_D:
                du += skip * dy
                dD_acc += dy * u
            if SOFTPLUS:
                e = tl.exp(tl.minimum(raw_dt, 20.0))
                ddt = ddt * tl.where(raw_dt > 20.0, 1.0, e / (1.0 + e))  # softplus' = sigmoid
            ddt = tl.where(mask_t, ddt, 0.0)
            dbias_acc += ddt
            tl.store(du_ptr + row + t, du, mask=mask_t)
            tl.store(ddelta_ptr + row + t, ddt, mask=mask_t)
            mask_nt = mask_n & (t < length)
            tl.store(dC_ptr + part_row + t, tl.sum(dy[:, None] * x, axis=0), mask=mask_nt)
            tl.store(dB_ptr + part_row + t, tl.sum(g_x * (dt * u)[:, None], axis=0), mask=mask_nt)
        tl.debug_barrier()  # all reads of scratch done before the next chunk overwrites it
    per_batch = b.to(tl.int64) * dim + d
    tl.store(dA_ptr + state_dn, dA_acc, mask=mask_dn)
    if HAS_D:
        tl.store(dD_ptr + per_batch, dD_acc, mask=mask_d)
    if HAS_BIAS:
        tl.store(dbias_ptr + per_batch, dbias_acc, mask=mask_d)


INTERPRETED = isinstance(_forward_kernel, InterpretedFunction)
"""True when the kernels were built for Triton's CPU interpreter (TRITON_INTERPRET=1 at import)."""


def _launch_config(u: Tensor, B: Tensor, A: Tensor) -> dict:
    batch, dim, length = u.shape
    groups, d_state = B.shape[1], A.shape[1]
    per_group = dim // groups
    # enough programs to fill a GPU when batch*D is small (inference), big blocks when it is large (training)
    block_d = min(BLOCK_D, max(MIN_BLOCK_D, triton.next_power_of_2(triton.cdiv(batch * dim, TARGET_PROGRAMS))))
    n_pad = triton.next_power_of_2(d_state)
    n_blocks = triton.cdiv(per_group, block_d)
    return dict(grid=(batch * groups * n_blocks,), n_blocks=n_blocks, n_chunks=triton.cdiv(length, CHECKPOINT_EVERY),
                sizes=(dim, length, d_state, per_group, groups), block_d=block_d, n_pad=n_pad,
                num_warps=max(1, min(4, block_d * n_pad // 64)))


class _TritonScanFn(torch.autograd.Function):
    """Inputs contiguous; B, C (b, G, N, L). Outputs: out (b, D, L) in u's dtype, last state (b, D, N) float32."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus: bool):
        cfg = _launch_config(u, B, A)
        batch, dim, length = u.shape
        d_state = A.shape[1]
        out = torch.empty_like(u)
        last_state = u.new_empty(batch, dim, d_state, dtype=torch.float32)
        checkpoints = u.new_empty(batch, dim, cfg["n_chunks"], d_state, dtype=torch.float32)
        flags = dict(HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
                     SOFTPLUS=delta_softplus)
        _forward_kernel[cfg["grid"]](u, delta, A, B, C, D, z, delta_bias, out, last_state, checkpoints,
                                    *cfg["sizes"], cfg["n_blocks"], cfg["n_chunks"], BLOCK_D=cfg["block_d"],
                                    N_PAD=cfg["n_pad"], K=CHECKPOINT_EVERY, num_warps=cfg["num_warps"], **flags)
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, checkpoints)
        ctx.flags = flags
        return out, last_state

    @staticmethod
    def backward(ctx, dout, dlast):
        u, delta, A, B, C, D, z, delta_bias, checkpoints = ctx.saved_tensors
        cfg = _launch_config(u, B, A)
        batch, dim, length = u.shape
        f32 = dict(dtype=torch.float32, device=u.device)
        dlast = torch.zeros(batch, dim, A.shape[1], **f32) if dlast is None else dlast.float().contiguous()
        du, ddelta = torch.empty(u.shape, **f32), torch.empty(u.shape, **f32)
        dz = torch.empty(u.shape, **f32) if z is not None else None
        dA = torch.empty(batch, *A.shape, **f32)
        dD = torch.empty(batch, dim, **f32) if D is not None else None
        dbias = torch.empty(batch, dim, **f32) if delta_bias is not None else None
        dB = torch.empty(cfg["n_blocks"], *B.shape, **f32)  # every (block, b, g, n < N, t < L) is written
        dC = torch.empty(cfg["n_blocks"], *C.shape, **f32)
        scratch = torch.empty(cfg["grid"][0] * CHECKPOINT_EVERY * cfg["block_d"] * cfg["n_pad"], **f32)
        _backward_kernel[cfg["grid"]](u, delta, A, B, C, D, z, delta_bias, checkpoints, dout.contiguous(), dlast,
                                     scratch, du, ddelta, dz, dA, dD, dbias, dB, dC, batch, *cfg["sizes"],
                                     cfg["n_blocks"], cfg["n_chunks"], BLOCK_D=cfg["block_d"], N_PAD=cfg["n_pad"],
                                     K=CHECKPOINT_EVERY, num_warps=cfg["num_warps"], **ctx.flags)
        # fixed-order sums over batch / channel blocks, then each gradient in its input's dtype
        grads = (du, ddelta, dA.sum(0), dB.sum(0), dC.sum(0), None if D is None else dD.sum(0), dz,
                 None if delta_bias is None else dbias.sum(0))
        inputs = (u, delta, A, B, C, D, z, delta_bias)
        return (*(None if grad is None else grad.to(x.dtype) for grad, x in zip(grads, inputs)), None)


def scan_triton(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None, z: Tensor | None,
                delta_bias: Tensor | None, delta_softplus: bool) -> tuple[Tensor, Tensor]:
    """Full selective scan (bias, softplus, D skip, z gate fused). B, C: (b, G, N, L). Returns (out, last_state)."""
    if u.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"selective_scan: backend='triton' computes in float32 from float32/float16/bfloat16 "
                         f"inputs, got {u.dtype}; use backend='reference' or 'chunked' for float64")
    u, delta, A, B, C = (t.contiguous() for t in (u, delta, A, B, C))
    D, z, delta_bias = (None if t is None else t.contiguous() for t in (D, z, delta_bias))
    out, last_state = _TritonScanFn.apply(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    return out, last_state
