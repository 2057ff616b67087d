"""`ablate` (Table V): the CPU profile trains 3 variants for a few steps, writes one table row and one
MLflow child per variant, and a rerun resumes from the run folder without retraining; config checks."""

from __future__ import annotations

import importlib.util
import json
import math

import pandas as pd
import pytest
from helpers import SHARED_DATA, search_runs

from data.io import read_image, write_png_atomic
from fusion import paper
from pipelines import run as cli
from pipelines.ablate.config import load_ablation_config
from runtime.config_loader import ConfigError

pytestmark = pytest.mark.filterwarnings("ignore:perception.weights=random")
VARIANTS = ["CMSA → ADD", "w/o L_per", "full"]  # Exp. 1, 7, 8


@pytest.fixture(scope="module")
def crops(shared_data, tmp_path_factory):
    """Three held-out TNO pairs cropped to 61x73 (a `folder` dataset): quick to fuse and measure."""
    root = tmp_path_factory.mktemp("test_pairs")
    for stem in ("21", "22", "23"):
        for sub in ("ir", "vi"):
            image = read_image(shared_data / "samples" / "TNO" / sub / f"{stem}.png", "unchanged")
            write_png_atomic(root / sub / f"{stem}.png", image[100:161, 150:223])
    return root


def _argv(crops, run_dir) -> list[str]:
    samples = SHARED_DATA / "samples"
    sets = [
        f"base.data.train.0.root={samples / 'TNO'}",
        f"base.data.train.1.root={samples / 'RoadScene'}",
        "base.data.crop_size=25",
        "base.batch_size=2",
        "base.max_steps=2",
        "base.ckpt_every=1",
        "base.log_every=1",
        f"test=[{{dataset: folder, root: '{crops}'}}]",
        "cost_size=[61, 73]",
    ]
    return [
        "ablate",
        "--config",
        "table5_cpu.yaml",
        "--runs-dir",
        str(run_dir),
        "--variants",
        "1,w/o L_per,8",
        *[a for s in sets for a in ("--set", s)],
    ]


def _train_markers(run_dir):
    return {p.parent.name: p.stat().st_mtime_ns for p in sorted((run_dir / "train").glob("*/done.json"))}


def test_cpu_profile_trains_three_variants_and_resumes(crops, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert cli.main(_argv(crops, run_dir)) == 0
    table = pd.read_csv(run_dir / "report" / "table5.csv")
    assert list(table["variant"]) == VARIANTS and list(table["exp"]) == [1, 7, 8]
    paper_rows = {r.exp: r.values for r in paper.table5_rows()}
    for _, row in table.iterrows():
        for m in ("AG", "VIF", "Qabf", "SF"):
            assert math.isfinite(row[f"{m}_mean"]) and row["images"] == 3
        for m in ("AG", "VIF", "Qabf", "SF", "MUSIQ", "TOPIQ"):
            assert row[f"{m}_paper"] == paper_rows[row["exp"]][m]
        assert 0 < row["params_M"] < 1 and row["GFLOPs"] > 0
    # CMSA -> ADD is another model; w/o L_per is the full model trained with another loss
    assert (
        table.loc[0, "params_M"] != table.loc[2, "params_M"]
        and table.loc[1, "params_M"] == table.loc[2, "params_M"]
    )
    assert table.loc[2, "params_M_paper"] == paper.table7_efficiency()["S4Fusion"].params_m
    md = (run_dir / "report" / "table5.md").read_text(encoding="utf-8")
    assert md.count("\n| ") == 1 + 3 and "AG paper" in md and "**" in md and "<u>" in md  # header + 3 rows
    if importlib.util.find_spec("pyiqa") is None:
        assert "MUSIQ, TOPIQ not computed: pyiqa is not installed" in md and table["MUSIQ_mean"].isna().all()

    uri = f"sqlite:///{run_dir / 'mlflow.db'}"
    runs = search_runs(uri, "ablate/table5_cpu")
    parents = runs[runs["tags.mlflow.parentRunId"].isna()]
    children = runs[runs["tags.mlflow.parentRunId"].notna()]
    assert len(parents) == 1 and sorted(children["tags.variant"]) == sorted(VARIANTS)
    assert (children["status"] == "FINISHED").all() and (
        children["tags.mlflow.parentRunId"] == parents["run_id"].iloc[0]
    ).all()
    assert float(parents["params.paper.exp7.VIF"].iloc[0]) == paper_rows[7]["VIF"]
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    for run_id in children["run_id"]:  # each child holds its variant's training curve
        assert len(client.get_metric_history(run_id, "train/loss")) == 2
        logged = client.get_run(run_id).data.metrics
        assert math.isfinite(logged["test/VIF"]) and any(
            logged["cost/params_M"] == pytest.approx(v) for v in table["params_M"]
        )
        assert [a.path for a in client.list_artifacts(run_id, "model")] == ["model/s4fusion.pt"]
    override = children.set_index("tags.variant").loc["w/o L_per", "params.train.loss.perception.enabled"]
    assert override == "False"

    markers = _train_markers(run_dir)
    assert len(markers) == 3
    capsys.readouterr()
    assert cli.main(_argv(crops, run_dir)) == 0  # rerun: everything comes from the run folder
    timings = json.loads((run_dir / "timings.json").read_text())
    assert [v["trained_now"] for v in timings["variants"].values()] == [False] * 3
    assert _train_markers(run_dir) == markers
    assert len(search_runs(uri, "ablate/table5_cpu")) == len(runs)  # no run duplicated
    pd.testing.assert_frame_equal(
        pd.read_csv(run_dir / "report" / "table5.csv").drop(columns="trained_now"),
        table.drop(columns="trained_now"),
    )


def test_variants_are_the_base_recipe_plus_the_papers_overrides(tmp_path):
    cfg = load_ablation_config("table5_cpu.yaml")
    variants = cfg.resolved_variants()
    assert [v.name for v in variants] == [r.variant for r in paper.table5_rows()]
    by_exp = {v.exp: v.train for v in variants}
    assert by_exp[1].model == {"size": "tiny", "interaction": "add"}
    assert by_exp[6].model_config().patch_mark is False and by_exp[8].model_config().patch_mark is True
    assert by_exp[7].loss.perception.enabled is False and by_exp[8].loss.perception.enabled is True
    # apart from the overrides every variant has the same recipe and seed
    plain = [{**v.train.to_dict(), "model": None, "loss": None} for v in variants]
    assert all(p == plain[0] for p in plain)
    assert len({v.slug for v in variants}) == 8


def test_paper_profile_inlines_the_paper_recipe_and_names_missing_data(tmp_path, capsys):
    assert cli.main(["ablate", "--config", "table5_msrs.yaml", "--check"]) == 2  # one line, no traceback
    assert capsys.readouterr().err.startswith("ablate: error: 5 problems:")
    with pytest.raises(ConfigError) as info:
        load_ablation_config("table5_msrs.yaml")
    text = str(info.value)
    for key, folder in (
        ("test.0.root", "datasets/MSRS"),
        ("base.data.train.1.root", "datasets/M3FD"),
        ("base.data.train.2.root", "datasets/RoadScene"),
        ("base.data.val.0.root", "datasets/TNO"),
    ):
        assert f"{key}: {folder} does not exist" in text and f"--set {key}=PATH" in text
    roots = [
        f"{k}={tmp_path}"
        for k in (
            "test.0.root",
            "base.data.train.0.root",
            "base.data.train.1.root",
            "base.data.train.2.root",
            "base.data.val.0.root",
        )
    ]
    cfg = load_ablation_config("table5_msrs.yaml", roots)
    assert (
        cli.main(
            ["ablate", "--config", "table5_msrs.yaml", "--check", *[a for r in roots for a in ("--set", r)]]
        )
        == 0
    )
    assert "OK (8 variants" in capsys.readouterr().out
    variants = cfg.resolved_variants()
    assert len(variants) == 8 and {v.train.epochs for v in variants} == {800}
    assert {v.train.loss.perception.weights for v in variants} == {"imagenet"}
    assert cfg.metrics == list(paper.paper_data()["table5"]["columns"])


def test_bad_variants_are_all_reported(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_ablation_config(
            "table5_cpu.yaml",
            [
                "variants=[{exp: 9}, {overrides: {model: {interaction: nope}}}, "
                "{name: x, overrides: {model: {interaction: add}}}]"
            ],
        )
    text = str(info.value)
    assert "variants.0.exp: 9 is not a Table V experiment" in text and "variants.1: give exp" in text


def test_a_failed_variant_does_not_stop_the_others(tmp_path, monkeypatch, capsys):
    """Driver policy without training: one job raises, the others' rows and children are kept."""
    import numpy as np

    from pipelines.ablate import driver
    from pipelines.ablate.jobs import VariantResult

    model = tmp_path / "model.pt"
    model.write_bytes(b"stand-in model file")

    def fake_job(ctx, spec):
        if spec.slug == "cmsa_cnn":
            raise RuntimeError("out of memory (simulated)")
        frame = pd.DataFrame(
            {"method": spec.name, "image": ["a", "b"], "AG": [1.0, 3.0], "SF": [2.0, np.nan]}
        )
        return VariantResult(spec.name, spec.slug, str(model), True, frame, {"params_M": 1.0, "GFLOPs": 2.0})

    monkeypatch.setattr(driver, "run_variant", fake_job)
    argv = [
        "ablate",
        "--config",
        "table5_cpu.yaml",
        "--runs-dir",
        str(tmp_path / "run"),
        "--variants",
        "1,2,8",
        "--set",
        "metrics=[AG, SF]",
        "--set",
        "executor.max_retries=0",
    ]
    assert cli.main(argv) == 1
    assert "FAILED: RuntimeError: out of memory (simulated)" in capsys.readouterr().out
    table = pd.read_csv(tmp_path / "run" / "report" / "table5.csv")
    assert list(table["exp"]) == [1, 8] and list(table["AG_mean"]) == [2.0, 2.0]
    assert "CMSA → CNN: FAILED" in (tmp_path / "run" / "report" / "table5.md").read_text(encoding="utf-8")
    runs = search_runs(f"sqlite:///{tmp_path / 'run' / 'mlflow.db'}", "ablate/table5_cpu")
    status = dict(zip(runs["tags.mlflow.runName"], runs["status"]))
    assert status == {
        "table5_cpu": "FAILED",
        "CMSA → ADD": "FINISHED",
        "CMSA → CNN": "FAILED",
        "full": "FINISHED",
    }


def test_perceptual_columns_when_pyiqa_is_present(crops, tmp_path, monkeypatch):
    """With pyiqa importable, MUSIQ/TOPIQ are asked of fusion.metrics.perceptual per fused image and
    cached (pyiqa and its weights are replaced by a stand-in: not installed here)."""
    import sys
    import types

    import numpy as np

    from pipelines.ablate import jobs
    from pipelines.ablate.driver import perceptual_note

    monkeypatch.setitem(sys.modules, "pyiqa", types.ModuleType("pyiqa"))
    wanted, notes = perceptual_note(load_ablation_config("table5_cpu.yaml"))
    assert wanted == {"MUSIQ": "musiq", "TOPIQ": "topiq_nr"} and notes == []
    calls = []

    def scores(image, metrics):
        calls.append(list(metrics))
        return {"musiq": float(image.mean()), "topiq_nr": float(image.std())}

    monkeypatch.setattr("fusion.metrics.perceptual.perceptual_scores", scores)
    spec = jobs.VariantSpec(
        "full",
        "full",
        {},
        [{"dataset": "folder", "root": str(crops)}],
        ["SF"],
        wanted,
        "mmif",
        (61, 73),
        str(tmp_path),
    )
    pairs = jobs.test_pairs(spec)
    fused_dir = tmp_path / "fused"
    for image_id, ds, stem in pairs:  # "fused" = the VIS image, so the expected scores are known
        write_png_atomic(fused_dir / f"{image_id}.png", ds[stem].vi)
    frame = jobs.metrics_stage(spec, fused_dir, pairs)
    assert list(frame.columns) == ["method", "image", "missing", "SF", "MUSIQ", "TOPIQ"] and len(calls) == 3
    vi = read_image(fused_dir / f"{pairs[0][0]}.png", "unchanged")
    assert frame.loc[0, "MUSIQ"] == pytest.approx(float(vi.mean())) and np.isfinite(frame["SF"]).all()
    jobs.metrics_stage(spec, fused_dir, pairs)
    assert len(calls) == 3  # cached
