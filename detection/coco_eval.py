"""Independent mAP with pycocotools, to cross-check ultralytics' numbers on the same predictions.

ultralytics computes AP with its own matcher and PR interpolation; pycocotools is the reference
implementation of the COCO protocol (101 recall points, greedy matching by score, IoU 0.50:0.95).
The two agree closely but not exactly, so the pipeline records both and their difference.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data.io import image_size, list_images
from data.yolo_export import read_yolo_labels


@dataclass
class CocoMetrics:
    map50: float
    map50_95: float
    ap50_per_class: dict[str, float]  # NaN for a class without ground truth


def ground_truth_from_yolo(root: str | Path, part: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Ground truth of one part of a YOLO tree (``images/<part>``, ``labels/<part>``) in pixels,
    keyed by image file name -- exactly the labels ultralytics evaluated."""
    root = Path(root)
    gt = {}
    for image in list_images(root / "images" / part):
        label = root / "labels" / part / f"{image.stem}.txt"
        width, height = image_size(image)
        gt[image.name] = (
            read_yolo_labels(label, width, height)
            if label.is_file()
            else (np.zeros((0, 4), np.float32), np.zeros(0, np.int64))
        )
    if not gt:
        raise FileNotFoundError(f"{root / 'images' / part}: no images")
    return gt


def coco_map(
    ground_truth: Mapping[str, tuple[np.ndarray, np.ndarray]],
    predictions: Iterable,
    class_names: list[str],
    max_dets: int = 300,
) -> CocoMetrics:
    """mAP@50, mAP@50:95 and per-class AP@50 by pycocotools.

    Args:
        ground_truth: image name -> (boxes (N,4) xyxy pixels, classes (N,) int). Every evaluated
            image must be present, including images without objects (empty arrays).
        predictions: objects with ``image``, ``box`` (xyxy pixels), ``score`` and ``cls``
            (e.g. :class:`detection.yolo.Prediction`); images not in ``ground_truth`` are an error.
        class_names: class index -> name.
        max_dets: detections kept per image (ultralytics evaluates up to ``max_det=300``; the COCO
            default of 100 would drop low-score detections ultralytics counts).
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    image_ids = {name: i + 1 for i, name in enumerate(sorted(ground_truth))}
    annotations = []
    for name, (boxes, classes) in ground_truth.items():
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        for box, cls in zip(boxes, np.asarray(classes).reshape(-1)):
            w, h = box[2] - box[0], box[3] - box[1]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_ids[name],
                    "category_id": int(cls) + 1,
                    "bbox": [float(box[0]), float(box[1]), float(w), float(h)],
                    "area": float(w * h),
                    "iscrowd": 0,
                }
            )
    detections = []
    for p in predictions:
        if p.image not in image_ids:
            raise ValueError(f"prediction for image '{p.image}' which has no ground-truth entry")
        x1, y1, x2, y2 = (float(v) for v in p.box)
        detections.append(
            {
                "image_id": image_ids[p.image],
                "category_id": int(p.cls) + 1,
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "score": float(p.score),
            }
        )

    gt = COCO()
    gt.dataset = {
        "images": [{"id": i} for i in image_ids.values()],
        "annotations": annotations,
        "categories": [{"id": k + 1, "name": n} for k, n in enumerate(class_names)],
    }
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress to stdout
        gt.createIndex()
        if not detections:
            return CocoMetrics(
                0.0 if annotations else float("nan"),
                0.0 if annotations else float("nan"),
                _per_class_without_detections(annotations, class_names),
            )
        dt = gt.loadRes(detections)
        evaluator = COCOeval(gt, dt, iouType="bbox")
        evaluator.params.maxDets = [1, 10, max_dets]
        evaluator.evaluate()
        evaluator.accumulate()
    # precision: [iou thresholds, recall points, classes, area ranges, max dets]; -1 = class without GT
    precision = evaluator.eval["precision"][:, :, :, 0, -1]
    iou50 = int(np.argmin(np.abs(evaluator.params.iouThrs - 0.5)))
    ap50_per_class = {}
    for k, name in enumerate(class_names):
        p = precision[iou50, :, k]
        ap50_per_class[name] = float(np.mean(p)) if np.all(p > -1) else float("nan")
    valid = precision > -1
    map50 = float(np.mean(precision[iou50][valid[iou50]])) if valid[iou50].any() else float("nan")
    map50_95 = float(np.mean(precision[valid])) if valid.any() else float("nan")
    return CocoMetrics(map50, map50_95, ap50_per_class)


def _per_class_without_detections(annotations: list[dict], class_names: list[str]) -> dict[str, float]:
    present = {a["category_id"] - 1 for a in annotations}
    return {name: (0.0 if k in present else float("nan")) for k, name in enumerate(class_names)}
