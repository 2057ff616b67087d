"""The demo loss and its source weights ω on the real shared pairs (docs/training.md, issue 10).

    python -m bench.loss_on_real_pairs [--shared ../shared/data]

Prints (1) the mean demo loss (w/o L_per, ``omega_features: image``) of classical fusions over all
shared pairs, for the temperatures 5 and 0.25, and (2) the Sobel energies W of 73x73 random crops, the
ω they give per temperature, and the rank correlation of W_ir - W_vi with the AG and EN differences.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from data.adapters import open_dataset
from data.color import to_gray
from fusion.baselines import BASELINES
from fusion.losses import LossConfig, PerceptionConfig, S4FusionLoss, sobel_magnitude
from fusion.metrics import core

SOURCES = (("tno", "samples/TNO"), ("roadscene", "samples/RoadScene"), ("folder", "vifb/input"))


def pairs(shared: Path):
    for name, folder in SOURCES:
        for sample in open_dataset(name, shared / folder):
            yield sample.ir.astype(np.float32) / 255.0, to_gray(sample.vi) / 255.0


def energy(ir: np.ndarray, vi: np.ndarray) -> np.ndarray:
    t = torch.from_numpy(np.stack([ir, vi]))[:, None]
    return sobel_magnitude(t).square().mean(dim=(1, 2, 3)).numpy()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--shared", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data"
    )
    args = parser.parse_args(argv)
    data = list(pairs(args.shared))
    for c in (5.0, 0.25):
        loss_fn = S4FusionLoss(
            LossConfig(omega_features="image", temperature=c, perception=PerceptionConfig(enabled=False))
        )
        totals = {m: [] for m in ("average", "max", "laplacian", "gff", "ir", "vi")}
        for ir, vi in data:
            t_ir, t_vi = torch.from_numpy(ir)[None, None], torch.from_numpy(vi)[None, None]
            for m in totals:
                fused = torch.from_numpy(BASELINES[m](ir, vi).astype(np.float32))[None, None]
                totals[m].append(float(loss_fn(t_ir, t_vi, fused)[0]))
        print(
            f"c={c}: mean demo loss over {len(data)} pairs:",
            {m: round(float(np.mean(v)), 3) for m, v in totals.items()},
        )
    rng = np.random.default_rng(0)
    crops, full = [], []
    for ir, vi in data:
        w = energy(ir, vi)
        full.append(
            (
                w[0] - w[1],
                core.average_gradient_mean(ir * 255.0) - core.average_gradient_mean(vi * 255.0),
                core.entropy(np.rint(ir * 255.0)) - core.entropy(np.rint(vi * 255.0)),
            )
        )
        for _ in range(10):
            y, x = rng.integers(0, ir.shape[0] - 73), rng.integers(0, ir.shape[1] - 73)
            crops.append(energy(ir[y : y + 73, x : x + 73], vi[y : y + 73, x : x + 73]))
    crops, full = np.array(crops), np.array(full)
    diff = crops[:, 0] - crops[:, 1]
    print(
        f"{len(crops)} crops: median W_ir {np.median(crops[:, 0]):.3f}, W_vi {np.median(crops[:, 1]):.3f}; "
        f"|W_ir - W_vi| percentiles 25/50/75/90: {np.round(np.percentile(np.abs(diff), [25, 50, 75, 90]), 3)}"
    )
    for c in (5.0, 0.25, 0.1):
        omega = 1.0 / (1.0 + np.exp(-np.clip(diff / c, -50, 50)))
        print(f"c={c}: crop omega_ir mean {omega.mean():.3f} std {omega.std():.3f}")
    print(
        f"Spearman(W_ir - W_vi, AG_ir - AG_vi) = {spearmanr(full[:, 0], full[:, 1])[0]:.2f}, "
        f"(.., EN_ir - EN_vi) = {spearmanr(full[:, 0], full[:, 2])[0]:.2f} over {len(full)} pairs"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
