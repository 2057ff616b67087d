"""Benchmark: all default ``mmif`` metrics for one 480x640 IR/VIS/fused triple (goal <= 1 s on the 2-core CPU).

    python -m bench.bench_metrics [--repeats 5]

Uses VIFB's 480x640 ``labMan`` pair from ../shared/data (fused: its ADF result). Prints wall and
CPU time per metric and for the full ``compute_metrics`` call (median over repeats); CPU time is
reported too because the wall clock on a shared machine includes waiting for other processes.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np

from fusion.metrics import compute_metrics, load_image, mmif

SHARED = Path(
    os.environ.get("S4FUSE_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data")
)


def _time(fn, repeats: int) -> tuple[float, float]:
    walls, cpus = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return float(np.median(walls)), float(np.median(cpus))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    root = SHARED / "vifb"
    ir, vi, fused = (
        load_image(p)
        for p in (root / "input/IR/labMan.jpg", root / "input/VI/labMan.jpg", root / "fused/labMan_ADF.jpg")
    )
    assert fused.shape[:2] == (480, 640), fused.shape
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, numpy {np.__version__}"
    )
    gray = [mmif.to_gray_levels(x) for x in (ir, vi, fused)]
    print(f"{'metric':8s} {'wall s':>8s} {'cpu s':>8s}")
    for key, fn in mmif._METRICS.items():
        wall, cpu = _time(lambda fn=fn: fn(*gray), args.repeats)
        print(f"{key:8s} {wall:8.4f} {cpu:8.4f}")
    wall, cpu = _time(lambda: compute_metrics(ir, vi, fused), args.repeats)
    print(f"{'ALL':8s} {wall:8.4f} {cpu:8.4f}   (compute_metrics, color inputs, goal <= 1 s)")


if __name__ == "__main__":
    main()
