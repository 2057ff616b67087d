"""Pascal VOC XML annotations (M3FD, LLVIP, the synthetic dataset).

Box coordinates are read and written as given (pixel units, x to the right, y down); no
1-based/0-based shift is applied, matching how M3FD/LLVIP consumers use them.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data.io import write_text_atomic
from runtime.errors import InputError


class AnnotationError(InputError, ValueError):
    """An annotation file is missing, malformed or truncated."""


@dataclass(frozen=True)
class VOCAnnotation:
    width: int  # from <size>; 0 when the file does not say
    height: int
    names: list[str]  # one class name per object
    boxes: np.ndarray  # float32 (n, 4) xmin, ymin, xmax, ymax


def _number(node: ET.Element | None, tag: str, path: Path, where: str) -> float:
    child = None if node is None else node.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise AnnotationError(f"{path}: {where}: missing <{tag}>")
    try:
        return float(child.text.strip())
    except ValueError:
        raise AnnotationError(f"{path}: {where}: <{tag}> is not a number: {child.text.strip()!r}") from None


def read_voc(path: str | os.PathLike) -> VOCAnnotation:
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except FileNotFoundError:
        raise AnnotationError(f"{path}: annotation file does not exist") from None
    except ET.ParseError as exc:
        raise AnnotationError(f"{path}: malformed or truncated XML ({exc})") from None
    if root.tag != "annotation":
        raise AnnotationError(f"{path}: root element is <{root.tag}>, expected <annotation>")
    size = root.find("size")
    width = (
        int(_number(size, "width", path, "<size>"))
        if size is not None and size.find("width") is not None
        else 0
    )
    height = (
        int(_number(size, "height", path, "<size>"))
        if size is not None and size.find("height") is not None
        else 0
    )
    names: list[str] = []
    boxes: list[list[float]] = []
    for i, obj in enumerate(root.findall("object")):
        where = f"object #{i}"
        name = obj.findtext("name")
        if name is None or not name.strip():
            raise AnnotationError(f"{path}: {where}: missing <name>")
        box = obj.find("bndbox")
        if box is None:
            raise AnnotationError(f"{path}: {where} ({name.strip()}): missing <bndbox>")
        names.append(name.strip())
        boxes.append(
            [_number(box, t, path, f"{where} ({name.strip()})") for t in ("xmin", "ymin", "xmax", "ymax")]
        )
    return VOCAnnotation(width, height, names, np.asarray(boxes, np.float32).reshape(-1, 4))


def write_voc(
    path: str | os.PathLike,
    filename: str,
    width: int,
    height: int,
    names: Sequence[str],
    boxes: np.ndarray,
    depth: int = 3,
) -> Path:
    """Write a VOC XML file atomically (integer-rounded coordinates)."""
    root = ET.Element("annotation")
    ET.SubElement(root, "filename").text = filename
    size = ET.SubElement(root, "size")
    for tag, value in (("width", width), ("height", height), ("depth", depth)):
        ET.SubElement(size, tag).text = str(int(value))
    for name, box in zip(names, np.asarray(boxes).reshape(-1, 4)):
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = name
        ET.SubElement(obj, "difficult").text = "0"
        bnd = ET.SubElement(obj, "bndbox")
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), box):
            ET.SubElement(bnd, tag).text = str(int(round(float(value))))
    ET.indent(root)
    return write_text_atomic(path, ET.tostring(root, encoding="unicode") + "\n")
