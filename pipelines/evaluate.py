"""``python -m pipelines.run evaluate``: fusion metrics per method, Tables I-IV / VII style reports, MLflow.

Methods (``--methods``, any mix):
- a baseline name from :data:`fusion.baselines.BASELINES` (``ir vi average max dwt laplacian gff msvd``);
- ``s4fusion`` -- the checkpoint given by ``--checkpoint``;
- a folder of precomputed fused images matched to the dataset by file stem (``NAME=PATH`` names the
  row, otherwise the folder name is used). Missing images are listed: an error by default, or
  NaN rows counted in the report with ``--allow-missing``.

Outputs in ``--out``: ``per_image_metrics.csv``, ``summary.md`` / ``summary.csv`` (mean ± std,
best bold, second underlined), ``comparison_grid.png``, ``table7.md`` / ``table7.csv`` (params,
FLOPs and measured latency of learned methods), all logged to MLflow (``sqlite:///<out>/mlflow.db``
unless ``--tracking-uri``). Per-method results are cached in ``<out>/per_method/``: a rerun only
computes methods that are missing.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from data.adapters import open_dataset
from data.io import IMAGE_EXTENSIONS, write_text_atomic
from fusion.baselines import BASELINES
from fusion.inference import resolve_checkpoint
from fusion.metrics import CONVENTIONS, compute_metrics, load_image, resolve_metrics
from pipelines.reports import comparison_grid, markdown_table, write_csv_atomic, write_summary

LATENCY_SIZE = (480, 640)


@dataclass
class Method:
    name: str
    kind: str              # "baseline" | "s4fusion" | "precomputed"
    source: str            # baseline name, checkpoint path or folder
    files: dict[str, Path] | None = None   # precomputed: stem -> file
    missing: list[str] | None = None       # precomputed: dataset stems without a file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, help="dataset adapter name (e.g. folder, tno, msrs, m3fd, llvip)")
    parser.add_argument("--root", required=True, help="dataset root folder")
    parser.add_argument("--split", default=None, help="dataset split, where the adapter has one")
    parser.add_argument("--methods", nargs="+", required=True,
                        help=f"baselines ({' '.join(BASELINES)}), 's4fusion', or folders of fused images (NAME=PATH)")
    parser.add_argument("--convention", default="mmif", choices=sorted(CONVENTIONS), help="metric convention")
    parser.add_argument("--metrics", nargs="+", default=None, help="metric subset (default: all the convention defines)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--checkpoint", default=None, help="S4Fusion checkpoint (needed for 's4fusion')")
    parser.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default sqlite:///<out>/mlflow.db)")
    parser.add_argument("--experiment", default=None, help="MLflow experiment (default evaluate-<dataset>)")
    parser.add_argument("--grid-images", nargs="*", default=None,
                        help="image stems for the comparison grid (default: the first 3)")
    parser.add_argument("--allow-missing", action="store_true",
                        help="precomputed folders may lack images (listed, NaN rows) instead of failing")
    parser.add_argument("--latency-runs", type=int, default=3, help="timed 480x640 runs per learned method")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N images")


def _index_folder(folder: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."):
            if p.stem in files:
                raise ValueError(f"{folder}: two fused images for stem {p.stem!r}: {files[p.stem].name}, {p.name}")
            files[p.stem] = p
    return files


def resolve_methods(specs: list[str], stems: list[str], checkpoint: str | None, allow_missing: bool) -> list[Method]:
    """Turn ``--methods`` entries into :class:`Method` s; every problem is reported before any work starts."""
    methods, errors = [], []
    for spec in specs:
        name, _, path = spec.partition("=") if "=" in spec else ("", "", spec)
        if not name and spec in BASELINES:
            methods.append(Method(spec, "baseline", spec))
        elif not name and spec == "s4fusion":
            if checkpoint is None:
                errors.append("method 's4fusion' needs --checkpoint PATH")
            elif not resolve_checkpoint(checkpoint).is_file():
                errors.append(f"--checkpoint {checkpoint}: file does not exist")
            else:
                methods.append(Method("s4fusion", "s4fusion", str(checkpoint)))
        elif Path(path).is_dir():
            folder = Path(path)
            files = _index_folder(folder)
            missing = [s for s in stems if s not in files]
            if missing and not allow_missing:
                shown = ", ".join(missing[:20]) + (f" ... (+{len(missing) - 20})" if len(missing) > 20 else "")
                errors.append(f"{folder}: {len(missing)} of {len(stems)} fused image(s) missing: {shown} "
                              "(pass --allow-missing to evaluate the rest and count them as missing)")
            methods.append(Method(name or folder.name, "precomputed", str(folder), files, missing))
        else:
            errors.append(f"method {spec!r}: not a baseline ({', '.join(BASELINES)}), not 's4fusion' "
                          "and not an existing folder")
    names = [m.name for m in methods]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        errors.append(f"method names used twice: {duplicates} (name folders with NAME=PATH)")
    if errors:
        raise SystemExit("evaluate: " + "\n  ".join(["cannot start:"] + errors))
    return methods


def _fuser(method: Method):
    """A function (sample) -> fused uint8 image for this method."""
    if method.kind in ("baseline", "s4fusion"):
        from fusion.inference import make_fuser  # lazy: torch model code only when needed

        fuse = make_fuser(method.kind if method.kind == "s4fusion" else method.source,
                          method.source if method.kind == "s4fusion" else None)
        return lambda s: fuse(s.ir, s.vi)

    def read(s):
        fused = load_image(method.files[s.name], f"{method.name} fused image")
        if fused.shape[:2] != s.ir.shape[:2]:
            raise ValueError(f"{method.files[s.name]}: size {fused.shape[1]}x{fused.shape[0]} differs from the "
                             f"source pair {s.name} ({s.ir.shape[1]}x{s.ir.shape[0]})")
        return fused
    return read


def _cache_key(method: Method, stems: list[str], convention: str, metrics: tuple[str, ...]) -> str:
    payload = json.dumps([method.name, method.kind, method.source, stems, convention, list(metrics)])
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def evaluate_method(method: Method, dataset, stems: list[str], convention: str, metrics: tuple[str, ...],
                    cache_dir: Path, grid_stems: set[str]) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Per-image metrics of one method (cached on disk) and its fused images for the grid stems."""
    cache = cache_dir / f"{method.name}.{_cache_key(method, stems, convention, metrics)}.csv"
    fuse = _fuser(method) if not cache.is_file() or grid_stems else None
    grid: dict[str, np.ndarray] = {}
    if cache.is_file():
        for stem in grid_stems:
            if method.kind != "precomputed" or stem in method.files:
                grid[stem] = fuse(dataset[stem])
        return pd.read_csv(cache), grid
    rows = []
    for stem in tqdm(stems, desc=f"evaluate {method.name}", unit="img"):
        if method.kind == "precomputed" and stem in method.missing:
            rows.append({"method": method.name, "image": stem, "missing": True, **{m: np.nan for m in metrics}})
            continue
        sample = dataset[stem]
        fused = fuse(sample)
        if stem in grid_stems:
            grid[stem] = fused
        values = compute_metrics(sample.ir, sample.vi, fused, convention=convention, metrics=metrics)
        rows.append({"method": method.name, "image": stem, "missing": False, **values})
    frame = pd.DataFrame(rows, columns=["method", "image", "missing", *metrics])
    write_csv_atomic(cache, frame)
    return frame, grid


def measure_learned(method: Method, runs: int) -> dict[str, float | int | str]:
    """Table VII row: parameters and FLOPs from ``fusion.flops.count_model`` and measured CPU latency at 480x640."""
    import torch

    from fusion.flops import count_model
    from fusion.inference import fuse, load_model

    model = load_model(method.source)
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


def main(args: argparse.Namespace) -> int:
    from pipelines.tracking import Tracker, default_tracking_uri

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    metrics = resolve_metrics(args.convention, args.metrics)
    dataset = open_dataset(args.dataset, args.root, split=args.split)
    stems = dataset.stems[: args.limit] if args.limit else dataset.stems
    methods = resolve_methods(args.methods, stems, args.checkpoint, args.allow_missing)
    grid_stems = args.grid_images if args.grid_images is not None else stems[:3]
    unknown = [s for s in grid_stems if s not in stems]
    if unknown:
        raise SystemExit(f"evaluate: --grid-images {unknown} are not among the evaluated images")

    frames, grids = [], {}
    for method in methods:
        frame, grid = evaluate_method(method, dataset, stems, args.convention, metrics,
                                      out / "per_method", set(grid_stems))
        frames.append(frame)
        grids[method.name] = grid
    per_image = pd.concat(frames, ignore_index=True)
    paths = {"per_image": write_csv_atomic(out / "per_image_metrics.csv", per_image)}
    title = f"{args.dataset} ({len(stems)} images), convention {args.convention}"
    paths.update(write_summary(per_image, out, "summary", metrics=list(metrics), title=title))
    missing = {m.name: m.missing for m in methods if m.missing}
    if missing:
        report = "\n".join(f"{name}: {', '.join(stems_)}" for name, stems_ in missing.items())
        paths["missing"] = write_text_atomic(out / "missing.txt", report + "\n")
        print(f"missing fused images (NaN rows):\n{report}")

    rows = {}
    for stem in grid_stems:
        sample = dataset[stem]
        row = {"IR": sample.ir, "VIS": sample.vi}
        for method in methods:
            img = grids[method.name].get(stem)
            row[method.name] = img if img is not None else np.zeros(sample.ir.shape, np.uint8)
        rows[stem] = row
    if rows:
        paths["grid"] = comparison_grid(rows, out / "comparison_grid.png", title=title)

    learned = [m for m in methods if m.kind == "s4fusion"]
    if learned:
        table7 = pd.DataFrame([measure_learned(m, args.latency_runs) for m in learned])
        paths["table7_csv"] = write_csv_atomic(out / "table7.csv", table7)
        paths["table7_md"] = write_text_atomic(out / "table7.md", "### Table VII: efficiency at 480x640\n\n"
                                               + markdown_table(table7))

    tracker = Tracker(args.tracking_uri or default_tracking_uri(out), args.experiment or f"evaluate-{args.dataset}",
                      artifact_dir=out / "mlartifacts")
    key = hashlib.sha256(json.dumps([str(out.resolve()), args.dataset, str(args.root), args.convention,
                                     [m.name for m in methods], list(metrics), stems]).encode()).hexdigest()[:16]
    parent, _ = tracker.start_run(f"evaluate-{key}", f"evaluate {args.dataset}", "evaluate")
    tracker.log_params(parent, {"dataset": args.dataset, "root": str(args.root), "convention": args.convention,
                                "metrics": ",".join(metrics), "methods": ",".join(m.name for m in methods),
                                "images": len(stems)})
    summary = pd.read_csv(paths["csv"])
    for method in methods:
        child, done = tracker.start_run(f"evaluate-{key}-{method.name}", method.name, "method", parent_id=parent)
        if done:
            continue
        tracker.log_params(child, {"method": method.name, "kind": method.kind, "source": method.source})
        row = summary[summary["method"] == method.name].iloc[0]
        tracker.log_metrics(child, {f"{m}{suffix}": float(row[f"{m}{suffix}"]) for m in metrics
                                    for suffix in ("_mean", "_std")})
        tracker.finish(child)
    for name, path in paths.items():
        tracker.log_artifact(parent, path, "reports")
    tracker.finish(parent)
    print(Path(paths["markdown"]).read_text(encoding="utf-8"))
    print(f"reports in {out}; MLflow: {tracker.tracking_uri}")
    return 0
