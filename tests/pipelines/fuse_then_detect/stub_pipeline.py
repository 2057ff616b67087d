"""What the fuse_then_detect tests share besides fixtures (those are in conftest.py): the tiny data and
model sizes, the stub detector and the config the tests run.

stub_detector_for_orchestration_tests: predictions are the test ground truth plus one false positive
per image, scored with pycocotools, so orchestration tests cover everything but ultralytics training.
"""

import json
from pathlib import Path

from detection.coco_eval import coco_map, ground_truth_from_yolo
from detection.yolo import DetectionResult, Prediction
from fusion.model import MODEL_SIZES
from pipelines.config import parse_config

SYNTH = {"n_images": 12, "width": 64, "height": 64, "seed": 5}
TINY_MODEL = MODEL_SIZES["tiny"]


class StubDetector:
    """stub_detector_for_orchestration_tests: stands in for detection.yolo.train_and_evaluate."""

    def __init__(self, interrupt_at: int | None = None):
        self.calls: list[Path] = []
        self.interrupt_at = interrupt_at

    def __call__(self, data_yaml, out_dir, cfg, seed, class_names):
        out_dir = Path(out_dir)
        if (out_dir / "result.json").is_file():  # same contract as the real one: finished runs are reused
            return DetectionResult.from_json(json.loads((out_dir / "result.json").read_text()))
        self.calls.append(out_dir)
        if self.interrupt_at is not None and len(self.calls) == self.interrupt_at:
            out_dir.mkdir(parents=True, exist_ok=True)
            (out_dir / "partial.txt").write_text("interrupted")  # a partial output that must not count
            raise KeyboardInterrupt
        gt = ground_truth_from_yolo(Path(data_yaml).parent, "test")
        preds = [
            Prediction(name, tuple(float(v) for v in box), 0.9, int(c))
            for name, (boxes, classes) in gt.items()
            for box, c in zip(boxes, classes)
        ]
        preds += [Prediction(name, (0.0, 0.0, 3.0 + seed, 3.0), 0.95, 0) for name in gt]
        coco = coco_map(gt, preds, class_names)
        weights = out_dir / "train" / "weights" / "best.pt"
        weights.parent.mkdir(parents=True, exist_ok=True)
        weights.write_bytes(b"stub weights")
        result = DetectionResult(
            coco.map50, coco.map50_95, coco.ap50_per_class, preds, weights, 0.0, cfg.initialisation
        )
        (out_dir / "result.json").write_text(json.dumps(result.to_json()))
        return result


def make_cfg(inputs, run_dir, mlflow_db, experiment, **changes):
    raw = {
        "name": "orchestration",
        "runs_dir": str(run_dir),
        "dataset": {"name": "synthetic", "root": str(inputs["root"]), "synthetic": SYNTH},
        "methods": [
            {"name": "IR", "kind": "source", "source": "ir"},
            {"name": "VI", "kind": "source", "source": "vi"},
            {"name": "Average", "kind": "baseline", "baseline": "average"},
            {"name": "Max-precomputed", "kind": "precomputed", "folder": str(inputs["precomputed"])},
            {"name": "S4Fusion", "kind": "s4fusion", "checkpoint": str(inputs["checkpoint"])},
        ],
        "detector": {"model": "yolov8n.yaml", "imgsz": 64, "epochs": 1, "device": "cpu"},
        "seeds": [0, 1],
        "report": {"sample_images": 1, "fusion_metrics": ["EN", "SF"]},
        "tracking": {"uri": mlflow_db, "experiment": experiment},
    }
    raw.update(changes)
    return parse_config(raw)
