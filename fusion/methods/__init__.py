"""Fusion methods behind one interface (:class:`FusionMethod`) and one registry.

Kinds: ``source``, ``baseline``, ``s4fusion`` (a model file, or trained in-run by fuse_then_detect),
``precomputed`` (a folder of fused images) and ``python`` (any importable callable, also by an
installed package's ``s4fuse.methods`` entry point). ``fuse``, ``evaluate``, ``fuse_then_detect``
and ``ablate`` resolve their methods here and ask the method, never its kind name.
"""

from __future__ import annotations

from fusion.methods.base import (
    Fuser,
    FusionMethod,
    MethodError,
    MethodInputs,
    PairSet,
    check_fused,
    fuse_checked,
)
from fusion.methods.builtin import (
    BaselineMethod,
    PrecomputedMethod,
    S4FusionCheckpoint,
    S4FusionTrained,
    SourceMethod,
)
from fusion.methods.python_kind import ENTRY_POINT_GROUP, PythonMethod
from fusion.methods.registry import (
    LEARNED_KINDS,
    METHOD_KINDS,
    SOURCE_KINDS,
    config_problems,
    method_from_config,
    method_from_spec,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "LEARNED_KINDS",
    "METHOD_KINDS",
    "SOURCE_KINDS",
    "Fuser",
    "FusionMethod",
    "MethodError",
    "MethodInputs",
    "PairSet",
    "PythonMethod",
    "BaselineMethod",
    "PrecomputedMethod",
    "S4FusionCheckpoint",
    "S4FusionTrained",
    "SourceMethod",
    "check_fused",
    "config_problems",
    "fuse_checked",
    "make_fuser",
    "method_from_config",
    "method_from_spec",
]


def make_fuser(
    spec: str, checkpoint: str | None = None, device: str = "cpu", scan_backend: str | None = None
) -> Fuser:
    """``(ir_u8, vi_u8) -> fused_u8`` of a command-line method spec (:func:`method_from_spec`):
    a baseline name, ``"s4fusion"`` with ``checkpoint`` (a file or ``"demo"``), or a python target."""
    fuser = method_from_spec(spec, checkpoint, scan_backend).fuser(MethodInputs(), device)
    assert fuser is not None  # only precomputed folders have none, and a spec here is never one
    return fuser
