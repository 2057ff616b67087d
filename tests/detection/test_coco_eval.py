"""pycocotools cross-check on hand-made cases whose AP is worked out by hand."""

import math

import numpy as np
import pytest

from detection.coco_eval import coco_map
from detection.yolo import Prediction

NAMES = ["People", "Car"]


def _gt(*boxes_classes):
    boxes = np.array([b for b, _ in boxes_classes], dtype=np.float32).reshape(-1, 4)
    classes = np.array([c for _, c in boxes_classes], dtype=np.int64)
    return boxes, classes


def test_ap50_with_one_false_positive_between_two_hits():
    # 2 People; ranked detections: hit (0.9), miss (0.8), hit (0.7).
    # PR points: (R=.5, P=1), (R=.5, P=.5), (R=1, P=2/3). COCO's precision envelope over its 101
    # recall points: r in [0, .50] -> 1 (51 points), r in (.50, 1] -> 2/3 (50 points).
    gt = {"a.png": _gt(([10, 10, 50, 50], 0), ([100, 100, 140, 150], 0))}
    preds = [
        Prediction("a.png", (10, 10, 50, 50), 0.9, 0),
        Prediction("a.png", (200, 10, 240, 50), 0.8, 0),
        Prediction("a.png", (100, 100, 140, 150), 0.7, 0),
    ]
    m = coco_map(gt, preds, NAMES)
    expected = (51 * 1.0 + 50 * (2 / 3)) / 101
    assert m.ap50_per_class["People"] == pytest.approx(expected, abs=1e-9)
    assert math.isnan(m.ap50_per_class["Car"])  # no Car ground truth: excluded, not zero
    assert m.map50 == pytest.approx(expected, abs=1e-9)


def test_map50_95_counts_iou_thresholds_the_box_passes():
    # IoU([0,0,100,100], [0,0,100,62]) = 0.62 -> a hit at IoU 0.50, 0.55, 0.60 only: AP 1,1,1,0,...,0.
    gt = {"a.png": _gt(([0, 0, 100, 100], 1))}
    preds = [Prediction("a.png", (0, 0, 100, 62), 0.5, 1)]
    m = coco_map(gt, preds, NAMES)
    assert m.map50 == pytest.approx(1.0)
    assert m.map50_95 == pytest.approx(0.3)


def test_mean_over_classes_and_wrong_class_is_a_miss():
    # People found perfectly (AP 1); the only Car detection is labelled People -> Car AP 0.
    gt = {"a.png": _gt(([0, 0, 20, 20], 0)), "b.png": _gt(([30, 30, 60, 60], 1)), "empty.png": _gt()}
    preds = [Prediction("a.png", (0, 0, 20, 20), 0.9, 0), Prediction("b.png", (30, 30, 60, 60), 0.8, 0)]
    m = coco_map(gt, preds, NAMES)
    # People: hit (0.9) then a false positive (0.8) -> recall reaches 1 at precision 1 -> AP 1.
    assert m.ap50_per_class == pytest.approx({"People": 1.0, "Car": 0.0})
    assert m.map50 == pytest.approx(0.5)


def test_no_detections_gives_zero_and_unknown_image_is_an_error():
    gt = {"a.png": _gt(([0, 0, 20, 20], 0))}
    m = coco_map(gt, [], NAMES)
    assert m.map50 == 0.0 and m.ap50_per_class["People"] == 0.0 and math.isnan(m.ap50_per_class["Car"])
    with pytest.raises(ValueError, match="nope.png"):
        coco_map(gt, [Prediction("nope.png", (0, 0, 1, 1), 0.5, 0)], NAMES)
