"""mamba-ssm's fused CUDA selective scan, imported lazily.

``mamba_ssm`` cannot even be imported without its compiled extension, so nothing here touches it at import
time. :func:`load_mamba_kernel` first tries the bare extension module ``selective_scan_cuda`` (its ``fwd`` /
``bwd`` are what mamba-ssm's own autograd function calls) and falls back to
``mamba_ssm.ops.selective_scan_interface.selective_scan_fn``. As in mamba-ssm, the gradient of the returned
last state is not propagated.
"""
from __future__ import annotations

import functools
import importlib
import logging
from types import ModuleType
from typing import Callable

import torch
from torch import Tensor

logger = logging.getLogger(__name__)


@functools.cache
def _extension() -> ModuleType | None:
    try:
        return importlib.import_module("selective_scan_cuda")
    except Exception as error:  # ImportError, or OSError/undefined symbols from a mismatched build
        logger.debug("selective_scan_cuda not importable: %s", error)
        return None


@functools.cache
def _package_scan_fn() -> Callable | None:
    try:
        return importlib.import_module("mamba_ssm.ops.selective_scan_interface").selective_scan_fn
    except Exception as error:
        logger.debug("mamba_ssm.ops.selective_scan_interface not importable: %s", error)
        return None


def mamba_available() -> bool:
    """True when mamba-ssm's CUDA selective scan can be called (extension or package importable)."""
    return _extension() is not None or _package_scan_fn() is not None


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
        grads = _extension_call(_extension().bwd, u, delta, A, B, C, D, z, delta_bias, dout.contiguous(), states,
                                out if ctx.has_z else None, None, ctx.delta_softplus, False)
        du, ddelta, dA, dB, dC, dD, ddelta_bias, *rest = grads
        return (du, ddelta, dA, dB, dC, dD if D is not None else None, rest[0] if ctx.has_z else None,
                ddelta_bias if delta_bias is not None else None, None)


def scan_mamba(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None, z: Tensor | None,
               delta_bias: Tensor | None, delta_softplus: bool) -> tuple[Tensor, Tensor]:
    """Full selective scan (bias, softplus, D skip, z gate fused) on CUDA. B, C: (b, G, N, L). Returns (out, last)."""
    u, delta, B, C = (t if t.stride(-1) == 1 else t.contiguous() for t in (u, delta, B, C))
    z = z if z is None or z.stride(-1) == 1 else z.contiguous()
    D = D.contiguous() if D is not None else None
    if _extension() is not None:
        return _MambaExtensionFn.apply(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    package_fn = _package_scan_fn()
    if package_fn is None:
        raise RuntimeError("backend='mamba' needs mamba-ssm's CUDA extension: pip install 's4fuse[cuda]'")
    return package_fn(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state=True)
