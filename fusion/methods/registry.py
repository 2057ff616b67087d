"""The registry: which class a YAML ``kind:`` or a command-line method spec means. The only place
that maps kind names to behaviour; callers ask the :class:`~fusion.methods.base.FusionMethod`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fusion.methods.base import FusionMethod, MethodError
from fusion.methods.builtin import (
    BaselineMethod,
    PrecomputedMethod,
    S4FusionCheckpoint,
    S4FusionTrained,
    SourceMethod,
)
from fusion.methods.python_kind import PythonMethod, entry_point_targets, is_target

# YAML ``kind:`` -> its classes; a kind with several (s4fusion) takes the one whose key is given.
METHOD_KINDS: dict[str, tuple[type[FusionMethod], ...]] = {
    "source": (SourceMethod,),
    "baseline": (BaselineMethod,),
    "s4fusion": (S4FusionCheckpoint, S4FusionTrained),
    "precomputed": (PrecomputedMethod,),
    "python": (PythonMethod,),
}
SOURCE_KINDS = tuple(k for k, classes in METHOD_KINDS.items() if any(c.is_source for c in classes))
LEARNED_KINDS = tuple(k for k, classes in METHOD_KINDS.items() if any(c.learned for c in classes))


def config_keys(kind: str) -> set[str]:
    """The YAML keys a method of ``kind`` may have besides ``name`` and ``kind``."""
    return {key for cls in METHOD_KINDS[kind] for key in cls.config_keys}


def _pick_class(kind: str, fields: dict[str, Any]) -> type[FusionMethod]:
    classes = METHOD_KINDS[kind]
    if len(classes) == 1:
        return classes[0]
    given = [c for c in classes if any(fields.get(k) is not None for k in c.config_keys)]
    if len(given) != 1:
        raise MethodError("give exactly one of " + " or ".join(c.config_help for c in classes))
    return given[0]


def config_problems(kind: str, fields: dict[str, Any]) -> list[str]:
    """Everything wrong with one YAML method entry (``fields``: its keys besides name and kind)."""
    if kind not in METHOD_KINDS:
        return [f"unknown method kind {kind!r}; expected one of {list(METHOD_KINDS)}"]
    allowed = config_keys(kind)
    extra = sorted(k for k, v in fields.items() if v is not None and k not in allowed)
    if extra:
        return [f"key(s) {extra} do not apply to kind {kind!r} (allowed: {sorted(allowed)})"]
    try:
        method = method_from_config("<check>", kind, fields)
    except MethodError as exc:
        return exc.problems
    return method.problems()


def method_from_config(name: str, kind: str, fields: dict[str, Any]) -> FusionMethod:
    """The method a YAML entry ``{name, kind, **fields}`` describes (keys of other kinds ignored)."""
    if kind not in METHOD_KINDS:
        raise MethodError(f"unknown method kind {kind!r}; expected one of {list(METHOD_KINDS)}")
    cls = _pick_class(kind, fields)
    return cls(name, **{k: fields.get(k) for k in cls.config_keys})


def method_from_spec(
    spec: str,
    checkpoint: str | None = None,
    scan_backend: str | None = None,
    folders: bool = False,
    allow_missing: bool = False,
) -> FusionMethod:
    """A command-line method (``fuse --method``, ``evaluate --methods``): a baseline name,
    ``s4fusion`` (the model ``checkpoint``), ``[NAME=]package.module:function``, an installed
    ``s4fuse.methods`` entry-point name, or (``folders``) ``[NAME=]FOLDER`` of fused images (some
    may be missing with ``allow_missing``).
    Raises a :class:`MethodError` naming the spec and the fix; a python target is imported here."""
    from fusion.baselines import BASELINES

    name, sep, value = spec.partition("=")
    if not sep:
        name, value = "", spec
    if not name and value in BASELINES:
        return BaselineMethod(value, value)
    if not name and value == "s4fusion":
        if checkpoint is None:
            raise MethodError(
                "method 's4fusion' needs --checkpoint (the official release's model.pkl, a model "
                "exported by `python -m pipelines.run train_fusion`, or 'demo')"
            )
        return S4FusionCheckpoint("s4fusion", str(checkpoint), scan_backend)
    if is_target(value) or (value in entry_point_targets()):
        # default row name: module.function (a ':' is no good in the file names a name ends up in)
        method = PythonMethod(name or value.replace(":", "."), value)
        method.prepare()  # a target that does not import or is not callable: refused now
        return method
    if folders and Path(value).is_dir():
        return PrecomputedMethod(name or Path(value).name, value, allow_missing)
    looked_for = "a folder of fused images, " if folders else ""
    raise MethodError(
        f"method {spec!r}: not a baseline ({', '.join(BASELINES)}), not 's4fusion', not "
        f"{looked_for}'package.module:function' nor an installed s4fuse.methods entry point"
    )
