"""Selective scan: the reference against a closed form, every backend against the reference (values and
gradients), dispatch, errors, and that importing the ops never imports mamba-ssm."""

from __future__ import annotations

import itertools
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import REPO_ROOT

from fusion.ops import selective_scan as scan_module
from fusion.ops.selective_scan import resolve_backend, selective_scan_flops, selective_scan_fn
from fusion.ops.tolerances import SCAN_RELATIVE_TOLERANCE, relative_error

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
# (atol, rtol) against the float64 reference. float32: decays <= 1 keep the recurrence contractive, so
# each step's few-u rounding does not grow; the two CPU backends sum in different orders (sequential
# scan vs chunked parallel scan: the emulation of another CPU's order) and their worst |error| /
# (atol + rtol |ref|) over CASES is 0.035 (cpu) and 0.038 (chunked), 26x inside (measured 2026-12-03).
TOLERANCE = {torch.float64: (1e-10, 1e-9), torch.float32: (2e-4, 2e-4)}


def make_inputs(
    batch=2,
    dim=8,
    d_state=4,
    length=33,
    groups=1,
    dtype=torch.float64,
    seed=0,
    device="cpu",
    with_D=True,
    with_z=True,
    with_bias=True,
    grouped_layout=True,
):
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=1.0, offset=0.0):
        return (torch.randn(*shape, generator=gen, dtype=torch.float64) * scale + offset).to(device, dtype)

    bc_shape = (batch, groups, d_state, length) if grouped_layout else (batch, d_state, length)
    return dict(
        u=rand(batch, dim, length),
        delta=rand(batch, dim, length, scale=0.5).abs(),  # positive, so decays stay <= 1 without softplus
        A=-torch.rand(dim, d_state, generator=gen, dtype=torch.float64).mul(3).add(0.1).to(device, dtype),
        B=rand(*bc_shape),
        C=rand(*bc_shape),
        D=rand(dim) if with_D else None,
        z=rand(batch, dim, length) if with_z else None,
        delta_bias=rand(dim, scale=0.3).abs() if with_bias else None,
    )


def tensors_of(inputs):
    return {k: v for k, v in inputs.items() if v is not None}


def run_with_grads(inputs, backend, delta_softplus=True, return_last_state=True):
    """Forward, then gradients of a loss that uses out and last_state nonlinearly."""
    leaves = {k: v.detach().clone().requires_grad_() for k, v in tensors_of(inputs).items()}
    args = {**{k: None for k in inputs}, **leaves}
    result = selective_scan_fn(
        **args, delta_softplus=delta_softplus, return_last_state=return_last_state, backend=backend
    )
    out, last = result if return_last_state else (result, None)
    weight = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)
    loss = (out * weight).sum() + (out.double() ** 2).sum()
    if last is not None:
        loss = loss + (last.double() ** 2).sum()
    grads = torch.autograd.grad(loss, list(leaves.values()))
    return out, last, dict(zip(leaves, grads))


def assert_close(actual, expected, dtype, what):
    atol, rtol = TOLERANCE[dtype]
    torch.testing.assert_close(
        actual.double(), expected.double(), atol=atol, rtol=rtol, msg=lambda m: f"{what}: {m}"
    )


def test_reference_matches_closed_form():
    """N=1, constant delta/B/C: y_t = c·delta·b·sum_{s<=t} exp(delta·a)^(t-s) u_s, then (y + D u)·silu(z)."""
    length, delta, a, b, c, skip = 11, 0.7, -0.9, 1.3, -0.6, 0.25
    rng = np.random.default_rng(0)
    u, z = rng.standard_normal(length), rng.standard_normal(length)
    ratio = np.exp(delta * a)
    t = np.arange(length)
    powers = np.where(t[:, None] >= t[None, :], ratio ** np.maximum(t[:, None] - t[None, :], 0), 0.0)
    y = c * delta * b * powers @ u
    expected = (y + skip * u) * z / (1 + np.exp(-z))
    expected_last = delta * b * (ratio ** (length - 1 - t)) @ u

    def full(value):
        return torch.full((1, 1, 1, length), value, dtype=torch.float64)

    out, last = selective_scan_fn(
        torch.tensor(u).view(1, 1, -1),
        torch.full((1, 1, length), delta, dtype=torch.float64),
        torch.tensor([[a]], dtype=torch.float64),
        full(b),
        full(c),
        D=torch.tensor([skip], dtype=torch.float64),
        z=torch.tensor(z).view(1, 1, -1),
        return_last_state=True,
        backend="reference",
    )
    np.testing.assert_allclose(out.view(-1).numpy(), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(last.view(-1).numpy(), [expected_last], rtol=1e-12)


def test_reference_bias_and_softplus_semantics():
    """delta_bias is added before softplus; D and z default to identity."""
    inputs = make_inputs(length=9, with_D=False, with_z=False, with_bias=True)
    shifted = inputs["delta"] + inputs["delta_bias"][:, None]
    base = dict(inputs, delta_bias=None)
    expected = selective_scan_fn(
        **dict(base, delta=torch.nn.functional.softplus(shifted)), backend="reference"
    )
    actual = selective_scan_fn(**inputs, delta_softplus=True, backend="reference")
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-14)


# odd lengths x group counts, each with a different combination of optional inputs
CASES = [
    (length, groups, *flags)
    for (length, groups), flags in zip(
        itertools.product((1, 7, 33, 257), (1, 2, 4)),
        itertools.cycle(itertools.product((True, False), repeat=4)),
    )
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("backend", ["cpu", "chunked"])
@pytest.mark.parametrize("length,groups,with_D,with_z,with_bias,softplus", CASES)
def test_backend_matches_reference(backend, dtype, length, groups, with_D, with_z, with_bias, softplus):
    inputs = make_inputs(
        length=length,
        groups=groups,
        dtype=dtype,
        seed=length + groups,
        with_D=with_D,
        with_z=with_z,
        with_bias=with_bias,
    )
    reference = run_with_grads(
        {k: v.double() if v is not None else None for k, v in inputs.items()},
        "reference",
        delta_softplus=softplus,
    )
    out, last, grads = run_with_grads(inputs, backend, delta_softplus=softplus)
    assert out.dtype == dtype and out.shape == inputs["u"].shape and last.shape == (2, 8, 4)
    assert_close(out, reference[0], dtype, "out")
    assert_close(last, reference[1], dtype, "last_state")
    for name, grad in grads.items():
        assert grad.shape == inputs[name].shape, name
        assert_close(grad, reference[2][name], dtype, f"d{name}")


@pytest.mark.parametrize("backend", ["reference", "cpu", "chunked"])
def test_gradcheck(backend):
    inputs = tensors_of(make_inputs(batch=1, dim=4, d_state=2, length=6, groups=2, seed=3))
    leaves = [v.detach().clone().requires_grad_() for v in inputs.values()]

    def fn(*tensors):
        out, last = selective_scan_fn(
            **dict(zip(inputs, tensors)), delta_softplus=True, return_last_state=True, backend=backend
        )
        return out, last

    assert torch.autograd.gradcheck(fn, leaves, eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("backend", ["cpu", "chunked"])
def test_ungrouped_bc_layout(backend):
    """(batch, N, L) B/C mean G=1 and get gradients of that same shape."""
    inputs = make_inputs(length=20, grouped_layout=False)
    reference = run_with_grads(inputs, "reference")
    out, last, grads = run_with_grads(inputs, backend)
    assert grads["B"].shape == inputs["B"].shape == (2, 4, 20)
    assert_close(out, reference[0], torch.float64, "out")
    for name in grads:
        assert_close(grads[name], reference[2][name], torch.float64, f"d{name}")


@pytest.fixture(scope="module")
def long_sequence_case():
    """L=3000 with strong decays (exp(delta·A) down to ~1e-30 per step) and its float64 reference."""
    inputs = make_inputs(
        batch=1, dim=4, d_state=8, length=3000, groups=2, dtype=torch.float32, seed=7, with_D=False
    )
    inputs["A"] = inputs["A"] * 10
    inputs["delta"] = inputs["delta"] * 4
    reference = run_with_grads(
        {k: v.double() if v is not None else None for k, v in inputs.items()}, "reference"
    )
    return inputs, reference


@pytest.mark.parametrize("backend", ["cpu", "chunked"])
def test_long_sequence_float32_is_stable(backend, long_sequence_case):
    inputs, reference = long_sequence_case
    out, last, grads = run_with_grads(inputs, backend)
    assert torch.isfinite(out).all() and all(torch.isfinite(g).all() for g in grads.values())
    # measured worst |error| / tolerance: out 0.0056 (cpu) / 0.0078 (chunked), gradients 0.0042 / 0.0032
    torch.testing.assert_close(out.double(), reference[0], atol=1e-4, rtol=1e-4)
    for name in grads:
        torch.testing.assert_close(grads[name].double(), reference[2][name], atol=2e-3, rtol=1e-3)


_THREAD_RUNS = """
import sys, numba, torch
sys.path[:0] = ["tests", "tests/fusion/ops"]
from test_selective_scan import make_inputs, run_with_grads
inputs = make_inputs(length=300, groups=2, dtype=torch.float32, seed=11)  # 2 x 8 channels: work for 3 threads
runs = {}
for threads in (1, 2, 3):
    torch.set_num_threads(threads)  # the cpu backend follows torch's thread count
    out, last, grads = run_with_grads(inputs, "cpu")
    runs[threads] = dict(out=out, last=last, grads=grads, numba_threads=numba.get_num_threads())
torch.save(runs, sys.argv[1])
"""


def test_cpu_backend_is_deterministic_across_thread_counts(tmp_path):
    """1, 2 and 3 numba threads give bitwise the same values and gradients. In a fresh process with
    NUMBA_NUM_THREADS=4, so the pool has more than one thread even on a one-core machine (numba fixes
    its pool size at import; more threads than cores still split the work, only slower)."""
    env = dict(os.environ, NUMBA_NUM_THREADS="4")
    result = subprocess.run(
        [sys.executable, "-c", _THREAD_RUNS, str(tmp_path / "runs.pt")],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    runs = torch.load(tmp_path / "runs.pt")
    assert {t: r["numba_threads"] for t, r in runs.items()} == {1: 1, 2: 2, 3: 3}  # the counts really ran
    single = runs[1]
    for threads in (2, 3):
        run = runs[threads]
        assert torch.equal(run["out"], single["out"]) and torch.equal(run["last"], single["last"]), threads
        assert all(torch.equal(run["grads"][k], single["grads"][k]) for k in single["grads"]), threads


def test_cpu_float32_decays_are_as_accurate_as_float32_exp():
    # the kernel's polynomial exp, read back through the scan: u = (1/delta, 0) and B = 1 make the last
    # state exactly exp(delta * A), for exponents over the whole normal range [-87, 0]
    from fusion.ops.scan_cpu import scan_cpu

    dim, d_state = 64, 8
    exponents = -np.linspace(0.0, 87.0, 20 * dim * d_state).astype(np.float32).reshape(20, dim, d_state)
    worst = 0.0
    for chunk in exponents:
        u = torch.tensor([1.0, 0.0]).expand(1, dim, 2).contiguous()
        ones = torch.ones(1, 1, d_state, 2)
        _, last = scan_cpu(u, torch.ones(1, dim, 2), torch.from_numpy(chunk.copy()), ones, ones)
        expected = np.exp(chunk.astype(np.float64))
        worst = max(worst, float((np.abs(last[0].numpy() - expected) / expected).max()))
    assert worst <= 1.2e-7, worst  # one float32 ulp (libm's float32 exp: within half an ulp; measured 5.9e-8)


def test_cpu_backend_leaves_torch_thread_count_alone():
    # numba's OpenMP layer sets the process-wide OpenMP thread count when it starts; torch reads that count
    code = (
        "import torch; torch.set_num_threads(1); from fusion.ops.scan_cpu import scan_cpu; "
        "u = torch.randn(1, 4, 9); scan_cpu(u, torch.rand(1, 4, 9), -torch.rand(4, 2), torch.randn(1, 1, 2, 9), "
        "torch.randn(1, 1, 2, 9)); print(torch.get_num_threads())"
    )
    env = dict(os.environ, NUMBA_NUM_THREADS="2")
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == "1"


def test_half_precision_input_keeps_dtype():
    inputs = make_inputs(length=40, dtype=torch.bfloat16)
    out = selective_scan_fn(**inputs, delta_softplus=True, backend="cpu")
    expected = selective_scan_fn(
        **{k: v.double() for k, v in inputs.items()}, delta_softplus=True, backend="reference"
    )
    assert out.dtype == torch.bfloat16
    # bfloat16 keeps 8 bits (u = 2^-9 = 2e-3); measured worst |error| / tolerance 0.12
    torch.testing.assert_close(out.double(), expected, atol=0.05, rtol=0.02)


def test_auto_on_cpu_picks_numba_kernel_and_logs_once(caplog, monkeypatch):
    monkeypatch.setattr(scan_module, "_logged_choices", set())
    inputs = make_inputs(length=5, dtype=torch.float32)
    with caplog.at_level(logging.INFO, logger=scan_module.__name__):
        for _ in range(2):
            selective_scan_fn(**inputs, backend="auto")
    assert resolve_backend("cpu") == "cpu" and scan_module.last_backend == "cpu"
    messages = [r.getMessage() for r in caplog.records if r.name == scan_module.__name__]
    assert messages == ["selective scan on cpu uses backend 'cpu'"]


def test_resolve_backend_for_cuda_without_running_it():
    from fusion.ops.scan_mamba import mamba_available

    expected = (
        "mamba" if mamba_available() else "triton" if scan_module.triton_import_error() is None else "chunked"
    )
    assert resolve_backend("cuda") == expected
    assert resolve_backend("cuda", torch.float64) == "chunked"  # the CUDA kernels have no float64


def test_mamba_backend_on_cpu_is_a_clear_error():
    with pytest.raises(ValueError, match="CUDA tensors"):
        selective_scan_fn(**make_inputs(length=5), backend="mamba")


@pytest.mark.parametrize(
    "change,match",
    [
        (dict(backend="fast"), "unknown backend"),
        (dict(delta=torch.zeros(2, 8, 4)), "delta shape"),
        (dict(A=torch.zeros(8, 4, dtype=torch.complex64)), "A must be real"),
        (dict(B=torch.zeros(2, 3, 4, 33)), "D=8 divisible by G"),
        (dict(C=torch.zeros(2, 5, 33)), "C must be"),
        (dict(D=torch.zeros(7)), "D must be"),
    ],
)
def test_bad_inputs_are_named(change, match):
    with pytest.raises(ValueError, match=match):
        selective_scan_fn(**(make_inputs() | change))


def test_flops_formula():
    # batch 2, dim 3, length 5, d_state 7: 9·2·5·3·7 + 2·3·5 (+ 2·3·5 with the z gate)
    assert selective_scan_flops(2, 3, 5, 7) == 1890 + 30
    assert selective_scan_flops(2, 3, 5, 7, with_z=True) == 1890 + 60


def test_importing_ops_never_imports_mamba_ssm():
    code = (
        "import sys, fusion.ops, fusion.ops.selective_scan, fusion.ops.scan_cpu; "
        "print(sorted(m for m in ('mamba_ssm', 'selective_scan_cuda') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def cuda_kernel_missing(backend: str) -> str | None:
    """Why ``backend`` cannot run on this CUDA machine (None when it can)."""
    if backend == "mamba":
        from fusion.ops.scan_mamba import mamba_import_error

        error = mamba_import_error()
        return f"mamba-ssm's selective_scan_cuda does not import: {error}" if error else None
    if backend == "triton":
        error = scan_module.triton_import_error()
        return f"the triton backend does not import: {error}" if error else None
    return None


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("backend", ["mamba", "triton", "chunked", "auto"])
def test_cuda_backend_matches_reference(backend):
    if (missing := cuda_kernel_missing(backend)) is not None:
        pytest.skip(missing)
    inputs = make_inputs(length=257, groups=2, dtype=torch.float32, device="cuda")
    with_last_grad = backend not in (
        "mamba",
        "auto",
    )  # mamba-ssm does not propagate the last state's gradient
    reference = run_with_grads(
        {k: v.double().cpu() for k, v in inputs.items()}, "reference", return_last_state=with_last_grad
    )
    out, _, grads = run_with_grads(inputs, backend, return_last_state=with_last_grad)
    assert scan_module.last_backend == (resolve_backend("cuda") if backend == "auto" else backend)
    _, last = selective_scan_fn(**inputs, delta_softplus=True, return_last_state=True, backend=backend)
    _, last_reference = selective_scan_fn(
        **{k: v.double().cpu() for k, v in inputs.items()},
        delta_softplus=True,
        return_last_state=True,
        backend="reference",
    )
    # the bar bench.gpu_check applies too (one constant)
    errors = {
        "out": relative_error(out, reference[0]),
        "last_state": relative_error(last, last_reference),
        **{f"d{name}": relative_error(grads[name], reference[2][name]) for name in grads},
    }
    assert max(errors.values()) <= SCAN_RELATIVE_TOLERANCE[torch.float32], errors
    if backend == "triton":  # fixed-order reductions, no atomics: bitwise reproducible
        _, _, again = run_with_grads(inputs, backend, return_last_state=with_last_grad)
        assert all(torch.equal(grads[name], again[name]) for name in grads)
