"""The Triton selective scan on paper: the old sequential design vs the L-parallel one, at S4Fusion's real
scan shapes (a 640x480 fuse, forward; a training step at the paper's crop 229, batch 16, forward+backward).

    python -m bench.scan_on_paper

Per scan shape: programs launched, dependent steps per program (the critical path), bytes moved, and the
time these imply on an H100 / H200. The times are ESTIMATES from the assumptions below, not measurements:
no GPU has run these kernels yet (``python -m bench.gpu_check`` measures them when one is lent).

Estimate per scan = max(bandwidth: bytes / HBM bandwidth, latency: waves x dependent steps x step latency,
compute: instructions / FP32 throughput); a fuse or step is the sum over its scans (one launch each).
"""

from __future__ import annotations

import dataclasses
import math

from bench.gpu_check_scan import FUSE_SIZE, TRAIN_BATCH, TRAIN_CROP, ScanShape, s4fusion_scan_shapes
from fusion.ops import scan_triton

# --- assumptions (labelled; replace with measurements once a GPU run exists) ---
OLD_STEP_US = (
    0.3  # one dependent time step of the old kernel: strided loads + exp + N-wide update ("a few 100 ns")
)
NEW_TILE_US = (
    1.0  # one tile of the new kernel: a global-load round trip (~0.6 us) + 6 scan levels + reductions
)
OPS_PER_STATE_ELEMENT = {"fwd": 30, "bwd": 70}  # fp32 instructions per (channel, padded state, step)
OLD_CHECKPOINT_EVERY, OLD_MAX_BLOCK_D, OLD_MIN_BLOCK_D, OLD_TARGET_PROGRAMS = (
    64,
    16,
    4,
    1024,
)  # the old launch rule
REGISTERS_PER_SM = 65536
RESIDENT_PROGRAMS_OLD = 16  # old programs were 1-4 warps: many fit on an SM


@dataclasses.dataclass(frozen=True)
class Gpu:
    name: str
    hbm_tb_s: float
    sms: int
    fp32_tflops: float


GPUS = (Gpu("H100 SXM", 3.35, 132, 67.0), Gpu("H200", 4.8, 132, 67.0))
# registers per thread of the new kernels' configs with every optional input, from the compile test
# (tests/fusion/ops/test_scan_triton_compile.py -s, 2026-12-03, sm_90):
# (kernel, N_PAD) -> (registers, warps); forward BLOCK_D 1, backward blocks of 1 channel
NEW_REGISTERS = {("fwd", 16): (128, 4), ("fwd", 32): (96, 4), ("bwd", 16): (194, 8), ("bwd", 32): (174, 8)}


def _old_programs(batch: int, dim: int, groups: int) -> int:
    block_d = min(
        OLD_MAX_BLOCK_D,
        max(OLD_MIN_BLOCK_D, 2 ** math.ceil(math.log2(-(-batch * dim // OLD_TARGET_PROGRAMS)))),
    )
    return batch * groups * -(-(dim // groups) // block_d)


def scan_bytes(shape: ScanShape, kernel: str, input_bytes: int = 4) -> int:
    """DRAM bytes of one forward or backward scan kernel, each tensor read or written once (B/C shared by a
    group's programs come from L2); the backward includes torch's sum of the dB/dC partials."""
    batch, dim, length, d_state, groups = shape
    rows, bc = batch * dim * length, batch * groups * d_state * length
    n_pad = 2 ** math.ceil(math.log2(d_state))
    checkpoints = batch * dim * -(-length // scan_triton.tile_length(n_pad)) * d_state * 4
    if kernel == "fwd":  # u, delta, B, C in; out, checkpoints out
        return 3 * rows * input_bytes + 2 * bc * input_bytes + checkpoints
    block_d, sub_blocks = scan_triton.backward_blocks(batch, dim, groups, n_pad)
    blocks = -(-(dim // groups) // (block_d * sub_blocks))
    partials = (
        2 * blocks * bc * 4 * 2
    )  # dB and dC partial sums, written by the kernel and read by torch's sum
    # u, delta, dout, B, C, checkpoints in; du, ddelta, partials, dB, dC out
    return 3 * rows * input_bytes + 2 * bc * input_bytes + checkpoints + 2 * rows * 4 + partials + 2 * bc * 4


@dataclasses.dataclass(frozen=True)
class Design:
    programs: int
    dependent_steps: int  # per program, the critical path
    step_us: float
    resident_per_sm: int

    def latency_ms(self, gpu: Gpu) -> float:
        waves = -(-self.programs // (gpu.sms * self.resident_per_sm))
        return waves * self.dependent_steps * self.step_us / 1e3


def old_design(shape: ScanShape, kernel: str) -> Design:
    """The replaced kernel: one time step per dependent step; its backward reran and then reversed each chunk."""
    batch, dim, length, _, groups = shape
    return Design(
        _old_programs(batch, dim, groups),
        length * (1 if kernel == "fwd" else 2),
        OLD_STEP_US,
        RESIDENT_PROGRAMS_OLD,
    )


def new_design(shape: ScanShape, kernel: str) -> Design:
    batch, dim, length, d_state, groups = shape
    n_pad = 2 ** math.ceil(math.log2(d_state))
    n_tiles = -(-length // scan_triton.tile_length(n_pad))
    levels = int(math.log2(scan_triton.tile_length(n_pad)))
    registers, warps = NEW_REGISTERS[(kernel, n_pad)]
    block_d, sub_blocks = (
        (1, 1) if kernel == "fwd" else scan_triton.backward_blocks(batch, dim, groups, n_pad)
    )
    # forward: one scan + the carry per tile; backward: the forward rerun and the adjoint scan per tile and block
    steps = n_tiles * (levels + 1) * (1 if kernel == "fwd" else 2 * sub_blocks)
    return Design(
        batch * groups * -(-(dim // groups) // (block_d * sub_blocks)),
        steps,
        NEW_TILE_US / (levels + 1),
        max(1, REGISTERS_PER_SM // (registers * 32 * warps)),
    )


def estimate_ms(shape: ScanShape, kernel: str, design: Design, gpu: Gpu) -> float:
    batch, dim, length, d_state, _ = shape
    n_pad = 2 ** math.ceil(math.log2(d_state))
    ops = batch * dim * length * n_pad * OPS_PER_STATE_ELEMENT[kernel]
    return max(
        scan_bytes(shape, kernel) / (gpu.hbm_tb_s * 1e12) * 1e3,
        design.latency_ms(gpu),
        ops / (gpu.fp32_tflops * 1e12) * 1e3,
    )


def table(shapes: dict[ScanShape, int], kernels: tuple[str, ...]) -> list[str]:
    """One row per distinct scan (its kernels summed: forward, or forward then backward), then the total."""
    names = " | ".join(f"{gpu.name} ms old / new" for gpu in GPUS)
    lines = [
        f"| scan (b, D, L, N, G) | x | programs old / new | dependent steps per program old / new | MB moved "
        f"| {names} |",
        "|---|---|---|---|---|" + "---|" * len(GPUS),
    ]
    totals = {gpu.name: [0.0, 0.0] for gpu in GPUS}
    for shape, count in shapes.items():
        olds, news = [old_design(shape, k) for k in kernels], [new_design(shape, k) for k in kernels]
        cells = []
        for gpu in GPUS:
            old = sum(estimate_ms(shape, k, d, gpu) for k, d in zip(kernels, olds))
            new = sum(estimate_ms(shape, k, d, gpu) for k, d in zip(kernels, news))
            totals[gpu.name][0] += count * old
            totals[gpu.name][1] += count * new
            cells.append(f"{old:.2f} / {new:.3f}")
        programs = " + ".join(f"{o.programs} / {n.programs}" for o, n in zip(olds, news))
        steps = " + ".join(f"{o.dependent_steps} / {n.dependent_steps}" for o, n in zip(olds, news))
        megabytes = sum(scan_bytes(shape, k) for k in kernels) / 1e6
        lines.append(
            f"| {shape} | {count} | {programs} | {steps} | {megabytes:.0f} | " + " | ".join(cells) + " |"
        )
    lines.append(
        "| **all scans** | | | | | "
        + " | ".join(f"**{old:.1f} / {new:.2f}**" for old, new in totals.values())
        + " |"
    )
    return lines


def main() -> None:
    height, width = FUSE_SIZE
    print(f"## Fuse {width}x{height}, batch 1, forward (estimates)\n")
    print("\n".join(table(s4fusion_scan_shapes(height, width), ("fwd",))))
    print(f"\n## Training step, crop {TRAIN_CROP}, batch {TRAIN_BATCH}, forward+backward (estimates)\n")
    print("\n".join(table(s4fusion_scan_shapes(TRAIN_CROP, TRAIN_CROP, TRAIN_BATCH), ("fwd", "bwd"))))


if __name__ == "__main__":
    main()
