"""Fusion quality metrics under named conventions (``mmif`` default, ``vifb``), plus dataset summaries.

    from fusion.metrics import compute_metrics
    compute_metrics(ir, vi, fused, convention="mmif", metrics=None) -> dict[str, float]

``ir``, ``vi``, ``fused``: file paths or uint8 arrays (H, W) / (H, W, 3). Each convention applies
its own reading rule (see its module and docs/metrics.md). ``metrics=None`` computes
``DEFAULT_METRICS`` restricted to what the convention defines; naming a metric the convention does
not define is an error. Undefined values (constant images, a fused image equal to a source for SCD,
images too small for a window) are NaN; :func:`summarize` averages ignoring NaN and counts drops.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from data.io import read_image
from fusion.metrics import mmif, vifb
from runtime.config_loader import ConfigError, match_names

# +1: higher is better, -1: lower is better
METRIC_DIRECTIONS: dict[str, int] = {
    "EN": 1,
    "SD": 1,
    "SF": 1,
    "AG": 1,
    "MI": 1,
    "SCD": 1,
    "CC": 1,
    "VIF": 1,
    "Qabf": 1,
    "Nabf": -1,
    "SSIM": 1,
    "MS_SSIM": 1,
    "PSNR": 1,
    "RMSE": -1,
    "CE": -1,
    "EI": 1,
    "Qcb": 1,
    "Qcv": -1,
}
ALL_METRICS: tuple[str, ...] = tuple(METRIC_DIRECTIONS)
DEFAULT_METRICS: tuple[str, ...] = ALL_METRICS
CONVENTIONS: dict[str, tuple[str, ...]] = {"mmif": mmif.METRICS, "vifb": vifb.METRICS}
_COMPUTE = {"mmif": mmif.compute, "vifb": vifb.compute}

ImageLike = str | os.PathLike | np.ndarray


def load_image(image: ImageLike, what: str = "image") -> np.ndarray:
    """A path (read as stored: gray content -> (H, W), RGB files -> (H, W, 3)) or a uint8 array."""
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        try:
            with Image.open(path) as im:  # header only: files stored as RGB keep 3 channels (VIFB's rule)
                mode = "rgb" if im.mode == "RGB" else "unchanged"
        except FileNotFoundError:
            raise FileNotFoundError(f"{what}: {path} does not exist") from None
        except OSError as exc:
            raise OSError(f"{what}: {path} is not a readable image ({exc})") from exc
        return read_image(path, mode)
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise TypeError(f"{what}: expected a uint8 array or a path, got dtype {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 3):
        raise ValueError(f"{what}: expected shape (H, W) or (H, W, 3), got {arr.shape}")
    return arr


def resolve_metrics(convention: str, metrics: Iterable[str] | None = None) -> tuple[str, ...]:
    """The metric keys computed for ``convention``: all it defines (``None``) or ``metrics`` spelled as
    it does (``vif`` -> ``VIF``). An unknown convention or metric is a :class:`ConfigError` naming
    the valid ones (and the closest), so every command refuses it before any work."""
    if convention not in CONVENTIONS:
        raise ConfigError(f"unknown metric convention {convention!r}; expected one of {sorted(CONVENTIONS)}")
    defined = CONVENTIONS[convention]
    if metrics is None:
        return tuple(m for m in DEFAULT_METRICS if m in defined)
    return tuple(match_names(metrics, defined, f"metric(s) for the {convention} convention"))


def compute_metrics(
    ir: ImageLike,
    vi: ImageLike,
    fused: ImageLike,
    convention: str = "mmif",
    metrics: Sequence[str] | None = None,
) -> dict[str, float]:
    """Metrics of one fused image against its IR and VIS sources, as {key: float} (NaN = undefined)."""
    keys = resolve_metrics(convention, metrics)
    arrays = [load_image(x, what) for x, what in ((ir, "ir"), (vi, "vi"), (fused, "fused"))]
    sizes = {what: a.shape[:2] for a, what in zip(arrays, ("ir", "vi", "fused"))}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"ir, vi and fused must have the same height and width, got {sizes}")
    return _COMPUTE[convention](*arrays, keys)


def summarize(
    per_image: pd.DataFrame,
    group_by: str | Sequence[str] | None = "method",
    metrics: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Mean, std (ddof=1) and count of each metric ignoring NaN, plus how many NaN rows were dropped.

    ``per_image``: one row per (method, image) with metric columns. Returns one row per group with
    columns ``<metric>_mean``, ``<metric>_std``, ``<metric>_n``, ``<metric>_dropped``.
    """
    metrics = [m for m in (metrics or ALL_METRICS) if m in per_image.columns]
    groups = [group_by] if isinstance(group_by, str) else list(group_by or [])
    grouped = per_image.groupby(groups, sort=False) if groups else [((), per_image)]
    rows = []
    for key, frame in grouped:
        row = dict(zip(groups, key if isinstance(key, tuple) else (key,)))
        for m in metrics:
            values = pd.to_numeric(frame[m], errors="coerce").astype(float)
            finite = values[np.isfinite(values)]
            row[f"{m}_mean"] = float(finite.mean()) if len(finite) else float("nan")
            row[f"{m}_std"] = (
                float(finite.std(ddof=1)) if len(finite) > 1 else (0.0 if len(finite) else float("nan"))
            )
            row[f"{m}_n"] = int(len(finite))
            row[f"{m}_dropped"] = int(len(values) - len(finite))
        rows.append(row)
    return pd.DataFrame(rows)


__all__ = [
    "compute_metrics",
    "summarize",
    "resolve_metrics",
    "load_image",
    "METRIC_DIRECTIONS",
    "DEFAULT_METRICS",
    "ALL_METRICS",
    "CONVENTIONS",
]
