"""Every GPU check in one prepared run (a few minutes on an H100/H200-class GPU), printed as one table:

    python -m bench.gpu_check [--vectors DIR]

1. selective-scan backends on CUDA (triton, chunked, mamba when its kernel imports) vs the float64 reference:
   output, last state, every gradient (bench.gpu_check_scan), to the CPU tests' tolerance;
2. S4Fusion on CUDA in float32 (TF32 off) vs the official test vectors, per backend, to the CPU tests'
   tolerance (both from fusion.ops.tolerances);
3. scan time per backend at S4Fusion's real scan shapes (every distinct scan of a 640x480 fuse, forward; of
   a training step at crop 229, batch 16, forward and forward+backward), and the whole 640x480 fuse in
   fp32 and bf16 autocast (goal <= 15 ms): one speed table with triton's ratios to chunked and to mamba;
4. training step time at the paper's crop 229, batch 16, bf16 autocast (S4FusionLoss with a random-weight
   ResNet50, which costs what the ImageNet one does), per backend.

The official vectors do not travel to a device machine by themselves. Before the run, copy them into the
git-ignored ``.gpu_vectors/`` and pass that folder along (e.g. in the run tool's ``carry``)::

    mkdir -p .gpu_vectors && cp ../shared/data/reference/s4fusion_case*.pt .gpu_vectors/

Planned to finish in under 5 minutes on an H200 (never run yet: no GPU has been lent to this project).
A check that raises becomes a FAIL row (the others still run); the exit status is 1 when any row is FAIL,
2 without CUDA.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

from bench import gpu_check_scan
from bench.gpu_check_scan import DEVICE, FUSE_SIZE, Row, cuda_time
from fusion import S4Fusion
from fusion.inference import fuse
from fusion.losses import LossConfig, PerceptionConfig, S4FusionLoss
from fusion.ops.tolerances import MODEL_FLOAT32_MAX_ABS

VECTORS_DIR = Path(".gpu_vectors")
VECTOR_TOLERANCE = MODEL_FLOAT32_MAX_ABS  # the CPU test's bar (tests/fusion/test_model_reference.py)
FUSE_GOAL_MS = 15.0


def use_backend(model: torch.nn.Module, backend: str) -> torch.nn.Module:
    for module in model.modules():
        if hasattr(module, "scan_backend"):
            module.scan_backend = backend
    return model


def check_vectors(backends: list[str], vectors_dir: Path) -> list[Row]:
    paths = sorted(vectors_dir.glob("s4fusion_case*.pt"))
    if not paths:
        return [
            (
                "model vs official vectors",
                "-",
                f"no s4fusion_case*.pt in {vectors_dir}/ (see this script's docstring to copy them)",
                f"max abs err <= {VECTOR_TOLERANCE:g}",
                "FAIL",
            )
        ]
    rows = []
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = False, False
    try:
        for path in paths:
            case = torch.load(path, weights_only=True)
            model = S4Fusion.from_official_state_dict(case["state_dict"]).to(DEVICE).eval()
            for backend in backends:
                with torch.no_grad():
                    out = use_backend(model, backend)(
                        case["ir"].float().to(DEVICE), case["vi"].float().to(DEVICE)
                    )
                err = (out.double().cpu() - case["fused"]).abs().max().item()
                rows.append(
                    (
                        f"model vs official vectors ({path.name}, fp32)",
                        backend,
                        f"max abs err {err:.1e}",
                        f"<= {VECTOR_TOLERANCE:g}",
                        "ok" if err <= VECTOR_TOLERANCE else "FAIL",
                    )
                )
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    return rows


def time_fuse(backends: list[str]) -> dict[tuple[str, str], dict[str, float]]:
    """Milliseconds of one whole 640x480 fuse per backend, fp32 and bf16 autocast (speed-table cells)."""
    height, width = FUSE_SIZE
    gen = torch.Generator().manual_seed(0)
    ir, vi = (torch.rand(1, 1, height, width, generator=gen).to(DEVICE) for _ in range(2))
    model = S4Fusion().to(DEVICE).eval()
    timings: dict[tuple[str, str], dict[str, float]] = {}
    for backend in backends:
        use_backend(model, backend)
        for label, dtype in (("fp32", None), ("bf16 autocast", torch.bfloat16)):

            def run(dtype=dtype):
                with torch.inference_mode(), torch.autocast(DEVICE, dtype=dtype, enabled=dtype is not None):
                    fuse(model, ir, vi)

            problem = f"whole fuse {width}x{height} (goal <= {FUSE_GOAL_MS:g} ms)"
            timings.setdefault((problem, label), {})[backend] = cuda_time(
                run, repeats=3 if backend == "chunked" else 20
            )
    return timings


def fuse_goal_rows(timings: dict[tuple[str, str], dict[str, float]]) -> list[Row]:
    """Verdict rows for the latency goal, from the whole-fuse cells of the speed table."""
    return [
        (
            f"{problem}, {stage}",
            backend,
            f"{ms:.2f} ms",
            f"<= {FUSE_GOAL_MS:g} ms",
            "ok" if ms <= FUSE_GOAL_MS else "MISSED",
        )
        for (problem, stage), row in timings.items()
        if problem.startswith("whole fuse")
        for backend, ms in row.items()
    ]


def check_training_step(backends: list[str], crop: int = 229, batch: int = 16) -> list[Row]:
    rows = []
    gen = torch.Generator().manual_seed(0)
    ir, vi = (torch.rand(batch, 1, crop, crop, generator=gen).to(DEVICE) for _ in range(2))
    loss_fn = S4FusionLoss(LossConfig(perception=PerceptionConfig(weights="random"))).to(DEVICE)
    for backend in backends:
        model = use_backend(S4Fusion().to(DEVICE).train(), backend)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step(model=model, optimizer=optimizer):
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(DEVICE, dtype=torch.bfloat16):
                loss, _ = loss_fn(ir, vi, model(ir, vi))
            loss.backward()
            optimizer.step()

        torch.cuda.reset_peak_memory_stats()
        ms = cuda_time(step, repeats=2 if backend == "chunked" else 5)
        peak = torch.cuda.max_memory_allocated() / 2**30
        rows.append(
            (
                f"train step, crop {crop}, batch {batch}, bf16 autocast",
                backend,
                f"{ms:.0f} ms, peak {peak:.1f} GiB",
                "",
                "-",
            )
        )
    return rows


def run_check(name: str, check: Callable[[], list[Row]]) -> list[Row]:
    start = time.perf_counter()
    try:
        rows = check()
    except Exception as error:  # one failing check (e.g. out of memory) must not lose the others' results
        traceback.print_exc(file=sys.stderr)
        torch.cuda.empty_cache()
        rows = [(name, "-", f"raised {type(error).__name__}: {error}"[:300], "", "FAIL")]
    print(f"({name}: {time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
    return rows


def print_table(rows: list[Row]) -> None:
    print("| check | backend | result | goal | verdict |")
    print("|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(cell.replace("|", "/") for cell in row) + " |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=Path, default=VECTORS_DIR, help="folder with s4fusion_case*.pt")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print(
            f"gpu_check: needs CUDA, and torch {torch.__version__} sees no CUDA device here; run it on a GPU "
            "machine",
            file=sys.stderr,
        )
        return 2
    backends, notes = gpu_check_scan.cuda_backends()
    print(
        f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}, backends {backends}"
        + "".join(f"; {note}" for note in notes),
        flush=True,
    )
    rows: list[Row] = []
    rows += run_check("scan equivalence", lambda: gpu_check_scan.check_equivalence(backends))
    rows += run_check("model vs official vectors", lambda: check_vectors(backends, args.vectors))
    timings: dict[tuple[str, str], dict[str, float]] = {}  # the speed table's cells

    def scan_timing() -> list[Row]:
        timings.update(gpu_check_scan.time_scans(backends))
        return []

    def fuse_timing() -> list[Row]:
        fuse_timings = time_fuse(backends)
        timings.update(fuse_timings)
        return fuse_goal_rows(fuse_timings)

    rows += run_check("scan timing", scan_timing)
    rows += run_check("640x480 fuse", fuse_timing)
    for backend in backends:  # per backend: the chunked scan's autograd memory may not fit at batch 16
        rows += run_check(
            f"training step ({backend})", lambda backend=backend: check_training_step([backend])
        )
    print_table(rows)
    print()
    print("\n".join(gpu_check_scan.speed_table(timings)))
    return 1 if any(row[4] == "FAIL" for row in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
