"""Export any set of (fused) images + boxes to the ultralytics YOLO layout.

Tree (one per method, so ultralytics' ``labels/*.cache`` files never collide)::

    out_dir/images/{train,val,test}/<stem>.<ext>
    out_dir/labels/{train,val,test}/<stem>.txt      # "class cx cy w h", normalised to [0, 1]
    out_dir/data.yaml                               # absolute paths, names, no download key

Boxes are clipped to the image before normalising; boxes with no area left are dropped.
Images without boxes get an empty label file (background images).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import yaml
from tqdm import tqdm

from data.io import IMAGE_EXTENSIONS, image_size, write_png_atomic, write_text_atomic
from data.voc import AnnotationError

ImageSource = Callable[[str], "Path | np.ndarray"]
BoxSource = Callable[[str], "tuple[np.ndarray, np.ndarray]"]


def yolo_label_lines(boxes: np.ndarray, classes: np.ndarray, width: int, height: int) -> list[str]:
    """YOLO label lines for xyxy pixel boxes in an image of ``width`` x ``height``."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4).copy()
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    lines = []
    for (x0, y0, x1, y1), c in zip(boxes, np.asarray(classes).reshape(-1)):
        if x1 <= x0 or y1 <= y0:
            continue
        lines.append(
            f"{int(c)} {(x0 + x1) / 2 / width:.6f} {(y0 + y1) / 2 / height:.6f} "
            f"{(x1 - x0) / width:.6f} {(y1 - y0) / height:.6f}"
        )
    return lines


def read_yolo_labels(path: str | os.PathLike, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Read a YOLO label file back to (float32 (n, 4) xyxy pixel boxes, int64 class ids)."""
    path = Path(path)
    boxes, classes = [], []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            if len(parts) != 5:
                raise ValueError(f"expected 5 fields, got {len(parts)}")
            c = int(parts[0])
            cx, cy, w, h = (float(v) for v in parts[1:])
        except ValueError as exc:
            raise AnnotationError(
                f"{path}:{lineno}: malformed YOLO label line {line.strip()!r} ({exc})"
            ) from None
        classes.append(c)
        boxes.append(
            [(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height]
        )
    return np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(classes, np.int64)


def _place_image(src: Path, dst: Path) -> None:
    """Hard-link (same file system) or copy ``src`` to ``dst``, atomically (a link, so not
    data.io.write_atomic, which writes bytes)."""
    tmp = dst.with_name(f".{dst.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def export_yolo(
    out_dir: str | os.PathLike,
    split: Mapping[str, Sequence[str]],
    image_for: ImageSource,
    boxes_for: BoxSource,
    names: Sequence[str],
    progress: bool = True,
) -> Path:
    """Write the YOLO tree for ``split`` (part -> stems) and return the data YAML path.

    ``image_for(stem)`` gives an image file path (hard-linked or copied, extension kept) or a uint8
    array (written as PNG); ``boxes_for(stem)`` gives (xyxy pixel boxes, class ids). Files left over
    from an earlier export of other stems are removed, as are stale ultralytics label caches.
    """
    out_dir = Path(out_dir).resolve()
    for part, stems in split.items():
        img_dir, lbl_dir = out_dir / "images" / part, out_dir / "labels" / part
        img_dir.mkdir(parents=True, exist_ok=True)
        lbl_dir.mkdir(parents=True, exist_ok=True)
        keep_images: set[str] = set()
        for stem in tqdm(stems, desc=f"YOLO export {part}", disable=not progress, leave=False):
            image = image_for(stem)
            if isinstance(image, np.ndarray):
                dst = img_dir / f"{stem}.png"
                write_png_atomic(dst, image)
                height, width = image.shape[:2]
            else:
                src = Path(image)
                if src.suffix.lower() not in IMAGE_EXTENSIONS:
                    raise ValueError(f"{src}: not an image file extension ({IMAGE_EXTENSIONS})")
                width, height = image_size(src)
                dst = img_dir / f"{stem}{src.suffix.lower()}"
                _place_image(src, dst)
            keep_images.add(dst.name)
            boxes, classes = boxes_for(stem)
            lines = yolo_label_lines(boxes, classes, width, height)
            write_text_atomic(lbl_dir / f"{stem}.txt", "".join(line + "\n" for line in lines))
        keep_labels = {f"{Path(n).stem}.txt" for n in keep_images}
        for f in img_dir.iterdir():
            if f.name not in keep_images:
                f.unlink()
        for f in lbl_dir.iterdir():
            if f.name not in keep_labels:
                f.unlink()
    for cache in (out_dir / "labels").glob("*.cache"):
        cache.unlink()
    return yolo_dataset_yaml(out_dir, names, parts=list(split))


def yolo_dataset_yaml(
    root: str | os.PathLike, names: Sequence[str], parts: Sequence[str] = ("train", "val", "test")
) -> Path:
    """Write ``root/data.yaml`` for ultralytics: absolute paths, class names, no ``download`` key."""
    root = Path(root).resolve()
    content = {"path": str(root)}
    for part in parts:
        content[part] = str(root / "images" / part)
    content["nc"] = len(names)
    content["names"] = {i: n for i, n in enumerate(names)}
    return write_text_atomic(root / "data.yaml", yaml.safe_dump(content, sort_keys=False))
