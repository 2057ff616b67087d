"""Triton kernel cases, run by ``tests/test_scan_triton.py`` in a subprocess with TRITON_INTERPRET=1.

Not collected by a plain ``pytest`` run (the name does not start with ``test_``): Triton reads
TRITON_INTERPRET when it is first imported (it decorates its own standard library then), so these cases
need a fresh interpreter with the variable set, and must not switch the interpreter on for the CUDA tests
of the main process. Run them alone with ``TRITON_INTERPRET=1 python -m pytest tests/triton_interpreter_cases.py``.

The interpreter is slow, so shapes are tiny and the checkpoint interval / channel block are shrunk to
K=4 / 4 channels: every case then has several checkpoints (L not a multiple of K), several channel blocks
per group (the dB/dC partial-sum buffer) or a partially masked block, and N=3 pads the state to 4.
"""
from __future__ import annotations

import pytest
import torch

from fusion.ops import scan_triton
from fusion.ops import selective_scan as scan_module
from test_selective_scan import make_inputs, run_with_grads

if not scan_triton.INTERPRETED:
    raise RuntimeError("tests/triton_interpreter_cases.py needs TRITON_INTERPRET=1 set before triton is imported")

# max |err| / max |reference| per dtype (float32: the 1e-4; half inputs: their output rounding)
RELATIVE_TOLERANCE = {torch.float32: 1e-4, torch.float16: 2e-3, torch.bfloat16: 2e-2}


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    monkeypatch.setattr(scan_triton, "CHECKPOINT_EVERY", 4)
    monkeypatch.setattr(scan_triton, "BLOCK_D", 4)
    monkeypatch.setattr(scan_triton, "MIN_BLOCK_D", 4)


def assert_relative(actual, expected, dtype, what):
    error = (actual.double() - expected).abs().max() / expected.abs().max().clamp_min(1e-30)
    assert error <= RELATIVE_TOLERANCE[dtype], f"{what}: relative error {error:.2e}"


def compare_with_reference(inputs, dtype, softplus):
    reference = run_with_grads({k: v.double() if v is not None else None for k, v in inputs.items()}, "reference",
                               delta_softplus=softplus)
    out, last, grads = run_with_grads(inputs, "triton", delta_softplus=softplus)
    assert scan_module.last_backend == "triton"
    assert out.dtype == dtype and last.dtype == torch.float32 and last.shape == reference[1].shape
    assert_relative(out, reference[0], dtype, "out")
    assert_relative(last, reference[1], dtype, "last_state")
    assert set(grads) == set(reference[2])
    for name, grad in grads.items():
        assert grad.shape == inputs[name].shape and grad.dtype == inputs[name].dtype, name
        assert_relative(grad, reference[2][name], dtype, f"d{name}")


# (dim, d_state, length, groups, grouped layout, with_D, with_z, with_bias, softplus): odd lengths, none a
# multiple of K=4; G=1 (both B/C layouts), 2 and 4; every optional input on and off at least once
CASES = [
    (8, 4, 7, 1, True, True, True, True, True),  # 2 channel blocks reduce into one group
    (8, 3, 9, 1, False, False, False, False, False),  # (batch, N, L) B/C, N padded 3 -> 4
    (12, 4, 5, 2, True, True, False, True, False),  # 6 channels per group: 2nd block half masked
    (8, 3, 11, 4, True, False, True, False, True),  # 2 channels per group
]


@pytest.mark.parametrize("dim,d_state,length,groups,grouped_layout,with_D,with_z,with_bias,softplus", CASES)
def test_triton_matches_reference_float32(dim, d_state, length, groups, grouped_layout, with_D, with_z, with_bias,
                                          softplus):
    inputs = make_inputs(batch=2 if groups < 4 else 1, dim=dim, d_state=d_state, length=length, groups=groups,
                         dtype=torch.float32, seed=length, with_D=with_D, with_z=with_z, with_bias=with_bias,
                         grouped_layout=grouped_layout)
    compare_with_reference(inputs, torch.float32, softplus)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
def test_triton_half_inputs_keep_their_dtype(dtype):
    """Half-precision inputs are computed in float32: out and gradients come back in the input dtype."""
    inputs = make_inputs(batch=1, dim=4, d_state=4, length=6, groups=2, dtype=dtype, seed=1)
    compare_with_reference(inputs, dtype, softplus=True)


def test_triton_without_last_state_gradient():
    """Only out feeds the loss: the last state's gradient arrives as zeros and changes nothing."""
    inputs = make_inputs(batch=1, dim=4, d_state=2, length=5, dtype=torch.float32, seed=2)
    reference = run_with_grads({k: v.double() for k, v in inputs.items()}, "reference", return_last_state=False)
    out, _, grads = run_with_grads(inputs, "triton", return_last_state=False)
    assert_relative(out, reference[0], torch.float32, "out")
    for name, grad in grads.items():
        assert_relative(grad, reference[2][name], torch.float32, f"d{name}")
