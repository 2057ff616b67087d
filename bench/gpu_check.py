"""Every GPU check in one run, for a session lent a CUDA machine (prints results only):

    python -m bench.gpu_check [--reference-dir PATH]

1. selective-scan backends on CUDA vs the float64 reference, and their timings (bench.gpu_check_scan);
2. S4Fusion on CUDA in float32 vs the official test vectors (when --reference-dir holds them; the
   shared data does not travel to a device machine by itself, so copy reference/*.pt next to the repo);
3. whole-model latency of a 480x640 pair (fp32 and bf16 autocast; goal <= 15 ms on an H100).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from bench import gpu_check_scan
from fusion import S4Fusion
from fusion.inference import fuse


def check_reference(reference_dir: Path) -> None:
    print("## S4Fusion on CUDA vs official vectors (float32)\n")
    for path in sorted(reference_dir.glob("s4fusion_case*.pt")):
        case = torch.load(path, weights_only=True)
        model = S4Fusion.from_official_state_dict(case["state_dict"]).cuda().eval()
        with torch.no_grad():
            out = model(case["ir"].float().cuda(), case["vi"].float().cuda())
        err = (out.double().cpu() - case["fused"]).abs().max().item()
        print(f"- {path.name}: max abs error {err:.2e} (CPU float32 tolerance 5e-5)")
    print()


def time_model() -> None:
    print("## Latency, one 480x640 pair (ms, median of 20 after a warm-up run)\n")
    model = S4Fusion().cuda().eval()
    ir = torch.rand(1, 1, 480, 640, device="cuda")
    for label, dtype in (("fp32", None), ("bf16 autocast", torch.bfloat16)):
        def run():
            with torch.inference_mode(), torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
                fuse(model, ir, ir)
        ms = gpu_check_scan.cuda_time(run, repeats=20)
        print(f"- {label}: {ms:.2f} ms (peak {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference-dir", type=Path, default=Path("../shared/data/reference"))
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device; nothing to check")
        return 0
    gpu_check_scan.main()
    if args.reference_dir.is_dir():
        check_reference(args.reference_dir)
    else:
        print(f"(no reference vectors at {args.reference_dir}; skipping the model equivalence check)\n")
    time_model()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
