"""``python -m pipelines.run analyze``: the paper's interpretation section on a trained model.

``--checkpoint [NAME=]PATH`` (and optionally ``--compare [NAME=]PATH``, e.g. the "w/o L_per"
model) is fused over ``--dataset NAME --root DIR`` one image at a time; the measurements come from
:mod:`fusion.analysis`. Outputs in ``--out`` (written atomically):

- ``table8.md`` / ``table8.csv``: Table VIII, mean delta of the IR and VIS positions of the
  interleaved sequence per CMSA layer (raw, as the paper prints it, and softplus(delta + bias)),
  the paper's values beside ours; ``table8_per_image.csv``: the same per image and block.
- ``fig13_entropy.png`` / ``fig13_entropy.csv`` / ``fig13_entropy.md``: Fig. 13, the distribution
  of the per-image entropy of softmax(ResNet50(fused)) for every checkpoint given.

Checkpoints: the official release (``model.pkl``) or s4fuse exports, anything ``S4Fusion.load``
reads. ResNet50 weights follow the training loss: ImageNet weights from the torch hub cache (a
missing file is an error), a file path, or ``random`` (tests only; the figure then says so).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from data.adapters import DATASET_NAMES, DatasetError, open_dataset
from data.io import write_text_atomic
from fusion.shipped_weights import CHECKPOINT_ALIASES, missing_checkpoint_message, resolve_checkpoint
from pipelines.reports import markdown_table, write_csv_atomic

RANDOM_WEIGHTS_WARNING = "WARNING: untrained (random) ResNet50 - these entropies are NOT the paper's measure"


# Ctrl-C (pipelines.run)
RESUME_HINT = "rerun the same command to start again (its outputs are written at the end)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint",
        required=True,
        metavar="[NAME=]PATH",
        help="model to analyse (official model.pkl or an s4fuse export)",
    )
    parser.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="[NAME=]PATH",
        help="further model(s) for Fig. 13 and Table VIII, e.g. the 'w/o L_per' variant",
    )
    parser.add_argument("--dataset", required=True, choices=DATASET_NAMES)
    parser.add_argument("--root", required=True, help="dataset root folder")
    parser.add_argument("--split", default=None, help="dataset split (msrs: train/test)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--limit", type=int, default=None, help="analyse only the first N images")
    parser.add_argument(
        "--resnet-weights",
        default="imagenet",
        help="ResNet50 for Fig. 13: 'imagenet' (torch hub cache), a .pth file, or 'random' (tests only)",
    )
    parser.add_argument("--bins", type=int, default=30, help="histogram bins of Fig. 13")


@dataclass
class Checkpoint:
    label: str
    path: Path


def _checkpoints(specs: list[str]) -> tuple[list[Checkpoint], list[str]]:
    checkpoints, errors = [], []
    for spec in specs:
        label, _, name = spec.partition("=") if "=" in spec else ("", "", spec)
        path = resolve_checkpoint(name)  # "demo": the shipped weights
        if not path.is_file():
            errors.append(missing_checkpoint_message(path))
        checkpoints.append(Checkpoint(label or (name if name in CHECKPOINT_ALIASES else path.stem), path))
    labels = [c.label for c in checkpoints]
    twice = sorted({label for label in labels if labels.count(label) > 1})
    if twice:
        errors.append(f"checkpoint names used twice: {twice} (name them with NAME=PATH)")
    return checkpoints, errors


def _fail(errors: list[str]) -> int:
    """One line on stderr naming every problem, exit status 2."""
    print("analyze: " + "; ".join(" ".join(e.split()) for e in errors), file=sys.stderr)
    return 2


def main(args: argparse.Namespace) -> int:
    from fusion.losses import resolve_resnet50_weights

    checkpoints, errors = _checkpoints([args.checkpoint, *args.compare])
    dataset = None
    try:
        dataset = open_dataset(args.dataset, args.root, split=args.split)
    except DatasetError as exc:
        errors.append(str(exc))
    try:
        resolve_resnet50_weights(args.resnet_weights)
    except FileNotFoundError as exc:
        errors.append(f"{exc} (or pass --resnet-weights random for a smoke test)")
    if errors:
        return _fail(errors)
    stems = dataset.stems[: args.limit] if args.limit else dataset.stems
    try:
        models = _load_models(checkpoints)
    except (ValueError, KeyError, RuntimeError) as exc:  # a file that is not an S4Fusion checkpoint
        return _fail([str(exc).splitlines()[0]])  # torch's unpickling errors run on for lines
    results = _analyze_all(models, dataset, stems, args.resnet_weights)
    out = Path(args.out)
    title = f"{args.dataset} ({len(stems)} images)"
    paths = _write_table8(results, out, title) + _write_fig13(
        results, out, title, args.resnet_weights, args.bins
    )
    print(f"analyze: wrote {', '.join(p.name for p in paths)} in {out}")
    return 0


def _load_models(checkpoints: list[Checkpoint]) -> dict:
    """{label: S4Fusion}: every checkpoint is loaded (and so checked) before any long work."""
    from fusion.inference import load_model

    return {c.label: load_model(c.path) for c in checkpoints}


def _analyze_all(models: dict, dataset, stems: list[str], resnet_weights: str) -> dict:
    """{label: CheckpointAnalysis} over ``stems``."""
    import torch

    from fusion.analysis import analyze_model
    from fusion.losses import PerceptionNet

    with torch.random.fork_rng():  # `random` weights come from the global RNG: seeded, so reruns match
        torch.manual_seed(0)
        perception = PerceptionNet(resnet_weights)
    return {
        label: analyze_model(model, dataset, stems, perception, desc=f"analyze {label}")
        for label, model in models.items()
    }


def _write_table8(results: dict, out: Path, title: str) -> list[Path]:
    from fusion.analysis import table8_means
    from fusion.paper import table8_deltas

    per_image = [r.deltas.assign(checkpoint=label) for label, r in results.items() if len(r.deltas)]
    if not per_image:
        print(
            "analyze: no checkpoint has CMSA blocks (interaction='cmsa'); Table VIII skipped", file=sys.stderr
        )
        return []
    paper = table8_deltas()
    rows = []
    for frame in per_image:
        table = table8_means(frame)
        table.insert(0, "checkpoint", frame["checkpoint"].iloc[0])
        table["paper_delta_ir"] = [
            paper[layer].delta_ir if layer in paper else math.nan for layer in table["layer"]
        ]
        table["paper_delta_vis"] = [
            paper[layer].delta_vis if layer in paper else math.nan for layer in table["layer"]
        ]
        rows.append(table)
    table = pd.concat(rows, ignore_index=True)
    shown = pd.DataFrame(
        {
            "checkpoint": table["checkpoint"],
            "layer": table["layer"],
            "Δ̄_I ours": table["delta_ir"].map("{:.4f}".format),
            "Δ̄_I paper": table["paper_delta_ir"],
            "Δ̄_V ours": table["delta_vis"].map("{:.4f}".format),
            "Δ̄_V paper": table["paper_delta_vis"],
            "softplus(Δ+b) I": table["delta_ir_softplus"].map("{:.4f}".format),
            "softplus(Δ+b) V": table["delta_vis_softplus"].map("{:.4f}".format),
            "output used": table["in_forward"].map({True: "yes", False: "no (level 0)"}),
        }
    )
    text = (
        f"### Table VIII: mean Δ of the IR / VIS parts of the interleaved sequence per CMSA layer, {title}\n\n"
        + markdown_table(shown)
        + "\nΔ before delta_bias and softplus (the paper's signed values), mean over images, CMSA blocks, the 4 "
        "scan directions, channels and the IR (even) or VIS (odd) positions; softplus(Δ+b) is the step the "
        "scan uses. Layer 1 is the level-0 fusion layer, which the official forward computes and discards "
        "(its output never reaches the fused image). Paper: arXiv 2405.20881, Table VIII.\n"
    )
    return [
        write_csv_atomic(out / "table8.csv", table),
        write_text_atomic(out / "table8.md", text),
        write_csv_atomic(out / "table8_per_image.csv", pd.concat(per_image, ignore_index=True)),
    ]


def _write_fig13(results: dict, out: Path, title: str, resnet_weights: str, bins: int) -> list[Path]:
    entropies = pd.concat(
        [r.entropies.assign(checkpoint=label) for label, r in results.items()], ignore_index=True
    )
    summary = (
        entropies.groupby("checkpoint", sort=False)["entropy"]
        .agg(["count", "mean", "median", "std"])
        .reset_index()
    )
    warning = RANDOM_WEIGHTS_WARNING if resnet_weights == "random" else None
    text = (
        f"### Fig. 13: entropy (nats) of softmax(ResNet50(fused)), {title}\n\n"
        + (f"**{warning}**\n\n" if warning else "")
        + markdown_table(summary.round(4))
        + "\nPaper (arXiv 2405.20881, Fig. 13, MSRS): the full model's distribution lies further left (lower "
        "entropy) than that of the 'w/o L_per' model. Maximum possible: ln(1000) = 6.9078.\n"
    )
    return [
        write_csv_atomic(out / "fig13_entropy.csv", entropies[["checkpoint", "image", "entropy"]]),
        write_text_atomic(out / "fig13_entropy.md", text),
        _plot_entropies(entropies, out / "fig13_entropy.png", title, warning, bins),
    ]


def _plot_entropies(entropies: pd.DataFrame, path: Path, title: str, warning: str | None, bins: int) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.stats import gaussian_kde

    values = entropies["entropy"].to_numpy()
    edges = np.histogram_bin_edges(values, bins=bins, range=(values.min() - 1e-3, values.max() + 1e-3))
    grid = np.linspace(edges[0], edges[-1], 200)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for index, (label, group) in enumerate(entropies.groupby("checkpoint", sort=False)["entropy"]):
        color = f"C{index}"
        ax.hist(group, bins=edges, density=True, alpha=0.45, color=color, label=f"{label} (n={len(group)})")
        if len(group) > 2 and np.ptp(group) > 0:
            ax.plot(grid, gaussian_kde(group)(grid), color=color)
        ax.axvline(group.mean(), color=color, linestyle="--", linewidth=1)
    ax.set_xlabel("entropy of softmax(ResNet50(fused)) [nats]; dashed: mean")
    ax.set_ylabel("density")
    ax.set_title(f"Fig. 13: {title}", fontsize=10)
    ax.legend(fontsize=8)
    if warning:
        fig.text(
            0.5,
            0.5,
            warning.replace(" - ", "\n"),
            color="red",
            fontsize=11,
            ha="center",
            va="center",
            wrap=True,
            bbox={"facecolor": "white", "edgecolor": "red", "alpha": 0.85},
        )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp.png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110, format="png")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        plt.close(fig)
    return path
