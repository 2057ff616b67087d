"""Selective scan (Mamba S6) with mamba-ssm's signature and layouts, dispatched to one of four backends.

``selective_scan_fn(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
return_last_state=False, backend="auto")``

Shapes: u, delta, z (batch, D, L); A (D, N) real; B, C (batch, G, N, L) with D % G == 0 (channel d reads
group d // (D // G)) or (batch, N, L) for G = 1; D, delta_bias (D,). Math (mamba-ssm's selective_scan_ref)::

    delta <- softplus(delta + delta_bias)       (bias / softplus optional)
    x_t = exp(delta_t * A) * x_{t-1} + delta_t * B_t * u_t,   y_t = sum_N x_t * C_t
    out = (y + D * u) * silu(z)                   (D / z optional), in u's dtype

Backends: ``reference`` (sequential torch loop, the oracle), ``cpu`` (fused numba kernel), ``chunked``
(pure-torch chunked scan, any device), ``mamba`` (mamba-ssm CUDA kernel), ``auto`` (see
:func:`resolve_backend`). All are differentiable w.r.t. every tensor input. See docs/selective_scan.md.
"""
from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import Tensor

from fusion.ops.scan_chunked import scan_chunked
from fusion.ops.scan_reference import scan_reference

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "reference", "cpu", "chunked", "mamba")
last_backend: str | None = None
"""Backend the most recent call ran on (after resolving ``auto``); for logs, tests and benchmarks."""
_logged_choices: set[tuple[str, str]] = set()


def resolve_backend(device: torch.device | str, dtype: torch.dtype = torch.float32) -> str:
    """What ``backend="auto"`` runs for tensors on ``device``.

    CPU -> ``cpu`` (numba). CUDA -> ``mamba`` when mamba-ssm's kernel imports and the dtype is one it has
    (float32/float16/bfloat16), else ``chunked``. Other devices -> ``chunked``.
    """
    device = torch.device(device)
    if device.type == "cpu":
        return "cpu"
    if device.type == "cuda" and dtype != torch.float64:
        from fusion.ops.scan_mamba import mamba_available  # lazy: never import mamba_ssm eagerly
        if mamba_available():
            return "mamba"
    return "chunked"


def selective_scan_flops(batch: int, dim: int, length: int, d_state: int, with_z: bool = False) -> int:
    """FLOPs of one scan as counted for S4Fusion's Table VII, independent of the backend.

    9·B·L·D·N for the recurrence and readout (the count fvcore/VMamba use: discretise delta·A and delta·B·u,
    update the state, multiply-accumulate with C) plus B·D·L for the D skip; ``with_z`` adds B·D·L for the
    output gate multiply (SiLU itself is not counted, as with other activations). S4Fusion calls the scan
    without z, so its count is exactly 9·B·L·D·N + B·D·L.
    """
    flops = 9 * batch * length * dim * d_state + batch * dim * length
    return flops + batch * dim * length if with_z else flops


def _validate(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None, z: Tensor | None,
              delta_bias: Tensor | None) -> tuple[Tensor, Tensor]:
    """Check shapes; return B, C as (batch, G, N, L)."""
    if u.dim() != 3:
        raise ValueError(f"selective_scan: u must be (batch, D, L), got shape {tuple(u.shape)}")
    batch, dim, length = u.shape
    if delta.shape != u.shape:
        raise ValueError(f"selective_scan: delta shape {tuple(delta.shape)} != u shape {tuple(u.shape)}")
    if A.dim() != 2 or A.shape[0] != dim or A.is_complex():
        raise ValueError(f"selective_scan: A must be real (D={dim}, N), got {tuple(A.shape)} {A.dtype}")
    d_state = A.shape[1]
    grouped = []
    for name, t in (("B", B), ("C", C)):
        t = t.unsqueeze(1) if t.dim() == 3 else t
        if t.dim() != 4 or t.shape[0] != batch or t.shape[2:] != (d_state, length) or dim % t.shape[1]:
            raise ValueError(f"selective_scan: {name} must be (batch={batch}, N={d_state}, L={length}) or "
                             f"(batch, G, N, L) with D={dim} divisible by G, got {tuple(t.shape)}")
        grouped.append(t)
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None and t.shape != (dim,):
            raise ValueError(f"selective_scan: {name} must be ({dim},), got {tuple(t.shape)}")
    if z is not None and z.shape != u.shape:
        raise ValueError(f"selective_scan: z shape {tuple(z.shape)} != u shape {tuple(u.shape)}")
    return grouped[0], grouped[1]


def _log_choice(device: torch.device, backend: str) -> None:
    global last_backend
    last_backend = backend
    if (str(device), backend) not in _logged_choices:
        _logged_choices.add((str(device), backend))
        logger.info("selective scan on %s uses backend %r", device, backend)


def selective_scan_fn(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None,
                      z: Tensor | None = None, delta_bias: Tensor | None = None, delta_softplus: bool = False,
                      return_last_state: bool = False, backend: str = "auto") -> Tensor | tuple[Tensor, Tensor]:
    """Selective scan; returns ``out`` (batch, D, L) or ``(out, last_state (batch, D, N))``.

    Computation is in float64 for float64 inputs and float32 otherwise; ``out`` has u's dtype.
    """
    if backend not in BACKENDS:
        raise ValueError(f"selective_scan: unknown backend {backend!r}; choose one of {BACKENDS}")
    B, C = _validate(u, delta, A, B, C, D, z, delta_bias)
    if backend == "auto":
        backend = resolve_backend(u.device, u.dtype)
    if backend == "cpu" and u.device.type != "cpu":
        raise ValueError(f"selective_scan: backend='cpu' needs CPU tensors, got {u.device}")
    if backend == "mamba":
        if u.device.type != "cuda":
            raise ValueError(f"selective_scan: backend='mamba' is mamba-ssm's CUDA kernel and needs CUDA tensors, "
                             f"got {u.device}; use backend='cpu' or 'auto' on CPU")
        backend = resolve_backend(u.device, u.dtype)  # the chunked torch scan when the kernel cannot run
    _log_choice(u.device, backend)

    if backend == "mamba":
        from fusion.ops.scan_mamba import scan_mamba
        out, last_state = scan_mamba(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
        return (out, last_state) if return_last_state else out

    compute_dtype = torch.float64 if u.dtype == torch.float64 else torch.float32
    u_c, delta, A, B, C = (t.to(compute_dtype) for t in (u, delta, A, B, C))
    if delta_bias is not None:
        delta = delta + delta_bias.to(compute_dtype)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    if backend == "reference":
        y, last_state = scan_reference(u_c, delta, A, B, C)
    elif backend == "chunked":
        y, last_state = scan_chunked(u_c, delta, A, B, C)
    else:
        from fusion.ops.scan_cpu import scan_cpu  # lazy: numba import + kernel load cost ~1 s
        y, last_state = scan_cpu(u_c, delta, A, B, C)
    out = y if D is None else y + u_c * D.to(compute_dtype)[:, None]
    if z is not None:
        out = out * F.silu(z.to(compute_dtype))
    out = out.to(u.dtype)
    return (out, last_state) if return_last_state else out
