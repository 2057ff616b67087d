"""Orchestration of fuse_then_detect: caching, resume, MLflow content, input checks.

The YOLO detector is replaced AT TEST LEVEL ONLY by `stub_detector_for_orchestration_tests`
(predictions = the test ground truth plus one false positive per image, scored with pycocotools),
so these tests cover everything but ultralytics training in seconds. The real detector runs in
tests/detection/test_yolo.py and end-to-end in tests/pipelines/fuse_then_detect/test_e2e.py.
"""

import argparse
import json
import statistics
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from helpers import search_runs
from stub_pipeline import SYNTH, TINY_MODEL, StubDetector, make_cfg

import pipelines.fuse_then_detect.cli as cli
import pipelines.fuse_then_detect.stages as stages
from data.adapters import open_dataset
from data.io import write_png_atomic
from detection.coco_eval import ground_truth_from_yolo
from fusion import S4Fusion, S4FusionConfig
from fusion.methods import MethodInputs
from pipelines.config import ConfigError
from pipelines.fuse_then_detect.orchestration import run_pipeline
from pipelines.fuse_then_detect.report import verdict_line
from pipelines.statistics import map50 as independent_map50
from pipelines.statistics import match_detections


def test_full_run_writes_consistent_report_and_mlflow_runs_and_reruns_from_cache(
    inputs, mlflow_db, tmp_path, stub, monkeypatch
):
    cfg = make_cfg(inputs, tmp_path / "run", mlflow_db, "full")
    result = run_pipeline(cfg, progress=False)
    names = [m.name for m in cfg.methods]
    assert len(stub.calls) == len(names) * 2  # every method x seed trained once

    report = result.report_dir
    for f in (
        "report.md",
        "table6.md",
        "table6.csv",
        "table6_map50.png",
        "detections.png",
        "fusion_metrics.md",
        "fusion_metrics.csv",
        "fusion_metrics_per_image.csv",
    ):
        assert (report / f).is_file(), f
    table = pd.read_csv(report / "table6.csv")
    assert list(table["method"]) == names
    for o, (_, row) in zip(result.outcomes, table.iterrows()):
        # per-seed mAP@50 recomputed from the predictions on disk by pipelines.statistics (our own
        # AP code, not pycocotools, which the stub and the table's COCO column use)
        gt = ground_truth_from_yolo(o.data_yaml.parent, "test")
        n_classes = len(o.detections[0].ap50_per_class)
        per_seed = [
            float(independent_map50(match_detections(gt, d.predictions, n_classes))[0]) for d in o.detections
        ]
        assert row["mAP50"] == pytest.approx(statistics.fmean(per_seed))
        assert row["mAP50_std"] == pytest.approx(statistics.stdev(per_seed))
        assert row["mAP50_coco"] == pytest.approx(statistics.fmean(per_seed))
    md = (report / "table6.md").read_text()
    assert all(f"| {n} |" in md for n in names) and "People AP@50" in md
    assert result.verdict in (report / "report.md").read_text()
    per_image = pd.read_csv(report / "fusion_metrics_per_image.csv", dtype={"image": str})
    test_stems = (tmp_path / "run" / "split" / "test.txt").read_text().split()
    assert len(per_image) == len(names) * len(test_stems)
    # IR-only "fusion" is the IR image itself: every fused image equals its source
    ir_dir = next((tmp_path / "run" / "fused").glob("IR-*"))
    sample = open_dataset("synthetic", inputs["root"])[test_stems[0]]
    assert np.array_equal(
        np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(ir_dir / f"{test_stems[0]}.png")),
        sample.ir,
    )

    runs = search_runs(mlflow_db, "full")
    parents = runs[runs["tags.s4fuse.kind"] == "pipeline"]
    children = runs[runs["tags.s4fuse.kind"] == "method"]
    assert len(parents) == 1 and sorted(children["tags.method"]) == sorted(names)
    assert set(runs["status"]) == {"FINISHED"}
    assert set(children["tags.mlflow.parentRunId"]) == {parents.iloc[0]["run_id"]}
    # one run per (method, seed) in its method's run (tests/pipelines/fuse_then_detect/test_mlflow_ui.py checks their keys)
    seed_runs = runs[runs["tags.s4fuse.kind"] == "detector"]
    assert sorted(seed_runs["tags.mlflow.runName"]) == sorted(f"{n} seed {k}" for n in names for k in (0, 1))
    assert set(seed_runs["tags.mlflow.parentRunId"]) == set(children["run_id"])
    for _, row in table.iterrows():
        child = children[children["tags.method"] == row["method"]].iloc[0]
        assert child["metrics.mAP50"] == pytest.approx(row["mAP50"])
        assert child["metrics.mAP50_std"] == pytest.approx(row["mAP50_std"])
        assert child["metrics.AP50/People"] == pytest.approx(row["AP50/People"])
        assert child["params.detector.epochs"] == "1" and child["params.seeds"] == "[0, 1]"
        assert np.isfinite(child["metrics.fusion/EN"])
    s4 = children[children["tags.method"] == "S4Fusion"].iloc[0]
    assert len(s4["tags.method.checkpoint_sha256"]) == 64  # hashes are tags, not params
    parent = parents.iloc[0]
    assert parent["tags.split.sha256"] == (tmp_path / "run" / "split" / "split.sha256").read_text().split()[0]
    assert parent["tags.verdict"] == result.verdict
    # the paper's Table VI beside ours: a CSV column, a report section, parent-run params
    assert table.set_index("method")["paper_mAP50_pct"].to_dict() == pytest.approx(
        {"IR": 73.8, "VI": 79.3, "Average": np.nan, "Max-precomputed": np.nan, "S4Fusion": 81.3}, nan_ok=True
    )
    assert "Beside the paper (Table VI" in (report / "report.md").read_text()
    assert float(parent["params.paper.mAP50_pct.S4Fusion"]) == 81.3
    client = mlflow.MlflowClient(tracking_uri=mlflow_db)
    artifacts = {a.path for a in client.list_artifacts(parent["run_id"], "report")}
    assert "report/table6.csv" in artifacts and "report/table6_map50.png" in artifacts
    child_artifacts = {a.path for a in client.list_artifacts(s4["run_id"])}
    assert {"samples", "weights", "results"} <= child_artifacts
    # the checkpoint travels inside the pyfunc model s4fusion (tests/pipelines/fuse_then_detect/test_mlflow_ui.py loads and runs it)
    assert [
        m.name for m in client.search_logged_models([s4["experiment_id"]]) if m.source_run_id == s4["run_id"]
    ] == ["s4fusion"]

    # Rerun: every stage comes from the cache, MLflow gets no new runs.
    def must_not_fuse(*args, **kwargs):
        raise AssertionError("fusion was recomputed although it is cached")

    monkeypatch.setattr("fusion.baselines.fuse_baseline", must_not_fuse)
    monkeypatch.setattr("fusion.inference.fuse_image_arrays", must_not_fuse)
    n_calls = len(stub.calls)
    again = run_pipeline(cfg, progress=False)
    assert len(stub.calls) == n_calls
    assert len(search_runs(mlflow_db, "full")) == len(runs)
    assert pd.read_csv(again.report_dir / "table6.csv").equals(table)


def test_interrupted_run_resumes_without_retraining_or_duplicate_runs(
    inputs, mlflow_db, tmp_path, monkeypatch
):
    cfg = make_cfg(inputs, tmp_path / "run", mlflow_db, "resume")
    first = StubDetector(interrupt_at=5)  # IR x2, VI x2, then dies on Average seed 0
    monkeypatch.setattr(stages, "train_and_evaluate", first)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(cfg, progress=False)
    runs = search_runs(mlflow_db, "resume")
    status = dict(zip(runs["tags.mlflow.runName"], runs["status"]))
    assert status == {
        "orchestration": "KILLED",
        "IR": "FINISHED",
        "VI": "FINISHED",
        "Average": "KILLED",
        **{f"{m} seed {k}": "FINISHED" for m in ("IR", "VI") for k in (0, 1)},
    }
    # a temp folder left by a crash while fusing S4Fusion must be discarded, never used
    data = stages.prepare_data(cfg.dataset, cfg.run_dir, progress=False)
    key = stages.fused_key(cfg.methods[-1], data, MethodInputs(checkpoint=inputs["checkpoint"]))
    stale = tmp_path / "run" / "fused" / f"S4Fusion-{key}.tmp"
    stale.mkdir(parents=True)
    (stale / "junk.png").write_bytes(b"partial")

    second = StubDetector()
    monkeypatch.setattr(stages, "train_and_evaluate", second)
    result = run_pipeline(cfg, progress=False)
    retrained = sorted({p.parts[-3].split("-")[0] for p in second.calls})
    assert retrained == ["Average", "Max", "S4Fusion"]  # IR and VI were not retrained
    assert len(second.calls) == 6
    assert first.calls[-1] in second.calls  # the interrupted detector run was redone, not reused
    runs = search_runs(mlflow_db, "resume")
    assert len(runs) == 1 + len(cfg.methods) * (
        1 + len(cfg.seeds)
    )  # no duplicate parent, method or seed runs
    assert set(runs["status"]) == {"FINISHED"}
    assert len(result.outcomes) == len(cfg.methods)
    assert not stale.exists() and not (tmp_path / "run" / "fused" / f"S4Fusion-{key}" / "junk.png").exists()
    assert (
        json.loads((tmp_path / "run" / "fused" / f"S4Fusion-{key}" / "done.json").read_text())["images"]
        == SYNTH["n_images"]
    )


def test_cache_keys_follow_the_checkpoint_content(inputs, tmp_path):
    cfg = make_cfg(inputs, tmp_path / "run", "sqlite:///unused.db", "keys")
    data = stages.prepare_data(cfg.dataset, cfg.run_dir, progress=False)
    method = cfg.methods[-1]
    key = stages.fused_key(method, data, MethodInputs(checkpoint=inputs["checkpoint"]))
    torch.manual_seed(1)  # other weights than the fixture's checkpoint (each test starts from seed 0)
    other = S4Fusion(S4FusionConfig(**TINY_MODEL)).save_exported(tmp_path / "other.pt")
    assert stages.fused_key(method, data, MethodInputs(checkpoint=other)) != key
    assert stages.fused_key(method, data, MethodInputs(checkpoint=inputs["checkpoint"])) == key


def test_bad_precomputed_folder_fails_before_any_work(inputs, mlflow_db, tmp_path, stub, capsys):
    bad = tmp_path / "bad_precomputed"
    bad.mkdir()
    stems = sorted(p.stem for p in inputs["precomputed"].iterdir())
    for stem in stems[1:]:  # the first one is missing
        (bad / f"{stem}.png").write_bytes((inputs["precomputed"] / f"{stem}.png").read_bytes())
    write_png_atomic(bad / f"{stems[2]}.png", np.zeros((32, 32), np.uint8))  # wrong size
    cfg = make_cfg(
        inputs,
        tmp_path / "run",
        mlflow_db,
        "bad",
        methods=[
            {"name": "IR", "kind": "source", "source": "ir"},
            {"name": "Bad", "kind": "precomputed", "folder": str(bad)},
        ],
    )
    with pytest.raises(ConfigError) as err:
        run_pipeline(cfg, progress=False)
    message = str(err.value)
    assert "1 image(s) missing" in message and stems[0] in message
    assert "wrong size" in message and f"{stems[2]}.png is 32x32" in message
    assert stub.calls == [] and not (tmp_path / "run" / "fused").exists()

    # the command line turns it into exit code 2 with the message on stderr
    args = argparse.Namespace(
        config=None, overrides=[], runs_dir=None, tracking_uri=None, methods=None, seeds=None, check=True
    )
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(
        [
            "--set",
            "name=bad",
            "--runs-dir",
            str(tmp_path / "cli"),
            "--set",
            f"dataset={json.dumps({'name': 'synthetic', 'root': str(inputs['root']), 'synthetic': SYNTH})}",
            "--set",
            f"methods=[{{name: Bad, kind: precomputed, folder: {bad}}}]",
            "--check",
        ]
    )
    assert cli.main(args) == 2
    assert "wrong size" in capsys.readouterr().err


def test_missing_dataset_is_reported_by_the_command(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(
        ["--set", "dataset={name: m3fd, root: /no/such/M3FD}", "--check", "--runs-dir", str(tmp_path)]
    )
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert "dataset.root /no/such/M3FD does not exist" in err


def test_check_flag_validates_without_training(inputs, tmp_path, stub, capsys):
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(
        [
            "--runs-dir",
            str(tmp_path / "run"),
            "--methods",
            "IR,VI",
            "--check",
            "--set",
            f"dataset={json.dumps({'name': 'synthetic', 'root': str(inputs['root']), 'synthetic': SYNTH})}",
        ]
    )
    assert cli.main(args) == 0
    assert "OK (2 methods" in capsys.readouterr().out
    assert stub.calls == []
    args = parser.parse_args(["--methods", "IR,Nope", "--check"])
    assert cli.main(args) == 2


class _Outcome:
    def __init__(self, name, kind, value):
        self.name, self.kind, self.value = name, kind, value

    def mean_std(self, attr):
        return self.value, 0.0


def test_verdict_is_computed_from_the_numbers():
    win = [
        _Outcome("IR", "source", 0.30),
        _Outcome("VI", "source", 0.40),
        _Outcome("Avg", "baseline", 0.45),
        _Outcome("S4", "s4fusion", 0.50),
    ]
    assert verdict_line(win).startswith("VERDICT: every fused method beats")
    lose = win[:3] + [_Outcome("S4", "s4fusion", 0.40)]
    line = verdict_line(lose)
    assert line.startswith("VERDICT: NOT all") and "S4 0.400" in line and "VI 0.400" in line
    assert "n/a" in verdict_line(win[2:])


def test_report_statistics_and_a_failed_job_reported_by_method_and_seed(
    inputs, mlflow_db, tmp_path, stub, monkeypatch
):
    from plugins.job_faults import install

    from pipelines.fuse_then_detect.orchestration import JobsFailedError

    cfg = make_cfg(
        inputs,
        tmp_path / "run",
        mlflow_db,
        "stats",
        methods=[  # seeds 0 and 1
            {"name": "IR", "kind": "source", "source": "ir"},
            {"name": "VI", "kind": "source", "source": "vi"},
            {"name": "Average", "kind": "baseline", "baseline": "average"},
        ],
    )
    faults = tmp_path / "faults.json"
    faults.write_text(json.dumps([{"key": ["detect", "Average", 1], "times": None}]))  # always fails
    uninstall = install(faults)  # the serial executor runs the jobs in this process
    try:
        with pytest.raises(JobsFailedError) as err:
            run_pipeline(cfg, progress=False)
    finally:
        uninstall()
    assert "1 job(s) failed" in str(err.value)
    assert "detect Average seed 1: RuntimeError: injected fault" in str(err.value)
    assert int(Path(f"{faults}.detect-Average-1.attempts").read_text()) == 1 + cfg.executor.max_retries
    assert list(pd.read_csv(tmp_path / "run" / "report" / "table6.csv")["method"]) == [
        "IR",
        "VI",
    ]  # the others finished
    status = dict(zip(*(search_runs(mlflow_db, "stats")[c] for c in ("tags.mlflow.runName", "status"))))
    assert status == {
        "orchestration": "FAILED",
        "IR": "FINISHED",
        "VI": "FINISHED",
        "Average": "FAILED",
        **{f"{m} seed {k}": "FINISHED" for m in ("IR", "VI") for k in (0, 1)},
    }

    n_calls = len(stub.calls)
    result = run_pipeline(cfg, progress=False)  # resumes: only the failed job runs, in the same MLflow runs
    assert len(stub.calls) == n_calls + 1
    runs = search_runs(mlflow_db, "stats")
    assert len(runs) == 1 + 3 * 3 and set(runs["status"]) == {
        "FINISHED"
    }  # parent, 3 methods x (method + 2 seeds)
    parent = runs[runs["tags.s4fuse.kind"] == "pipeline"].iloc[0]
    assert parent["params.executor"] == parent["tags.executor"] == "serial"
    # 2 seeds: every table shows mean ± (sample) std; the bootstrap compares Average with the best source row
    table = pd.read_csv(result.report_dir / "table6.csv")
    md = (result.report_dir / "table6.md").read_text()
    class_columns = [c for c in table.columns if c.startswith("AP50/") and not c.endswith("_std")]
    defined = len(table) * 3 + int(table[class_columns].notna().sum().sum())  # mAP@50, @50:95, COCO + classes
    assert md.count("±") == defined
    boot = pd.read_csv(result.report_dir / "bootstrap.csv")
    sources = table[table["kind"] == "source"]
    best = sources.loc[sources["mAP50"].idxmax()]  # the first of equal best, as in the report
    assert list(boot["method"]) == ["Average"] and boot["vs"].iloc[0] == best["method"]
    average = table[table["method"] == "Average"].iloc[0]  # the stub scores with pycocotools: same mAP
    assert boot["diff_map50"].iloc[0] == pytest.approx(average["mAP50_coco"] - best["mAP50_coco"], abs=1e-9)
    assert boot["low"].iloc[0] <= boot["diff_map50"].iloc[0] <= boot["high"].iloc[0]
    assert bool(boot["excludes_0"].iloc[0]) == (boot["low"].iloc[0] > 0 or boot["high"].iloc[0] < 0)
    assert (
        f"Fused methods vs the best source-only row ({best['method']})"
        in (result.report_dir / "report.md").read_text()
    )


def test_in_run_training_succeeds_on_its_first_attempt_and_its_run_gets_model_and_split(
    inputs, mlflow_db, tmp_path, stub
):
    """An S4Fusion trained inside the run logs through the job's recorder (the driver alone talks to
    MLflow): no retry may hide a failure, so retries are off. The child run gets the training curve,
    the fusion split as a dataset input and the pyfunc model (logged once, by the driver)."""
    train = {
        "name": "s4fusion_in_run",
        "model": TINY_MODEL,
        "data": {"crop_size": 25, "val_pairs": 1},
        "loss": {"omega_features": "image", "perception": {"enabled": False}},
        "batch_size": 2,
        "max_steps": 2,
        "ckpt_every": 2,
        "log_every": 1,
        "val_every": 1000,
        "device": "cpu",
    }
    client = mlflow.MlflowClient(mlflow_db)

    def run_into(experiment: str):
        """The pipeline on the same run folder, logged into ``experiment``: its experiment and the
        method's run (not its seed runs)."""
        cfg = make_cfg(
            inputs,
            tmp_path / "run",
            mlflow_db,
            experiment,
            seeds=[0],
            methods=[{"name": "S4Fusion", "kind": "s4fusion", "train": train}],
            executor={"kind": "serial", "max_retries": 0},
        )
        run_pipeline(cfg, progress=False)  # a failed job raises JobsFailedError
        found = client.get_experiment_by_name(experiment)
        (method_run,) = [
            r
            for r in client.search_runs([found.experiment_id])
            if r.data.tags.get("method") == "S4Fusion" and "method_kind" in r.data.tags
        ]
        return found, method_run

    experiment, child = run_into("in_run_training")
    assert [m.step for m in client.get_metric_history(child.info.run_id, "train/loss")] == [1, 2]
    assert any(i.dataset.name.startswith("fusion_split@") for i in child.inputs.dataset_inputs)
    models = client.search_logged_models(experiment_ids=[experiment.experiment_id])
    assert [m.source_run_id for m in models] == [child.info.run_id]

    # The same run folder into a new experiment (as after a driver killed before it replayed the
    # training's calls): every stage is committed and reused, and the recorded curve still reaches the run.
    stub.calls.clear()
    _, child = run_into("in_run_training_again")
    assert not stub.calls  # no detector trained again
    assert [m.step for m in client.get_metric_history(child.info.run_id, "train/loss")] == [1, 2]
