"""Compile the Triton selective-scan kernels for real GPUs without one, and read registers and spills.

    python -m bench.triton_registers            # every build below (several minutes on 2 cores)
    python -m bench.triton_registers --quick    # the compile test's builds: float32, every optional input

Triton compiles for any CUDA target on a CPU-only machine (``GPUTarget("cuda", 90, 32)``); its bundled
``ptxas -v`` then reports what each kernel needs per thread. Every autotune config of both kernels is built,
for sm_80 and sm_90, at the constexprs S4Fusion's scans launch with (d_state 12 and 18: N_PAD 16 and 32; the
backward's channels per program at inference and training batch sizes), float32 and bfloat16 inputs.
``tests/fusion/ops/test_scan_triton_compile.py`` fails on any spill.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import subprocess
import tempfile
from pathlib import Path

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from fusion.ops import scan_triton

ARCHITECTURES = (80, 90)
S4FUSION_D_STATES = (12, 18)  # VSS blocks, CMSA blocks
# (batch, channels D, groups G) of a backward: batch 1 (the smallest launch) and the paper's training batch 16
BACKWARD_LAUNCHES = ((1, 288, 4), (16, 288, 4), (16, 1152, 4))
S4FUSION_FLAGS = dict(HAS_D=True, HAS_Z=False, HAS_BIAS=True, SOFTPLUS=True)  # how S4Fusion calls the scan
ALL_FLAGS = dict(HAS_D=True, HAS_Z=True, HAS_BIAS=True, SOFTPLUS=True)  # most live tensors


@dataclasses.dataclass(frozen=True)
class KernelBuild:
    kernel: str  # "forward" or "backward"
    arch: int
    n_pad: int
    block_d: int
    num_warps: int

    dtype: str  # triton pointer type of the inputs, e.g. "fp32"
    flags: tuple[tuple[str, bool], ...]

    @property
    def label(self) -> str:
        z = "z" if dict(self.flags)["HAS_Z"] else "no z"
        return (
            f"{self.kernel} sm_{self.arch} N_PAD {self.n_pad} BLOCK_D {self.block_d} warps {self.num_warps} "
            f"{self.dtype} {z}"
        )


@dataclasses.dataclass(frozen=True)
class PtxasReport:
    registers: int
    spill_stores: int
    spill_loads: int
    stack_bytes: int


def ptxas_path() -> Path:
    """The ptxas Triton bundles (for sm_80/sm_90); absent on some platforms' wheels."""
    return Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas"


def builds(
    dtypes: tuple[str, ...] = ("fp32", "bf16"), flag_sets: tuple[dict, ...] = (S4FUSION_FLAGS, ALL_FLAGS)
) -> list[KernelBuild]:
    """Every (kernel, arch, config) S4Fusion can launch, per input dtype and set of optional inputs."""
    result = []
    for arch in ARCHITECTURES:
        for d_state in S4FUSION_D_STATES:
            n_pad = triton.next_power_of_2(d_state)
            for dtype in dtypes:
                for flags in flag_sets:
                    frozen = tuple(flags.items())
                    for config in scan_triton.FORWARD_CONFIGS:
                        result.append(
                            KernelBuild(
                                "forward",
                                arch,
                                n_pad,
                                config.kwargs["BLOCK_D"],
                                config.num_warps,
                                dtype,
                                frozen,
                            )
                        )
                    # the loop count over channel blocks is a runtime argument: registers depend on BLOCK_D alone
                    block_ds = sorted(
                        {
                            scan_triton.backward_blocks(b, dim, groups, n_pad)[0]
                            for b, dim, groups in BACKWARD_LAUNCHES
                        }
                    )
                    for block_d in block_ds:
                        for config in scan_triton.BACKWARD_CONFIGS:
                            result.append(
                                KernelBuild("backward", arch, n_pad, block_d, config.num_warps, dtype, frozen)
                            )
    return result


def _signature(fn, build: KernelBuild) -> tuple[dict, dict]:
    flags = dict(build.flags)
    constexprs = dict(
        BLOCK_D=build.block_d, N_PAD=build.n_pad, BLOCK_L=scan_triton.tile_length(build.n_pad), **flags
    )
    optional = {
        "D_ptr": "HAS_D",
        "z_ptr": "HAS_Z",
        "bias_ptr": "HAS_BIAS",
        "dD_ptr": "HAS_D",
        "dz_ptr": "HAS_Z",
        "dbias_ptr": "HAS_BIAS",
    }
    float32_outputs = {
        "last_ptr",
        "ckpt_ptr",
        "carry_ptr",
        "du_ptr",
        "ddelta_ptr",
        "dz_ptr",
        "dA_ptr",
        "dD_ptr",
        "dbias_ptr",
        "dB_ptr",
        "dC_ptr",
    }
    signature = {}
    for name in fn.arg_names:
        if name in constexprs:
            signature[name] = "constexpr"
        elif name in optional and not flags[optional[name]]:
            signature[name], constexprs[name] = "constexpr", None  # an absent tensor is passed as None
        elif name.endswith("_ptr"):
            signature[name] = "*fp32" if name in float32_outputs or name == "A_ptr" else f"*{build.dtype}"
        else:
            signature[name] = "i32"
    return signature, constexprs


def compile_ptx(build: KernelBuild) -> str:
    fn = scan_triton._forward_kernel if build.kernel == "forward" else scan_triton._backward_kernel
    signature, constexprs = _signature(fn, build)
    compiled = triton.compile(
        ASTSource(fn=fn, signature=signature, constexprs=constexprs),
        target=GPUTarget("cuda", build.arch, 32),
        options={"num_warps": build.num_warps},
    )
    return compiled.asm["ptx"]


def ptxas_report(ptx: str) -> PtxasReport:
    """Run the bundled ``ptxas -v`` on one kernel's PTX for the target it names (Triton writes sm_90a for
    sm_90) and parse its resource line."""
    target = re.search(r"^\.target\s+(\w+)", ptx, re.MULTILINE).group(1)
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "kernel.ptx"
        source.write_text(ptx)
        result = subprocess.run(
            [
                str(ptxas_path()),
                "-v",
                f"--gpu-name={target}",
                str(source),
                "-o",
                str(Path(tmp) / "kernel.cubin"),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    log = result.stderr + result.stdout

    def number(pattern: str) -> int:
        match = re.search(pattern, log)
        if match is None:
            raise ValueError(f"ptxas -v printed no '{pattern}':\n{log}")
        return int(match.group(1))

    return PtxasReport(
        registers=number(r"Used (\d+) registers"),
        spill_stores=number(r"(\d+) bytes spill stores"),
        spill_loads=number(r"(\d+) bytes spill loads"),
        stack_bytes=number(r"(\d+) bytes stack frame"),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="float32 inputs with every optional input only")
    quick = parser.parse_args().quick
    print("| kernel build | registers | spill stores / loads (bytes) |")
    print("|---|---|---|")
    spilled = 0
    for build in builds(dtypes=("fp32",), flag_sets=(ALL_FLAGS,)) if quick else builds():
        report = ptxas_report(compile_ptx(build))
        spilled += report.spill_stores + report.spill_loads > 0
        print(
            f"| {build.label} | {report.registers} | {report.spill_stores} / {report.spill_loads} |",
            flush=True,
        )
    return 1 if spilled else 0


if __name__ == "__main__":
    raise SystemExit(main())
