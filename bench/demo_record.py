"""The demo's run record: ``fuse_then_detect`` run by each executor asked for, into fresh run folders,
each in its own subprocess, written with where it ran into a results file that docs/benchmarks.md quotes.

    python -m bench.demo_record --executors ray,serial   # the demo profile: Ray (= make demo), then serial
    python -m bench.demo_record --config fuse_then_detect_tiny.yaml --seeds 0,1 --executors serial,ray \\
        --record runs/bench_executor/record.json --doc none   # docs/benchmarks.md's executor benchmark

The record (``--record``, default ``docs/results/demo_record.json``, written atomically) holds the
date (UTC), the commit (``+dirty`` when tracked files differ from it), the CPU model and count, the
CPUs (= torch threads) a job gets, the python/torch/ultralytics versions, the profile, and per
executor: the command, its wall time (Ray's start included), the pipeline's own time
(``timings.json``), mAP@50 per method (``report/table6.csv``) and the verdict line. The block between
:data:`BEGIN` and :data:`END` of docs/benchmarks.md (``--doc``; the README links it) is rendered from it,
and its bar chart (which the README shows) copied from the first run's report (``none`` leaves both alone);
``tests/bench/test_demo_record.py`` checks that the committed block is the rendering of the committed record.

Ray runs on a local instance of ``--ray-cpus`` CPUs that the subprocess starts itself (never one
already running on the machine). Needs Ray for ``ray`` (``pip install -e '.[ray]'``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import yaml

from bench.doc_blocks import replace_between
from data.io import write_text_atomic
from fusion.train.cost import cpu_model

REPO = Path(__file__).resolve().parents[1]
DEFAULT_RECORD = REPO / "docs" / "results" / "demo_record.json"
DEFAULT_DOC = REPO / "docs" / "benchmarks.md"  # the document holding the rendered block
DEMO_FIGURE = "images/demo_table6_map50.png"  # relative to that document's folder (docs/)
BEGIN, END = (
    "<!-- demo-record: rendered from the record by python -m bench.demo_record -->",
    "<!-- /demo-record -->",
)
NO_RECORD = (
    "No demo run is recorded at this commit yet: `python -m bench.demo_record --executors ray,serial` "
    "runs it and writes its numbers here."
)
SAME_MACHINE = (
    "Results are identical only on the same CPU model with the same thread count (float32 rounding "
    "follows the CPU's kernels): on another machine expect other numbers, and compare the verdict."
)


def commit() -> str:
    """``git rev-parse --short HEAD`` of the repository, ``+dirty`` when tracked files changed."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        return git("rev-parse", "--short=12", "HEAD") + (
            "+dirty" if git("status", "--porcelain", "-uno") else ""
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"


def environment() -> dict[str, object]:
    versions = {}
    for package in ("torch", "ultralytics", "ray"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "commit": commit(),
        "cpu_model": cpu_model(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        **versions,
    }


def run_pipeline(
    kind: str, config: str, seeds: str | None, run_dir: Path, ray_cpus: int
) -> dict[str, object]:
    """One ``fuse_then_detect`` run in a subprocess; what the record keeps of it."""
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    argv = ["fuse_then_detect", "--config", config, "--runs-dir", str(run_dir), "--executor", kind]
    argv += ["--seeds", seeds] if seeds else []
    start_ray = (
        f"import ray; ray.init(num_cpus={ray_cpus}, include_dashboard=False); " if kind == "ray" else ""
    )
    code = start_ray + "import sys; from pipelines.run import main; sys.exit(main(sys.argv[1:]))"
    log = run_dir.with_suffix(".log")
    start = time.perf_counter()
    with open(log, "w") as out:
        rc = subprocess.run(
            [sys.executable, "-c", code, *argv], stdout=out, stderr=subprocess.STDOUT, cwd=REPO
        ).returncode
    wall = time.perf_counter() - start
    if rc != 0:
        raise RuntimeError(f"fuse_then_detect --executor {kind} exited {rc}; see {log}")
    with open(run_dir / "report" / "table6.csv", newline="") as f:
        map50 = {row["method"]: round(float(row["mAP50"]), 4) for row in csv.DictReader(f)}
    verdict = next((line.strip() for line in log.read_text().splitlines() if line.startswith("VERDICT")), "")
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    timings = json.loads((run_dir / "timings.json").read_text())
    return {
        "executor": kind,
        "command": "python -m pipelines.run " + " ".join(argv[:3] + argv[5:]),
        "wall_s": round(wall, 1),
        "pipeline_s": round(timings["total"], 1),
        "seeds": cfg["seeds"],
        "cpus_per_job": cfg["executor"]["cpus_per_job"],
        "map50": map50,
        "verdict": verdict,
    }


def render(record: dict | None, record_link: str) -> str:
    """The docs block (markers included) for ``record`` (``None``: no run recorded yet)."""
    if record is None:
        return "\n".join([BEGIN, NO_RECORD, END])
    env, runs = record["environment"], record["runs"]
    methods = list(runs[0]["map50"])
    lines = [
        BEGIN,
        f"**Run record** ([{record_link}]({record_link}), written by `python -m bench.demo_record`): "
        f"profile `{record['profile']}`, {env['date_utc']} UTC, commit `{env['commit']}`, {env['cpu_model']} "
        f"({env['cpus']} CPUs), {runs[0]['cpus_per_job']} CPU(s) and torch thread(s) per job, torch {env['torch']}, "
        f"seed(s) {runs[0]['seeds']}. mAP@50 on the test split:",
        "",
        "| executor | wall time | " + " | ".join(methods) + " |",
        "|---|---:|" + "---:|" * len(methods),
    ]
    for run in runs:
        lines.append(
            f"| {run['executor']} | {run['wall_s'] / 60:.1f} min | "
            + " | ".join(f"{run['map50'][m]:.3f}" for m in methods)
            + " |"
        )
    lines.append("")
    walls = {run["executor"]: run["wall_s"] for run in runs}
    if {"serial", "ray"} <= set(walls):
        lines.append(f"Serial took {walls['serial'] / walls['ray']:.2f}× the Ray wall time here.")
    lines += [f"`{runs[0]['verdict']}` ({runs[0]['executor']} run).", SAME_MACHINE, END]
    return "\n".join(lines)


def replace_block(text: str, block: str) -> str:
    """``text`` with the block between :data:`BEGIN` and :data:`END` replaced by ``block``."""
    return replace_between(text, BEGIN, END, block)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="fuse_then_detect_demo.yaml", help="fuse_then_detect profile")
    parser.add_argument("--executors", default="ray", help="comma-separated, run in this order (serial, ray)")
    parser.add_argument(
        "--seeds", default=None, help="comma-separated detector seeds (default: the profile's)"
    )
    parser.add_argument("--ray-cpus", type=int, default=os.cpu_count(), help="CPUs of the local Ray instance")
    parser.add_argument("--out", type=Path, default=Path("runs/demo_record"), help="run folders (replaced)")
    parser.add_argument("--record", type=Path, default=DEFAULT_RECORD, help="the record file (JSON)")
    parser.add_argument(
        "--doc",
        "--readme",
        dest="doc",
        default=str(DEFAULT_DOC),
        help="Markdown file to render the record into (docs/benchmarks.md), or none",
    )
    args = parser.parse_args(argv)
    kinds = [k.strip() for k in args.executors.split(",") if k.strip()]
    if not kinds or set(kinds) - {"serial", "ray"}:
        parser.error(f"--executors: serial and/or ray, got {args.executors!r}")
    doc = None if args.doc.lower() == "none" else Path(args.doc)
    if doc is not None and BEGIN not in doc.read_text(encoding="utf-8"):  # before the long runs
        parser.error(f"--doc {doc} has no {BEGIN} block; pass --doc none")
    record = {
        "profile": Path(args.config).stem,
        "environment": environment(),
        "runs": [run_pipeline(k, args.config, args.seeds, args.out / k, args.ray_cpus) for k in kinds],
    }
    write_text_atomic(args.record, json.dumps(record, indent=2) + "\n")
    print(f"record: {args.record}")
    if doc is not None:
        link = os.path.relpath(args.record.resolve(), doc.resolve().parent)
        write_text_atomic(doc, replace_block(doc.read_text(encoding="utf-8"), render(record, link)))
        figure = args.out / kinds[0] / "report" / "table6_map50.png"  # the README's chart, from the same run
        shutil.copyfile(figure, doc.resolve().parent / DEMO_FIGURE)
        print(f"rendered into {doc} and {doc.resolve().parent / DEMO_FIGURE}")
    print(render(record, str(args.record)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
