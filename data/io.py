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

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
from PIL import Image

from data.color import to_gray
from runtime.errors import InputError, OutputWriteError

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
ReadMode = Literal["gray", "rgb", "unchanged"]


class ImageReadError(InputError, OSError):
    """An image file is missing, unreadable, truncated or of an unsupported kind."""


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def list_images(directory: str | os.PathLike) -> list[Path]:
    """Image files directly inside ``directory``, sorted by name (hidden files skipped)."""
    return sorted((p for p in Path(directory).iterdir() if is_image_file(p)), key=lambda p: p.name)


class FolderIndexError(InputError, ValueError):
    """A folder of per-stem images is ambiguous (two files for one stem) or missing."""


def index_images_by_stem(folder: str | os.PathLike) -> dict[str, Path]:
    """``{stem: file}`` of the images directly in ``folder`` (precomputed fused images, one per
    dataset stem). Two files for one stem (``a.png`` and ``a.jpg``) are an error naming both."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise FolderIndexError(f"{folder} is not a folder")
    files: dict[str, Path] = {}
    duplicates: list[str] = []
    for p in list_images(folder):
        if p.stem in files:
            duplicates.append(f"{files[p.stem].name} and {p.name}")
        files.setdefault(p.stem, p)
    if duplicates:
        raise FolderIndexError(
            f"{folder}: {len(duplicates)} stem(s) with two images, e.g. {duplicates[:10]}; "
            "keep one image per dataset stem"
        )
    return files


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


def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> Path:
    """The one atomic-write helper: ``write(file)`` fills a temp file beside ``path`` (flushed and
    fsynced), then ``os.replace`` puts it in place; on any failure the temp file is removed and
    ``path`` is untouched (old content, or absent)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    except OSError as exc:
        raise OutputWriteError(
            f"cannot write {path}: {exc.strerror or exc}; choose a writable output folder"
        ) from exc
    try:
        os.chmod(fd, 0o666 & ~current_umask())  # mkstemp creates 0600; outputs follow the umask
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, InputError):
            raise OutputWriteError(
                f"cannot write {path}: {exc.strerror or exc}; outputs written before it are "
                "complete, free space (or fix the folder) and rerun to continue"
            ) from exc
        raise
    return path


def current_umask() -> int:
    """The process umask (read by setting and restoring it: there is no getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_png_atomic(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write a uint8 (H, W) / (H, W, 3) array as PNG atomically (fast zlib level 1)."""
    path = Path(path)
    array = np.asarray(array)
    if (
        array.dtype != np.uint8
        or array.ndim not in (2, 3)
        or (array.ndim == 3 and array.shape[2] not in (1, 3))
    ):
        raise ValueError(f"{path}: expected uint8 (H, W) or (H, W, 3), got {array.dtype} {array.shape}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    image = Image.fromarray(np.ascontiguousarray(array))
    return write_atomic(path, lambda fh: image.save(fh, format="PNG", compress_level=1))


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write a UTF-8 text file atomically."""
    return write_atomic(path, lambda fh: fh.write(text.encode("utf-8")))


def write_figure_atomic(path: str | os.PathLike, fig, **savefig_kwargs) -> Path:
    """Save a matplotlib figure as PNG atomically."""
    return write_atomic(path, lambda fh: fig.savefig(fh, format="png", **savefig_kwargs))


# ---- content hashes (cache keys are made of these, never of paths) -----------------------------
def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def digest(obj: object, n: int = 12) -> str:
    """Short sha256 of a JSON-able object (sorted keys): a cache-key component."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


def write_csv_atomic(path: str | os.PathLike, frame) -> Path:
    """A pandas DataFrame as CSV (no index), atomically."""
    return write_text_atomic(path, frame.to_csv(index=False))


def read_csv_cached(path: str | os.PathLike):
    """A CSV cache written by :func:`write_csv_atomic` (stems kept as strings), or None if absent."""
    import pandas as pd

    path = Path(path)
    return pd.read_csv(path, dtype={"image": str}) if path.is_file() else None
