"""The one interface of a fusion method: what ``fuse``, ``evaluate``, ``fuse_then_detect`` and
``ablate`` ask of a row of their tables.

A :class:`FusionMethod` has an identity (what determines its fused images: the cache key, never its
display name), a ``prepare`` step run before any work (loads a model, indexes a folder, imports a
callable: every problem is found there), a ``fuser`` (uint8 IR, uint8 VIS -> uint8 fused), whether
it ``needs_gpu``, and a ``label`` for reports. The kinds live beside this module, the registry that
maps YAML ``kind:`` values and command-line specs to them in ``fusion.methods.registry``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from data.adapters import PairedImageDataset
from runtime.config_loader import ConfigError

Fuser = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (ir_u8, vi_u8) -> fused_u8


class MethodError(ConfigError):
    """A method cannot be used: unknown name or kind, a target that does not import or is not
    callable, a fused image of the wrong shape or dtype (the message names the method and the fix)."""


@dataclass
class PairSet:
    """The pairs a method will fuse, as ``prepare`` sees them. ``split`` (train/val/test stems) and
    ``root`` are given by fuse_then_detect, where an S4Fusion is trained on the train split."""

    dataset: PairedImageDataset
    stems: list[str]
    split: dict[str, list[str]] | None = None
    root: Path | None = None


@dataclass
class MethodInputs:
    """What ``prepare`` found or made: the typed inputs of the fusion (replaces an untyped
    ``prepared`` value). ``checkpoint``: the S4Fusion model file (None while it is still to be
    trained in this run); ``files``: stem -> fused image of a precomputed folder; ``missing``: the
    stems it lacks; ``train_config``: the fusion.train.TrainConfig of an S4Fusion trained in-run."""

    checkpoint: Path | None = None
    files: dict[str, Path] | None = None
    missing: list[str] = field(default_factory=list)
    train_config: Any = None


class FusionMethod(ABC):
    """One fusion method. Subclasses are dataclasses with ``name`` first; class attributes say
    what a report or scheduler needs to know, so no caller branches on the kind string."""

    kind: ClassVar[str]  # the YAML ``kind:`` value (a tag in MLflow and the Table VI ``kind`` column)
    config_keys: ClassVar[tuple[str, ...]] = ()  # the YAML keys of this kind besides name and kind
    needs_gpu: ClassVar[bool] = False  # its fusion (or in-run training) wants a GPU
    is_source: ClassVar[bool] = False  # an input image as-is: a reference row, never ranked
    learned: ClassVar[bool] = False  # an S4Fusion model: Table VII row, an MLflow pyfunc
    trains_in_run: ClassVar[bool] = False  # its model is trained by fuse_then_detect itself
    name: str

    @abstractmethod
    def identity(self) -> dict[str, Any]:
        """What determines this method's fused images as configured (the display name does not)."""

    def content_identity(self, inputs: MethodInputs) -> dict[str, Any]:
        """:meth:`identity` with files named by content (sha256), not by path: the cache key of the
        fused images and of their metrics. Default: the identity itself."""
        return self.identity()

    @property
    @abstractmethod
    def label(self) -> str:
        """How reports and logs name what this method is (``baseline gff``, ``python pkg.mod:fn``)."""

    @property
    def passes_through(self) -> bool:
        """Its "fused" image is an input as it is (a reference column, never ranked)."""
        return self.is_source

    def problems(self) -> list[str]:
        """Static checks (no dataset access), each a sentence with the fix; run when a config loads."""
        return []

    def prepare(self, pairs: PairSet) -> MethodInputs:
        """Everything that can fail before the work starts (raises an InputError naming the fix)."""
        return MethodInputs()

    def fuser(self, inputs: MethodInputs, device: str = "cpu") -> Fuser | None:
        """``(ir_u8, vi_u8) -> fused_u8``; None when the fused images are files (``inputs.files``)."""
        return None


def check_fused(method: str, image: str, ir: np.ndarray, fused: object) -> np.ndarray:
    """``fused`` when it is uint8 (H, W) or (H, W, 3) of the pair's size, else a :class:`MethodError`
    naming the method and the image (a wrong result must not reach a detector or a metric)."""
    h, w = np.shape(ir)[:2]
    ok = (
        isinstance(fused, np.ndarray)
        and fused.dtype == np.uint8
        and fused.shape[:2] == (h, w)
        and (fused.ndim == 2 or (fused.ndim == 3 and fused.shape[2] == 3))
    )
    if ok:
        return fused  # type: ignore[return-value]
    got = (
        f"{fused.dtype} array of shape {fused.shape}"
        if isinstance(fused, np.ndarray)
        else type(fused).__name__
    )
    raise MethodError(
        f"method {method!r} returned a {got} for image {image!r}; a fusion callable must return a "
        f"uint8 array of shape ({h}, {w}) or ({h}, {w}, 3), the size of the pair"
    )


def fuse_checked(method: str, fuser: Fuser, image: str, ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
    """Fuse one pair with ``fuser`` and check the result (:func:`check_fused`)."""
    return check_fused(method, image, ir, fuser(ir, vi))
