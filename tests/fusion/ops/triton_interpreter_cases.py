"""Triton kernel cases, run by ``tests/fusion/ops/test_scan_triton.py`` in a subprocess with TRITON_INTERPRET=1.

Not collected by a plain ``pytest`` run (the name does not start with ``test_``): Triton reads
TRITON_INTERPRET when it is first imported (it decorates its own standard library then), so these cases
need a fresh interpreter with the variable set, and must not switch the interpreter on for the CUDA tests
of the main process. Run them alone with ``TRITON_INTERPRET=1 python -m pytest tests/fusion/ops/triton_interpreter_cases.py``.

The interpreter is slow (its scans run element by element in Python), so shapes are tiny and the tile is
shrunk to BLOCK_L = 8 steps (4 at N_PAD 32): the cases cover L < tile, L not a multiple of it and L >= 4
tiles, S4Fusion's d_state 12 and 18 (padded to 16 and 32), G = 1 (both B/C layouts), 2 and 4, backward
programs looping over channel blocks (one fully masked), every optional input on and off.
"""

from __future__ import annotations

import pytest
import torch
import triton
from test_selective_scan import make_inputs, run_with_grads

from fusion.ops import scan_triton
from fusion.ops import selective_scan as scan_module
from fusion.ops.tolerances import SCAN_RELATIVE_TOLERANCE, relative_error

if not scan_triton.INTERPRETED:
    raise RuntimeError(
        "tests/fusion/ops/triton_interpreter_cases.py needs TRITON_INTERPRET=1 set before triton is imported"
    )


@pytest.fixture(autouse=True)
def small_tiles(monkeypatch):
    """8-step tiles (4 at N 18); the forward with 2 channels per program (one config: no autotuning in the interpreter);
    the backward with 4 channels per program (b * D / TARGET_PROGRAMS) in blocks of 1 or 2 (N <= 4), so its
    programs loop over 2-4 channel blocks."""
    monkeypatch.setattr(scan_triton, "BLOCK_L", 8)  # tiles of 8 steps up to N 16, 4 at N 18
    monkeypatch.setattr(scan_triton.forward_tuned, "configs", [triton.Config({"BLOCK_D": 2}, num_warps=1)])
    monkeypatch.setattr(scan_triton.backward_tuned, "configs", [triton.Config({}, num_warps=1)])
    monkeypatch.setattr(scan_triton, "TARGET_PROGRAMS", 4)
    monkeypatch.setattr(scan_triton, "BACKWARD_FLOATS_PER_THREAD", 2)


def assert_relative(actual, expected, dtype, what):
    error = relative_error(actual, expected)
    assert error <= SCAN_RELATIVE_TOLERANCE[dtype], f"{what}: relative error {error:.2e}"


def compare_with_reference(inputs, dtype, softplus):
    reference = run_with_grads(
        {k: v.double() if v is not None else None for k, v in inputs.items()},
        "reference",
        delta_softplus=softplus,
    )
    out, last, grads = run_with_grads(inputs, "triton", delta_softplus=softplus)
    assert scan_module.last_backend == "triton"
    assert out.dtype == dtype and last.dtype == torch.float32 and last.shape == reference[1].shape
    assert_relative(out, reference[0], dtype, "out")
    assert_relative(last, reference[1], dtype, "last_state")
    assert set(grads) == set(reference[2])
    for name, grad in grads.items():
        assert grad.shape == inputs[name].shape and grad.dtype == inputs[name].dtype, name
        assert_relative(grad, reference[2][name], dtype, f"d{name}")


# (dim, d_state, length, groups, grouped layout, with_D, with_z, with_bias, softplus); tiles of 8, 4 at N 18
CASES = [
    (8, 4, 3, 1, True, True, True, True, True),  # L < tile; 2 backward channel blocks reduce into one group
    (8, 12, 17, 2, True, False, False, False, False),  # N 12 -> 16, L = 2 tiles + 1, nothing optional
    (8, 18, 17, 4, True, True, False, True, True),  # N 18 -> 32 (tile 4), L >= 4 tiles, how S4Fusion calls it
    (6, 3, 11, 1, False, False, True, False, True),  # (batch, N, L) B/C; 6 channels: last block half masked
]


@pytest.mark.parametrize("dim,d_state,length,groups,grouped_layout,with_D,with_z,with_bias,softplus", CASES)
def test_triton_matches_reference_float32(
    dim, d_state, length, groups, grouped_layout, with_D, with_z, with_bias, softplus
):
    inputs = make_inputs(
        batch=2 if groups < 4 else 1,
        dim=dim,
        d_state=d_state,
        length=length,
        groups=groups,
        dtype=torch.float32,
        seed=length,
        with_D=with_D,
        with_z=with_z,
        with_bias=with_bias,
        grouped_layout=grouped_layout,
    )
    compare_with_reference(inputs, torch.float32, softplus)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
def test_triton_half_inputs_keep_their_dtype(dtype):
    """Half-precision inputs are computed in float32: out and gradients come back in the input dtype."""
    inputs = make_inputs(batch=1, dim=4, d_state=12, length=6, groups=2, dtype=dtype, seed=1)
    compare_with_reference(inputs, dtype, softplus=True)


def test_triton_without_last_state_gradient():
    """Only out feeds the loss: the last state's gradient arrives as zeros and changes nothing."""
    inputs = make_inputs(batch=1, dim=4, d_state=2, length=5, dtype=torch.float32, seed=2)
    reference = run_with_grads(
        {k: v.double() for k, v in inputs.items()}, "reference", return_last_state=False
    )
    out, _, grads = run_with_grads(inputs, "triton", return_last_state=False)
    assert_relative(out, reference[0], torch.float32, "out")
    for name, grad in grads.items():
        assert_relative(grad, reference[2][name], torch.float32, f"d{name}")


def test_cases_make_backward_programs_loop_over_channel_blocks():
    """The cases above exercise the backward's loop over channel blocks (and a fully masked block)."""
    assert scan_triton.backward_blocks(batch=2, dim=8, groups=1, n_pad=4) == (2, 2)
    assert scan_triton.backward_blocks(batch=2, dim=8, groups=2, n_pad=16) == (1, 4)
    assert scan_triton.backward_blocks(batch=1, dim=8, groups=4, n_pad=32) == (1, 2)
    assert scan_triton.backward_blocks(batch=2, dim=6, groups=1, n_pad=4) == (2, 2)  # 6 channels in 2 x 4
