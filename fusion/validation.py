"""Fusion quality on held-out pairs: the metrics of a fuser, and of reference baselines, during training.

    from fusion.validation import ValidationConfig, HeldOutValidation, fuser_metrics
    fuser_metrics(fuser, pairs, metrics=("SF", "AG", "Qabf", "VIF")) -> {"Qabf": mean, ...}

A *fuser* is ``(ir_u8, vi_u8) -> fused_u8`` (``fusion.methods.make_fuser`` returns one; color VIS is
fused by its Y and recolored, the project's policy). Metrics are ``fusion.metrics.compute_metrics``
(MMIF convention by default), averaged over the pairs ignoring undefined (NaN) values.
:class:`HeldOutValidation` holds the pairs of the training config's ``data.val`` sources, computes
the reference baselines' metrics once, and gives the trainer ``val/<metric>`` of the model and
``val_<baseline>/<metric>`` for each reference at every validation step (flat lines in MLflow that
the model's curves cross when it passes them). Imports: data, fusion.inference/baselines/metrics.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from data.adapters import PairedImageDataset
from data.io import write_text_atomic
from fusion.baselines import BASELINES, fuse_baseline
from fusion.inference import fuse_image_arrays
from fusion.metrics import compute_metrics, resolve_metrics

Fuser = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass
class ValidationConfig:
    """Held-out metrics logged at every ``val_every`` step (the pairs are ``data.val``)."""

    metrics: list[str] = field(default_factory=lambda: ["SF", "AG", "Qabf", "VIF"])  # [] = off
    references: list[str] = field(default_factory=lambda: ["average"])  # fusion.baselines names
    convention: str = "mmif"
    max_pairs: int | None = None  # None = every pair of data.val

    def __post_init__(self) -> None:
        # unknown metric/convention -> clear error; `vif` is spelled `VIF`
        self.metrics = list(resolve_metrics(self.convention, self.metrics))
        unknown = [r for r in self.references if r not in BASELINES]
        if unknown:
            raise ValueError(
                f"validation.references {unknown} are not baselines; expected names from {sorted(BASELINES)}"
            )


@dataclass(frozen=True)
class Pair:
    """One held-out pair as stored: uint8 IR (gray) and VIS (gray or RGB)."""

    name: str
    ir: np.ndarray
    vi: np.ndarray


def load_pairs(datasets: Sequence[PairedImageDataset], max_pairs: int | None = None) -> list[Pair]:
    """The pairs of ``datasets`` in order (``<dataset>/<stem>`` names), at most ``max_pairs``."""
    pairs = []
    for ds in datasets:
        for stem in ds.stems:
            if max_pairs is not None and len(pairs) >= max_pairs:
                return pairs
            sample = ds[stem]
            pairs.append(Pair(f"{ds.name}/{stem}", sample.ir, sample.vi))
    return pairs


def pair_metrics(
    fuser: Fuser, pair: Pair, metrics: Sequence[str], convention: str = "mmif"
) -> dict[str, float]:
    """Each metric of ``fuser``'s output on one pair (``metrics`` as resolved by ``resolve_metrics``)."""
    return compute_metrics(pair.ir, pair.vi, fuser(pair.ir, pair.vi), convention=convention, metrics=metrics)


def fuser_metrics(
    fuser: Fuser,
    pairs: Sequence[Pair],
    metrics: Sequence[str] = ("SF", "AG", "Qabf", "VIF"),
    convention: str = "mmif",
) -> dict[str, float]:
    """Mean of each metric of ``fuser``'s outputs over ``pairs`` (NaN values ignored; all NaN -> NaN)."""
    if not pairs:
        raise ValueError("fuser_metrics needs at least one pair")
    keys = resolve_metrics(convention, metrics)
    rows = [pair_metrics(fuser, p, keys, convention) for p in pairs]
    means = {}
    for k in keys:
        values = np.array([r[k] for r in rows], dtype=np.float64)
        finite = values[np.isfinite(values)]
        means[k] = float(finite.mean()) if finite.size else float("nan")
    return means


def model_fuser(model: nn.Module) -> Fuser:
    """A fuser applying ``model`` (no gradient; its train/eval mode is restored after each call)."""
    return lambda ir, vi: fuse_image_arrays(model, ir, vi)


class HeldOutValidation:
    """Metrics of the model under training and of the reference baselines on the held-out pairs."""

    def __init__(self, cfg: ValidationConfig, datasets: Sequence[PairedImageDataset]):
        self.cfg = cfg
        self.pairs = load_pairs(datasets, cfg.max_pairs) if cfg.metrics else []
        self._references: dict[str, float] | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.pairs)

    def references(self) -> dict[str, float]:
        """``val_<baseline>/<metric>``, computed once (baselines do not change during training)."""
        if self._references is None:
            self._references = {}
            for name in self.cfg.references:
                scores = fuser_metrics(
                    lambda ir, vi, n=name: fuse_baseline(n, ir, vi),
                    self.pairs,
                    self.cfg.metrics,
                    self.cfg.convention,
                )
                self._references.update({f"val_{name}/{k}": v for k, v in scores.items()})
        return self._references

    @torch.no_grad()
    def __call__(self, model: nn.Module) -> dict[str, float]:
        """``val/<metric>`` of ``model`` plus the reference lines; {} when disabled."""
        if not self.enabled:
            return {}
        scores = fuser_metrics(model_fuser(model), self.pairs, self.cfg.metrics, self.cfg.convention)
        return {**{f"val/{k}": v for k, v in scores.items()}, **self.references()}


def record_metrics(path: str | os.PathLike, step: int, metrics: Mapping[str, float]) -> None:
    """Add ``step``'s metrics to the JSON-lines history at ``path`` (rewritten atomically; a step
    logged again after a resume replaces the old line), so curves exist without MLflow too."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    kept = [ln for ln in lines if ln.strip() and json.loads(ln)["step"] < step]
    kept.append(json.dumps({"step": step, **{k: float(v) for k, v in metrics.items()}}))
    write_text_atomic(path, "\n".join(kept) + "\n")


def read_history(path: str | os.PathLike) -> list[dict[str, float]]:
    """The records written by :func:`record_metrics`, in step order."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return sorted((json.loads(ln) for ln in lines if ln.strip()), key=lambda r: r["step"])
