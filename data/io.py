"""Image reading and atomic writing.

Reading conventions (one place for every dataset):
- returned arrays are uint8; EXIF orientation is ignored (pairs are registered pixel-to-pixel);
- 16-bit (and 32-bit / float) images, typical of radiometric IR, are min-max stretched per image
  to 0-255. A plain ``>> 8`` would turn the narrow band a 16-bit IR frame actually occupies
  (e.g. 7000-9000 counts) into a nearly constant image, so min-max is the safe default; a constant
  image becomes all zeros;
- "gray stored as RGB" (R == G == B everywhere, as in TNO's PNGs) is detected and treated as gray;
- alpha channels and palettes are dropped / expanded.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from data.color import to_gray

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
ReadMode = Literal["gray", "rgb", "unchanged"]


class ImageReadError(OSError):
    """An image file is missing, unreadable, truncated or of an unsupported kind."""


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def list_images(directory: str | os.PathLike) -> list[Path]:
    """Image files directly inside ``directory``, sorted by name (hidden files skipped)."""
    return sorted((p for p in Path(directory).iterdir() if is_image_file(p)), key=lambda p: p.name)


def _stretch_to_uint8(arr: np.ndarray) -> np.ndarray:
    arr = arr.astype(np.float64)
    lo, hi = float(arr.min()), float(arr.max())
    if hi <= lo:
        return np.zeros(arr.shape, np.uint8)
    return np.rint((arr - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def _decode(path: Path) -> np.ndarray:
    """Decode to uint8 (H, W) or (H, W, 3)."""
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
                return _stretch_to_uint8(np.asarray(im))
            if im.mode not in ("L", "RGB"):
                im = im.convert("L" if im.mode in ("1", "LA", "La") else "RGB")
            arr = np.asarray(im)
    except FileNotFoundError:
        raise ImageReadError(f"{path}: image file does not exist") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageReadError(f"{path}: unreadable or corrupt image ({exc})") from exc
    if arr.dtype != np.uint8:  # e.g. 16-bit RGB TIFF
        arr = _stretch_to_uint8(arr)
    return arr


def is_gray_content(arr: np.ndarray) -> bool:
    """True for (H, W) arrays and for (H, W, 3) arrays whose three channels are identical."""
    if arr.ndim == 2:
        return True
    return bool(np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2]))


def read_image(path: str | os.PathLike, mode: ReadMode = "gray") -> np.ndarray:
    """Read an image as uint8.

    mode "gray": (H, W) -- the stored gray values, or the BT.601 luminance Y of a color image;
    mode "rgb": (H, W, 3) -- gray images are replicated to three channels;
    mode "unchanged": (H, W) for gray content (including gray stored as RGB), else (H, W, 3).
    """
    path = Path(path)
    arr = _decode(path)
    gray = is_gray_content(arr)
    if mode == "rgb":
        return np.repeat(arr[..., None], 3, axis=2) if arr.ndim == 2 else np.ascontiguousarray(arr)
    if mode in ("gray", "unchanged"):
        if gray:
            return arr if arr.ndim == 2 else np.ascontiguousarray(arr[..., 0])
        if mode == "unchanged":
            return arr
        return np.clip(np.rint(to_gray(arr)), 0, 255).astype(np.uint8)
    raise ValueError(f"mode must be 'gray', 'rgb' or 'unchanged', got {mode!r}")


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) from the file header, without decoding the pixels."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            return im.size
    except FileNotFoundError:
        raise ImageReadError(f"{path}: image file does not exist") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"{path}: unreadable or corrupt image ({exc})") from exc


def _atomic_target(path: Path) -> tuple[int, str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)


def write_png_atomic(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write a uint8 (H, W) / (H, W, 3) array as PNG via a temp file + ``os.replace`` (fast zlib level 1)."""
    path = Path(path)
    array = np.asarray(array)
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3)):
        raise ValueError(f"{path}: expected uint8 (H, W) or (H, W, 3), got {array.dtype} {array.shape}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    fd, tmp = _atomic_target(path)
    os.close(fd)
    try:
        Image.fromarray(np.ascontiguousarray(array)).save(tmp, format="PNG", compress_level=1)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write a UTF-8 text file via a temp file + ``os.replace``."""
    path = Path(path)
    fd, tmp = _atomic_target(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
