"""Statistics over seeds and test images: mean ± std, a paired bootstrap of the mAP@50 difference,
and paired tests of per-pair fusion metrics (:func:`paired_comparison`, scipy's t and Wilcoxon tests).

The bootstrap resamples *test images* with replacement (the same resample for both methods, so
the comparison is paired) and recomputes mAP@50 on each resample. pycocotools on every resample
would take minutes, so AP@50 is computed here, vectorised, exactly as pycocotools does it
(greedy matching by score at IoU ≥ 0.5, up to ``max_dets`` detections per image and class,
101-point interpolated precision, mean over classes with ground truth): matching is per image,
so it is done once per method (:func:`match_detections`) and a resample only re-weights each
image's detections and ground truth by how often the image was drawn. Pure numpy; predictions
are any objects with ``image``, ``box`` (xyxy pixels), ``score`` and ``cls`` (e.g.
detection.yolo.Prediction), ground truth as from detection.coco_eval.ground_truth_from_yolo.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

RECALL_POINTS = np.linspace(0.0, 1.0, 101)  # pycocotools' recThrs
_EPS = np.spacing(1)  # pycocotools' guard against 0/0 precision
_CHUNK = 32  # resamples evaluated together (bounds memory: chunk × detections of one class)


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1, the spread of a new seed); std NaN for < 2 values."""
    v = np.asarray(list(values), dtype=np.float64)
    if v.size == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else float("nan")


@dataclass(frozen=True)
class PairedComparison:
    """Per-pair values of method A against method B on the same pairs (pairs where either is NaN
    are left out): how often A is better, and two-sided paired tests of the mean difference."""

    n: int
    mean_a: float
    mean_b: float
    mean_difference: float  # A − B
    sd_difference: float  # ddof=1
    wins: int  # pairs where A is better in the metric's direction
    t: float  # paired t statistic (A − B)
    p_t: float  # two-sided p of the paired t-test
    p_wilcoxon: float  # two-sided p of the Wilcoxon signed-rank test (no normality assumed)


def paired_comparison(a: Sequence[float], b: Sequence[float], direction: int = 1) -> PairedComparison:
    """Compare per-pair values ``a`` and ``b`` (same order); ``direction`` -1 where lower is better."""
    from scipy import stats

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(
            f"paired_comparison needs two equal-length 1-D sequences, got {a.shape} and {b.shape}"
        )
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    diff = a - b
    t = p_t = p_w = float("nan")
    if diff.size > 1 and np.any(diff):  # tests need two pairs and some difference
        t, p_t = (float(v) for v in stats.ttest_rel(a, b))
        p_w = float(stats.wilcoxon(a, b).pvalue)
    mean_difference, sd_difference = mean_std(diff)
    return PairedComparison(
        int(diff.size),
        mean_std(a)[0],
        mean_std(b)[0],
        mean_difference,
        sd_difference,
        int(np.sum(diff * direction > 0)),
        t,
        p_t,
        p_w,
    )


@dataclass(frozen=True)
class MatchedDetections:
    """One method's (one seed's) detections matched to ground truth at IoU 0.5, image by image.

    ``images``: sorted image names (index = image index). Per class ``k``: ``order[k]`` holds the
    detection indices in pycocotools' accumulation order (score descending, ties by image then
    by rank within the image). ``det_image``/``det_tp``: each detection's image index and whether
    it matched a ground-truth box. ``gt_counts[i, k]``: ground-truth boxes of class k in image i.
    """

    images: tuple[str, ...]
    det_image: np.ndarray
    det_tp: np.ndarray
    order: tuple[np.ndarray, ...]
    gt_counts: np.ndarray


def _iou(det: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """IoU of (D,4) against (G,4) xyxy boxes, computed like pycocotools (from x, y, w, h)."""
    dw, dh = det[:, 2] - det[:, 0], det[:, 3] - det[:, 1]
    gw, gh = gt[:, 2] - gt[:, 0], gt[:, 3] - gt[:, 1]
    iw = np.minimum((det[:, 0] + dw)[:, None], (gt[:, 0] + gw)[None]) - np.maximum(
        det[:, 0, None], gt[None, :, 0]
    )
    ih = np.minimum((det[:, 1] + dh)[:, None], (gt[:, 1] + gh)[None]) - np.maximum(
        det[:, 1, None], gt[None, :, 1]
    )
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    union = (dw * dh)[:, None] + (gw * gh)[None] - inter
    return inter / union


def _match_image(
    boxes: np.ndarray, scores: np.ndarray, gt: np.ndarray, max_dets: int
) -> tuple[np.ndarray, np.ndarray]:
    """pycocotools' greedy matching of one image and class: (kept detection indices by rank, is_tp)."""
    keep = np.argsort(-scores, kind="mergesort")[:max_dets]
    tp = np.zeros(keep.size, dtype=bool)
    if gt.shape[0]:
        ious = _iou(boxes[keep], gt)
        taken = np.zeros(gt.shape[0], dtype=bool)
        for d in range(keep.size):
            candidates = np.where(~taken & (ious[d] >= 0.5))[0]
            if candidates.size:
                best = candidates[
                    len(candidates) - 1 - np.argmax(ious[d, candidates][::-1])
                ]  # last of equal best
                taken[best], tp[d] = True, True
    return keep, tp


def _as_arrays(boxes, classes) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(classes).reshape(-1).astype(np.int64)


def match_detections(
    ground_truth: Mapping[str, tuple[np.ndarray, np.ndarray]],
    predictions: Iterable,
    n_classes: int,
    max_dets: int = 300,
) -> MatchedDetections:
    """Match ``predictions`` to ``ground_truth`` once (see :class:`MatchedDetections`).

    ``max_dets`` as in detection.coco_eval.coco_map (pycocotools keeps that many per image and class).
    """
    images = tuple(sorted(ground_truth))
    index = {name: i for i, name in enumerate(images)}
    rows: dict[tuple[int, int], list] = {}
    for p in predictions:
        if p.image not in index:
            raise ValueError(f"prediction for image '{p.image}' which has no ground-truth entry")
        if not 0 <= int(p.cls) < n_classes:
            raise ValueError(f"prediction class {p.cls} outside 0..{n_classes - 1} (image '{p.image}')")
        if p.box[2] < p.box[0] or p.box[3] < p.box[1]:
            raise ValueError(f"prediction box {tuple(p.box)} in image '{p.image}' is not x1 <= x2, y1 <= y2")
        rows.setdefault((index[p.image], int(p.cls)), []).append((*p.box, p.score))
    gt_boxes = [_as_arrays(*ground_truth[name]) for name in images]
    gt_counts = np.array(
        [np.bincount(classes, minlength=n_classes)[:n_classes] for _, classes in gt_boxes], dtype=np.int64
    ).reshape(len(images), n_classes)
    parts: list[tuple[np.ndarray, ...]] = []  # (image, class, score, tp) per image and class, in image order
    for (i, k), dets in sorted(rows.items()):
        dets = np.asarray(dets, dtype=np.float64)
        boxes, classes = gt_boxes[i]
        keep, tp = _match_image(dets[:, :4], dets[:, 4], boxes[classes == k], max_dets)
        parts.append((np.full(keep.size, i), np.full(keep.size, k), dets[keep, 4], tp))
    det_image, det_class, det_score, det_tp = (
        [np.concatenate(c) for c in zip(*parts)] if parts else [np.zeros(0)] * 4
    )
    det_image, det_class, det_tp = det_image.astype(np.int64), det_class.astype(np.int64), det_tp.astype(bool)
    order = tuple(
        np.flatnonzero(det_class == k)[np.argsort(-det_score[det_class == k], kind="mergesort")]
        for k in range(n_classes)
    )
    return MatchedDetections(images, det_image, det_tp, order, gt_counts)


def _interpolated_ap(weight: np.ndarray, tp: np.ndarray, n_gt: np.ndarray) -> np.ndarray:
    """101-point AP per row from detection weights (rows: resamples, columns: one class's
    detections in accumulation order), their true-positive flags and the rows' GT counts.

    Precision is only evaluated at true positives: recall rises only there, so every recall
    point lands on one, and a false positive never has higher precision than the detection
    before it, so leaving them out does not change the monotone envelope.
    """
    tps = np.cumsum(weight * tp, axis=1)[:, tp]
    fps = np.cumsum(weight * ~tp, axis=1)[:, tp]
    recall = tps / n_gt[:, None]
    envelope = np.maximum.accumulate((tps / (tps + fps + _EPS))[:, ::-1], axis=1)[:, ::-1]
    ap = np.zeros(weight.shape[0])
    for r in range(weight.shape[0]):
        at = np.searchsorted(recall[r], RECALL_POINTS, side="left")
        ap[r] = envelope[r, at[at < tps.shape[1]]].sum() / RECALL_POINTS.size
    return ap


def ap50_per_class(matched: MatchedDetections, weights: np.ndarray | None = None) -> np.ndarray:
    """AP@50 per class, shape (R, K) for image ``weights`` (R, n_images) (how often each image
    is drawn; ``None`` = every image once, giving shape (1, K)). NaN where a class has no GT."""
    w = np.ones((1, len(matched.images))) if weights is None else np.asarray(weights, dtype=np.float64)
    n_classes = matched.gt_counts.shape[1]
    ap = np.full((w.shape[0], n_classes), np.nan)
    n_gt = w @ matched.gt_counts
    for k, order in enumerate(matched.order):
        has_gt = n_gt[:, k] > 0
        ap[has_gt, k] = 0.0
        tp = matched.det_tp[order]
        if not tp.any() or not has_gt.any():
            continue
        order, tp = (
            order[: np.flatnonzero(tp)[-1] + 1],
            tp[: np.flatnonzero(tp)[-1] + 1],
        )  # the tail adds no recall
        for start in range(0, w.shape[0], _CHUNK):
            rows = np.arange(start, min(start + _CHUNK, w.shape[0]))[has_gt[start : start + _CHUNK]]
            ap[rows, k] = _interpolated_ap(w[np.ix_(rows, matched.det_image[order])], tp, n_gt[rows, k])
    return ap


def map50(matched: MatchedDetections, weights: np.ndarray | None = None) -> np.ndarray:
    """mAP@50 (mean over classes with ground truth) per resample row; NaN when no class has GT."""
    ap = ap50_per_class(matched, weights)
    with np.errstate(invalid="ignore"):
        counts = np.sum(~np.isnan(ap), axis=1)
        return np.where(counts > 0, np.nansum(ap, axis=1) / np.maximum(counts, 1), np.nan)


@dataclass(frozen=True)
class BootstrapDifference:
    """mAP@50 of method A minus method B (each the mean over its seeds) with a percentile interval."""

    difference: float  # on the full test set
    low: float
    high: float
    confidence: float
    n_resamples: int

    @property
    def significant(self) -> bool:
        """The interval excludes 0."""
        return bool(self.low > 0 or self.high < 0)


def image_resamples(n_images: int, n_resamples: int, seed: int) -> np.ndarray:
    """(n_resamples, n_images) counts: how often each image is drawn in each resample (seeded)."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_images, size=(n_resamples, n_images))
    offsets = (np.arange(n_resamples) * n_images)[:, None]
    return np.bincount((draws + offsets).ravel(), minlength=n_resamples * n_images).reshape(
        n_resamples, n_images
    )


def paired_bootstrap(
    method_a: Sequence[MatchedDetections],
    method_b: Sequence[MatchedDetections],
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> BootstrapDifference:
    """Paired bootstrap interval of mAP@50(A) − mAP@50(B) over test images.

    ``method_a``/``method_b``: one :class:`MatchedDetections` per detector seed. A resample draws
    test images with replacement; each method's mAP@50 on it is the mean over its seeds (the
    same images for every seed and both methods), so the interval covers test-set sampling with
    seed noise averaged out, as the table's mean row does.
    """
    runs = [*method_a, *method_b]
    if not method_a or not method_b:
        raise ValueError("paired_bootstrap needs at least one seed's detections per method")
    stems = [
        tuple(name.rsplit(".", 1)[0] for name in m.images) for m in runs
    ]  # methods may save .png or .jpg
    if any(s != stems[0] for s in stems):
        raise ValueError(
            "paired_bootstrap: both methods and all seeds must be evaluated on the same test images"
        )
    if not 0 < confidence < 1 or n_resamples < 1:
        raise ValueError(
            f"paired_bootstrap: need 0 < confidence < 1 and n_resamples >= 1, got {confidence}, {n_resamples}"
        )
    weights = image_resamples(len(runs[0].images), n_resamples, seed)

    def mean_map(method: Sequence[MatchedDetections], w: np.ndarray | None) -> np.ndarray:
        return np.mean([map50(m, w) for m in method], axis=0)

    full = float(mean_map(method_a, None)[0] - mean_map(method_b, None)[0])
    diffs = mean_map(method_a, weights) - mean_map(method_b, weights)
    diffs = diffs[~np.isnan(diffs)]  # a resample without any ground truth has no mAP
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(diffs, [tail, 100 - tail]) if diffs.size else (np.nan, np.nan)
    return BootstrapDifference(full, float(low), float(high), confidence, n_resamples)
