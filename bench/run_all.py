"""``make bench``: run the CPU benchmarks one after another (results go to docs/benchmarks.md by hand).

    python -m bench.run_all [--quick]

Runs ``bench.bench_model``, ``bench.bench_metrics`` and ``bench.bench_selective_scan``, each in its
own subprocess with its default arguments (``--quick``: the model and metrics benchmarks with one
repeat). The GPU checks (``bench.gpu_check``) need CUDA and are run separately.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

BENCHMARKS = ("bench.bench_model", "bench.bench_metrics", "bench.bench_selective_scan")
QUICK_ARGS = {"bench.bench_model": ["--repeats", "1"], "bench.bench_metrics": ["--repeats", "1"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one repeat where a benchmark takes --repeats")
    args = parser.parse_args(argv)
    failed = []
    for module in BENCHMARKS:
        print(f"== {module}", flush=True)
        extra = QUICK_ARGS.get(module, []) if args.quick else []
        if subprocess.run([sys.executable, "-m", module, *extra]).returncode != 0:
            failed.append(module)
    if failed:
        print(f"failed: {failed}", file=sys.stderr)
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
