"""What the fuse_then_detect stages pass to each other and to the report."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from data.adapters import PairedImageDataset
from detection.coco_eval import CocoMetrics
from detection.yolo import DetectionResult
from pipelines.config import PipelineConfig
from pipelines.statistics import mean_std


@dataclass
class PreparedData:
    dataset: PairedImageDataset
    split: dict[str, list[str]]
    split_hash: str
    data_id: str  # identity of the images + split (cache key component)
    class_names: list[str]
    split_dir: Path
    root: Path

    def all_stems(self) -> list[str]:
        return [s for part in ("train", "val", "test") for s in self.split[part]]


@dataclass(frozen=True)
class RunContext:
    """One fuse_then_detect run as its stages, jobs and report see it: the config and the prepared
    data; the run folder is ``cfg.run_dir``. Picklable: a job receives it whole on its worker."""

    cfg: PipelineConfig
    data: PreparedData

    @property
    def run_dir(self) -> Path:
        return self.cfg.run_dir


# A method's fused images: a folder of <stem>.png (fused here) or {stem: file} (precomputed).
FusedImages = Path | dict[str, Path]


def image_for(fused: FusedImages):
    """``stem -> path`` of a method's fused image."""
    if isinstance(fused, dict):
        return lambda stem: fused[stem]
    return lambda stem: fused / f"{stem}.png"


@dataclass
class FusionOutput:
    """Result of a method's fusion job: its fused images, YOLO tree, model and the trainer's
    MLflow calls (an in-run S4Fusion training, recorded on the worker, replayed by the driver)."""

    key: str
    fused: FusedImages
    data_yaml: Path
    checkpoint: Path | None = None
    tracking_calls: list[tuple[str, tuple]] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class DetectorOutput:
    """Result of a (method, seed) detector job: training + test evaluation + COCO cross-check."""

    seed: int
    result: DetectionResult
    coco: CocoMetrics
    folder: Path
    seconds: float = 0.0


@dataclass
class MethodOutcome:
    name: str
    kind: str
    key: str
    fused: FusedImages
    data_yaml: Path
    seeds: list[int]
    detections: list[DetectionResult]
    coco: list[CocoMetrics]
    fusion: Any  # pandas DataFrame: per-image fusion metrics on the test split
    run_id: str | None = None

    def fusion_means(self, metrics: list[str]) -> dict[str, float]:
        from fusion.metrics import summarize

        row = summarize(self.fusion, group_by="method", metrics=metrics).iloc[0]
        return {m: float(row[f"{m}_mean"]) for m in metrics}

    def mean_std(self, attr: str) -> tuple[float, float]:
        """Mean and sample std (pipelines.statistics.mean_std) over seeds; std NaN for one seed."""
        return mean_std(getattr(r, attr) for r in self.detections)

    def coco_mean_std(self) -> tuple[float, float]:
        return mean_std(c.map50 for c in self.coco)

    def coco_mean(self) -> float:
        return self.coco_mean_std()[0]

    def class_ap50(self, class_name: str) -> tuple[float, float]:
        """Over the seeds where the class has an AP (NaN: no test instance)."""
        values = np.array([r.ap50_per_class[class_name] for r in self.detections], dtype=np.float64)
        return mean_std(values[~np.isnan(values)])


@dataclass
class PipelineResult:
    run_dir: Path
    report_dir: Path
    outcomes: list[MethodOutcome]
    verdict: str
    tracking_uri: str
    experiment: str
    parent_run_id: str
    timings: dict[str, float] = field(default_factory=dict)
