"""mamba-ssm's fused CUDA selective scan, imported lazily.

``mamba_ssm`` cannot even be imported without its compiled extension, so nothing here touches it at import
time. Only the bare extension module ``selective_scan_cuda`` counts as the kernel (its ``fwd``/``bwd`` are what
mamba-ssm's own autograd function calls): the ``mamba_ssm`` package may import without it (the extension is
opt-in in newer mamba-ssm), and then its ``selective_scan_fn`` is not the fused kernel. As in mamba-ssm, the
gradient of the returned last state is not propagated.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from types import ModuleType

import torch
from torch import Tensor


@functools.cache
def _load_extension() -> tuple[ModuleType | None, str | None]:
    try:
        return importlib.import_module("selective_scan_cuda"), None
    except Exception as error:  # ImportError, or OSError/undefined symbols from a mismatched build
        return None, f"{type(error).__name__}: {error}"


def _extension() -> ModuleType | None:
    return _load_extension()[0]


def mamba_import_error() -> str | None:
    """None when ``selective_scan_cuda`` imports, else why it did not (``type: message``)."""
    return _load_extension()[1]


def mamba_available() -> bool:
    """True when mamba-ssm's CUDA selective scan kernel (``selective_scan_cuda``) imports."""
    return mamba_import_error() is None


def _extension_call(fn: Callable, *args):
    # mamba-ssm >= 2.2.5 appended a ``cu_seqlens`` argument to fwd/bwd; older builds reject it.
    try:
        return fn(*args)
    except TypeError:
        return fn(*args, None)


class _MambaExtensionFn(torch.autograd.Function):
    """Autograd around ``selective_scan_cuda.fwd``/``bwd``; B, C are (b, G, N, L)."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus: bool):
        ext = _extension()
        out, states, *rest = _extension_call(ext.fwd, u, delta, A, B, C, D, z, delta_bias, delta_softplus)
        ctx.delta_softplus = delta_softplus
        ctx.has_z = z is not None
        # the kernel keeps (running product of decays, state) pairs per chunk; odd slots hold the state
        last_state = states[:, :, -1, 1::2]
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, states, out)
        ctx.mark_non_differentiable(last_state)
        return (rest[0] if ctx.has_z else out), last_state

    @staticmethod
    def backward(ctx, dout, _dlast):
        u, delta, A, B, C, D, z, delta_bias, states, out = ctx.saved_tensors
        grads = _extension_call(
            _extension().bwd,
            u,
            delta,
            A,
            B,
            C,
            D,
            z,
            delta_bias,
            dout.contiguous(),
            states,
            out if ctx.has_z else None,
            None,
            ctx.delta_softplus,
            False,
        )
        du, ddelta, dA, dB, dC, dD, ddelta_bias, *rest = grads
        return (
            du,
            ddelta,
            dA,
            dB,
            dC,
            dD if D is not None else None,
            rest[0] if ctx.has_z else None,
            ddelta_bias if delta_bias is not None else None,
            None,
        )


def scan_mamba(
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
    """Full selective scan (bias, softplus, D skip, z gate fused) on CUDA. B, C: (b, G, N, L). Returns (out, last)."""
    u, delta, B, C = (t if t.stride(-1) == 1 else t.contiguous() for t in (u, delta, B, C))
    z = z if z is None or z.stride(-1) == 1 else z.contiguous()
    D = D.contiguous() if D is not None else None
    if _extension() is None:
        raise RuntimeError(
            f"backend='mamba' needs mamba-ssm's CUDA extension ({mamba_import_error()}): "
            "pip install 's4fuse[cuda]'"
        )
    return _MambaExtensionFn.apply(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
