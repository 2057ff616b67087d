"""bench.training_budget: the step-time screen, the curve extrapolation and the paper recipe's compute."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from helpers import REPO_ROOT

from bench.training_budget import (
    PAPER_TRAIN_PAIRS,
    extrapolate,
    log_fit,
    paper_compute,
    step_times,
    steps_to_reach,
)


def test_log_fit_recovers_the_gain_per_doubling():
    steps = np.array([1000.0, 2000.0, 4000.0, 8000.0])
    a, b = log_fit(steps, 0.1 + 0.03 * np.log2(steps))
    assert a == pytest.approx(0.1) and b == pytest.approx(0.03)


def test_steps_to_reach_a_reference():
    a, b = 0.1, 0.03  # value(step) = 0.1 + 0.03 * log2(step)
    assert steps_to_reach(a, b, 0.1 + 0.03 * 14, 8000, 0.48) == pytest.approx(2**14)
    assert steps_to_reach(a, b, 0.4, 8000, 0.48) == 8000  # already above at the last step
    assert steps_to_reach(a, -0.01, 0.9, 8000, 0.48) is None  # falling: never


def test_extrapolate_reads_the_run_history(tmp_path, capsys):
    (tmp_path / "val").mkdir()
    records = [
        {
            "step": s,
            **{f"val/{m}": 0.2 + 0.05 * math.log2(s / 1000) for m in ("SF", "AG", "Qabf", "VIF")},
            **{f"val_laplacian/{m}": 0.4 for m in ("SF", "AG", "Qabf", "VIF")},
        }
        for s in (500, 1000, 2000, 4000)
    ]
    (tmp_path / "val" / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    rows = extrapolate(tmp_path, from_step=1000, references=["laplacian", "gff"])  # no gff line: skipped
    assert [r["reference"] for r in rows] == ["laplacian"] * 4
    assert rows[0]["gain_per_doubling"] == pytest.approx(0.05)
    assert rows[0]["steps_to_reach"] == pytest.approx(1000 * 2**4)  # 0.2 + 0.05 * 4 = 0.4
    assert "| Qabf |" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="at least 3"):
        extrapolate(tmp_path, from_step=3000, references=["laplacian"])


def test_step_times_screen_measures_each_width():
    rows = step_times(REPO_ROOT / "experiments" / "train_s4fusion_demo_wide.yaml", [4, 8], steps=1)
    assert [r["dims"] for r in rows] == [[4, 8, 16], [8, 16, 32]]
    assert rows[0]["params"] < rows[1]["params"] and all(r["cpu_s_per_step"] > 0 for r in rows)


def test_paper_compute_counts_the_recipe():
    out = paper_compute(REPO_ROOT / "experiments" / "train_s4fusion_paper.yaml")
    assert out["pairs"] == sum(PAPER_TRAIN_PAIRS.values())
    assert out["steps"] == 800 * math.ceil(out["pairs"] / 20)
    assert out["step_flops"] == 3 * 20 * out["forward_flops_per_crop"] > 0
