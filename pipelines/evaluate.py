"""``python -m pipelines.run evaluate``: fusion metrics per method, Tables I-IV / VII style reports, MLflow.

Methods (``--methods``, any mix; resolved by fusion.methods.method_from_spec):
- a baseline name from :data:`fusion.baselines.BASELINES` (``ir vi average max dwt laplacian gff msvd``);
- ``s4fusion`` -- the checkpoint given by ``--checkpoint``;
- ``[NAME=]package.module:function`` (any importable fusion callable) or an installed
  ``s4fuse.methods`` entry-point name;
- a folder of precomputed fused images matched to the dataset by file stem (``NAME=PATH`` names the
  row, otherwise the folder name is used). Missing images are listed: an error by default, or
  NaN rows counted in the report with ``--allow-missing``.

Outputs in ``--out``: ``per_image_metrics.csv``, ``summary.md`` / ``summary.csv`` (mean ± std,
best bold, second underlined; for MSRS/RoadScene/TNO/M3FD followed by the paper's Table I-IV rows,
also in ``summary_vs_paper.csv``), ``comparison_grid.png``, ``table7.md`` / ``table7.csv`` (params,
FLOPs and measured latency of learned methods, beside the paper's Table VII), all logged to MLflow
(``sqlite:///<out>/mlflow.db`` unless ``--tracking-uri``). Per-method results are cached in
``<out>/per_method/`` by content (checkpoint and fused-file sha256, the pairs' names/sizes/mtimes):
a rerun only computes what changed.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from data.adapters import DatasetError, PairedImageDataset, open_dataset
from data.dataset_check import bad_pairs
from data.io import digest, write_csv_atomic, write_text_atomic
from fusion.baselines import BASELINES
from fusion.methods import FusionMethod, MethodInputs, PairSet, fuse_checked, method_from_spec
from fusion.metrics import CONVENTIONS, load_image, resolve_metrics
from pipelines.cli_common import configure_logging, run_cli
from pipelines.fusion_metrics import per_image_metrics
from pipelines.paper_columns import fusion_table_params, fusion_table_vs_paper, table7_params, table7_vs_paper
from pipelines.reports import comparison_grid, markdown_table, summary_plain, write_summary
from runtime.config_loader import ConfigError
from runtime.errors import InputError

LATENCY_SIZE = (480, 640)


@dataclass
class EvaluatedMethod:
    """A ``--methods`` entry: the fusion method and what its ``prepare`` found (for a precomputed
    folder: its files and the stems it lacks)."""

    method: FusionMethod
    inputs: MethodInputs

    @property
    def name(self) -> str:
        return self.method.name

    def identity(self) -> dict:
        """What determines this method's fused images, by content (cache key of the metric stage)."""
        return self.method.content_identity(self.inputs)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dataset", required=True, help="dataset adapter name (e.g. folder, tno, msrs, m3fd, llvip)"
    )
    parser.add_argument("--root", required=True, help="dataset root folder")
    parser.add_argument("--split", default=None, help="dataset split, where the adapter has one")
    parser.add_argument(
        "--methods",
        nargs="+",
        required=True,
        help=f"baselines ({' '.join(BASELINES)}), 's4fusion', [NAME=]package.module:function, an installed "
        "s4fuse.methods name, or folders of fused images ([NAME=]PATH)",
    )
    parser.add_argument("--convention", default="mmif", choices=sorted(CONVENTIONS), help="metric convention")
    parser.add_argument(
        "--metrics", nargs="+", default=None, help="metric subset (default: all the convention defines)"
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--checkpoint", default=None, help="S4Fusion checkpoint (needed for 's4fusion')")
    parser.add_argument(
        "--tracking-uri", default=None, help="MLflow tracking URI (default sqlite:///<out>/mlflow.db)"
    )
    parser.add_argument("--experiment", default=None, help="MLflow experiment (default evaluate-<dataset>)")
    parser.add_argument(
        "--grid-images",
        nargs="*",
        default=None,
        help="image stems for the comparison grid (default: the first 3)",
    )
    parser.add_argument(
        "--allow-missing",
        action="store_true",
        help="precomputed folders may lack images (listed, NaN rows) instead of failing",
    )
    parser.add_argument("--latency-runs", type=int, default=3, help="timed 480x640 runs per learned method")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N images")


def resolve_methods(
    specs: list[str],
    dataset: PairedImageDataset,
    stems: list[str],
    checkpoint: str | None,
    allow_missing: bool,
) -> list[EvaluatedMethod]:
    """Turn ``--methods`` entries into prepared methods; every problem is reported before any work starts."""
    methods, errors = [], []
    for spec in specs:
        try:
            method = method_from_spec(spec, checkpoint, folders=True, allow_missing=allow_missing)
            problems = method.problems()
            if problems:
                errors += problems
                continue
            methods.append(EvaluatedMethod(method, method.prepare(PairSet(dataset, stems))))
        except InputError as exc:
            errors.append(str(exc))
    names = [m.name for m in methods]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        errors.append(f"method names used twice: {duplicates} (name them with NAME=SPEC)")
    if errors:  # one problem is one line (a bad python target among them)
        raise ConfigError(f"cannot start: {errors[0]}" if len(errors) == 1 else ["cannot start:"] + errors)
    return methods


def fused_images(entry: EvaluatedMethod, dataset: PairedImageDataset):
    """``stem -> fused uint8 image or None`` (a precomputed folder lacking it) for this method."""
    fuse = entry.method.fuser(entry.inputs)
    files = entry.inputs.files or {}

    def get(stem: str) -> np.ndarray | None:
        if fuse is not None:
            sample = dataset[stem]
            return fuse_checked(entry.name, fuse, stem, sample.ir, sample.vi)
        if stem not in files:
            return None
        return load_image(files[stem], f"{entry.name} fused image")  # sizes checked by prepare

    return get


def evaluate_method(
    method: EvaluatedMethod,
    dataset: PairedImageDataset,
    data_identity: dict,
    stems: list[str],
    convention: str,
    metrics: tuple[str, ...],
    cache_dir: Path,
) -> pd.DataFrame:
    """Per-image metrics of one method (the shared content-keyed cached stage)."""

    def pair(stem: str):
        sample = dataset[stem]
        return sample.ir, sample.vi

    return per_image_metrics(
        method.name,
        stems,
        pair,
        fused_images(method, dataset),
        {"method": method.identity(), "data": data_identity},
        convention,
        metrics,
        cache_dir,
    )


def measure_learned(method: EvaluatedMethod, runs: int) -> dict[str, float | int | str]:
    """Table VII row: parameters and FLOPs from ``fusion.flops.count_model`` and measured CPU latency at 480x640."""
    import time

    import torch

    from fusion.flops import count_model
    from fusion.inference import fuse, load_model

    model = load_model(method.inputs.checkpoint)
    cost = count_model(model, *LATENCY_SIZE)
    row: dict[str, float | int | str] = {
        "method": method.name,
        "params_total_M": round(cost.params_total / 1e6, 4),
        "params_used_M": round(cost.params_used / 1e6, 4),
        "GFLOPs": round(cost.flops_paper_convention / 1e9, 3),  # fvcore convention, as the paper
    }
    h, w = LATENCY_SIZE
    gen = torch.Generator().manual_seed(0)
    ir, vi = torch.rand(1, 1, h, w, generator=gen), torch.rand(1, 1, h, w, generator=gen)
    fuse(model, ir, vi)  # warm-up
    times = []
    for _ in range(max(1, runs)):
        start = time.perf_counter()
        fuse(model, ir, vi)
        times.append(time.perf_counter() - start)
    row["latency_ms_median"] = round(1000 * float(np.median(times)), 1)
    row["device"] = f"cpu x{torch.get_num_threads()} threads"
    return row


def _data_identity(dataset: PairedImageDataset, stems: list[str]) -> dict:
    """The evaluated pairs by file name, size and modification time (cheap; re-read on change)."""
    files = []
    for stem in stems:
        f = dataset.files(stem)
        files.append([stem] + [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in (f.ir, f.vi)])
    return {"pairs": digest(files, 32)}


def is_source(method: EvaluatedMethod) -> bool:
    return method.method.passes_through


def _grid(
    dataset: PairedImageDataset, methods: list[EvaluatedMethod], grid_stems: list[str], out: Path, title: str
):
    rows = {}
    getters = {m.name: fused_images(m, dataset) for m in methods}
    for stem in grid_stems:
        sample = dataset[stem]
        row = {"IR": sample.ir, "VIS": sample.vi}
        for method in (m for m in methods if not is_source(m)):  # IR/VIS columns are already there
            img = getters[method.name](stem)
            row[method.name] = img if img is not None else np.zeros(sample.ir.shape, np.uint8)
        rows[stem] = row
    return comparison_grid(rows, out / "comparison_grid.png", title=title) if rows else None


def _log_mlflow(
    args: argparse.Namespace,
    out: Path,
    methods: list[EvaluatedMethod],
    metrics: tuple[str, ...],
    stems: list[str],
    paths: dict[str, Path],
) -> str:
    from runtime.tracking import Tracker, default_tracking_uri

    tracker = Tracker(
        args.tracking_uri or default_tracking_uri(out),
        args.experiment or f"evaluate-{args.dataset}",
        artifact_dir=out / "mlartifacts",
    )
    key = digest(
        [
            str(out.resolve()),
            args.dataset,
            str(args.root),
            args.convention,
            [m.name for m in methods],
            list(metrics),
            stems,
        ],
        16,
    )
    parent, _ = tracker.start_run(f"evaluate-{key}", f"evaluate {args.dataset}", "evaluate")
    tracker.log_params(
        parent,
        {
            "dataset": args.dataset,
            "root": str(args.root),
            "convention": args.convention,
            "metrics": ",".join(metrics),
            "methods": ",".join(m.name for m in methods),
            "images": len(stems),
            **fusion_table_params(args.dataset),
            **(table7_params() if "table7_csv" in paths else {}),
        },
    )
    summary = pd.read_csv(paths["csv"])
    for method in methods:
        child, done = tracker.start_run(
            f"evaluate-{key}-{method.name}", method.name, "method", parent_id=parent
        )
        if done:
            continue
        tracker.log_params(
            child, {"method": method.name, "kind": method.method.kind, "source": method.method.label}
        )
        row = summary[summary["method"] == method.name].iloc[0]
        tracker.log_metrics(
            child,
            {f"{m}{suffix}": float(row[f"{m}{suffix}"]) for m in metrics for suffix in ("_mean", "_std")},
        )
        tracker.finish(child)
    for path in paths.values():
        tracker.log_artifact(parent, path, "reports")
    tracker.finish(parent)
    return tracker.tracking_uri


def _paper_beside_ours(dataset: str, paths: dict[str, Path], out: Path) -> dict[str, Path]:
    """For MSRS/RoadScene/TNO/M3FD: the paper's Table I-IV rows beside our means, appended to the
    summary and written as ``summary_vs_paper.csv``; nothing for other datasets."""
    found = fusion_table_vs_paper(pd.read_csv(paths["csv"]), dataset)
    if found is None:
        return {}
    frame, text = found
    markdown = Path(paths["markdown"])
    write_text_atomic(markdown, markdown.read_text(encoding="utf-8") + "\n" + text)
    return {"paper_csv": write_csv_atomic(out / "summary_vs_paper.csv", frame)}


def _evaluate(args: argparse.Namespace) -> int:
    out = Path(args.out)
    metrics = resolve_metrics(args.convention, args.metrics)
    dataset = open_dataset(args.dataset, args.root, split=args.split)
    stems = dataset.stems[: args.limit] if args.limit else dataset.stems
    methods = resolve_methods(args.methods, dataset, stems, args.checkpoint, args.allow_missing)
    bad = bad_pairs([dataset.files(s) for s in stems], desc="checking pairs")
    if bad:
        raise DatasetError(f"{len(bad)} bad pair(s), nothing evaluated: " + "; ".join(bad.values()))
    out.mkdir(parents=True, exist_ok=True)
    grid_stems = args.grid_images if args.grid_images is not None else stems[:3]
    unknown = [s for s in grid_stems if s not in stems]
    if unknown:
        raise ConfigError(f"--grid-images {unknown} are not among the evaluated images")

    data_identity = _data_identity(dataset, stems)
    frames = [
        evaluate_method(m, dataset, data_identity, stems, args.convention, metrics, out / "per_method")
        for m in methods
    ]
    per_image = pd.concat(frames, ignore_index=True)
    paths = {"per_image": write_csv_atomic(out / "per_image_metrics.csv", per_image)}
    title = f"{args.dataset} ({len(stems)} images), convention {args.convention}"
    paths.update(
        write_summary(
            per_image,
            out,
            "summary",
            metrics=list(metrics),
            title=title,
            unranked=[m.name for m in methods if is_source(m)],
        )
    )
    missing = {m.name: m.inputs.missing for m in methods if m.inputs.missing}
    if missing:
        report = "\n".join(f"{name}: {', '.join(stems_)}" for name, stems_ in missing.items())
        paths["missing"] = write_text_atomic(out / "missing.txt", report + "\n")
        print(f"missing fused images (NaN rows):\n{report}")
    paths.update(_paper_beside_ours(args.dataset, paths, out))
    grid = _grid(dataset, methods, grid_stems, out, title)
    if grid is not None:
        paths["grid"] = grid
    learned = [m for m in methods if m.method.learned]
    if learned:
        table7 = pd.DataFrame([measure_learned(m, args.latency_runs) for m in learned])
        paths["table7_csv"] = write_csv_atomic(out / "table7.csv", table7)
        table7_paper, table7_paper_md = table7_vs_paper(table7)
        paths["table7_paper_csv"] = write_csv_atomic(out / "table7_vs_paper.csv", table7_paper)
        paths["table7_md"] = write_text_atomic(
            out / "table7.md",
            "### Table VII: efficiency at 480x640\n\n" + markdown_table(table7) + "\n" + table7_paper_md,
        )
    uri = _log_mlflow(args, out, methods, metrics, stems, paths)
    print(f"{title}: mean per image (full table with ± std and best marked: {paths['markdown']})")
    print(summary_plain(pd.read_csv(paths["csv"])))
    if "table7_md" in paths:
        print(f"Table VII (efficiency): {paths['table7_md']}")
    print(f"reports in {out}; MLflow: {uri}")
    return 0


def main(args: argparse.Namespace) -> int:
    configure_logging()
    return run_cli("evaluate", lambda: _evaluate(args))
