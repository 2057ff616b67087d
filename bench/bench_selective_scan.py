"""Selective-scan CPU benchmark: the numba ``cpu`` backend against the pure-torch scans.

Problem (issue 2): B=2, D=384, L=20000, N=16, float32, delta_softplus with delta_bias and D skip, 2 CPU
threads. Every (backend, pass) runs in its own subprocess so its peak RSS (``ru_maxrss``) is its own; the
table shows the process peak and the part above the process's RSS just before the measured call (imports and
inputs excluded). Times are the best of ``--repeats`` runs (``--baseline-repeats`` for the slow pure-torch
scans) after one warm-up on a short sequence (which also loads or compiles the numba kernels).

    python -m bench.bench_selective_scan                     # full problem, prints a Markdown table
    python -m bench.bench_selective_scan --length 2000 --backends cpu chunked
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import time

THREADS = 2
PASSES = ("fwd", "fwd+bwd")
PURE_TORCH = ("chunked", "reference")


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def worker(backend: str, mode: str, batch: int, dim: int, length: int, d_state: int, repeats: int) -> dict:
    import torch

    from fusion.ops.selective_scan import selective_scan_fn

    torch.set_num_threads(THREADS)
    gen = torch.Generator().manual_seed(0)
    inputs = dict(
        u=torch.randn(batch, dim, length, generator=gen),
        delta=torch.randn(batch, dim, length, generator=gen) * 0.5,
        A=-torch.rand(dim, d_state, generator=gen) * 4 - 0.1,
        B=torch.randn(batch, 1, d_state, length, generator=gen),
        C=torch.randn(batch, 1, d_state, length, generator=gen),
        D=torch.randn(dim, generator=gen),
        delta_bias=torch.randn(dim, generator=gen) * 0.1,
    )
    backward = mode == "fwd+bwd"
    for t in inputs.values():
        t.requires_grad_(backward)

    def run(tensors: dict) -> None:
        with torch.set_grad_enabled(backward):
            out = selective_scan_fn(**tensors, delta_softplus=True, backend=backend)
            if backward:
                out.backward(torch.ones_like(out))

    warm = {
        k: (v[..., :130].contiguous() if v.dim() == 3 or k in "BC" else v).detach().requires_grad_(backward)
        for k, v in inputs.items()
    }
    run(warm)
    rss_before = _rss_mib()
    times = []
    for _ in range(repeats):
        for t in inputs.values():
            t.grad = None
        start = time.perf_counter()
        run(inputs)
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return dict(backend=backend, mode=mode, seconds=min(times), peak_mib=peak, extra_mib=peak - rss_before)


def measure(backend: str, mode: str, args: argparse.Namespace) -> dict:
    env = dict(
        os.environ, NUMBA_NUM_THREADS=str(THREADS), OMP_NUM_THREADS=str(THREADS), MKL_NUM_THREADS=str(THREADS)
    )
    cmd = [
        sys.executable,
        "-m",
        "bench.bench_selective_scan",
        "--worker",
        backend,
        mode,
        "--length",
        str(args.length),
        "--repeats",
        str(args.repeats if backend == "cpu" else args.baseline_repeats),
    ]
    try:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout, check=True)
    except subprocess.TimeoutExpired:
        return dict(backend=backend, mode=mode, seconds=None, note=f"> {args.timeout} s (timed out)")
    except subprocess.CalledProcessError as error:
        raise RuntimeError(f"{backend} {mode} failed:\n{error.stderr}") from error
    return json.loads(done.stdout.strip().splitlines()[-1])


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(
            line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")
        )
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or "unknown CPU"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--length", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of the cpu backend")
    parser.add_argument("--baseline-repeats", type=int, default=1, help="timed runs of each pure-torch scan")
    parser.add_argument("--backends", nargs="+", default=["cpu", *PURE_TORCH])
    parser.add_argument("--timeout", type=float, default=900, help="seconds per measurement")
    parser.add_argument("--worker", nargs=2, metavar=("BACKEND", "PASS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    batch, dim, d_state = 2, 384, 16
    if args.worker:
        print(json.dumps(worker(*args.worker, batch, dim, args.length, d_state, args.repeats)))
        return 0

    results = {}
    for backend in args.backends:
        for mode in PASSES:
            results[backend, mode] = measure(backend, mode, args)
            print(f"# {backend} {mode}: {results[backend, mode]}", file=sys.stderr, flush=True)

    print(
        f"Selective scan, B={batch} D={dim} L={args.length} N={d_state}, float32, {THREADS} threads; "
        f"{cpu_model()}; {datetime.date.today().isoformat()}\n"
    )
    print("| backend | pass | time (s) | peak RSS (MiB) | above pre-call RSS (MiB) | cpu speed-up |")
    print("|---|---|---|---|---|---|")
    for (backend, mode), r in results.items():
        cpu = results.get(("cpu", mode), {}).get("seconds")
        if r["seconds"] is None:
            print(f"| {backend} | {mode} | {r['note']} | - | - | - |")
            continue
        speedup = f"{r['seconds'] / cpu:.1f}x" if cpu and backend != "cpu" else "-"
        print(
            f"| {backend} | {mode} | {r['seconds']:.2f} | {r['peak_mib']:.0f} | {r['extra_mib']:.0f} | {speedup} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
