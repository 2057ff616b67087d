"""Benchmark: wall time of ``fuse_then_detect`` on the tiny profile, 2 seeds, serial vs Ray.

    python -m bench.bench_executor [--out runs/bench_executor] [--seeds 0,1] [--ray-cpus 2]

Runs the command twice into fresh run folders, each in its own subprocess: ``--executor serial``
and ``--executor ray`` on a local Ray instance of ``--ray-cpus`` CPUs (the profile reserves 1 CPU
per job, so that many jobs run at once). Prints each wall time (Ray's start-up included), the
per-job times the driver records in ``timings.json``, and the speed-up. Needs Ray
(``pip install -e '.[ray]'``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path


def run(kind: str, run_dir: Path, seeds: str, ray_cpus: int) -> tuple[float, dict]:
    if run_dir.exists():
        shutil.rmtree(run_dir)
    code = ("import ray, sys; ray.init(num_cpus=int(sys.argv[1]), include_dashboard=False); " if kind == "ray" else "") + \
        "import sys; from pipelines.run import main; sys.exit(main(sys.argv[2:]))"
    cmd = [sys.executable, "-c", code, str(ray_cpus), "fuse_then_detect", "--config", "fuse_then_detect_tiny.yaml",
           "--seeds", seeds, "--runs-dir", str(run_dir), "--executor", kind]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start, json.loads((run_dir / "timings.json").read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/bench_executor")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--ray-cpus", type=int, default=2)
    args = parser.parse_args(argv)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}")
    walls = {}
    for kind in ("serial", "ray"):
        walls[kind], timings = run(kind, Path(args.out) / kind, args.seeds, args.ray_cpus)
        jobs = {k: round(v, 1) for k, v in timings.items() if k.count("/") >= 1}
        print(f"{kind:>6}: wall {walls[kind]:.1f} s (jobs phase {timings.get('jobs', float('nan')):.1f} s)\n"
              f"        per job [s]: {jobs}", flush=True)
    print(f"speed-up (serial / ray): {walls['serial'] / walls['ray']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
