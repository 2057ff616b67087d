"""Paired IR/VIS dataset adapters: one interface over the real layouts, pairs matched by file stem.

Layouts (``root`` is what the user points at; folder names are matched case-insensitively):

- ``m3fd`` / ``synthetic``: ``Ir/ Vis/ Annotation/`` (5-digit PNG names, Pascal VOC XML with the
  six M3FD class names), or the ``ir/ vi/`` repack used by fusion repositories (annotations optional);
- ``msrs``: ``{train,test}/{ir,vi}`` (pass ``split=``, or point ``root`` at ``MSRS/train``); YOLO
  labels from ``detection/`` (``<split>/detection/labels``, ``detection/<split>/labels``,
  ``detection/labels`` ...) when present, class names from ``class_names=`` or a ``classes.txt``;
- ``roadscene``: ``cropinfrared/ crop_HR_visible/`` (original release) or ``ir/ vi/``;
- ``tno``: ``ir/ vi/`` (gray, mixed sizes);
- ``llvip``: ``infrared/{train,test}/ visible/{train,test}/ Annotations/`` (VOC XML, class ``person``);
- ``folder``: any ``ir/`` + ``vi/`` pair of folders; VOC XML in ``Annotation(s)/`` or YOLO ``labels/``
  are used when present.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from data.classes import LLVIP_CLASSES, M3FD_CLASSES
from data.io import image_size, list_images, read_image
from data.voc import AnnotationError, read_voc
from data.yolo_export import read_yolo_labels
from runtime.errors import InputError

AnnotationFormat = Literal["voc", "yolo"]
DATASET_NAMES: tuple[str, ...] = ("m3fd", "synthetic", "msrs", "roadscene", "tno", "llvip", "folder")

_IR_DIRS = ("ir", "infrared", "Ir", "IR")
_VI_DIRS = ("vi", "vis", "visible", "Vis", "VI")
_VOC_DIRS = ("Annotation", "Annotations")


class DatasetError(InputError, ValueError):
    """A dataset folder does not have the expected layout or content."""


@dataclass
class PairSample:
    ir: np.ndarray  # uint8 (H, W)
    vi: np.ndarray  # uint8 (H, W, 3), or (H, W) for gray visible images
    name: str  # file stem shared by the pair
    boxes: np.ndarray  # float32 (n, 4) xyxy in pixels; (0, 4) without annotations
    classes: np.ndarray  # int64 (n,), indices into the dataset's ``class_names``
    ir_path: Path
    vi_path: Path


@dataclass(frozen=True)
class PairFiles:
    stem: str
    ir: Path
    vi: Path
    annotation: Path | None  # expected annotation path (may not exist); None if the dataset has none


@dataclass(frozen=True)
class DatasetLayout:
    """Where a dataset's files are; produced by :func:`resolve_layout`."""

    name: str
    ir_dir: Path
    vi_dir: Path
    annotation_dir: Path | None = None
    annotation_format: AnnotationFormat | None = None
    class_names: tuple[str, ...] = ()


@dataclass
class PairScan:
    """Result of matching IR and VIS files by stem (nothing is decoded)."""

    pairs: list[PairFiles] = field(default_factory=list)
    ir_only: list[Path] = field(default_factory=list)
    vi_only: list[Path] = field(default_factory=list)
    duplicates: list[list[Path]] = field(default_factory=list)  # same stem twice in one folder


def _child_dir(parent: Path, candidates: Sequence[str]) -> Path | None:
    """First existing sub-directory of ``parent`` whose name matches a candidate (case-insensitive)."""
    if not parent.is_dir():
        return None
    by_lower = {p.name.lower(): p for p in sorted(parent.iterdir()) if p.is_dir()}
    for name in candidates:
        if name.lower() in by_lower:
            return by_lower[name.lower()]
    return None


def _require_dir(parent: Path, candidates: Sequence[str], what: str, dataset: str) -> Path:
    found = _child_dir(parent, candidates)
    if found is None:
        raise DatasetError(
            f"{dataset}: no {what} folder in {parent} (expected one of {list(dict.fromkeys(candidates))}); "
            f"see docs/data.md for the expected layout"
        )
    return found


def _split_base(root: Path, split: str | None, dataset: str, split_parent: Path | None = None) -> Path:
    """For datasets with train/test sub-folders: the folder holding the chosen split."""
    if split is not None:
        base = (split_parent or root) / split
        if not base.is_dir():
            raise DatasetError(f"{dataset}: split folder {base} does not exist")
        return base
    return split_parent or root


def _class_names_file(*dirs: Path) -> tuple[str, ...] | None:
    for d in dirs:
        f = d / "classes.txt"
        if f.is_file():
            return tuple(line.strip() for line in f.read_text(encoding="utf-8").splitlines() if line.strip())
    return None


def resolve_layout(
    name: str, root: str | os.PathLike, split: str | None = None, class_names: Sequence[str] | None = None
) -> DatasetLayout:
    """Locate the IR, VIS and annotation folders of dataset ``name`` under ``root``."""
    name = name.lower()
    root = Path(root).expanduser()
    if name not in DATASET_NAMES:
        raise DatasetError(f"unknown dataset {name!r}; expected one of {list(DATASET_NAMES)}")
    if not root.is_dir():
        raise DatasetError(f"{name}: dataset root {root} does not exist or is not a folder")
    names = tuple(class_names) if class_names is not None else None

    if name in ("m3fd", "synthetic"):
        ir = _require_dir(root, _IR_DIRS, "infrared", name)
        vi = _require_dir(root, _VI_DIRS, "visible", name)
        ann = _child_dir(root, _VOC_DIRS)
        return DatasetLayout(name, ir, vi, ann, "voc" if ann else None, names or M3FD_CLASSES)

    if name == "msrs":
        if split is None and _child_dir(root, _IR_DIRS) is None and (root / "train").is_dir():
            raise DatasetError(
                f"msrs: {root} holds train/ and test/; pass split='train' or split='test' "
                f"(CLI: --split) or point the root at one split folder"
            )
        base = _split_base(root, split, name)
        ir = _require_dir(base, ("ir",), "infrared", name)
        vi = _require_dir(base, ("vi",), "visible", name)
        candidates = [base / "detection" / "labels", base / "detection", base / "labels"]
        if split is not None:
            candidates += [root / "detection" / split / "labels", root / "detection" / split]
        candidates += [root / "detection" / "labels", root / "detection"]
        labels = next((d for d in candidates if d.is_dir() and any(d.glob("*.txt"))), None)
        if labels is None:
            return DatasetLayout(name, ir, vi)
        names = names or _class_names_file(labels, labels.parent)
        if names is None:
            raise DatasetError(
                f"msrs: found YOLO labels in {labels} but no class names; pass class_names= "
                f"(CLI: --class-names) or add {labels / 'classes.txt'} (one name per line)"
            )
        return DatasetLayout(name, ir, vi, labels, "yolo", names)

    if name == "roadscene":
        ir = _require_dir(root, ("cropinfrared",) + _IR_DIRS, "infrared", name)
        vi = _require_dir(root, ("crop_HR_visible",) + _VI_DIRS, "visible", name)
        return DatasetLayout(name, ir, vi)

    if name == "tno":
        return DatasetLayout(
            name,
            _require_dir(root, _IR_DIRS, "infrared", name),
            _require_dir(root, _VI_DIRS, "visible", name),
        )

    if name == "llvip":
        ir_parent = _require_dir(root, ("infrared",), "infrared", name)
        vi_parent = _require_dir(root, ("visible",), "visible", name)
        if split is None and not list_images(ir_parent) and (ir_parent / "train").is_dir():
            raise DatasetError(
                f"llvip: {ir_parent} holds train/ and test/; pass split='train' or split='test' (CLI: --split)"
            )
        ir = _split_base(root, split, name, ir_parent)
        vi = _split_base(root, split, name, vi_parent)
        ann = _child_dir(root, _VOC_DIRS)
        return DatasetLayout(name, ir, vi, ann, "voc" if ann else None, names or LLVIP_CLASSES)

    # folder
    ir = _require_dir(root, _IR_DIRS, "infrared", name)
    vi = _require_dir(root, _VI_DIRS, "visible", name)
    ann = _child_dir(root, _VOC_DIRS)
    if ann is not None:
        return DatasetLayout(name, ir, vi, ann, "voc", names or M3FD_CLASSES)
    labels = _child_dir(root, ("labels",))
    if labels is not None:
        names = names or _class_names_file(labels, root)
        if names is None:
            raise DatasetError(
                f"folder: YOLO labels in {labels} need class names: pass class_names= or add classes.txt"
            )
        return DatasetLayout(name, ir, vi, labels, "yolo", names)
    return DatasetLayout(name, ir, vi)


def _by_stem(files: list[Path], duplicates: list[list[Path]]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for f in files:
        if f.stem in out:
            duplicates.append([out[f.stem], f])
        else:
            out[f.stem] = f
    return out


def scan_pairs(layout: DatasetLayout) -> PairScan:
    """Match IR and VIS files by stem."""
    scan = PairScan()
    ir = _by_stem(list_images(layout.ir_dir), scan.duplicates)
    vi = _by_stem(list_images(layout.vi_dir), scan.duplicates)
    suffix = {"voc": ".xml", "yolo": ".txt", None: ""}[layout.annotation_format]
    for stem in sorted(ir.keys() & vi.keys()):
        ann = layout.annotation_dir / f"{stem}{suffix}" if layout.annotation_dir else None
        scan.pairs.append(PairFiles(stem, ir[stem], vi[stem], ann))
    scan.ir_only = [ir[s] for s in sorted(ir.keys() - vi.keys())]
    scan.vi_only = [vi[s] for s in sorted(vi.keys() - ir.keys())]
    return scan


def read_annotation(
    files: PairFiles, layout_format: AnnotationFormat | None, class_names: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (float32 (n, 4) xyxy pixels) and class ids (int64) of one pair; raises AnnotationError."""
    if layout_format is None or files.annotation is None:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
    if layout_format == "voc":
        ann = read_voc(files.annotation)
        ids = []
        for n in ann.names:
            if n not in class_names:
                raise AnnotationError(
                    f"{files.annotation}: unknown class name {n!r}; expected one of {list(class_names)}"
                )
            ids.append(list(class_names).index(n))
        return ann.boxes, np.asarray(ids, np.int64)
    if not files.annotation.exists():  # ultralytics convention: no label file = no objects
        return np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
    w, h = image_size(files.ir)
    boxes, classes = read_yolo_labels(files.annotation, w, h)
    if classes.size and classes.max() >= len(class_names):
        raise AnnotationError(
            f"{files.annotation}: class id {int(classes.max())} but only {len(class_names)} "
            f"class names {list(class_names)}"
        )
    return boxes, classes


class PairedImageDataset:
    """Registered IR/VIS pairs; images are read lazily on indexing (by position or by stem)."""

    def __init__(
        self,
        pairs: Sequence[PairFiles],
        name: str = "folder",
        class_names: Sequence[str] = (),
        annotation_format: AnnotationFormat | None = None,
    ):
        self.name = name
        self.class_names = tuple(class_names)
        self.annotation_format = annotation_format
        self._pairs = list(pairs)
        self._index = {p.stem: i for i, p in enumerate(self._pairs)}
        if len(self._index) != len(self._pairs):
            raise DatasetError(f"{name}: duplicate stems in the pair list")

    @property
    def stems(self) -> list[str]:
        return [p.stem for p in self._pairs]

    @property
    def has_boxes(self) -> bool:
        return self.annotation_format is not None

    def __len__(self) -> int:
        return len(self._pairs)

    def __contains__(self, stem: object) -> bool:
        return stem in self._index

    def __iter__(self) -> Iterator[PairSample]:
        return (self[i] for i in range(len(self)))

    def files(self, key: int | str) -> PairFiles:
        if isinstance(key, str):
            if key not in self._index:
                raise KeyError(f"{self.name}: no pair named {key!r}")
            return self._pairs[self._index[key]]
        return self._pairs[key]

    def boxes(self, key: int | str) -> tuple[np.ndarray, np.ndarray]:
        """Boxes and class ids of one pair without decoding its images."""
        return read_annotation(self.files(key), self.annotation_format, self.class_names)

    def __getitem__(self, key: int | str) -> PairSample:
        f = self.files(key)
        ir = read_image(f.ir, "gray")
        vi = read_image(f.vi, "unchanged")
        if ir.shape[:2] != vi.shape[:2]:
            raise DatasetError(
                f"{self.name}: size mismatch in pair {f.stem!r}: {f.ir} is "
                f"{ir.shape[1]}x{ir.shape[0]}, {f.vi} is {vi.shape[1]}x{vi.shape[0]}"
            )
        boxes, classes = self.boxes(key)
        return PairSample(ir, vi, f.stem, boxes, classes, f.ir, f.vi)

    def subset(self, stems: Sequence[str]) -> PairedImageDataset:
        """The pairs named by ``stems``, in that order."""
        return PairedImageDataset(
            [self.files(s) for s in stems], self.name, self.class_names, self.annotation_format
        )


def open_dataset(
    name: str,
    root: str | os.PathLike,
    *,
    split: str | None = None,
    class_names: Sequence[str] | None = None,
    strict: bool = True,
) -> PairedImageDataset:
    """Open dataset ``name`` (one of DATASET_NAMES) at ``root``.

    ``strict`` (default): unmatched IR/VIS files or duplicate stems raise a DatasetError naming them
    (run ``check_data`` for the full report); otherwise they are skipped with a warning.
    """
    layout = resolve_layout(name, root, split, class_names)
    scan = scan_pairs(layout)
    problems = (
        [f"IR image without VIS partner: {p}" for p in scan.ir_only]
        + [f"VIS image without IR partner: {p}" for p in scan.vi_only]
        + [f"duplicate stem: {', '.join(map(str, d))}" for d in scan.duplicates]
    )
    if problems:
        shown = "\n  ".join(problems[:20]) + (
            f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        )
        message = f"{layout.name} at {root}: {len(problems)} unpaired/duplicate file(s):\n  {shown}"
        if strict:
            raise DatasetError(message + "\n(run `python -m pipelines.run check_data` for a full report)")
        warnings.warn(message + "\nskipping them", stacklevel=2)
    if not scan.pairs:
        raise DatasetError(f"{layout.name}: no IR/VIS image pairs in {layout.ir_dir} and {layout.vi_dir}")
    return PairedImageDataset(scan.pairs, layout.name, layout.class_names, layout.annotation_format)
