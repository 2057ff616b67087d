"""bench.scaling: its slope, memory and extrapolation rules on made-up curves, and the recorded quick run
(docs/results/scaling_quick.json) behind the blocks in docs/benchmarks.md and docs/pipeline.md."""

import json

import pytest
from helpers import REPO_ROOT

from bench import scaling, scaling_report

RECORD = REPO_ROOT / "docs" / "results" / "scaling_quick.json"


def _curve(sizes, cpu_of_n, rss_of_n=lambda n: 500.0):
    return [
        {"n": n, "wall_s": cpu_of_n(n), "cpu_s": cpu_of_n(n), "peak_rss_mb": rss_of_n(n), "disk_mb": 0.1 * n}
        for n in sizes
    ]


SIZES = [25, 100, 200]


def test_slope_ignores_the_fixed_cost_of_the_smallest_size_and_measures_the_exponent():
    linear_plus_fixed = _curve(SIZES, lambda n: 30.0 + 0.5 * n)  # fixed cost would flatten a fit on all sizes
    quadratic = _curve(SIZES, lambda n: 0.01 * n**2)
    k_linear, fitted = scaling.slope(linear_plus_fixed, "cpu_s")
    k_quadratic, _ = scaling.slope(quadratic, "cpu_s")
    assert fitted == [100, 200]
    assert 0.7 < k_linear <= 1.0
    assert k_quadratic == pytest.approx(2.0)


def test_checks_fail_a_superlinear_stage_and_a_stage_whose_memory_grows():
    stages = {
        "linear": _curve(SIZES, lambda n: 0.5 * n),
        "quadratic": _curve(SIZES, lambda n: 0.01 * n**2),
        "hoarding": _curve(SIZES, lambda n: 0.5 * n, rss_of_n=lambda n: 500.0 + 2.0 * n),
        "a": _curve(SIZES, lambda n: n),
        "b": _curve(SIZES, lambda n: n),
    }
    failed = {c["check"].split(":")[0] for c in scaling.checks(stages, SIZES) if not c["ok"]}
    assert failed == {"quadratic", "hoarding"}
    too_narrow = scaling.checks(stages, [25, 100])
    assert any("span" in c["check"] and not c["ok"] for c in too_narrow)


def test_extrapolation_grows_by_the_cpu_slope_but_never_below_linear():
    stages = {"flat": _curve(SIZES, lambda n: 10.0), "steep": _curve(SIZES, lambda n: 0.001 * n**1.5)}
    slopes = {
        name: {"cpu": scaling.slope(points, "cpu_s")[0], "wall": 3.0} for name, points in stages.items()
    }
    out = scaling.extrapolate(stages, slopes, 4200)
    assert out["flat"]["cpu_s"] == pytest.approx(10.0 * 4200 / 200, rel=1e-3)  # slope 0 -> linear
    assert out["steep"]["cpu_s"] == pytest.approx(0.001 * 4200**1.5, rel=1e-2)
    assert out["steep"]["wall_s"] == pytest.approx(out["steep"]["cpu_s"], rel=1e-2)  # not the wall slope 3


def test_the_recorded_quick_run_passed_its_checks_within_its_budget():
    record = json.loads(RECORD.read_text(encoding="utf-8"))
    sizes = [p["n"] for p in next(iter(record["stages"].values()))]
    assert record["mode"] == "quick" and len(record["stages"]) >= 5
    assert max(sizes) >= 8 * min(sizes) and len(sizes) >= 3
    assert all(c["ok"] for c in record["checks"]), [c for c in record["checks"] if not c["ok"]]
    assert record["bench_wall_s"] <= 12 * 60
    for name, points in record["stages"].items():
        assert scaling.slope(points, "cpu_s")[0] == pytest.approx(record["slopes"][name]["cpu"], abs=1e-3)


def test_docs_blocks_are_rendered_from_the_record():
    record = json.loads(RECORD.read_text(encoding="utf-8"))
    for doc, block in (
        (REPO_ROOT / "docs" / "benchmarks.md", scaling_report.measured_block(record)),
        (REPO_ROOT / "docs" / "pipeline.md", scaling_report.m3fd_block(record)),
    ):
        text = doc.read_text(encoding="utf-8")
        assert block in text, f"{doc.name}: rerun python -m bench.scaling_report {RECORD}"
    assert (REPO_ROOT / "docs" / "images" / "scaling_quick.png").is_file()
