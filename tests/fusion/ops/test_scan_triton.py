"""The Triton selective scan: its kernel cases in Triton's CPU interpreter (a subprocess, see
``tests/fusion/ops/triton_interpreter_cases.py``), and how the dispatcher chooses, explains and refuses backends."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys

import pytest
import torch
from helpers import REPO_ROOT
from test_selective_scan import make_inputs

from fusion.ops import scan_mamba
from fusion.ops import selective_scan as scan_module
from fusion.ops.selective_scan import explain_backend, selective_scan_fn

CASES_FILE = "tests/fusion/ops/triton_interpreter_cases.py"


def test_triton_kernel_matches_reference_in_the_interpreter():
    """Forward, last state and every gradient vs the reference (float32 rel <= 1e-4), in a fresh process."""
    pytest.importorskip(
        "triton", reason="the triton backend needs the triton package (part of CUDA torch wheels)"
    )
    env = {
        **os.environ,
        "TRITON_INTERPRET": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, (str(REPO_ROOT), os.environ.get("PYTHONPATH")))),
    }
    result = subprocess.run(
        [sys.executable, "-m", "pytest", CASES_FILE, "-q", "-p", "no:cacheprovider"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0, f"{CASES_FILE} failed:\n{result.stdout[-6000:]}\n{result.stderr[-2000:]}"
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) >= 8 and not re.search(r"skipped|xfail|error", summary), summary


@pytest.fixture
def no_mamba(monkeypatch):
    """mamba-ssm's extension failing to import, as on most machines (here with a typical ABI error)."""
    reason = "ImportError: selective_scan_cuda.so: undefined symbol: _ZN3c104cuda9SetDeviceEi"
    monkeypatch.setattr(scan_mamba, "_load_extension", lambda: (None, reason))
    return reason


def test_auto_on_cuda_prefers_triton_without_mamba_and_says_why(no_mamba, monkeypatch):
    monkeypatch.setattr(scan_module, "triton_import_error", lambda: None)
    assert explain_backend("cuda") == ("triton", f"mamba-ssm's kernel unavailable: {no_mamba}")
    monkeypatch.setattr(
        scan_module, "triton_import_error", lambda: "ModuleNotFoundError: No module named 'triton'"
    )
    backend, reason = explain_backend("cuda:1", torch.bfloat16)
    assert backend == "chunked" and no_mamba in reason and "No module named 'triton'" in reason
    monkeypatch.setattr(scan_mamba, "_load_extension", lambda: (object(), None))
    assert explain_backend("cuda") == ("mamba", None)
    assert explain_backend("cuda", torch.float64)[0] == "chunked"  # neither kernel has float64
    assert explain_backend("cpu") == ("cpu", None)


def test_explicit_mamba_without_the_kernel_names_the_import_error(no_mamba):
    with pytest.raises(ValueError, match=re.escape(no_mamba)) as error:
        selective_scan_fn(**make_inputs(length=5, dtype=torch.float32), backend="mamba")
    assert "s4fuse[cuda]" in str(error.value) and "needs CUDA tensors, got cpu" in str(error.value)


def test_explicit_mamba_reports_the_real_import_error_here():
    error = scan_mamba.mamba_import_error()
    if error is None:
        pytest.skip("selective_scan_cuda imports on this machine: there is no import error to report")
    with pytest.raises(ValueError, match=re.escape(error)):
        selective_scan_fn(**make_inputs(length=5, dtype=torch.float32), backend="mamba")


def test_auto_fallback_is_logged_once_per_device_with_its_reason(caplog, monkeypatch):
    monkeypatch.setattr(scan_module, "_logged_choices", set())
    monkeypatch.setattr(scan_module, "explain_backend", lambda device, dtype: ("chunked", "why it fell back"))
    with caplog.at_level(logging.INFO, logger=scan_module.__name__):
        for _ in range(2):
            selective_scan_fn(**make_inputs(length=5, dtype=torch.float32), backend="auto")
    assert scan_module.last_backend == "chunked"
    messages = [r.getMessage() for r in caplog.records if r.name == scan_module.__name__]
    assert messages == ["selective scan on cpu uses backend 'chunked' (why it fell back)"]


def test_auto_falling_back_to_chunked_on_cuda_warns_once(caplog, monkeypatch):
    monkeypatch.setattr(scan_module, "_logged_choices", set())
    with caplog.at_level(logging.INFO, logger=scan_module.__name__):
        for _ in range(2):
            scan_module._log_choice(torch.device("cuda:0"), "chunked", "no fused kernel imports")
        scan_module._log_choice(torch.device("cuda:0"), "triton", "mamba-ssm's kernel unavailable")
    records = [r for r in caplog.records if r.name == scan_module.__name__]
    assert [(r.levelno, r.getMessage()) for r in records] == [
        (logging.WARNING, "selective scan on cuda:0 uses backend 'chunked' (no fused kernel imports)"),
        (logging.INFO, "selective scan on cuda:0 uses backend 'triton' (mamba-ssm's kernel unavailable)"),
    ]


def test_triton_on_cpu_without_interpreter_is_a_clear_error():
    pytest.importorskip("triton", reason="the triton backend needs the triton package")
    from fusion.ops import scan_triton

    if scan_triton.INTERPRETED:
        pytest.skip("this process runs Triton's interpreter (TRITON_INTERPRET=1), which accepts CPU tensors")
    with pytest.raises(ValueError, match="needs CUDA tensors .*TRITON_INTERPRET=1"):
        selective_scan_fn(**make_inputs(length=5, dtype=torch.float32), backend="triton")


def test_fused_kernels_refuse_float64():
    for backend in ("triton", "mamba"):
        with pytest.raises(ValueError, match="no float64"):
            selective_scan_fn(**make_inputs(length=5), backend=backend)
