"""The selective-scan part of the GPU check (:mod:`bench.gpu_check` runs it and prints the table).

1. equivalence: every CUDA backend that can run (``triton``, ``chunked``, ``mamba`` when mamba-ssm's kernel
   imports) in float32 against the float64 ``reference`` on the CPU: output, last state and every gradient,
   as max |err| / max |reference|;
2. timing (CUDA events, median after a warm-up): fwd and fwd+bwd with peak memory, at an S4Fusion-sized
   480x640 level-0 scan (4 directions x 72 channels, IR and VIS tokens interleaved: L = 2*160*216, N = 12).

Each function returns table rows ``(check, backend, result, goal, verdict)``.
"""
from __future__ import annotations

import statistics

import torch

from fusion.ops.scan_mamba import mamba_import_error
from fusion.ops.selective_scan import selective_scan_fn, triton_import_error

Row = tuple[str, str, str, str, str]
DEVICE = "cuda"
EQUIVALENCE_SHAPES = ((2, 64, 1025, 16, 1), (2, 96, 777, 12, 4))  # (batch, D, L, N, G)
LEVEL0_480x640 = (1, 288, 2 * 160 * 216, 12, 4)
RELATIVE_TOLERANCE = 1e-4  # float32 vs float64, as the CPU tests


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
    t = dict(u=torch.randn(batch, dim, length, generator=gen),
             delta=torch.randn(batch, dim, length, generator=gen) * 0.5,
             A=-torch.rand(dim, d_state, generator=gen) * 4 - 0.1,
             B=torch.randn(batch, groups, d_state, length, generator=gen),
             C=torch.randn(batch, groups, d_state, length, generator=gen),
             D=torch.randn(dim, generator=gen),
             z=torch.randn(batch, dim, length, generator=gen) if with_z else None,
             delta_bias=torch.randn(dim, generator=gen) * 0.1)
    return {k: v.to(device, dtype) if v is not None else None for k, v in t.items()}


def forward_backward(inputs, backend):
    """out, last_state and the gradients of a loss on out (mamba-ssm ignores the last state's gradient)."""
    leaves = {k: v.detach().clone().requires_grad_() for k, v in inputs.items() if v is not None}
    out, last = selective_scan_fn(**{**inputs, **leaves}, delta_softplus=True, return_last_state=True,
                                  backend=backend)
    weight = torch.linspace(-1, 1, out.numel(), device=out.device, dtype=out.dtype).view_as(out)
    grads = torch.autograd.grad((out * weight).sum(), list(leaves.values()))
    return {"out": out.detach(), "last_state": last.detach(), **{f"d{k}": g for k, g in zip(leaves, grads)}}


def check_equivalence(backends: list[str]) -> list[Row]:
    rows = []
    for shape in EQUIVALENCE_SHAPES:
        cuda_inputs = make_inputs(*shape, device=DEVICE)
        reference = forward_backward({k: v.double().cpu() if v is not None else None
                                      for k, v in cuda_inputs.items()}, "reference")
        for backend in backends:
            result = forward_backward(cuda_inputs, backend)
            errors = {key: ((result[key].double().cpu() - ref).abs().max() / ref.abs().max().clamp_min(1e-30)).item()
                      for key, ref in reference.items()}
            worst = max(errors, key=errors.get)
            text = (f"out {errors['out']:.1e}, last {errors['last_state']:.1e}, worst grad {worst} "
                    f"{errors[worst]:.1e}")
            verdict = "ok" if max(errors.values()) <= RELATIVE_TOLERANCE else "FAIL"
            rows.append((f"scan vs reference, (b, D, L, N, G) = {shape}", backend, text,
                         f"rel err <= {RELATIVE_TOLERANCE:g}", verdict))
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


def check_timing(backends: list[str]) -> list[Row]:
    inputs = make_inputs(*LEVEL0_480x640, device=DEVICE, with_z=False)
    problem = f"scan 480x640 level 0, (b, D, L, N, G) = {LEVEL0_480x640}"
    timings, rows = {}, []
    for backend in backends:
        def fwd():
            with torch.no_grad():
                selective_scan_fn(**inputs, delta_softplus=True, backend=backend)

        repeats = 3 if backend == "chunked" else 10
        torch.cuda.reset_peak_memory_stats()
        try:
            timings[backend] = (cuda_time(fwd, repeats),
                                cuda_time(lambda: forward_backward(inputs, backend), repeats),
                                torch.cuda.max_memory_allocated() / 2**20)
        except Exception as error:  # e.g. out of memory: keep the other backends' rows
            torch.cuda.empty_cache()
            rows.append((problem, backend, f"raised {type(error).__name__}: {error}"[:300], "", "FAIL"))
    for backend, (fwd_ms, fb_ms, peak) in timings.items():
        goal, verdict = "", "-"
        if backend == "triton" and "chunked" in timings:
            speedup = timings["chunked"][1] / fb_ms
            goal, verdict = f">= 10x chunked fwd+bwd (is {speedup:.1f}x)", "ok" if speedup >= 10 else "MISSED"
            if "mamba" in timings:
                ratio = fb_ms / timings["mamba"][1]
                goal += f"; <= 2x mamba (is {ratio:.2f}x)"
                verdict = "ok" if speedup >= 10 and ratio <= 2 else "MISSED"
        rows.append((problem, backend, f"fwd {fwd_ms:.2f} ms, fwd+bwd {fb_ms:.2f} ms, peak {peak:.0f} MiB", goal,
                     verdict))
    return rows
