"""The one cached per-image fusion-metric stage (used by ``evaluate`` and ``fuse_then_detect``).

The cache file is keyed by *content*: the caller's ``identity`` names what determines the fused
images by hashes (a checkpoint's sha256, a baseline's name, precomputed files' sha256, the data's
identity), never by a path, so a retrained ``s4fusion.pt`` at the same path is measured again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from data.io import digest, read_csv_cached, write_csv_atomic
from fusion.metrics import compute_metrics

PairFn = Callable[[str], tuple[np.ndarray, np.ndarray]]
FusedFn = Callable[[str], "np.ndarray | None"]  # None: the method has no image for this stem


def metrics_cache_file(
    name: str,
    stems: Sequence[str],
    identity: Mapping[str, Any],
    convention: str,
    metrics: Sequence[str],
    cache_dir: Path,
) -> Path:
    """Where :func:`per_image_metrics` caches these metrics (it exists once they are complete)."""
    key = digest([dict(identity), list(stems), convention, list(metrics)], 16)
    return Path(cache_dir) / f"{name}-{key}.csv"


def per_image_metrics(
    name: str,
    stems: Sequence[str],
    pair: PairFn,
    fused: FusedFn,
    identity: Mapping[str, Any],
    convention: str,
    metrics: Sequence[str],
    cache_dir: Path,
    progress: bool = True,
) -> pd.DataFrame:
    """One row per stem: ``method, image, missing, <metric>...`` (NaN metrics where ``missing``)."""
    cache = metrics_cache_file(name, stems, identity, convention, metrics, cache_dir)
    cached = read_csv_cached(cache)
    if cached is not None:
        return cached
    rows = []
    for stem in tqdm(stems, desc=f"fusion metrics {name}", unit="img", disable=not progress):
        image = fused(stem)
        if image is None:
            rows.append({"method": name, "image": stem, "missing": True, **{m: np.nan for m in metrics}})
            continue
        ir, vi = pair(stem)
        values = compute_metrics(ir, vi, image, convention=convention, metrics=metrics)
        rows.append({"method": name, "image": stem, "missing": False, **values})
    frame = pd.DataFrame(rows, columns=["method", "image", "missing", *metrics])
    write_csv_atomic(cache, frame)
    return frame
