"""The selective-scan part of the GPU check (:mod:`bench.gpu_check` runs it and prints the table).

1. equivalence: every CUDA backend that can run (``triton``, ``chunked``, ``mamba`` when mamba-ssm's kernel
   imports) in float32 against the float64 ``reference`` on the CPU: output, last state and every gradient,
   as max |err| / max |reference|;
2. timing (CUDA events, median after a warm-up) at S4Fusion's real scan shapes, recorded from the model
   itself (:func:`s4fusion_scan_shapes`, a forward on the ``meta`` device: no memory, no compute): every
   distinct scan of a 640x480 fuse (batch 1) forward, and of a training step (the paper's crop 229,
   batch 16) forward and forward+backward. :func:`speed_table` prints one table with the ratios of
   ``triton`` to ``chunked`` and to ``mamba``.

The equivalence check returns table rows ``(check, backend, result, goal, verdict)``.
"""

from __future__ import annotations

import collections
import statistics
from unittest import mock

import torch

import fusion.modules.ss2d as ss2d
from fusion import S4Fusion
from fusion.ops.scan_mamba import mamba_import_error
from fusion.ops.selective_scan import selective_scan_fn, triton_import_error
from fusion.ops.tolerances import SCAN_RELATIVE_TOLERANCE, relative_error

Row = tuple[str, str, str, str, str]
ScanShape = tuple[int, int, int, int, int]  # (batch, D, L, N, G)
DEVICE = "cuda"
EQUIVALENCE_SHAPES = ((2, 64, 1025, 16, 1), (2, 96, 777, 12, 4))  # (batch, D, L, N, G)
RELATIVE_TOLERANCE = SCAN_RELATIVE_TOLERANCE[torch.float32]  # the CPU and CUDA tests' bar
FUSE_SIZE = (480, 640)  # (height, width) of the latency goal
TRAIN_CROP, TRAIN_BATCH = 229, 16  # the paper's training crop and batch


def cuda_backends() -> tuple[list[str], list[str]]:
    """(backends that can run on CUDA here, notes on those that cannot)."""
    backends, notes = ["triton", "chunked"], []
    if (error := triton_import_error()) is not None:
        backends.remove("triton")
        notes.append(f"triton unavailable: {error}")
    if (error := mamba_import_error()) is None:
        backends.append("mamba")
    else:
        notes.append(f"mamba unavailable: {error}")
    return backends, notes


def make_inputs(batch, dim, length, d_state, groups, device, dtype=torch.float32, with_z=True, seed=0):
    gen = torch.Generator().manual_seed(seed)
    t = dict(
        u=torch.randn(batch, dim, length, generator=gen),
        delta=torch.randn(batch, dim, length, generator=gen) * 0.5,
        A=-torch.rand(dim, d_state, generator=gen) * 4 - 0.1,
        B=torch.randn(batch, groups, d_state, length, generator=gen),
        C=torch.randn(batch, groups, d_state, length, generator=gen),
        D=torch.randn(dim, generator=gen),
        z=torch.randn(batch, dim, length, generator=gen) if with_z else None,
        delta_bias=torch.randn(dim, generator=gen) * 0.1,
    )
    return {k: v.to(device, dtype) if v is not None else None for k, v in t.items()}


def forward_backward(inputs, backend):
    """out, last_state and the gradients of a loss on out (mamba-ssm ignores the last state's gradient)."""
    leaves = {k: v.detach().clone().requires_grad_() for k, v in inputs.items() if v is not None}
    out, last = selective_scan_fn(
        **{**inputs, **leaves}, delta_softplus=True, return_last_state=True, backend=backend
    )
    weight = torch.linspace(-1, 1, out.numel(), device=out.device, dtype=out.dtype).view_as(out)
    grads = torch.autograd.grad((out * weight).sum(), list(leaves.values()))
    return {"out": out.detach(), "last_state": last.detach(), **{f"d{k}": g for k, g in zip(leaves, grads)}}


def check_equivalence(backends: list[str]) -> list[Row]:
    rows = []
    for shape in EQUIVALENCE_SHAPES:
        cuda_inputs = make_inputs(*shape, device=DEVICE)
        reference = forward_backward(
            {k: v.double().cpu() if v is not None else None for k, v in cuda_inputs.items()}, "reference"
        )
        for backend in backends:
            result = forward_backward(cuda_inputs, backend)
            errors = {key: relative_error(result[key], ref) for key, ref in reference.items()}
            worst = max(errors, key=errors.get)
            text = (
                f"out {errors['out']:.1e}, last {errors['last_state']:.1e}, worst grad {worst} "
                f"{errors[worst]:.1e}"
            )
            verdict = "ok" if max(errors.values()) <= RELATIVE_TOLERANCE else "FAIL"
            rows.append(
                (
                    f"scan vs reference, (b, D, L, N, G) = {shape}",
                    backend,
                    text,
                    f"rel err <= {RELATIVE_TOLERANCE:g}",
                    verdict,
                )
            )
    return rows


def cuda_time(fn, repeats: int = 10) -> float:
    """Median milliseconds of ``fn`` over ``repeats`` runs after one warm-up run."""
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def s4fusion_scan_shapes(height: int, width: int, batch: int = 1) -> dict[ScanShape, int]:
    """Every selective scan one S4Fusion forward runs on (batch, 1, height, width) inputs (already padded to a
    valid size): {(batch, D, L, N, G): how many times}. Runs the model on the ``meta`` device, so it costs
    no memory and no arithmetic and works on any machine."""
    shapes: collections.Counter = collections.Counter()

    def record(u, delta, A, B, C, D, delta_bias, backend):
        shapes[(u.shape[0], u.shape[1], u.shape[2], A.shape[1], B.shape[1])] += 1
        return torch.empty_like(u)

    model = S4Fusion().to("meta").eval()
    multiple = model.cfg.size_multiple
    size = [-(-(side - 1) // multiple) * multiple + 1 for side in (height, width)]  # as fusion.inference pads
    images = [torch.empty(batch, 1, *size, device="meta") for _ in range(2)]
    with mock.patch.object(ss2d, "selective_scan", record), torch.no_grad():
        model(*images)
    return dict(shapes)


def timing_problems() -> list[tuple[str, ScanShape, bool]]:
    """(label, shape, with backward) for every distinct scan of a 640x480 fuse (forward only) and of a
    training step at the paper's crop and batch (forward and forward+backward)."""
    problems = []
    for shape, count in s4fusion_scan_shapes(*FUSE_SIZE).items():
        problems.append((f"fuse {FUSE_SIZE[1]}x{FUSE_SIZE[0]}, {count}x per image", shape, False))
    for shape, count in s4fusion_scan_shapes(TRAIN_CROP, TRAIN_CROP, TRAIN_BATCH).items():
        problems.append((f"train crop {TRAIN_CROP}, {count}x per step", shape, True))
    return problems


def speed_table(timings: dict[tuple[str, str], dict[str, float]]) -> list[str]:
    """Markdown lines: one row per (problem, pass) with each backend's milliseconds and the ratios of
    triton's time to chunked's and to mamba's (< 1: triton is faster); '-' where a backend did not run."""
    backends = [b for b in ("triton", "chunked", "mamba") if any(b in row for row in timings.values())]
    lines = [
        "| problem | pass | "
        + " | ".join(f"{b} ms" for b in backends)
        + " | triton / chunked | triton / mamba |",
        "|---|---|" + "---|" * (len(backends) + 2),
    ]
    for (problem, stage), row in timings.items():
        cells = [f"{row[b]:.3f}" if b in row else "-" for b in backends]
        ratios = [
            f"{row['triton'] / row[other]:.2f}" if "triton" in row and other in row else "-"
            for other in ("chunked", "mamba")
        ]
        lines.append(f"| {problem} | {stage} | " + " | ".join(cells + ratios) + " |")
    return lines


def time_scans(backends: list[str]) -> dict[tuple[str, str], dict[str, float]]:
    """Milliseconds per (problem, pass) and backend at S4Fusion's real shapes (see :func:`timing_problems`)."""
    timings: dict[tuple[str, str], dict[str, float]] = {}
    for label, shape, with_backward in timing_problems():
        inputs = make_inputs(*shape, device=DEVICE, with_z=False)
        problem = f"{label}: (b, D, L, N, G) = {shape}"
        for backend in backends:

            def fwd(inputs=inputs, backend=backend):
                with torch.no_grad():
                    selective_scan_fn(**inputs, delta_softplus=True, backend=backend)

            repeats = 3 if backend == "chunked" else 10
            try:
                timings.setdefault((problem, "fwd"), {})[backend] = cuda_time(fwd, repeats)
                if with_backward:
                    timings.setdefault((problem, "fwd+bwd"), {})[backend] = cuda_time(
                        lambda inputs=inputs, backend=backend: forward_backward(inputs, backend), repeats
                    )
            except torch.cuda.OutOfMemoryError:  # a missing cell reads '-'; the other backends still run
                torch.cuda.empty_cache()
        del inputs
    return timings
