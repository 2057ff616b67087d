"""Train and evaluate one ultralytics YOLO detector on one YOLO dataset tree.

Every method of the fuse-then-detect comparison goes through :func:`train_and_evaluate` with the
same :class:`DetectorConfig` and seed, so the only difference between methods is the images.
Augmentation is ultralytics' own (mosaic, HSV, flips, ...) driven by the config; albumentations'
implicit extra augments (Blur, MedianBlur, ToGray, CLAHE at p=0.01, enabled whenever
albumentations is installed) are switched off for every method by passing an empty
``augmentations`` list, so an environment with or without albumentations trains identically.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from data.io import write_text_atomic
from detection.offline import check_local_weight, import_ultralytics
from runtime import hooks

LOG_NAME = "ultralytics.log"


@dataclass
class DetectorConfig:
    """Detector hyper-parameters, identical for every method of a comparison.

    ``model`` is an ultralytics model YAML (trained from scratch unless ``weights`` is given);
    ``weights`` a local pretrained ``.pt`` fine-tuned instead (the paper fine-tunes YOLOv5s).
    ``train_args`` passes further ultralytics train arguments (e.g. ``mosaic``, ``hsv_h``)
    unchanged to every method.
    """

    model: str = "yolov5s.yaml"
    weights: str | None = None
    imgsz: int = 640
    epochs: int = 40
    batch: int = 16
    optimizer: str = "SGD"
    lr0: float = 0.01
    workers: int = 0
    device: str = "auto"
    close_mosaic: int = 10
    conf: float = 0.001  # evaluation confidence threshold (mAP needs the full PR curve)
    iou: float = 0.7  # NMS IoU at evaluation
    max_det: int = 300
    train_args: dict[str, Any] = field(default_factory=dict)

    # Keys owned by DetectorConfig / the wrapper; a train_args entry may not override them.
    _reserved = (
        "model",
        "data",
        "epochs",
        "imgsz",
        "batch",
        "optimizer",
        "lr0",
        "workers",
        "device",
        "seed",
        "deterministic",
        "project",
        "name",
        "exist_ok",
        "augmentations",
        "resume",
        "close_mosaic",
        "amp",
    )

    def __post_init__(self) -> None:
        clash = sorted(set(self.train_args) & set(self._reserved))
        if clash:
            raise ValueError(
                f"detector.train_args may not set {clash}; use the detector keys of the same name"
            )
        if self.weights is not None:
            check_local_weight(self.weights)
        elif not str(self.model).endswith((".yaml", ".yml")):
            raise ValueError(
                f"detector.model '{self.model}' must be a model YAML (e.g. yolov5s.yaml) to train from scratch; "
                f"pretrained checkpoints go in detector.weights as a local path"
            )
        for name in ("imgsz", "epochs", "batch"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"detector.{name} must be positive, got {getattr(self, name)}")

    @property
    def initialisation(self) -> str:
        """How the detector starts: 'pretrained:<file>' or 'scratch:<yaml>' (logged with results)."""
        return f"pretrained:{Path(self.weights).name}" if self.weights else f"scratch:{self.model}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Prediction:
    """One detection in original image pixels."""

    image: str  # image file name
    box: tuple[float, float, float, float]  # x1, y1, x2, y2
    score: float
    cls: int


@dataclass
class DetectionResult:
    map50: float
    map50_95: float
    ap50_per_class: dict[str, float]  # NaN for a class without test instances
    predictions: list[Prediction]
    weights: Path  # best checkpoint
    train_seconds: float
    initialisation: str

    def to_json(self) -> dict[str, Any]:
        return {
            "map50": self.map50,
            "map50_95": self.map50_95,
            "ap50_per_class": self.ap50_per_class,
            "weights": str(self.weights),
            "train_seconds": self.train_seconds,
            "initialisation": self.initialisation,
            "predictions": [[p.image, *p.box, p.score, p.cls] for p in self.predictions],
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> DetectionResult:
        preds = [Prediction(r[0], tuple(r[1:5]), r[5], int(r[6])) for r in d["predictions"]]
        return cls(
            d["map50"],
            d["map50_95"],
            {k: float(v) for k, v in d["ap50_per_class"].items()},
            preds,
            Path(d["weights"]),
            d["train_seconds"],
            d["initialisation"],
        )


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "0" if torch.cuda.is_available() else "cpu"


def _recording_validator_class():
    """A DetectionValidator that keeps every scaled prediction instead of writing COCO JSON.

    ``save_json`` makes ultralytics scale predictions back to original pixels; we keep them in
    memory and skip ultralytics' faster-coco-eval step: the COCO cross-check is ours.
    """
    import_ultralytics()
    from ultralytics.models.yolo.detect import DetectionValidator

    class RecordingValidator(DetectionValidator):
        def init_metrics(self, model):
            super().init_metrics(model)
            self.records: list[Prediction] = []

        def pred_to_json(self, predn, pbatch):
            # Rounded like ultralytics' own COCO JSON, so a reloaded result equals the recorded one.
            name = Path(pbatch["im_file"]).name
            for b, s, c in zip(predn["bboxes"].tolist(), predn["conf"].tolist(), predn["cls"].tolist()):
                self.records.append(Prediction(name, tuple(round(x, 3) for x in b), round(s, 5), int(c)))

        def eval_json(self, stats):
            return stats

    return RecordingValidator


@contextlib.contextmanager
def ultralytics_output_to(log_file: Path):
    """Everything ultralytics writes (its logger, prints and progress bars) goes to ``log_file``
    instead of the console, for the duration of the block."""
    logger = logging.getLogger("ultralytics")
    saved = logger.handlers[:]
    with (
        open(log_file, "a", encoding="utf-8") as fh,
        contextlib.redirect_stdout(fh),
        contextlib.redirect_stderr(fh),
    ):
        handler = logging.StreamHandler(fh)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.handlers = [handler]
        try:
            yield
        finally:
            logger.handlers = saved


def train_and_evaluate(
    data_yaml: str | os.PathLike,
    out_dir: str | os.PathLike,
    cfg: DetectorConfig,
    seed: int,
    class_names: list[str],
) -> DetectionResult:
    """Train one detector on ``data_yaml`` (train/val splits) and evaluate it on its ``test`` split.

    ``out_dir`` receives ultralytics' run folder (``train/``), its console output (``ultralytics.log``)
    and ``result.json``; a finished
    ``out_dir`` (``result.json`` present) is returned as is, an unfinished one is trained again
    from scratch (training is deterministic, so the outcome is the same).
    """
    import time

    out_dir = Path(out_dir)
    result_file = out_dir / "result.json"
    if result_file.is_file():
        return DetectionResult.from_json(json.loads(result_file.read_text()))
    import_ultralytics()
    from ultralytics import YOLO

    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    device = resolve_device(cfg.device)
    start = time.perf_counter()
    model = YOLO(str(check_local_weight(cfg.weights)) if cfg.weights else cfg.model, task="detect")
    train_kwargs = dict(
        data=str(data_yaml),
        epochs=cfg.epochs,
        imgsz=cfg.imgsz,
        batch=cfg.batch,
        optimizer=cfg.optimizer,
        lr0=cfg.lr0,
        workers=cfg.workers,
        device=device,
        seed=seed,
        deterministic=True,
        close_mosaic=cfg.close_mosaic,
        project=str(out_dir),
        name="train",
        exist_ok=True,
        augmentations=[],
        amp=device != "cpu",
        plots=False,
        verbose=False,
    )
    # the process-wide hook point inside ultralytics' loop (runtime.hooks: tests kill the process there)
    model.add_callback("on_train_batch_end", lambda trainer: hooks.fire("detector.batch"))
    with ultralytics_output_to(out_dir / LOG_NAME):
        model.train(**{**train_kwargs, **cfg.train_args})
    train_seconds = time.perf_counter() - start
    best = out_dir / "train" / "weights" / "best.pt"
    if not best.is_file():
        raise RuntimeError(f"ultralytics finished without writing {best}")

    evaluator = YOLO(str(best), task="detect")
    captured = []
    evaluator.add_callback("on_val_end", captured.append)
    with ultralytics_output_to(out_dir / LOG_NAME):
        metrics = evaluator.val(
            validator=_recording_validator_class(),
            data=str(data_yaml),
            split="test",
            imgsz=cfg.imgsz,
            batch=cfg.batch,
            conf=cfg.conf,
            iou=cfg.iou,
            max_det=cfg.max_det,
            device=device,
            workers=cfg.workers,
            save_json=True,
            plots=False,
            verbose=False,
            project=str(out_dir),
            name="test",
            exist_ok=True,
        )
    ap50 = {name: float("nan") for name in class_names}
    for i, class_index in enumerate(metrics.box.ap_class_index):
        ap50[class_names[int(class_index)]] = float(metrics.box.ap50[i])
    result = DetectionResult(
        map50=float(metrics.box.map50),
        map50_95=float(metrics.box.map),
        ap50_per_class=ap50,
        predictions=captured[-1].records,
        weights=best,
        train_seconds=train_seconds,
        initialisation=cfg.initialisation,
    )
    write_text_atomic(result_file, json.dumps(result.to_json()))
    return result
