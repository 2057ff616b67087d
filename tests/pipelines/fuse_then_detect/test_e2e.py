"""End-to-end `fuse_then_detect` on the tiny profile (slow, a few minutes on CPU).

First one serial run: real S4Fusion training, real ultralytics detectors, pycocotools cross-check,
report and MLflow. Then the same profile with 2 seeds on a local Ray instance (num_cpus=2) against
the serial executor: same Table VI, same MLflow runs and metrics, same predictions; a job failing on
its first attempt is retried; a job that always fails is reported by method and seed while the
others finish; a rerun resumes without duplicates; a run folder the workers cannot see is refused
before any work.

One serial and one Ray run are shared by the Ray tests; the failure and resume tests reuse the Ray
run's committed stages, so they retrain only the detectors they remove. That serial run is the
second pipeline run in this process: it must equal Ray's fresh workers (it did not while numba's
first scan reset torch's thread count mid-job, CHANGELOG.md 2026-11-30), which is why both live in one
module (pytest-xdist keeps a module on one worker).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from helpers import search_runs
from plugins import job_faults, storage_probe

import pipelines.fuse_then_detect.cli as cli
from pipelines.config import EXPERIMENTS_DIR, load_config
from pipelines.executor import SharedStorageError
from pipelines.fuse_then_detect.orchestration import run_pipeline

pytestmark = pytest.mark.slow
TINY = EXPERIMENTS_DIR / "fuse_then_detect_tiny.yaml"


def test_tiny_profile_end_to_end(tmp_path):
    cfg = load_config(TINY, [f"runs_dir={tmp_path / 'run'}"])
    result = run_pipeline(cfg, progress=False)
    names = [m.name for m in cfg.methods]

    report = result.report_dir
    table = pd.read_csv(report / "table6.csv")
    assert list(table["method"]) == names
    for _, row in table.iterrows():
        assert 0.0 <= row["mAP50"] <= 1.0 and 0.0 <= row["mAP50_95"] <= row["mAP50"] + 1e-9
        # pycocotools on the same predictions agrees with ultralytics up to interpolation details
        assert abs(row["coco_minus_ultralytics"]) <= 0.05
        assert row["coco_minus_ultralytics"] == pytest.approx(row["mAP50_coco"] - row["mAP50"])
    for f in ("report.md", "table6.md", "table6_map50.png", "detections.png", "fusion_metrics.md"):
        assert (report / f).stat().st_size > 0
    assert result.verdict.startswith("VERDICT:") and result.verdict in (report / "report.md").read_text()

    # The S4Fusion row used a model trained in this run, and its fused images differ from the sources.
    s4 = next(o for o in result.outcomes if o.name == "S4Fusion")
    assert (cfg.run_dir / "s4fusion").is_dir() and any((cfg.run_dir / "s4fusion").glob("*/s4fusion.pt"))
    assert len(list(s4.fused.glob("*.png"))) == cfg.dataset.synthetic["n_images"]

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(result.tracking_uri)
    try:
        experiments = {e.name for e in mlflow.search_experiments()}
        runs = mlflow.search_runs(search_all_experiments=True)
    finally:
        mlflow.set_tracking_uri(previous)
    # only our experiment (ultralytics' own MLflow callback is off: no stray runs/experiments)
    assert experiments <= {"Default", result.experiment}
    seeds = result.outcomes[0].seeds
    assert len(runs) == 1 + len(names) * (1 + len(seeds)) and set(runs["status"]) == {
        "FINISHED"
    }  # + (method, seed) runs
    children = runs[runs["tags.s4fuse.kind"] == "method"].set_index("tags.method")
    for _, row in table.iterrows():
        child = children.loc[row["method"]]
        assert child["metrics.mAP50"] == pytest.approx(row["mAP50"])
        assert child["metrics.mAP50_coco"] == pytest.approx(row["mAP50_coco"])
        for cls in ("People", "Car"):
            expected = row[f"AP50/{cls}"]
            got = child.get(f"metrics.AP50/{cls}", math.nan)
            assert (math.isnan(expected) and math.isnan(got)) or got == pytest.approx(expected)
        assert child["params.detector.initialisation"] == "scratch:yolov8n.yaml"
    # the in-run S4Fusion training logged its losses into the S4Fusion child run
    s4_child = children.loc["S4Fusion"]
    assert any(c.startswith("metrics.train/") and np.isfinite(s4_child[c]) for c in runs.columns)


def tiny(run_dir: Path, kind: str):
    return load_config(
        TINY,
        [
            f"runs_dir={run_dir}",
            "seeds=[0,1]",
            f"executor.kind={kind}",
            "executor.max_retries=1",
            "tracking.experiment=tiny",
        ],
    )


@pytest.fixture(scope="module")
def faults(tmp_path_factory) -> Path:
    """The fault-injection rules file (tests/plugins/job_faults.py) of the Ray workers; absent = no faults."""
    return tmp_path_factory.mktemp("faults") / "faults.json"


@pytest.fixture(scope="module")
def ray_instance(faults):
    ray = pytest.importorskip("ray", reason="Ray tests need Ray: pip install -e '.[test]'")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        logging_level="ERROR",
        log_to_driver=False,
        runtime_env=job_faults.ray_runtime_env(faults),
    )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def runs(ray_instance, faults, tmp_path_factory):
    """One serial and one Ray run of the tiny profile; in the Ray run, a detector job raises on its
    first attempt (injected) and is retried."""
    tmp = tmp_path_factory.mktemp("ray_vs_serial")
    # the second pipeline run in this process, after test_tiny_profile_end_to_end's (module docstring)
    serial = run_pipeline(tiny(tmp / "serial", "serial"), progress=False)
    faults.write_text(json.dumps([{"key": ["detect", "VI", 1], "times": 1}]))
    try:
        ray = run_pipeline(tiny(tmp / "ray", "ray"), progress=False)
    finally:
        faults.unlink()
    return serial, ray


def child_runs(result):
    runs = search_runs(result.tracking_uri, result.experiment)
    return runs, runs[runs["tags.s4fuse.kind"] == "method"].set_index("tags.method").sort_index()


def predictions(result):
    return {
        (o.name, seed): [(p.image, p.box, p.score, p.cls) for p in r.predictions]
        for o in result.outcomes
        for seed, r in zip(o.seeds, o.detections)
    }


def test_ray_gives_the_serial_table_mlflow_runs_and_predictions(runs, faults):
    serial, ray = runs
    assert int(Path(f"{faults}.detect-VI-1.attempts").read_text()) == 2  # failed once, retried once
    table = pd.read_csv(serial.report_dir / "table6.csv")
    assert pd.read_csv(ray.report_dir / "table6.csv").equals(table)
    assert (ray.report_dir / "table6.md").read_text() == (serial.report_dir / "table6.md").read_text()
    assert (ray.report_dir / "bootstrap.csv").read_text() == (serial.report_dir / "bootstrap.csv").read_text()
    assert predictions(ray) == predictions(serial)

    (s_runs, s_children), (r_runs, r_children) = child_runs(serial), child_runs(ray)
    assert (
        len(r_runs) == len(s_runs) == 1 + len(table) * (1 + 2)
    )  # parent, per method: its run + one per seed
    assert sorted(r_runs["tags.mlflow.runName"]) == sorted(s_runs["tags.mlflow.runName"])
    assert set(r_runs["status"]) == {"FINISHED"}
    metrics = sorted(c for c in s_runs.columns if c.startswith("metrics."))
    assert sorted(c for c in r_runs.columns if c.startswith("metrics.")) == metrics
    assert any(c.startswith("metrics.train/") for c in metrics)  # the in-run S4Fusion's curves, replayed
    # timings: the throughput and the training cost (wall and CPU seconds) differ run to run
    results = [c for c in metrics if c != "metrics.train/samples_per_s" and not c.startswith("metrics.cost/")]
    pd.testing.assert_frame_equal(r_children[results], s_children[results])
    s_parent, r_parent = (r[r["tags.s4fuse.kind"] == "pipeline"].iloc[0] for r in (s_runs, r_runs))
    assert (s_parent["params.executor"], r_parent["params.executor"]) == ("serial", "ray")
    assert (s_parent["tags.executor"], r_parent["tags.executor"]) == ("serial", "ray")
    assert r_parent["tags.config_sha256"] == s_parent["tags.config_sha256"]


def test_a_failing_job_is_reported_while_the_others_finish_and_a_rerun_resumes(
    runs, faults, tmp_path, capsys
):
    serial, ray = runs
    run_dir = tmp_path / "run"
    shutil.copytree(ray.run_dir, run_dir, ignore=shutil.ignore_patterns("mlflow.db", "mlartifacts", "report"))
    for method, seed in (("Average", 0), ("IR", 1)):  # two detectors to redo; Average seed 0 always fails
        shutil.rmtree(next(run_dir.glob(f"detect/{method}-*/*/seed{seed}")))
    faults.write_text(json.dumps([{"key": ["detect", "Average", 0], "times": None}]))
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(
        [
            "--config",
            str(TINY),
            "--runs-dir",
            str(run_dir),
            "--seeds",
            "0,1",
            "--executor",
            "ray",
            "--set",
            "executor.max_retries=1",
            "--set",
            "tracking.experiment=tiny",
        ]
    )
    try:
        assert cli.main(args) == 1
    finally:
        faults.unlink()
    err = capsys.readouterr().err
    assert "1 job(s) failed" in err and "detect Average seed 0: RuntimeError: injected fault" in err
    assert any(run_dir.glob("detect/IR-*/*/seed1/result.json"))  # the other job finished
    report = (run_dir / "report" / "report.md").read_text()
    assert "## Failed jobs" in report and "detect Average seed 0" in report
    assert list(pd.read_csv(run_dir / "report" / "table6.csv")["method"]) == ["IR", "VI", "S4Fusion"]
    first = search_runs(f"sqlite:///{run_dir / 'mlflow.db'}", "tiny")
    assert dict(zip(first["tags.mlflow.runName"], first["status"])) == {
        "fuse_then_detect_tiny": "FAILED",
        "IR": "FINISHED",
        "VI": "FINISHED",
        "Average": "FAILED",
        "S4Fusion": "FINISHED",
        **{f"{m} seed {k}": "FINISHED" for m in ("IR", "VI", "S4Fusion") for k in (0, 1)},
    }

    assert cli.main(args) == 0  # the rerun redoes only the failed job
    again = search_runs(f"sqlite:///{run_dir / 'mlflow.db'}", "tiny")
    # resumed, no duplicates: only Average's two (method, seed) runs are new
    assert len(again) == len(first) + 2 and set(again["status"]) == {"FINISHED"}
    assert pd.read_csv(run_dir / "report" / "table6.csv").equals(
        pd.read_csv(serial.report_dir / "table6.csv")
    )


def test_a_run_folder_the_workers_cannot_see_is_refused_before_any_work(
    ray_instance, tmp_path, monkeypatch, capsys
):
    from pipelines.executor import ray_executor

    elsewhere = tmp_path / "other_mount"
    elsewhere.mkdir()
    # the workers' view of the run folder is another directory (a node mounting a different filesystem)
    monkeypatch.setattr(ray_executor, "_probe_storage", storage_probe.probe_elsewhere(elsewhere))
    cfg = tiny(tmp_path / "run", "ray")
    with pytest.raises(SharedStorageError, match="not on storage every Ray node sees"):
        run_pipeline(cfg, progress=False)
    assert not (cfg.run_dir / "mlflow.db").exists() and not (cfg.run_dir / "fused").exists()
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    assert (
        cli.main(
            parser.parse_args(["--config", str(TINY), "--runs-dir", str(cfg.run_dir), "--executor", "ray"])
        )
        == 2
    )
    assert "cannot read the driver's probe file" in capsys.readouterr().err
