"""Kernels at the bottom of the stack: the selective scan (with its CPU/CUDA backends) and cross-scan shuffles.

Nothing here imports upward, and nothing imports mamba-ssm at import time (its CUDA extension is optional).
"""

from fusion.ops.selective_scan import resolve_backend, selective_scan_flops, selective_scan_fn

__all__ = ["resolve_backend", "selective_scan_flops", "selective_scan_fn"]
