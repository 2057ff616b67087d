"""Selective scan (Mamba S6) with mamba-ssm's signature and layouts, dispatched to one of five backends.

``selective_scan_fn(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
return_last_state=False, backend="auto")``

Shapes: u, delta, z (batch, D, L); A (D, N) real; B, C (batch, G, N, L) with D % G == 0 (channel d reads
group d // (D // G)) or (batch, N, L) for G = 1; D, delta_bias (D,). Math (mamba-ssm's selective_scan_ref)::

    delta <- softplus(delta + delta_bias)       (bias / softplus optional)
    x_t = exp(delta_t * A) * x_{t-1} + delta_t * B_t * u_t,   y_t = sum_N x_t * C_t
    out = (y + D * u) * silu(z)                   (D / z optional), in u's dtype

Backends: ``reference`` (sequential torch loop, the oracle), ``cpu`` (fused numba kernel), ``chunked``
(pure-torch chunked scan, any device), ``mamba`` (mamba-ssm CUDA kernel), ``triton`` (our fused Triton kernel,
CUDA, or CPU under ``TRITON_INTERPRET=1``), ``auto`` (see :func:`resolve_backend`). All are differentiable
w.r.t. every tensor input. An explicitly requested backend that cannot run is an error, never a silent
fallback. See docs/selective_scan.md.
"""

from __future__ import annotations

import functools
import importlib
import logging
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import Tensor

from fusion.ops.scan_chunked import scan_chunked
from fusion.ops.scan_reference import scan_reference

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "reference", "cpu", "chunked", "mamba", "triton")
last_backend: str | None = None
"""Backend the most recent call ran on (after resolving ``auto``); for logs, tests and benchmarks."""
_logged_choices: set[tuple[str, str]] = set()


def explain_backend(device: torch.device | str, dtype: torch.dtype = torch.float32) -> tuple[str, str | None]:
    """What ``backend="auto"`` runs for tensors on ``device``, and why a faster one could not (None if none).

    CPU -> ``cpu`` (numba). CUDA -> ``mamba`` when mamba-ssm's ``selective_scan_cuda`` imports, else
    ``triton`` when Triton imports, else ``chunked`` (logged once as a WARNING); float64 -> ``chunked`` (both
    kernels compute in float32). Other devices -> ``chunked``.
    """
    device = torch.device(device)
    if device.type == "cpu":
        return "cpu", None
    if device.type != "cuda":
        return "chunked", f"no fused kernel for {device.type} tensors"
    if dtype == torch.float64:
        return "chunked", "float64: the mamba and triton kernels compute in float32"
    from fusion.ops.scan_mamba import mamba_import_error  # lazy: never import mamba_ssm eagerly

    mamba_error = mamba_import_error()
    if mamba_error is None:
        return "mamba", None
    triton_error = triton_import_error()
    if triton_error is None:
        return "triton", f"mamba-ssm's kernel unavailable: {mamba_error}"
    return "chunked", f"mamba-ssm's kernel unavailable: {mamba_error}; Triton unavailable: {triton_error}"


def resolve_backend(device: torch.device | str, dtype: torch.dtype = torch.float32) -> str:
    """The backend ``auto`` runs for ``device``/``dtype`` (see :func:`explain_backend`)."""
    return explain_backend(device, dtype)[0]


@functools.cache
def triton_import_error() -> str | None:
    """None when the Triton backend imports, else the import error (``type: message``)."""
    try:
        importlib.import_module("fusion.ops.scan_triton")
    except Exception as error:  # ImportError, or a broken Triton install
        return f"{type(error).__name__}: {error}"
    return None


def selective_scan_flops(batch: int, dim: int, length: int, d_state: int, with_z: bool = False) -> int:
    """FLOPs of one scan as counted for S4Fusion's Table VII, independent of the backend.

    9·B·L·D·N for the recurrence and readout (the count fvcore/VMamba use: discretise delta·A and delta·B·u,
    update the state, multiply-accumulate with C) plus B·D·L for the D skip; ``with_z`` adds B·D·L for the
    output gate multiply (SiLU itself is not counted, as with other activations). S4Fusion calls the scan
    without z, so its count is exactly 9·B·L·D·N + B·D·L.
    """
    flops = 9 * batch * length * dim * d_state + batch * dim * length
    return flops + batch * dim * length if with_z else flops


def _validate(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None,
    z: Tensor | None,
    delta_bias: Tensor | None,
) -> tuple[Tensor, Tensor]:
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
            raise ValueError(
                f"selective_scan: {name} must be (batch={batch}, N={d_state}, L={length}) or "
                f"(batch, G, N, L) with D={dim} divisible by G, got {tuple(t.shape)}"
            )
        grouped.append(t)
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None and t.shape != (dim,):
            raise ValueError(f"selective_scan: {name} must be ({dim},), got {tuple(t.shape)}")
    if z is not None and z.shape != u.shape:
        raise ValueError(f"selective_scan: z shape {tuple(z.shape)} != u shape {tuple(u.shape)}")
    return grouped[0], grouped[1]


def _triton_interpreting() -> bool:
    from fusion.ops.scan_triton import INTERPRETED

    return INTERPRETED


def _log_choice(device: torch.device, backend: str, reason: str | None) -> None:
    global last_backend
    last_backend = backend
    if (str(device), backend) not in _logged_choices:
        _logged_choices.add((str(device), backend))
        # on CUDA the chunked scan is a slow fallback (no fused kernel imports): say so loudly, once
        level = logging.WARNING if device.type == "cuda" and backend == "chunked" else logging.INFO
        logger.log(
            level, "selective scan on %s uses backend %r%s", device, backend, f" ({reason})" if reason else ""
        )


def _check_explicit_backend(backend: str, u: Tensor) -> None:
    """Raise, naming every problem, when an explicitly requested backend cannot run these tensors."""
    problems = []
    if backend == "cpu" and u.device.type != "cpu":
        problems.append(f"it needs CPU tensors, got {u.device}")
    if backend == "mamba":
        from fusion.ops.scan_mamba import mamba_import_error

        if (error := mamba_import_error()) is not None:
            problems.append(
                f"mamba-ssm's kernel does not import ({error}); pip install 's4fuse[cuda]' or use "
                "backend='triton'"
            )
        if u.device.type != "cuda":
            problems.append(f"it is a CUDA kernel and needs CUDA tensors, got {u.device}")
    if backend == "triton":
        if (error := triton_import_error()) is not None:
            problems.append(f"Triton does not import ({error})")
        elif u.device.type != "cuda" and not (u.device.type == "cpu" and _triton_interpreting()):
            problems.append(
                f"it needs CUDA tensors (or CPU tensors with TRITON_INTERPRET=1 set before Triton is "
                f"imported), got {u.device}"
            )
    if backend in ("mamba", "triton") and u.dtype == torch.float64:
        problems.append("it computes in float32 and has no float64; use 'chunked', 'cpu' or 'reference'")
    if problems:
        raise ValueError(f"selective_scan: backend={backend!r} cannot run here: " + "; ".join(problems))


def check_backend(backend: str | None, device: torch.device | str) -> None:
    """Raise ValueError, naming every problem, when an explicitly requested backend cannot run on
    ``device`` (checked up front by commands, before any output is written)."""
    if backend not in (None, "auto"):
        probe = SimpleNamespace(device=torch.device(device), dtype=torch.float32)  # what the check reads
        _check_explicit_backend(backend, probe)


def selective_scan_fn(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    backend: str = "auto",
) -> Tensor | tuple[Tensor, Tensor]:
    """Selective scan; returns ``out`` (batch, D, L) or ``(out, last_state (batch, D, N))``.

    Computation is in float64 for float64 inputs and float32 otherwise; ``out`` has u's dtype.
    """
    if backend not in BACKENDS:
        raise ValueError(f"selective_scan: unknown backend {backend!r}; choose one of {BACKENDS}")
    B, C = _validate(u, delta, A, B, C, D, z, delta_bias)
    reason = None
    if backend == "auto":
        backend, reason = explain_backend(u.device, u.dtype)
    else:
        _check_explicit_backend(backend, u)
    _log_choice(u.device, backend, reason)

    if backend in ("mamba", "triton"):
        if backend == "mamba":
            from fusion.ops.scan_mamba import scan_mamba as fused_scan
        else:
            from fusion.ops.scan_triton import scan_triton as fused_scan
        out, last_state = fused_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
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
