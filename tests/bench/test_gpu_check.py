"""The parts of ``python -m bench.gpu_check`` that need no GPU: the scan shapes it times (recorded from the
model on the meta device), the speed table with its ratios, the latency verdicts, and its refusal without
CUDA. The GPU measurements themselves have never run (no GPU lent to this project yet)."""

from __future__ import annotations

import pytest
import torch

from bench import gpu_check, gpu_check_scan
from fusion import S4FusionConfig
from fusion.ops.tolerances import MODEL_FLOAT32_MAX_ABS, SCAN_RELATIVE_TOLERANCE


def test_scan_shapes_at_640x480_are_the_models_real_scans():
    cfg = S4FusionConfig()
    shapes = gpu_check_scan.s4fusion_scan_shapes(480, 640)
    # level 0 as fusion.inference pads 480x640 (to 481x649) and the patch embed strides over it
    tokens_h, tokens_w = ((side - cfg.patch_size) // cfg.patch_stride + 1 for side in (481, 649))
    level0 = (1, 4 * int(cfg.expand * cfg.dims[0]), tokens_h * tokens_w, cfg.d_state, 4)
    assert level0 in shapes
    assert {shape[3] for shape in shapes} == {cfg.d_state, cfg.d_state_fusion}
    # CMSA scans interleave IR and VIS tokens: twice the tokens of their level
    assert all(shape[2] % 2 == 0 for shape in shapes if shape[3] == cfg.d_state_fusion)
    assert all(shape[0] == 1 and shape[4] == 4 for shape in shapes)
    assert all(shape[0] == 16 for shape in gpu_check_scan.s4fusion_scan_shapes(229, 229, batch=16))


def test_timing_problems_time_fuse_forward_and_training_forward_backward():
    problems = gpu_check_scan.timing_problems()
    fuse = [shape for label, shape, backward in problems if label.startswith("fuse") and not backward]
    train = [shape for label, shape, backward in problems if label.startswith("train") and backward]
    assert len(fuse) + len(train) == len(problems)
    assert set(fuse) == set(gpu_check_scan.s4fusion_scan_shapes(480, 640))
    assert {shape[0] for shape in train} == {gpu_check_scan.TRAIN_BATCH}


def test_speed_table_gives_triton_ratios_and_dashes_for_missing_backends():
    timings = {
        ("scan A", "fwd"): {"triton": 1.0, "chunked": 8.0},
        ("scan A", "fwd+bwd"): {"triton": 3.0, "chunked": 12.0, "mamba": 2.0},
        ("scan B", "fwd"): {"chunked": 5.0},
    }
    header, rule, *rows = gpu_check_scan.speed_table(timings)
    assert (
        header == "| problem | pass | triton ms | chunked ms | mamba ms | triton / chunked | triton / mamba |"
    )
    assert rule.count("---") == 7
    assert rows == [
        "| scan A | fwd | 1.000 | 8.000 | - | 0.12 | - |",
        "| scan A | fwd+bwd | 3.000 | 12.000 | 2.000 | 0.25 | 1.50 |",
        "| scan B | fwd | - | 5.000 | - | - | - |",
    ]


def test_fuse_goal_rows_judge_each_backend_and_precision():
    timings = {
        ("whole fuse 640x480 (goal <= 15 ms)", "fp32"): {"triton": 14.0, "chunked": 90.0},
        ("fuse 640x480, 3x per image: (b, D, L, N, G) = (1, 2, 3, 4, 5)", "fwd"): {"triton": 1.0},
    }
    verdicts = {(row[1], row[4]) for row in gpu_check.fuse_goal_rows(timings)}
    assert verdicts == {("triton", "ok"), ("chunked", "MISSED")}


def test_gpu_check_holds_cuda_to_the_cpu_tests_tolerances():
    assert gpu_check.VECTOR_TOLERANCE == MODEL_FLOAT32_MAX_ABS
    assert gpu_check_scan.RELATIVE_TOLERANCE == SCAN_RELATIVE_TOLERANCE[torch.float32]


def test_gpu_check_without_cuda_says_so_and_exits_2(monkeypatch, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the check would run for real")
    monkeypatch.setattr("sys.argv", ["gpu_check"])
    assert gpu_check.main() == 2
    assert "needs CUDA" in capsys.readouterr().err
