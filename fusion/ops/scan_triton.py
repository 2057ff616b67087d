"""Selective scan in Triton, parallel along L: fused forward and backward, no mamba-ssm needed.

Same contract as :func:`fusion.ops.scan_mamba.scan_mamba`: raw delta, bias and softplus, the D skip and the
z gate are fused; B, C are (batch, G, N, L); float32/float16/bfloat16 inputs, float32 state and arithmetic.
Per time step t and channel d (state index n)::

    dt_t = softplus(delta_t + bias)                    (bias / softplus optional)
    a_t  = exp(dt_t A),   x_t = a_t x_{t-1} + b_t,   b_t = dt_t u_t B_t,   y_t = <x_t, C_t>
    out_t = (y_t + D u_t) silu(z_t)                     (D / z optional)

Grid: one program per (batch, group, block of ``BLOCK_D`` channels of that group); every channel of a program
reads the same B, C. A program walks L in tiles of ``BLOCK_L`` steps. Per tile it loads u, delta as
[BLOCK_D, BLOCK_L] and B, C as [N_PAD, BLOCK_L] (contiguous along L), forms the decays a and inputs b as
[BLOCK_D, N_PAD, BLOCK_L], folds the state carried in from the previous tile into the first input
(b_0 += a_0 x_in) and solves the tile with ``tl.associative_scan`` on pairs (a, b) under
(a1, b1) . (a2, b2) = (a1 a2, b1 a2 + b2): log2(BLOCK_L) dependent steps instead of BLOCK_L. The tile's last
state is carried on. The forward stores each tile's entering state (checkpoints, b*D*N*L/BLOCK_L floats),
never the (b, D, L, N) states.

Backward, tiles newest first. Each tile reruns its forward scan from its checkpoint, then solves the adjoint
g_t = dL/dx_t = a_{t+1} g_{t+1} + dy_t C_t as a scan on the tile loaded in reversed time order (pairs
(a_{t+1}, dy_t C_t); the gradient carried in from the next tile, a_{t0'} g_{t0'}, folds into the first) and
flips the result back with ``tl.flip``. (No ``reverse=True``: Triton's reverse scan has miscompiled
non-commutative combines, triton-lang/triton#4362.) With a_t x_{t-1} = x_t - b_t::

    s_t = y_t + D u_t;  dz_t = dout_t s_t silu'(z_t);  dy_t = dout_t silu(z_t)
    du_t = dt_t <g_t, B_t> + D dy_t,  dD += dy_t u_t,  dC_t += sum_d dy_t x_t,  dB_t += sum_d g_t dt_t u_t
    ddt_t = u_t <g_t, B_t> + sum_n g_tn (x_t - b_t)_n A_n,   dA_n += g_tn (x_t - b_t)_n dt_t
    ddelta_t = ddt_t softplus'(delta_t + bias),   dbias += ddelta_t

B/C are shared by a group's channels, so dB/dC are sums over channels: each program writes its block's
partial sum to its own slice of a (blocks, b, G, N, L) buffer and torch sums the blocks; dA, dD, dbias are
written per batch and summed by torch. No atomics, every sum in a fixed order: results are deterministic.

Launch: the forward's channels per program and warps are ``triton.autotune`` configs (a GPU run picks the
fastest); the backward's channels per program are chosen here (they size the dB/dC buffer) and its warps are
tuned. A tile is BLOCK_L = 64 steps up to N_PAD 16 and 32 steps at N_PAD 32 (:func:`tile_length`: the same
floats per channel), and warps are sized so a tile tensor is <= 8 (forward) / 4 (backward) floats per
thread, so nothing spills at S4Fusion's d_state 12 and 18 (``tests/fusion/ops/test_scan_triton_compile.py`` compiles them all for sm_80 and sm_90 and checks ptxas).

Only ``tl.exp``/``tl.log`` are used (no libdevice externs), softplus' log1p via log(w)*e/(w-1), w = 1+e.
With ``TRITON_INTERPRET=1`` in the environment before Triton is first imported, the kernels run in Triton's
CPU interpreter on CPU tensors: that is how the tests check them without a GPU.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor
from triton.runtime.interpreter import InterpretedFunction

BLOCK_L = 64  # time steps per tile at N_PAD <= 16 = checkpoint interval (log2(64) = 6 dependent scan levels)
# one [BLOCK_D, N_PAD, tile] tensor per thread: the forward holds ~6 such tensors, the backward ~12
FORWARD_FLOATS_PER_THREAD = 8
BACKWARD_FLOATS_PER_THREAD = 4
TARGET_PROGRAMS = 1024  # backward: fewest channels per program that still launches this many programs


def tile_length(n_pad: int) -> int:
    """Time steps per tile: BLOCK_L up to N_PAD 16, fewer for wider states (32 at S4Fusion's d_state 18), so
    a channel's tile is always 16 * BLOCK_L floats and every config's registers fit both state sizes."""
    return max(1, BLOCK_L * 16 // max(16, n_pad))


def _warps(block_d: int, floats_per_thread: int) -> int:
    return max(1, min(16, block_d * 16 * BLOCK_L // (32 * floats_per_thread)))


FORWARD_CONFIGS = [
    triton.Config({"BLOCK_D": block_d}, num_warps=_warps(block_d, FORWARD_FLOATS_PER_THREAD))
    for block_d in (1, 2, 4)
]
BACKWARD_CONFIGS = [triton.Config({}, num_warps=warps) for warps in (8, 16)]
"""The backward's channels per program come from :func:`backward_blocks` (they size the dB/dC buffer)."""


@triton.jit
def _combine(a1, b1, a2, b2):
    """(a1, b1) then (a2, b2): x -> a2 (a1 x + b1) + b2."""
    return a1 * a2, b1 * a2 + b2


@triton.jit
def _softplus(x):
    """log(1 + e^x), with log1p(e) as log(w) * e / (w - 1), w = 1 + e (no libdevice log1p); x > 20: x."""
    e = tl.exp(tl.minimum(x, 20.0))
    w = 1.0 + e
    log1p_e = tl.where(w == 1.0, e, tl.log(w) * e / tl.where(w == 1.0, 1.0, w - 1.0))
    return tl.where(x > 20.0, x, log1p_e)


@triton.jit
def _program_coords(n_groups, per_group, channels):
    """Program id -> (channel block, group, batch) for blocks of ``channels`` channels of one group."""
    pid = tl.program_id(0)
    n_blocks = tl.cdiv(per_group, channels)
    return pid % n_blocks, (pid // n_blocks) % n_groups, pid // (n_blocks * n_groups)


@triton.jit
def _channel_rows(
    b, g, first, dim, length, per_group, d_state, n_tiles, BLOCK_D: tl.constexpr, N_PAD: tl.constexpr
):
    """Channels first..first+BLOCK_D-1 of group g: their indices d and mask, state indices and mask, and
    offsets of their time rows, states (b, D, N) and checkpoints (b, D, tiles, N) (+ tile * d_state)."""
    offs_c = first + tl.arange(0, BLOCK_D)  # channel within the group
    d = g * per_group + offs_c
    mask_d = offs_c < per_group
    offs_n = tl.arange(0, N_PAD)
    mask_n = offs_n < d_state
    row = (b.to(tl.int64) * dim + d) * length
    state_dn = (b.to(tl.int64) * dim + d[:, None]) * d_state + offs_n[None, :]
    ckpt_dn = (b.to(tl.int64) * dim + d[:, None]) * n_tiles * d_state + offs_n[None, :]
    return d, mask_d, offs_n, mask_n, mask_d[:, None] & mask_n[None, :], row, state_dn, ckpt_dn


@triton.jit
def _channel_params(
    A_ptr,
    D_ptr,
    bias_ptr,
    d,
    mask_d,
    offs_n,
    mask_dn,
    d_state,
    BLOCK_D: tl.constexpr,
    HAS_D: tl.constexpr,
    HAS_BIAS: tl.constexpr,
):
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
def _load_rows(ptr, row, t, mask):
    """[BLOCK_D, BLOCK_L] of a (b, D, L) tensor at times t, in float32 (0 where masked)."""
    return tl.load(ptr + row[:, None] + t[None, :], mask=mask, other=0.0).to(tl.float32)


@triton.jit
def _load_dt(delta_ptr, row, t, mask, bias, SOFTPLUS: tl.constexpr):
    """Biased delta before and after softplus at times t; dt = 0 where masked (decay 1, no input)."""
    raw = _load_rows(delta_ptr, row, t, mask) + bias[:, None]
    dt = raw
    if SOFTPLUS:
        dt = _softplus(raw)
    return raw, tl.where(mask, dt, 0.0)


@triton.jit
def _gated_dy(dout_ptr, z_ptr, row, t, mask, HAS_Z: tl.constexpr):
    """dL/dy at times t: dout silu(z) (the gate does not depend on y), with z and sigmoid(z) for dz."""
    dy = _load_rows(dout_ptr, row, t, mask)
    z = dy
    sig = dy
    if HAS_Z:
        z = _load_rows(z_ptr, row, t, mask)
        sig = 1.0 / (1.0 + tl.exp(-z))
        dy = dy * z * sig
    return dy, z, sig


@triton.jit
def _tile_states(
    u_ptr, delta_ptr, B_ptr, row, bc_row, t, mask_dt, mask_nt, first, A, bias, x_in, SOFTPLUS: tl.constexpr
):
    """One tile's states x [BLOCK_D, N_PAD, BLOCK_L] from the entering state x_in, by an associative scan,
    with the tile's u, dt, raw delta, inputs b (without x_in) and B."""
    u = _load_rows(u_ptr, row, t, mask_dt)
    raw_dt, dt = _load_dt(delta_ptr, row, t, mask_dt, bias, SOFTPLUS)
    Bt = tl.load(B_ptr + bc_row[:, None] + t[None, :], mask=mask_nt, other=0.0).to(tl.float32)
    a = tl.exp(dt[:, None, :] * A[:, :, None])
    b = (dt * u)[:, None, :] * Bt[None, :, :]
    _, x = tl.associative_scan((a, b + tl.where(first, a * x_in[:, :, None], 0.0)), 2, _combine)
    return x, u, dt, raw_dt, b, Bt


@triton.jit
def _forward_kernel(
    u_ptr,
    delta_ptr,
    A_ptr,
    B_ptr,
    C_ptr,
    D_ptr,
    z_ptr,
    bias_ptr,
    out_ptr,
    last_ptr,
    ckpt_ptr,
    batch,
    dim,
    length,
    d_state,
    per_group,
    n_groups,
    n_tiles,
    BLOCK_D: tl.constexpr,
    N_PAD: tl.constexpr,
    BLOCK_L: tl.constexpr,
    HAS_D: tl.constexpr,
    HAS_Z: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr,
):
    blk, g, b = _program_coords(n_groups, per_group, BLOCK_D)
    d, mask_d, offs_n, mask_n, mask_dn, row, state_dn, ckpt_dn = _channel_rows(
        b, g, blk * BLOCK_D, dim, length, per_group, d_state, n_tiles, BLOCK_D, N_PAD
    )
    A, bias, skip = _channel_params(
        A_ptr, D_ptr, bias_ptr, d, mask_d, offs_n, mask_dn, d_state, BLOCK_D, HAS_D, HAS_BIAS
    )
    bc_row = ((b.to(tl.int64) * n_groups + g) * d_state + offs_n) * length  # (N_PAD,)
    offs_l = tl.arange(0, BLOCK_L)
    first = (offs_l == 0)[None, None, :]
    x = tl.zeros((BLOCK_D, N_PAD), dtype=tl.float32)
    for tile in range(0, n_tiles):
        tl.store(ckpt_ptr + ckpt_dn + tile * d_state, x, mask=mask_dn)
        t = tile * BLOCK_L + offs_l
        mask_dt = mask_d[:, None] & (t < length)[None, :]
        mask_nt = mask_n[:, None] & (t < length)[None, :]
        xs, u, dt, raw_dt, bx, Bt = _tile_states(
            u_ptr, delta_ptr, B_ptr, row, bc_row, t, mask_dt, mask_nt, first, A, bias, x, SOFTPLUS
        )
        Ct = tl.load(C_ptr + bc_row[:, None] + t[None, :], mask=mask_nt, other=0.0).to(tl.float32)
        y = tl.sum(xs * Ct[None, :, :], axis=1)
        if HAS_D:
            y += skip[:, None] * u
        if HAS_Z:
            z = _load_rows(z_ptr, row, t, mask_dt)
            y = y * z / (1.0 + tl.exp(-z))
        tl.store(out_ptr + row[:, None] + t[None, :], y.to(out_ptr.dtype.element_ty), mask=mask_dt)
        # padded steps have decay 1 and no input, so the tile's last column is the state at min(t_end, L-1)
        x = tl.sum(tl.where((offs_l == BLOCK_L - 1)[None, None, :], xs, 0.0), axis=2)
    tl.store(last_ptr + state_dn, x, mask=mask_dn)


# fmt: off
@triton.jit
def _backward_kernel(u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, ckpt_ptr,
                     dout_ptr, carry_ptr,
                     du_ptr, ddelta_ptr, dz_ptr, dA_ptr, dD_ptr, dbias_ptr, dB_ptr, dC_ptr,
                     batch, dim, length, d_state, per_group, n_groups, n_tiles, sub_blocks,
                     BLOCK_D: tl.constexpr, N_PAD: tl.constexpr, BLOCK_L: tl.constexpr,
                     HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    """A program owns ``sub_blocks`` blocks of BLOCK_D channels; per tile it visits them in turn, so the tile's
    dB/dC partial sums over all its channels stay in registers. The per-block adjoint carry (carry_ptr, set
    to dL/d last state by the caller) and the dA/dD/dbias sums (zeroed by the caller) live in their (b, D, .)
    buffers, each read and written only by this program."""
    blk, g, b = _program_coords(n_groups, per_group, BLOCK_D * sub_blocks)
    offs_n = tl.arange(0, N_PAD)
    mask_n = offs_n < d_state
    bc_row = ((b.to(tl.int64) * n_groups + g) * d_state + offs_n) * length
    # this program's slice of the (programs per group, b, G, N, L) dB/dC partial sums
    part_row = (((blk.to(tl.int64) * batch + b) * n_groups + g) * d_state + offs_n) * length
    offs_l = tl.arange(0, BLOCK_L)
    first = (offs_l == 0)[None, None, :]
    for tile_rev in range(0, n_tiles):
        tile = n_tiles - 1 - tile_rev
        t = tile * BLOCK_L + offs_l
        mask_nt = mask_n[:, None] & (t < length)[None, :]
        t_rev = tile * BLOCK_L + BLOCK_L - 1 - offs_l  # the adjoint's tile, reversed: element j is tile end - j
        dB_acc = tl.zeros((N_PAD, BLOCK_L), dtype=tl.float32)
        dC_acc = tl.zeros((N_PAD, BLOCK_L), dtype=tl.float32)
        for sub in range(0, sub_blocks):
            d, mask_d, offs_n, mask_n, mask_dn, row, state_dn, ckpt_dn = _channel_rows(
                b, g, (blk * sub_blocks + sub) * BLOCK_D, dim, length, per_group, d_state, n_tiles, BLOCK_D, N_PAD)
            A, bias, skip = _channel_params(A_ptr, D_ptr, bias_ptr, d, mask_d, offs_n, mask_dn, d_state, BLOCK_D,
                                            HAS_D, HAS_BIAS)
            mask_dt = mask_d[:, None] & (t < length)[None, :]
            # 1. the tile's states, rerun from its checkpoint
            x_in = tl.load(ckpt_ptr + ckpt_dn + tile * d_state, mask=mask_dn, other=0.0)
            xs, u, dt, raw_dt, bx, Bt = _tile_states(u_ptr, delta_ptr, B_ptr, row, bc_row, t, mask_dt, mask_nt,
                                                        first, A, bias, x_in, SOFTPLUS)
            dy, z, sig = _gated_dy(dout_ptr, z_ptr, row, t, mask_dt, HAS_Z)
            if HAS_Z:
                Ct = tl.load(C_ptr + bc_row[:, None] + t[None, :], mask=mask_nt, other=0.0).to(tl.float32)
                s = tl.sum(xs * Ct[None, :, :], axis=1)
                if HAS_D:
                    s += skip[:, None] * u
                dout = _load_rows(dout_ptr, row, t, mask_dt)
                tl.store(dz_ptr + row[:, None] + t[None, :], dout * s * sig * (1.0 + z * (1.0 - sig)),
                         mask=mask_dt)
            # 2. the adjoint g_t = a_{t+1} g_{t+1} + dy_t C_t, scanned over the reversed tile, flipped back
            mask_rev = mask_d[:, None] & (t_rev < length)[None, :]
            _, dt_next = _load_dt(delta_ptr, row, t_rev + 1, mask_d[:, None] & (t_rev + 1 < length)[None, :], bias,
                                  SOFTPLUS)
            dy_rev, _, _ = _gated_dy(dout_ptr, z_ptr, row, t_rev, mask_rev, HAS_Z)
            C_rev = tl.load(C_ptr + bc_row[:, None] + t_rev[None, :],
                            mask=mask_n[:, None] & (t_rev < length)[None, :], other=0.0).to(tl.float32)
            carry = tl.load(carry_ptr + state_dn, mask=mask_dn, other=0.0)  # a_{t+1} g_{t+1} at the tile end
            inputs_rev = dy_rev[:, None, :] * C_rev[None, :, :] + tl.where(first, carry[:, :, None], 0.0)
            _, g_rev = tl.associative_scan((tl.exp(dt_next[:, None, :] * A[:, :, None]), inputs_rev), 2, _combine)
            gx = tl.flip(g_rev, 2)
            # carried to the earlier tile: a_{t0} g_{t0} (a rebuilt from dt_{t0}: the [.., BLOCK_L] decays need
            # not stay live through the adjoint scan)
            dt_first = tl.sum(tl.where((offs_l == 0)[None, :], dt, 0.0), axis=1)
            g_first = tl.sum(tl.where(first, gx, 0.0), axis=2)
            tl.store(carry_ptr + state_dn, tl.exp(dt_first[:, None] * A) * g_first, mask=mask_dn)
            # 3. gradients
            through_decay = gx * (xs - bx)  # g_t a_t x_{t-1}
            dA = tl.load(dA_ptr + state_dn, mask=mask_dn, other=0.0)
            tl.store(dA_ptr + state_dn, dA + tl.sum(through_decay * dt[:, None, :], axis=2), mask=mask_dn)
            gB = tl.sum(gx * Bt[None, :, :], axis=1)
            ddt = gB * u + tl.sum(through_decay * A[:, :, None], axis=1)
            du = gB * dt
            per_batch = b.to(tl.int64) * dim + d
            if HAS_D:
                du += skip[:, None] * dy
                dD = tl.load(dD_ptr + per_batch, mask=mask_d, other=0.0)
                tl.store(dD_ptr + per_batch, dD + tl.sum(dy * u, axis=1), mask=mask_d)
            if SOFTPLUS:
                e = tl.exp(tl.minimum(raw_dt, 20.0))
                ddt = ddt * tl.where(raw_dt > 20.0, 1.0, e / (1.0 + e))  # softplus' = sigmoid
            ddt = tl.where(mask_dt, ddt, 0.0)
            if HAS_BIAS:
                dbias = tl.load(dbias_ptr + per_batch, mask=mask_d, other=0.0)
                tl.store(dbias_ptr + per_batch, dbias + tl.sum(ddt, axis=1), mask=mask_d)
            tl.store(du_ptr + row[:, None] + t[None, :], du, mask=mask_dt)
            tl.store(ddelta_ptr + row[:, None] + t[None, :], ddt, mask=mask_dt)
            dC_acc += tl.sum(dy[:, None, :] * xs, axis=0)
            dB_acc += tl.sum(gx * (dt * u)[:, None, :], axis=0)
        tl.store(dC_ptr + part_row[:, None] + t[None, :], dC_acc, mask=mask_nt)
        tl.store(dB_ptr + part_row[:, None] + t[None, :], dB_acc, mask=mask_nt)
        tl.debug_barrier()  # this tile's carry and dA/dD/dbias stores land before the next tile reads them
# fmt: on


INTERPRETED = isinstance(_forward_kernel, InterpretedFunction)
"""True when the kernels were built for Triton's CPU interpreter (TRITON_INTERPRET=1 at import)."""

# the tuned entry points; tuning is per (batch, channels, state size): image sizes share a choice
forward_tuned = triton.autotune(FORWARD_CONFIGS, key=["batch", "dim", "d_state"])(_forward_kernel)
backward_tuned = triton.autotune(
    BACKWARD_CONFIGS,
    key=["batch", "dim", "d_state", "BLOCK_D", "sub_blocks"],
    reset_to_zero=["dA_ptr", "dD_ptr", "dbias_ptr"],  # accumulated into
    restore_value=["carry_ptr"],
)(_backward_kernel)  # so tuning runs repeat the call


def backward_blocks(batch: int, dim: int, groups: int, n_pad: int) -> tuple[int, int]:
    """(BLOCK_D, sub_blocks) of the backward. Channels per program: as many as still launch
    ``TARGET_PROGRAMS`` programs (fewer programs per group: a smaller dB/dC partial-sum buffer, one copy of
    B per program of a group); BLOCK_D: at most what keeps a tile tensor within ``BACKWARD_FLOATS_PER_THREAD``
    at the smallest backward config's warps; the program loops over its sub_blocks blocks."""
    warps = min(config.num_warps for config in backward_tuned.configs)
    budget = max(1, warps * 32 * BACKWARD_FLOATS_PER_THREAD // (n_pad * tile_length(n_pad)))
    per_group = dim // groups
    channels = min(
        triton.next_power_of_2(triton.cdiv(batch * dim, TARGET_PROGRAMS)), triton.next_power_of_2(per_group)
    )
    block_d = min(budget, channels)
    return block_d, channels // block_d


class _TritonScanFn(torch.autograd.Function):
    """Inputs contiguous; B, C (b, G, N, L). Outputs: out (b, D, L) in u's dtype, last state (b, D, N) float32."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus: bool):
        batch, dim, length = u.shape
        groups, d_state = B.shape[1], A.shape[1]
        n_pad = triton.next_power_of_2(d_state)
        n_tiles = triton.cdiv(length, tile_length(n_pad))
        out = torch.empty_like(u)
        last_state = u.new_empty(batch, dim, d_state, dtype=torch.float32)
        checkpoints = u.new_empty(batch, dim, n_tiles, d_state, dtype=torch.float32)
        flags = dict(
            HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None, SOFTPLUS=delta_softplus
        )
        sizes = (batch, dim, length, d_state, dim // groups, groups, n_tiles)
        grid = lambda meta: (batch * groups * triton.cdiv(dim // groups, meta["BLOCK_D"]),)  # noqa: E731
        forward_tuned[grid](
            u,
            delta,
            A,
            B,
            C,
            D,
            z,
            delta_bias,
            out,
            last_state,
            checkpoints,
            *sizes,
            N_PAD=n_pad,
            BLOCK_L=tile_length(n_pad),
            **flags,
        )
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, checkpoints)
        ctx.flags, ctx.sizes = flags, sizes
        return out, last_state

    @staticmethod
    def backward(ctx, dout, dlast):
        u, delta, A, B, C, D, z, delta_bias, checkpoints = ctx.saved_tensors
        batch, dim, _, d_state, per_group, groups, _ = ctx.sizes
        n_pad = triton.next_power_of_2(d_state)
        block_d, sub_blocks = backward_blocks(batch, dim, groups, n_pad)
        n_blocks = triton.cdiv(per_group, block_d * sub_blocks)
        f32 = dict(dtype=torch.float32, device=u.device)
        # the adjoint carry starts as dL/d last state; the kernel accumulates dA, dD, dbias per batch into zeros
        carry = (
            torch.zeros(batch, dim, d_state, **f32)
            if dlast is None
            else dlast.float().clone(memory_format=torch.contiguous_format)
        )
        du, ddelta = torch.empty(u.shape, **f32), torch.empty(u.shape, **f32)
        dz = torch.empty(u.shape, **f32) if z is not None else None
        dA = torch.zeros(batch, *A.shape, **f32)
        dD = torch.zeros(batch, dim, **f32) if D is not None else None
        dbias = torch.zeros(batch, dim, **f32) if delta_bias is not None else None
        dB = torch.empty(n_blocks, *B.shape, **f32)  # every (block, b, g, n < N, t < L) is written
        dC = torch.empty(n_blocks, *C.shape, **f32)
        backward_tuned[(batch * groups * n_blocks,)](
            u,
            delta,
            A,
            B,
            C,
            D,
            z,
            delta_bias,
            checkpoints,
            dout.contiguous(),
            carry,
            du,
            ddelta,
            dz,
            dA,
            dD,
            dbias,
            dB,
            dC,
            *ctx.sizes,
            sub_blocks,
            BLOCK_D=block_d,
            N_PAD=n_pad,
            BLOCK_L=tile_length(n_pad),
            **ctx.flags,
        )
        # fixed-order sums over batch / channel blocks, then each gradient in its input's dtype
        grads = (
            du,
            ddelta,
            dA.sum(0),
            dB.sum(0),
            dC.sum(0),
            None if D is None else dD.sum(0),
            dz,
            None if delta_bias is None else dbias.sum(0),
        )
        inputs = (u, delta, A, B, C, D, z, delta_bias)
        return (*(None if grad is None else grad.to(x.dtype) for grad, x in zip(grads, inputs)), None)


def scan_triton(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None,
    z: Tensor | None,
    delta_bias: Tensor | None,
    delta_softplus: bool,
) -> tuple[Tensor, Tensor]:
    """Full selective scan (bias, softplus, D skip, z gate fused). B, C: (b, G, N, L). Returns (out, last_state)."""
    if u.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(
            f"selective_scan: backend='triton' computes in float32 from float32/float16/bfloat16 "
            f"inputs, got {u.dtype}; use backend='reference' or 'chunked' for float64"
        )
    u, delta, A, B, C = (t.contiguous() for t in (u, delta, A, B, C))
    D, z, delta_bias = (None if t is None else t.contiguous() for t in (D, z, delta_bias))
    out, last_state = _TritonScanFn.apply(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    return out, last_state
