"""Dataset validation behind ``python -m pipelines.run check_data``: reads everything, modifies nothing.

Errors (each names the offending file): IR without VIS and the reverse, duplicate stems, empty or
missing folders, unreadable/corrupt images, size mismatch within a pair, missing / malformed /
truncated annotations, unknown class names, boxes outside the image or degenerate (zero or
negative width/height). Warnings: annotation <size> that disagrees with the image.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from data.adapters import DatasetError, DatasetLayout, PairFiles, resolve_layout, scan_pairs
from data.io import ImageReadError, list_images, read_image
from data.voc import AnnotationError, read_voc
from data.yolo_export import read_yolo_labels


@dataclass
class ValidationReport:
    dataset: str
    root: Path
    layout: DatasetLayout | None = None
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    n_pairs: int = 0
    sizes: Counter = field(default_factory=Counter)  # (width, height) -> pairs
    boxes_per_class: Counter = field(default_factory=Counter)  # class name -> boxes
    images_without_boxes: int = 0
    gray_visible: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self, max_errors: int = 50) -> str:
        lines = [f"dataset {self.dataset} at {self.root}"]
        if self.layout is not None:
            lines.append(f"  IR:  {self.layout.ir_dir}\n  VIS: {self.layout.vi_dir}")
            if self.layout.annotation_dir is not None:
                lines.append(f"  annotations ({self.layout.annotation_format}): {self.layout.annotation_dir}")
        lines.append(
            f"pairs: {self.n_pairs}" + (f" ({self.gray_visible} with gray VIS)" if self.gray_visible else "")
        )
        if self.sizes:
            common = ", ".join(f"{w}x{h} ({n})" for (w, h), n in self.sizes.most_common(8))
            more = f" and {len(self.sizes) - 8} more" if len(self.sizes) > 8 else ""
            lines.append(f"sizes: {common}{more}")
        if self.layout is not None and self.layout.annotation_format is not None:
            lines.append(f"classes: {', '.join(self.layout.class_names)}")
            total = sum(self.boxes_per_class.values())
            per = ", ".join(f"{c} {self.boxes_per_class.get(c, 0)}" for c in self.layout.class_names)
            lines.append(f"boxes: {total} ({per}); images without boxes: {self.images_without_boxes}")
        for title, items in (("warnings", self.warnings), ("errors", self.errors)):
            if items:
                lines.append(f"{len(items)} {title}:")
                lines += [f"  {e}" for e in items[:max_errors]]
                if len(items) > max_errors:
                    lines.append(f"  ... and {len(items) - max_errors} more")
        lines.append("OK" if self.ok else f"FAILED: {len(self.errors)} error(s)")
        return "\n".join(lines)


def _check_boxes(
    report: ValidationReport, ann_path: Path, boxes: np.ndarray, names: Sequence[str], width: int, height: int
) -> None:
    for i, ((x0, y0, x1, y1), name) in enumerate(zip(boxes.tolist(), names)):
        where = f"{ann_path}: object #{i} ({name}) box [{x0:g}, {y0:g}, {x1:g}, {y1:g}]"
        if x1 <= x0 or y1 <= y0:
            report.errors.append(f"{where} is degenerate (zero or negative width/height)")
        elif x0 < 0 or y0 < 0 or x1 > width or y1 > height:
            report.errors.append(f"{where} lies outside the {width}x{height} image")


def pair_problem(pair: PairFiles) -> str | None:
    """What is wrong with one IR/VIS pair (unreadable or corrupt file, size mismatch), or None.
    Decodes both images fully: a truncated file has a valid header."""
    try:
        ir = read_image(pair.ir, "gray")
        vi = read_image(pair.vi, "unchanged")
    except ImageReadError as exc:
        return str(exc)
    (h, w), (vh, vw) = ir.shape[:2], vi.shape[:2]
    if (h, w) != (vh, vw):
        return f"{pair.vi}: size {vw}x{vh} differs from its IR image {pair.ir} ({w}x{h})"
    return None


def bad_pairs(
    pairs: Sequence[PairFiles], progress: bool = True, desc: str = "checking pairs"
) -> dict[str, str]:
    """``{stem: problem}`` for every bad pair of ``pairs`` (all are checked, nothing is modified)."""
    problems = {}
    for pair in tqdm(pairs, desc=desc, disable=not progress, leave=False):
        if (problem := pair_problem(pair)) is not None:
            problems[pair.stem] = problem
    return problems


def check_dataset(
    name: str,
    root: str | os.PathLike,
    split: str | None = None,
    class_names: Sequence[str] | None = None,
    progress: bool = True,
) -> ValidationReport:
    """Validate dataset ``name`` at ``root`` and return the report (nothing is modified)."""
    report = ValidationReport(name, Path(root))
    try:
        layout = resolve_layout(name, root, split, class_names)
    except DatasetError as exc:
        report.errors.append(str(exc))
        return report
    report.layout = layout
    if name == "m3fd" and layout.annotation_dir is None:
        report.errors.append(
            f"{Path(root)}: no Annotation/ folder (M3FD's VOC boxes); add it, or check a "
            "fusion-only IR/VIS folder with --dataset folder"
        )
    for d, what in ((layout.ir_dir, "infrared"), (layout.vi_dir, "visible")):
        if not list_images(d):
            report.errors.append(f"{d}: empty {what} folder (no {what} images)")
    scan = scan_pairs(layout)
    report.errors += [
        f"{p}: IR image without a VIS image of the same name in {layout.vi_dir}" for p in scan.ir_only
    ]
    report.errors += [
        f"{p}: VIS image without an IR image of the same name in {layout.ir_dir}" for p in scan.vi_only
    ]
    report.errors += [f"{d[1]}: duplicate stem (also {d[0].name})" for d in scan.duplicates]
    class_set = set(layout.class_names)
    for pair in tqdm(scan.pairs, desc=f"checking {name}", disable=not progress, leave=False):
        try:
            ir = read_image(pair.ir, "gray")
            vi = read_image(pair.vi, "unchanged")
        except ImageReadError as exc:
            report.errors.append(str(exc))
            continue
        (h, w), (vh, vw) = ir.shape[:2], vi.shape[:2]
        if (h, w) != (vh, vw):
            report.errors.append(f"{pair.vi}: size {vw}x{vh} differs from its IR image {pair.ir} ({w}x{h})")
            continue
        report.n_pairs += 1
        report.sizes[(w, h)] += 1
        report.gray_visible += vi.ndim == 2
        if layout.annotation_format is None or pair.annotation is None:
            continue
        try:
            if layout.annotation_format == "voc":
                ann = read_voc(pair.annotation)
                names = ann.names
                boxes = ann.boxes
                if ann.width and ann.height and (ann.width, ann.height) != (w, h):
                    report.warnings.append(
                        f"{pair.annotation}: <size> {ann.width}x{ann.height} differs from "
                        f"the image {pair.ir} ({w}x{h})"
                    )
            else:
                if not pair.annotation.exists():
                    report.images_without_boxes += 1
                    continue
                boxes, ids = read_yolo_labels(pair.annotation, w, h)
                names = [
                    layout.class_names[c] if 0 <= c < len(layout.class_names) else f"id {c}" for c in ids
                ]
        except AnnotationError as exc:
            report.errors.append(str(exc))
            continue
        unknown = [n for n in names if n not in class_set]
        for n in dict.fromkeys(unknown):
            report.errors.append(
                f"{pair.annotation}: unknown class name {n!r}; expected one of {list(layout.class_names)}"
            )
        _check_boxes(report, pair.annotation, boxes, names, w, h)
        report.images_without_boxes += len(names) == 0
        report.boxes_per_class.update(n for n in names if n in class_set)
    if layout.annotation_dir is not None and not any(layout.annotation_dir.iterdir()):
        report.errors.append(f"{layout.annotation_dir}: empty annotation folder")
    return report
