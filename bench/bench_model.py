"""Whole-model benchmark: fuse one 480x640 pair on CPU (latency, peak memory) + Table VII counts.

    python -m bench.bench_model [--threads 2] [--repeats 3] [--backend auto]

Each measurement runs in a fresh subprocess so peak RSS (ru_maxrss) belongs to it alone.
Goal on the 2-core development machine: <= 5 s and <= 3 GiB per 480x640 pair.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from datetime import date

from fusion.train.cost import cpu_model

CHILD = r"""
import json, resource, statistics, sys, time, torch
torch.set_num_threads(int(sys.argv[1]))
from fusion import S4Fusion, S4FusionConfig
from fusion.inference import fuse
torch.manual_seed(0)
model = S4Fusion(S4FusionConfig(scan_backend=sys.argv[3])).eval()
ir, vi = torch.rand(1, 1, 480, 640), torch.rand(1, 1, 480, 640)
times = []
with torch.inference_mode():
    fuse(model, ir, vi)  # warm-up (numba compile / cache load)
    for _ in range(int(sys.argv[2])):
        t = time.perf_counter(); fuse(model, ir, vi); times.append(time.perf_counter() - t)
print(json.dumps({"median_s": statistics.median(times), "min_s": min(times),
                  "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backend", default="auto")
    args = parser.parse_args()
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(args.threads), str(args.repeats), args.backend],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "NUMBA_NUM_THREADS": str(args.threads), "OMP_WAIT_POLICY": "PASSIVE"},
    )
    timing = json.loads(out.stdout.strip().splitlines()[-1])

    from fusion import S4Fusion
    from fusion.flops import count_model
    from fusion.paper import table7_efficiency

    paper = table7_efficiency()["S4Fusion"]

    cost = count_model(S4Fusion())
    official = count_model(S4Fusion(), official_forward=True)
    print(
        f"S4Fusion, 480x640 (padded to {cost.padded_height}x{cost.padded_width}), {cpu_model()}, "
        f"{args.threads} threads, backend {args.backend}, {date.today()}\n"
    )
    print("| quantity | ours | paper (Table VII) |\n|---|---|---|")
    print(f"| latency per pair (median of {args.repeats}) | {timing['median_s']:.2f} s | - |")
    print(f"| peak RSS | {timing['peak_rss_gib']:.2f} GiB | - |")
    print(
        f"| parameters (used / total) | {cost.params_used / 1e6:.3f}M / {cost.params_total / 1e6:.3f}M | "
        f"{paper.params_m}M |"
    )
    print(
        f"| GFLOPs, fvcore convention (dense MACs + scan) | {cost.flops_paper_convention / 1e9:.2f} | "
        f"{paper.gflops} |"
    )
    print(
        f"| GFLOPs, same, with the discarded level-0 fusion (official forward) | "
        f"{official.flops_paper_convention / 1e9:.2f} | |"
    )
    print(f"| GFLOPs, 2 per multiply-add | {cost.flops_2mac / 1e9:.2f} | |")
    print(f"| of which selective scans | {cost.scan_flops / 1e9:.2f} | |")


if __name__ == "__main__":
    main()
