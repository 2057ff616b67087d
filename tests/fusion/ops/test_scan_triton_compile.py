"""Every Triton selective-scan kernel config compiles for sm_80 and sm_90 without register spills.

No GPU needed: Triton compiles for a named target, and its bundled ``ptxas -v`` reports registers and
spills (``bench.triton_registers``; ``python -m bench.triton_registers`` prints the full table, also for
bfloat16 inputs and S4Fusion's own flags). Built here: every forward autotune config and every backward
(channels per program, warps) S4Fusion launches, at d_state 12 and 18, with every optional input (z too:
the most live tensors), float32 inputs.
"""

from __future__ import annotations

import pytest

triton = pytest.importorskip("triton", reason="the triton backend needs the triton package")

from bench import triton_registers  # noqa: E402

BUILDS = triton_registers.builds(dtypes=("fp32",), flag_sets=(triton_registers.ALL_FLAGS,))


def test_builds_cover_both_architectures_both_state_sizes_and_every_config():
    from fusion.ops import scan_triton

    forward = {(b.arch, b.n_pad, b.block_d) for b in BUILDS if b.kernel == "forward"}
    assert forward == {
        (arch, n_pad, c.kwargs["BLOCK_D"])
        for arch in (80, 90)
        for n_pad in (16, 32)
        for c in scan_triton.FORWARD_CONFIGS
    }
    backward = {(b.arch, b.n_pad, b.num_warps) for b in BUILDS if b.kernel == "backward"}
    assert backward == {
        (arch, n_pad, c.num_warps)
        for arch in (80, 90)
        for n_pad in (16, 32)
        for c in scan_triton.BACKWARD_CONFIGS
    }


@pytest.mark.skipif(
    not triton_registers.ptxas_path().exists(),
    reason=f"Triton's bundled ptxas is absent ({triton_registers.ptxas_path()})",
)
@pytest.mark.parametrize("build", BUILDS, ids=lambda build: build.label.replace(" ", "-"))
def test_kernel_compiles_without_spills(build):
    report = triton_registers.ptxas_report(triton_registers.compile_ptx(build))
    print(
        f"{build.label}: {report.registers} registers, spills {report.spill_stores} / {report.spill_loads} B"
    )
    assert report.spill_stores == report.spill_loads == 0, f"{build.label} spills: {report}"
    assert report.registers <= 255
