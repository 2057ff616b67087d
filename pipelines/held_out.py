"""``python -m pipelines.run held_out --runs RUN [RUN ...] --out DIR``: trained runs against baselines, pair by pair.

Each RUN is a ``train_fusion`` output folder (``config.yaml`` and ``s4fusion.pt``). The pairs of its
config's ``data.val`` (held out from that run's training) are fused by its model and by each
``--references`` baseline; the pairs of all runs are pooled, so the runs of a k-fold
cross-validation (e.g. ``experiments/crossval/``) give one comparison over every fold's pairs, each
scored by the model that never trained on it. Before any work, every run is checked: files present,
model loadable, held-out pairs readable and of equal sizes, none of them in that run's training pairs, none held out
by two runs (pooling would count it twice); all problems are reported at once (exit 2).

Outputs in ``--out`` (atomic): ``per_pair.csv`` (run, pair, method, metrics), ``comparison.csv`` /
``comparison.md`` (per reference and metric: pairs, means, mean and sd of the difference, wins,
paired t-test and Wilcoxon p, :func:`pipelines.statistics.paired_comparison`) and
``per_pair_differences.png`` (each pair's difference, coloured by run, with the mean and its 95%
t-interval). Relative data roots in the configs are relative to the repository root, as in training
(runtime.profiles.config_data_path), whatever the current directory.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from data.dataset_check import bad_pairs
from data.io import write_csv_atomic, write_figure_atomic, write_text_atomic
from fusion.baselines import BASELINES
from fusion.metrics import CONVENTIONS, METRIC_DIRECTIONS, resolve_metrics
from pipelines.cli_common import configure_logging, run_cli
from pipelines.reports import render_markdown
from pipelines.statistics import paired_comparison
from runtime.config_loader import ConfigError
from runtime.errors import InputError

DEFAULT_METRICS = ("SF", "AG", "Qabf", "VIF")


@dataclass
class HeldOutRun:
    """One training run and its held-out pairs (``<dataset>/<stem>`` names; the IR files identify them)."""

    name: str
    model: Any  # fusion.model.S4Fusion, loaded (and so checked) before any work
    datasets: list  # data.adapters.PairedImageDataset, the data.val selection
    ir_files: dict[str, Path]  # pair name -> resolved IR file


# Ctrl-C (pipelines.run)
RESUME_HINT = "rerun the same command to start again (its outputs are written at the end)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--runs",
        nargs="+",
        required=True,
        type=Path,
        help="train_fusion output folders (config.yaml + s4fusion.pt), e.g. the folds of a cross-validation",
    )
    parser.add_argument(
        "--references",
        nargs="+",
        default=["average", "laplacian"],
        help=f"baselines to compare against ({' '.join(BASELINES)})",
    )
    parser.add_argument("--metrics", nargs="+", default=list(DEFAULT_METRICS), help="fusion metrics")
    parser.add_argument("--convention", default="mmif", choices=sorted(CONVENTIONS), help="metric convention")
    parser.add_argument("--out", required=True, type=Path, help="output folder")


def _pair_files(datasets) -> dict[str, Path]:
    return {f"{ds.name}/{s}": ds.files(s).ir.resolve() for ds in datasets for s in ds.stems}


def open_run(folder: Path) -> HeldOutRun:
    """The run in ``folder``, checked: its model loads and its held-out pairs are not training pairs."""
    from fusion.inference import load_model
    from fusion.train.config import TrainConfig
    from fusion.train.data import resolve_sources

    config, checkpoint = folder / "config.yaml", folder / "s4fusion.pt"
    missing = [p.name for p in (config, checkpoint) if not p.is_file()]
    if missing:
        raise ConfigError(f"{folder}: no {' or '.join(missing)} (not a finished train_fusion output folder)")
    cfg = TrainConfig.from_yaml(config)
    if not cfg.data.val:
        raise ConfigError(f"{folder}: its config has no held-out pairs (data.val is empty)")
    val, _ = resolve_sources(cfg.data.val, cfg.data.split_seed)
    train, _ = resolve_sources(cfg.data.train, cfg.data.split_seed)
    held_out = _pair_files(val)
    bad = [
        problem
        for ds in val
        for problem in bad_pairs([ds.files(s) for s in ds.stems], progress=False).values()
    ]
    if bad:
        raise ConfigError(f"{folder}: {len(bad)} bad held-out pair(s): " + "; ".join(bad))
    trained = set(_pair_files(train).values())
    leaked = sorted(name for name, ir in held_out.items() if ir in trained)
    if leaked:
        raise ConfigError(f"{folder}: held-out pair(s) also in its training pairs: {leaked}")
    model = load_model(checkpoint)  # a corrupt or foreign file -> CheckpointError before any work
    return HeldOutRun(folder.name, model, val, held_out)


def open_runs(folders: list[Path]) -> list[HeldOutRun]:
    """Every run, or one error listing every bad run and every pair held out by more than one run."""
    runs, errors = [], []
    for folder in folders:
        try:
            runs.append(open_run(folder))
        except InputError as exc:
            errors.append(str(exc))
    owners: dict[Path, list[str]] = {}
    for run in runs:
        for ir in run.ir_files.values():
            owners.setdefault(ir, []).append(run.name)
    shared: dict[tuple[str, ...], list[str]] = {}
    for run in runs:
        for name, ir in run.ir_files.items():
            if len(owners[ir]) > 1 and run.name == owners[ir][0]:
                shared.setdefault(tuple(owners[ir]), []).append(name)
    errors += [
        f"{len(names)} pair(s) held out by more than one run ({', '.join(who)}), they would count twice: "
        f"{', '.join(names)}"
        for who, names in shared.items()
    ]
    if len({run.name for run in runs}) < len(runs):
        errors.append(f"run folder names must differ: {[run.name for run in runs]}")
    if errors:
        raise ConfigError(["cannot start:"] + errors)
    return runs


def per_pair_metrics(
    runs: list[HeldOutRun], references: list[str], metrics: list[str], convention: str
) -> pd.DataFrame:
    """One row per run, pair and method (``s4fusion`` and each reference)."""
    from fusion.methods import make_fuser
    from fusion.validation import load_pairs, model_fuser, pair_metrics

    rows = []
    bar = tqdm(total=sum(len(r.ir_files) for r in runs), desc="held-out pairs", unit="pair")
    baselines = {ref: make_fuser(ref) for ref in references}
    for run in runs:
        for pair in load_pairs(run.datasets):
            for method, fuser in {"s4fusion": model_fuser(run.model), **baselines}.items():
                rows.append(
                    {
                        "run": run.name,
                        "pair": pair.name,
                        "method": method,
                        **pair_metrics(fuser, pair, metrics, convention),
                    }
                )
            bar.update()
    bar.close()
    return pd.DataFrame(rows, columns=["run", "pair", "method", *metrics])


def wide_table(per_pair: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """One row per (run, pair), columns (metric, method)."""
    return per_pair.pivot_table(index=["run", "pair"], columns="method", values=metrics, sort=False)


def comparison_table(wide: pd.DataFrame, references: list[str], metrics: list[str]) -> pd.DataFrame:
    """Per reference and metric: S4Fusion against the reference over the pooled pairs."""
    rows = []
    for ref in references:
        for m in metrics:
            c = paired_comparison(wide[(m, "s4fusion")], wide[(m, ref)], METRIC_DIRECTIONS.get(m, 1))
            rows.append(
                {
                    "reference": ref,
                    "metric": m,
                    "pairs": c.n,
                    "s4fusion": c.mean_a,
                    "reference_mean": c.mean_b,
                    "difference": c.mean_difference,
                    "difference_sd": c.sd_difference,
                    "wins": c.wins,
                    "t": c.t,
                    "p_t": c.p_t,
                    "p_wilcoxon": c.p_wilcoxon,
                }
            )
    return pd.DataFrame(rows)


def comparison_markdown(table: pd.DataFrame, runs: list[HeldOutRun]) -> str:
    header = [
        "reference",
        "metric",
        "pairs",
        "S4Fusion",
        "reference mean",
        "Δ mean ± sd",
        "S4Fusion better",
        "paired t",
        "p (t)",
        "p (Wilcoxon)",
    ]
    rows = [
        [
            r.reference,
            r.metric,
            r.pairs,
            f"{r.s4fusion:.4g}",
            f"{r.reference_mean:.4g}",
            f"{r.difference:+.4g} ± {r.difference_sd:.3g}",
            f"{r.wins}/{r.pairs}",
            f"{r.t:.2f}",
            f"{r.p_t:.2g}",
            f"{r.p_wilcoxon:.2g}",
        ]
        for r in table.itertuples()
    ]
    intro = (
        f"S4Fusion against baselines on the held-out pairs of {len(runs)} run(s) "
        f"({', '.join(r.name for r in runs)}), each pair scored by the run that held it out. "
        "Two-sided paired tests; Δ = S4Fusion − reference.\n\n"
    )
    return intro + render_markdown(header, rows)


def differences_plot(wide: pd.DataFrame, references: list[str], metrics: list[str], path: Path) -> Path:
    """One panel per metric: each pair's S4Fusion − reference, by run colour, with mean and 95% t-interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy import stats

    run_of_row = wide.index.get_level_values("run")
    colours = {run: plt.cm.tab10(k % 10) for k, run in enumerate(dict.fromkeys(run_of_row))}
    fig, axes = plt.subplots(1, len(metrics), figsize=(2.6 * len(metrics) + 0.6, 3.4), squeeze=False)
    jitter = np.random.default_rng(0).uniform(-0.15, 0.15, len(wide))  # seeded: the same figure every run
    for ax, m in zip(axes[0], metrics):
        for k, ref in enumerate(references):
            diff = (wide[(m, "s4fusion")] - wide[(m, ref)]).to_numpy()
            ax.scatter(k + jitter, diff, s=12, c=[colours[r] for r in run_of_row], alpha=0.8, linewidths=0)
            finite = diff[np.isfinite(diff)]
            if finite.size > 1:
                half = stats.t.ppf(0.975, finite.size - 1) * finite.std(ddof=1) / np.sqrt(finite.size)
                ax.errorbar(k + 0.32, finite.mean(), yerr=half, fmt="D", color="black", ms=4, capsize=3)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xticks(range(len(references)), [f"− {r}" for r in references], fontsize=8)
        ax.set_title(f"{m}: S4Fusion − reference", fontsize=9)
    handles = [plt.Line2D([], [], ls="", marker="o", color=c, label=r) for r, c in colours.items()]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    try:
        return write_figure_atomic(path, fig, dpi=110)
    finally:
        plt.close(fig)


def _held_out(args: argparse.Namespace) -> int:
    metrics = resolve_metrics(args.convention, args.metrics)
    unknown = [r for r in args.references if r not in BASELINES]
    if unknown:
        raise ConfigError(
            f"--references {unknown} are not baselines; expected names from {sorted(BASELINES)}"
        )
    runs = open_runs(list(args.runs))
    per_pair = per_pair_metrics(runs, list(args.references), metrics, args.convention)
    wide = wide_table(per_pair, metrics)
    table = comparison_table(wide, list(args.references), metrics)
    out = Path(args.out)
    write_csv_atomic(out / "per_pair.csv", per_pair)
    write_csv_atomic(out / "comparison.csv", table)
    markdown = comparison_markdown(table, runs)
    write_text_atomic(out / "comparison.md", markdown)
    differences_plot(wide, list(args.references), metrics, out / "per_pair_differences.png")
    print(markdown)
    print(f"written: {out}/per_pair.csv, comparison.md, comparison.csv, per_pair_differences.png")
    return 0


def main(args: argparse.Namespace) -> int:
    configure_logging()
    return run_cli("held_out", lambda: _held_out(args))
