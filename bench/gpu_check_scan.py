"""GPU check of the selective scan: CUDA backends against the float64 reference, then timings.

Run on a CUDA machine (prints results only, changes nothing):

    python -m bench.gpu_check_scan

1. equivalence: ``mamba`` (when mamba-ssm's kernel imports) and ``chunked`` in float32 on CUDA against the
   float64 ``reference`` on CPU — output and every gradient, max abs error relative to the reference's scale;
2. timing (CUDA events, median of 10 after warm-up), fwd and fwd+bwd, at the CPU benchmark's problem and at
   an S4Fusion-sized 480x640 level-0 scan (4 directions x 72 channels, IR and VIS tokens interleaved:
   L = 2*160*216, N = 12).
"""
from __future__ import annotations

import statistics

import torch

from fusion.ops.scan_mamba import mamba_available
from fusion.ops.selective_scan import resolve_backend, selective_scan_fn

NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


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
    leaves = {k: v.detach().clone().requires_grad_() for k, v in inputs.items() if v is not None}
    out = selective_scan_fn(**{**inputs, **leaves}, delta_softplus=True, backend=backend)
    weight = torch.linspace(-1, 1, out.numel(), device=out.device, dtype=out.dtype).view_as(out)
    grads = torch.autograd.grad((out * weight).sum(), list(leaves.values()))
    return {"out": out.detach(), **{f"d{k}": g for k, g in zip(leaves, grads)}}


def check_equivalence(backends):
    print("## Equivalence vs float64 reference (max |err| / max |ref|)\n")
    print("| backend | shape (b, D, L, N, G) | " + " | ".join(("out", *(f"d{n}" for n in NAMES))) + " |")
    print("|---|---|" + "---|" * (len(NAMES) + 1))
    for shape in ((2, 64, 1025, 16, 1), (2, 96, 777, 12, 4)):
        cuda_inputs = make_inputs(*shape, device="cuda")
        reference = forward_backward({k: v.double().cpu() if v is not None else None
                                      for k, v in cuda_inputs.items()}, "reference")
        for backend in backends:
            result = forward_backward(cuda_inputs, backend)
            errors = []
            for key, ref in reference.items():
                err = (result[key].double().cpu() - ref).abs().max() / ref.abs().max().clamp_min(1e-30)
                errors.append(f"{err.item():.1e}")
            print(f"| {backend} | {shape} | " + " | ".join(errors) + " |")
    print()


def cuda_time(fn, repeats=10):
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


def check_timing(backends):
    print("## Timing (ms, median of 10)\n")
    print("| backend | problem | fwd | fwd+bwd | peak GPU memory fwd+bwd (MiB) |")
    print("|---|---|---|---|---|")
    problems = {"bench B=2 D=384 L=20000 N=16": (2, 384, 20000, 16, 1),
                "S4Fusion 480x640 level 0: B=1 D=288 L=69120 N=12": (1, 288, 69120, 12, 4)}
    for name, shape in problems.items():
        inputs = make_inputs(*shape, device="cuda", with_z=False)
        for backend in backends:
            def fwd():
                with torch.no_grad():
                    selective_scan_fn(**inputs, delta_softplus=True, backend=backend)

            def fwd_bwd():
                forward_backward(inputs, backend)

            torch.cuda.reset_peak_memory_stats()
            fb = cuda_time(fwd_bwd, repeats=3 if backend == "chunked" else 10)
            peak = torch.cuda.max_memory_allocated() / 2**20
            print(f"| {backend} | {name} | {cuda_time(fwd):.2f} | {fb:.2f} | {peak:.0f} |")
    print()


def main() -> int:
    if not torch.cuda.is_available():
        print("gpu_check_scan: no CUDA device; nothing to check")
        return 0
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}, "
          f"mamba-ssm kernel importable: {mamba_available()}, auto -> {resolve_backend('cuda')}\n")
    backends = ["mamba", "chunked"] if mamba_available() else ["chunked"]
    if not mamba_available():
        print("mamba-ssm's CUDA kernel is not importable (pip install 's4fuse[cuda]'); checking chunked only\n")
    check_equivalence(backends)
    check_timing(backends)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
