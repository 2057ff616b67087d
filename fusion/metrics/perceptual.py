"""Optional no-reference perceptual scores (MUSIQ, TOPIQ) through pyiqa.

pyiqa is an optional extra (``pip install s4fuse[iqa]``) under a NON-COMMERCIAL licence; its models
need pretrained weights, which it downloads into its cache on first use. Offline, place the weight
files there yourself; a missing package or weight gives an error naming what and where.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

PERCEPTUAL_METRICS: tuple[str, ...] = ("musiq", "topiq_nr")


def _pyiqa():
    try:
        import pyiqa
    except ImportError as exc:
        raise ImportError(
            "perceptual metrics need pyiqa (non-commercial licence): pip install 's4fuse[iqa]'"
        ) from exc
    return pyiqa


def perceptual_scores(
    fused: np.ndarray, metrics: Sequence[str] = PERCEPTUAL_METRICS, device: str = "cpu"
) -> dict[str, float]:
    """No-reference scores of a uint8 fused image (gray is repeated to 3 channels); higher is better."""
    import torch

    pyiqa = _pyiqa()
    img = np.asarray(fused)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    x = (
        torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32) / 255.0)
        .permute(2, 0, 1)[None]
        .to(device)
    )
    scores = {}
    for name in metrics:
        try:
            model = pyiqa.create_metric(name, device=device, as_loss=False)
        except Exception as exc:  # pyiqa raises various errors when a download is impossible
            cache = getattr(getattr(pyiqa, "utils", None), "download_util", None)
            folder = getattr(cache, "DEFAULT_CACHE_DIR", "~/.cache/torch/hub/pyiqa")
            raise RuntimeError(
                f"pyiqa metric {name!r}: could not load its pretrained weights ({exc}). "
                f"Put the weight file named above into {folder} and retry."
            ) from exc
        with torch.no_grad():
            scores[name] = float(model(x).item())
    return scores
