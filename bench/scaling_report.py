"""Render a ``bench.scaling`` result into the docs: the measurements in docs/benchmarks.md and the M3FD
extrapolation on this CPU in docs/pipeline.md, both generated blocks (bench.doc_blocks).

    python -m bench.scaling_report OUT/scaling.json

copies OUT/scaling.json to docs/results/scaling_quick.json and OUT/scaling.png to
docs/images/scaling_quick.png, then rewrites both blocks from the copy. tests/bench/test_scaling.py checks
that the blocks in the docs are what this module renders from docs/results/scaling_quick.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from bench.doc_blocks import replace_between
from data.io import write_text_atomic

REPO = Path(__file__).resolve().parents[1]
RECORD = REPO / "docs" / "results" / "scaling_quick.json"
FIGURE = REPO / "docs" / "images" / "scaling_quick.png"
BENCHMARKS_DOC, PIPELINE_DOC = REPO / "docs" / "benchmarks.md", REPO / "docs" / "pipeline.md"
MEASURED = (
    "<!-- scaling-measured: rendered from docs/results/scaling_quick.json by python -m bench.scaling_report -->",
    "<!-- /scaling-measured -->",
)
M3FD = (
    "<!-- scaling-m3fd: rendered from docs/results/scaling_quick.json by python -m bench.scaling_report -->",
    "<!-- /scaling-m3fd -->",
)
STAGE_LABELS = {
    "dataset_check": "dataset check (decode every pair)",
    "fuse_classical": "classical fusion (Average, PNG out)",
    "fuse_s4fusion": "S4Fusion fusion (demo model, sampled)",
    "split_export": "split + YOLO export (hard links + labels)",
    "fusion_metrics": "fusion metrics (8 metrics, test split)",
    "detector_epoch": "one YOLOv8n epoch at 640 + test evaluation",
    "report_mlflow": "report + MLflow logging",
}
# Table VI on M3FD (docs/pipeline.md): how often each stage runs, and on how many of the 4,200 pairs.
# The detector stage measured one epoch; the paper's recipe trains 40.
M3FD_PAIRS, SEEDS, EPOCHS = 4200, 3, 40
M3FD_RUNS = {
    "dataset_check": (1, "once"),
    "fuse_classical": (10, "10 other methods, if fused here"),
    "fuse_s4fusion": (1, "S4Fusion"),
    "split_export": (12, "12 methods"),
    "fusion_metrics": (12, "12 methods"),
    "detector_epoch": (12 * SEEDS * EPOCHS, f"12 methods x {SEEDS} seeds x {EPOCHS} epochs"),
    "report_mlflow": (1, "once"),
}


def _largest(points: list[dict]) -> dict:
    return max(points, key=lambda p: p["n"])


def measured_block(result: dict) -> str:
    """The measurement table, the checks, disk per method and the figure (docs/benchmarks.md)."""
    stages, slopes = result["stages"], result["slopes"]
    sizes = [p["n"] for p in next(iter(stages.values()))]
    load = result["load_average_1min"]
    lines = [
        MEASURED[0],
        f"Measured {result['date']} by `python -m bench.scaling --{result['mode']}` on {result['machine']['cpu']}, "
        f"{result['machine']['cores']} cores (load average {load['start']} at the start, {load['end']} at the end), "
        f"in {result['bench_wall_s'] / 60:.1f} min; S4Fusion fused one image in {result['s4fusion_every']} of "
        "each split part, its costs scaled to all images.",
        "",
        "| stage | "
        + " | ".join(f"CPU s, n = {n}" for n in sizes)
        + " | CPU slope | wall slope | peak RSS MB | "
        f"disk MB, n = {sizes[-1]} |",
        "|---|" + "---:|" * (len(sizes) + 4),
    ]
    for name, points in stages.items():
        rss = [p["peak_rss_mb"] for p in points]
        lines.append(
            f"| {STAGE_LABELS.get(name, name)} | "
            + " | ".join(f"{p['cpu_s']:.1f}" for p in points)
            + f" | {slopes[name]['cpu']:.2f} | {slopes[name]['wall']:.2f} | {min(rss):.0f}-{max(rss):.0f} | "
            f"{_largest(points)['disk_mb']:.1f} |"
        )
    failed = [c["check"] for c in result["checks"] if not c["ok"]]
    lines += [
        "",
        f"Checks: {len(result['checks']) - len(failed)} of {len(result['checks'])} passed"
        + (
            f"; failed: {'; '.join(failed)}."
            if failed
            else " (every CPU-time slope <= 1.2, no peak RSS growing with n)."
        ),
        "Disk per fused method (fused PNGs, YOLO labels, metrics, one detector run): "
        + ", ".join(f"{mb:.1f} MB at n = {n}" for n, mb in result["disk_per_method_mb"].items())
        + f"; {_disk_per_method_at(result, M3FD_PAIRS) / 1024:.1f} GB at M3FD's {M3FD_PAIRS:,} pairs.",
        "",
        "![time and peak memory vs n](images/scaling_quick.png)",
        MEASURED[1],
    ]
    return "\n".join(lines)


def _disk_per_method_at(result: dict, n_target: int) -> float:
    n, mb = max(((int(n), mb) for n, mb in result["disk_per_method_mb"].items()), key=lambda t: t[0])
    return mb * n_target / n


def m3fd_block(result: dict) -> str:
    """Table VI on M3FD on this CPU, extrapolated stage by stage from the measured slopes (docs/pipeline.md)."""
    extrapolated = result[f"extrapolated_n{M3FD_PAIRS}"]
    lines = [
        M3FD[0],
        f"From `python -m bench.scaling --{result['mode']}` ({result['date']}, {result['machine']['cpu']}): each "
        f"stage's CPU time at its largest measured size, grown to {M3FD_PAIRS:,} pairs by its measured CPU-time "
        "slope (at least 1), times how often Table VI runs it. The detector row repeats the measured epoch, "
        "test evaluation included, 40 times: an upper bound.",
        "",
        "| stage | CPU slope | one run at 4,200 pairs, CPU-h | runs in Table VI | total CPU-h |",
        "|---|---:|---:|---|---:|",
    ]
    total = 0.0
    for name, (count, what) in M3FD_RUNS.items():
        one = extrapolated[name]["cpu_s"] / 3600
        total += one * count
        lines.append(
            f"| {STAGE_LABELS.get(name, name)} | {result['slopes'][name]['cpu']:.2f} | {one:.2f} | {what} | "
            f"{one * count:,.1f} |"
        )
    cores = result["machine"]["cores"]
    lines += [
        f"| **all** | | | | **{total:,.0f}** |",
        "",
        f"With YOLOv8n as the detector that is ≈ {total:,.0f} CPU-hours, ≈ {total / cores / 24:,.0f} days on "
        f"these {cores} cores if every stage kept them busy; disk ≈ "
        f"{_disk_per_method_at(result, M3FD_PAIRS) / 1024:.1f} GB per fused method.",
        M3FD[1],
    ]
    return "\n".join(lines)


def render_docs(result: dict) -> None:
    for doc, markers, block in (
        (BENCHMARKS_DOC, MEASURED, measured_block(result)),
        (PIPELINE_DOC, M3FD, m3fd_block(result)),
    ):
        write_text_atomic(doc, replace_between(doc.read_text(encoding="utf-8"), *markers, block))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scaling_json", type=Path, help="OUT/scaling.json of python -m bench.scaling")
    args = parser.parse_args(argv)
    result = json.loads(args.scaling_json.read_text(encoding="utf-8"))
    figure = args.scaling_json.with_name("scaling.png")
    if figure.is_file():
        shutil.copyfile(figure, FIGURE)
    if args.scaling_json.resolve() != RECORD:
        shutil.copyfile(args.scaling_json, RECORD)
    render_docs(result)
    print(f"rendered {RECORD.relative_to(REPO)} into {BENCHMARKS_DOC.name} and {PIPELINE_DOC.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
