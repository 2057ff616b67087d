"""The ``python`` kind: any importable callable is a fusion method.

``target`` is ``package.module:attribute`` (or the name of an ``s4fuse.methods`` entry point, which
names such a target). The attribute is a function ``fuse(ir, vi) -> fused``, an object with
``__call__``, or a class (instantiated without arguments); an optional ``setup(device)`` method is
called once before the first image.

Contract, checked on every image (:func:`fusion.methods.base.check_fused`): ``ir`` is uint8 (H, W);
``vi`` is uint8 (H, W) or (H, W, 3) RGB, exactly as the dataset stores it (no colour policy is
imposed: a callable that wants the project's one -- fuse Y, put the VIS Cb/Cr back -- calls
data.color.split_luma / merge_luma itself); the result is uint8 (H, W) or (H, W, 3) of the pair's size.

Identity (the cache key of the fused images): the target and the sha256 of the source file of the
module that defines it, so an edited function is fused again, not served from a stale cache; for a
module without a readable source file, the installed distribution's ``name==version``. A module
edited after this process imported it is reloaded when a method is resolved again (a new config),
so code and identity agree. Only that one file counts: a change in another module it imports is not
seen.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.metadata
import inspect
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from fusion.methods.base import Fuser, FusionMethod, MethodError, MethodInputs

ENTRY_POINT_GROUP = "s4fuse.methods"


def entry_point_targets() -> dict[str, str]:
    """``name -> "module:attr"`` of the methods installed packages declare in ``s4fuse.methods``."""
    return {ep.name: ep.value for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def is_target(spec: str) -> bool:
    """A ``module:attr`` spelling (a Windows drive letter ``C:\\...`` is a path, not a target)."""
    module, sep, attr = spec.partition(":")
    return bool(sep and module and attr) and len(module) > 1 and "/" not in spec and "\\" not in spec


# module name -> identity of the source this process imported it from (see _import_current)
_IMPORTED: dict[str, dict[str, str]] = {}


def _import_current(module_name: str) -> tuple[Any, dict[str, str]]:
    """The module as its source file is now, and that source's identity: a module edited since this
    process imported it is reloaded, so that the code that fuses is the code the identity names."""
    module = importlib.import_module(module_name)
    ident = module_identity(module_name)
    if _IMPORTED.get(module_name, ident) != ident:
        module = importlib.reload(module)
    _IMPORTED[module_name] = ident
    return module, ident


def resolve_target(target: str) -> tuple[str, Any, dict[str, str]]:
    """The ``module:attr`` a target names (an entry-point name is looked up), the object there and
    its module's identity (:func:`module_identity`); a :class:`MethodError` naming the target and
    the fix when it does not import or is not callable."""
    spelled = target
    if not is_target(target):
        targets = entry_point_targets()
        if target not in targets:
            raise MethodError(
                f"python method target {target!r} is neither 'package.module:function' nor an installed "
                f"{ENTRY_POINT_GROUP} entry point (installed: {sorted(targets) or 'none'})"
            )
        target = targets[target]
    module_name, _, attr = target.partition(":")
    try:
        module, ident = _import_current(module_name)
    except MethodError:
        raise
    except Exception as exc:  # any error while importing the user's module is an input error
        raise MethodError(
            f"python method target {spelled!r}: module {module_name!r} does not import "
            f"({type(exc).__name__}: {exc}); check the name and that its folder is on PYTHONPATH"
        ) from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise MethodError(
                f"python method target {spelled!r}: module {module_name!r} has no attribute {attr!r}"
            )
        obj = getattr(obj, part)
    if not callable(obj):
        raise MethodError(
            f"python method target {spelled!r} is a {type(obj).__name__}, not callable; name a function "
            "fuse(ir, vi) -> fused, or a class with __call__"
        )
    return target, obj, ident


def module_identity(module_name: str) -> dict[str, str]:
    """``source_sha256`` of the module's source file, else ``version`` (``dist==version``)."""
    module = sys.modules[module_name]
    try:
        source = inspect.getsourcefile(module)
    except TypeError:  # a built-in module
        source = None
    if source and Path(source).is_file():
        return {"source_sha256": hashlib.sha256(Path(source).read_bytes()).hexdigest()}
    top = module_name.partition(".")[0]
    dists = importlib.metadata.packages_distributions().get(top, [])
    if dists:
        return {"version": f"{dists[0]}=={importlib.metadata.version(dists[0])}"}
    raise MethodError(
        f"python method module {module_name!r} has no source file and no installed distribution, so "
        "an edit could not be told from the cache; put the function in a .py module"
    )


@dataclass
class PythonMethod(FusionMethod):
    """``target: package.module:function``: a callable fuses (module docstring for the contract)."""

    name: str
    target: str | None = None
    kind: ClassVar[str] = "python"
    config_keys: ClassVar[tuple[str, ...]] = ("target",)

    @functools.cached_property
    def _resolved(self) -> tuple[str, Any, dict[str, str]]:
        return resolve_target(str(self.target))

    @functools.cached_property
    def _identity(self) -> dict[str, Any]:
        # fixed once resolved: the driver and every job of a run use one identity
        target, _, source = self._resolved
        return {"kind": self.kind, "target": target, **source}

    def identity(self) -> dict[str, Any]:
        return dict(self._identity)

    @property
    def label(self) -> str:
        return f"python {self.target}"

    def problems(self) -> list[str]:
        try:
            self.identity()
        except MethodError as exc:
            return [str(exc)]
        return []

    def prepare(self, pairs: Any = None) -> MethodInputs:
        self.identity()  # raises the target's problem before any work
        return MethodInputs()

    def fuser(self, inputs: MethodInputs, device: str = "cpu") -> Fuser:
        _, obj, _ = self._resolved
        fn = obj() if inspect.isclass(obj) else obj
        if callable(getattr(fn, "setup", None)):
            fn.setup(device)

        def fuse(ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
            # the contract's shapes: IR gray (H, W); VIS (H, W) or (H, W, 3) as stored
            if vi.ndim == 3 and vi.shape[2] == 1:
                vi = vi[..., 0]
            return fn(ir, vi)

        return fuse

    def __getstate__(self) -> dict[str, Any]:
        # jobs travel to other processes (Ray): the resolved callable is imported again there
        return {k: v for k, v in self.__dict__.items() if k != "_resolved"}
