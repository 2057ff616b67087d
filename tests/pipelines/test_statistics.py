"""pipelines.statistics: vectorised AP@50 against pycocotools, the paired bootstrap, paired tests."""

from __future__ import annotations

import numpy as np
import pytest

from detection.coco_eval import coco_map
from detection.yolo import Prediction
from pipelines.statistics import (
    ap50_per_class,
    image_resamples,
    map50,
    match_detections,
    mean_std,
    paired_bootstrap,
    paired_comparison,
)

CLASSES = ["person", "car", "bus", "sign"]  # 'sign' has detections but no ground truth


def synthetic_ground_truth(n_images: int = 60, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    gt = {}
    for i in range(n_images):
        n = 0 if i % 13 == 0 else int(rng.integers(1, 7))  # some images without objects
        xy = rng.uniform(0, 200, (n, 2))
        wh = rng.uniform(8, 60, (n, 2))
        gt[f"img{i:03d}.png"] = (np.hstack([xy, xy + wh]), rng.integers(0, 3, n))
    return gt


def synthetic_predictions(gt, quality: float, seed: int) -> list[Prediction]:
    """Detections of a detector whose boxes and scores get better with ``quality`` in [0, 1]."""
    rng = np.random.default_rng(seed)
    preds = []
    for name, (boxes, classes) in gt.items():
        for box, cls in zip(boxes, classes):
            for _ in range(int(rng.integers(1, 3))):  # duplicates become false positives
                if rng.random() < 0.3 + 0.6 * quality:
                    x1, y1, x2, y2 = box + rng.normal(0, 12 * (1.2 - quality), 4)
                    box = (
                        min(x1, x2),
                        min(y1, y2),
                        max(x1, x2),
                        max(y1, y2),
                    )  # a detector's boxes are ordered
                    preds.append(Prediction(name, box, float(rng.uniform(0.2 * quality, 1)), int(cls)))
        for _ in range(int(rng.integers(0, 5))):  # background false positives, any class (also 'sign')
            xy = rng.uniform(0, 200, 2)
            preds.append(
                Prediction(
                    name,
                    (*xy, *(xy + rng.uniform(8, 60, 2))),
                    float(rng.uniform(0, 0.8)),
                    int(rng.integers(0, 4)),
                )
            )
    return preds


@pytest.fixture(scope="module")
def gt():
    return synthetic_ground_truth()


@pytest.mark.parametrize("quality,max_dets", [(0.2, 300), (0.8, 300), (0.8, 10)])
def test_ap50_equals_pycocotools_on_the_full_set(gt, quality, max_dets):
    preds = [p for s in (1, 2, 3) for p in synthetic_predictions(gt, quality, seed=s)]
    per_image_class = np.unique([(p.image, p.cls) for p in preds], axis=0, return_counts=True)[1]
    assert per_image_class.max() > 10  # max_dets=10 truncates (pycocotools raises any max_dets < 10 to 10)
    reference = coco_map(gt, preds, CLASSES, max_dets=max_dets)
    matched = match_detections(gt, preds, len(CLASSES), max_dets=max_dets)
    per_class = ap50_per_class(matched)[0]
    for k, name in enumerate(CLASSES):
        if np.isnan(reference.ap50_per_class[name]):
            assert np.isnan(per_class[k]), name
        else:
            assert per_class[k] == pytest.approx(reference.ap50_per_class[name], abs=1e-12), name
    assert map50(matched)[0] == pytest.approx(reference.map50, abs=1e-12)
    assert 0 < reference.map50 < 1


def test_a_resample_equals_pycocotools_on_the_resampled_images(gt):
    """Weights = how often each image is drawn; pycocotools sees the drawn copies as new images."""
    preds = synthetic_predictions(gt, 0.6, seed=2)
    matched = match_detections(gt, preds, len(CLASSES))
    counts = image_resamples(len(matched.images), 3, seed=5)
    values = map50(matched, counts)
    for row, value in zip(counts, values):
        copies = {
            f"{name[:-4]}#{c}.png": (i, name) for i, name in enumerate(matched.images) for c in range(row[i])
        }
        resampled_gt = {new: gt[name] for new, (i, name) in copies.items()}
        by_image = {}
        for p in preds:
            by_image.setdefault(p.image, []).append(p)
        resampled_preds = [
            Prediction(new, p.box, p.score, p.cls)
            for new, (i, name) in copies.items()
            for p in by_image.get(name, [])
        ]
        assert value == pytest.approx(coco_map(resampled_gt, resampled_preds, CLASSES).map50, abs=1e-12)
    assert len(set(np.round(values, 12))) == 3  # the resamples differ


def test_bootstrap_is_deterministic_and_seeded(gt):
    a = [match_detections(gt, synthetic_predictions(gt, 0.7, seed=s), len(CLASSES)) for s in (10, 11)]
    b = [match_detections(gt, synthetic_predictions(gt, 0.5, seed=s), len(CLASSES)) for s in (20, 21)]
    first = paired_bootstrap(a, b, n_resamples=200, seed=3)
    assert paired_bootstrap(a, b, n_resamples=200, seed=3) == first
    assert paired_bootstrap(a, b, n_resamples=200, seed=4) != first
    assert first.low <= first.difference <= first.high
    full = np.mean([map50(m)[0] for m in a]) - np.mean([map50(m)[0] for m in b])
    assert first.difference == pytest.approx(full, abs=1e-12)


def test_a_clearly_better_method_is_significant_and_identical_methods_are_not(gt):
    good = [match_detections(gt, synthetic_predictions(gt, 0.95, seed=s), len(CLASSES)) for s in (30, 31)]
    poor = [match_detections(gt, synthetic_predictions(gt, 0.1, seed=s), len(CLASSES)) for s in (40, 41)]
    better = paired_bootstrap(good, poor, n_resamples=300, seed=0)
    assert better.difference > 0 and better.low > 0 and better.significant
    same = paired_bootstrap(poor, poor, n_resamples=300, seed=0)
    assert same.difference == same.low == same.high == 0 and not same.significant
    # same detector quality, independent noise: the interval straddles 0
    twin = [match_detections(gt, synthetic_predictions(gt, 0.1, seed=s), len(CLASSES)) for s in (50, 51)]
    alike = paired_bootstrap(poor, twin, n_resamples=300, seed=0)
    assert alike.low < 0 < alike.high and not alike.significant


def test_bad_inputs_are_refused(gt):
    with pytest.raises(ValueError, match="'nope.png' which has no ground-truth entry"):
        match_detections(gt, [Prediction("nope.png", (0, 0, 1, 1), 0.5, 0)], len(CLASSES))
    with pytest.raises(ValueError, match="class 7 outside 0..3"):
        match_detections(gt, [Prediction("img001.png", (0, 0, 1, 1), 0.5, 7)], len(CLASSES))
    with pytest.raises(ValueError, match="not x1 <= x2"):
        match_detections(gt, [Prediction("img001.png", (5, 0, 1, 1), 0.5, 0)], len(CLASSES))
    fewer = dict(list(gt.items())[:-1])
    m = match_detections(gt, [], len(CLASSES))
    with pytest.raises(ValueError, match="same test images"):
        paired_bootstrap([m], [match_detections(fewer, [], len(CLASSES))])


def test_mean_std_over_seeds():
    assert mean_std([0.5, 0.7]) == pytest.approx((0.6, np.std([0.5, 0.7], ddof=1)))
    mean, std = mean_std([0.4])
    assert mean == 0.4 and np.isnan(std)


def test_paired_comparison_against_printed_table_values():
    # differences c + (-2, -1, 0, 1, 2): sd sqrt(10/4), so t = c / (sd / sqrt 5); with c set so that t is
    # Student's t(0.975, 4 df) = 2.776445 (printed t tables), the two-sided p is 0.05. The signed ranks
    # are 1 (negative), 2, 3, 4, 5: W = 1, whose exact two-sided Wilcoxon p is 2 * 2/32 = 0.125.
    c = 2.776445 * np.sqrt(10 / 4) / np.sqrt(5)
    b = np.array([0.3, 0.1, 0.9, 0.5, 0.2, np.nan])
    a = b + c + np.array([-2, -1, 0, 1, 2, 0])
    r = paired_comparison(a, b)  # the NaN pair is left out
    assert r.n == 5 and r.wins == 4 and r.mean_difference == pytest.approx(c)
    assert r.mean_a == pytest.approx(np.nanmean(b[:5]) + c) and r.sd_difference == pytest.approx(np.sqrt(2.5))
    assert r.t == pytest.approx(2.776445) and r.p_t == pytest.approx(0.05, abs=1e-6)
    assert r.p_wilcoxon == pytest.approx(0.125)
    lower_is_better = paired_comparison(a, b, direction=-1)
    assert lower_is_better.wins == 1 and lower_is_better.t == r.t
    assert np.isnan(paired_comparison([1.0], [0.5]).t)  # one pair: no test
