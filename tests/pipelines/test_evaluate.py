"""End-to-end `evaluate` on the shared TNO samples: per-image CSV, summary tables, grid, MLflow, resume."""

from __future__ import annotations

import argparse
import shutil

import numpy as np
import pandas as pd
import pytest

from pipelines import evaluate
from pipelines.reports import summary_markdown


def _args(**kw) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    evaluate.add_arguments(parser)
    argv = []
    for k, v in kw.items():
        flag = f"--{k.replace('_', '-')}"
        argv += [flag] if v is True else [flag, *(v if isinstance(v, list) else [str(v)])]
    return parser.parse_args(argv)


@pytest.fixture(scope="module")
def tno_subset(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("tno")
    for sub in ("ir", "vi"):
        (root / sub).mkdir()
        for stem in ("01", "02", "03"):  # three pairs keep the test quick
            shutil.copy(shared_data / "samples" / "TNO" / sub / f"{stem}.png", root / sub / f"{stem}.png")
    return root


def test_evaluate_end_to_end(tno_subset, tmp_path, capsys, monkeypatch):
    from data.io import read_image, write_png_atomic
    from fusion.baselines import fuse_baseline

    grid_columns = []
    draw = evaluate.comparison_grid
    monkeypatch.setattr(
        evaluate,
        "comparison_grid",
        lambda rows, *a, **k: grid_columns.append(list(next(iter(rows.values())))) or draw(rows, *a, **k),
    )

    pre = tmp_path / "precomputed_avg"
    for stem in ("01", "02"):  # "03" is missing on purpose
        write_png_atomic(
            pre / f"{stem}.png",
            fuse_baseline(
                "average",
                read_image(tno_subset / "ir" / f"{stem}.png"),
                read_image(tno_subset / "vi" / f"{stem}.png"),
            ),
        )
    out = tmp_path / "out"
    metrics = ["EN", "SF", "Qabf", "SCD"]
    common = dict(dataset="folder", root=tno_subset, out=out, metrics=metrics, grid_images=["01", "03"])
    assert evaluate.main(_args(methods=["average", str(pre)], **common)) == 2
    assert "03" in capsys.readouterr().err  # the missing file is named, not skipped
    assert (
        evaluate.main(_args(methods=["average", "ir", f"avgfolder={pre}"], allow_missing=True, **common)) == 0
    )
    terminal = capsys.readouterr().out
    # the terminal gets a compact plain table (Markdown only in files) and where the full one is
    assert "**" not in terminal and "<u>" not in terminal and "| " not in terminal
    assert str(out / "summary.md") in terminal and any(
        line.split()[:1] == ["ir"] for line in terminal.splitlines()
    )
    assert grid_columns == [["IR", "VIS", "average", "avgfolder"]]  # the source "ir" is not drawn twice

    per_image = pd.read_csv(out / "per_image_metrics.csv", dtype={"image": str})
    assert len(per_image) == 9 and set(per_image.method) == {"average", "ir", "avgfolder"}
    # the precomputed average equals the in-process one wherever it exists
    a = per_image[per_image.method == "average"].set_index("image")[metrics]
    b = per_image[per_image.method == "avgfolder"].set_index("image")[metrics]
    np.testing.assert_allclose(b.loc[["01", "02"]].to_numpy(), a.loc[["01", "02"]].to_numpy())
    assert b.loc["03"].isna().all() and "03" in (out / "missing.txt").read_text()
    summary = pd.read_csv(out / "summary.csv").set_index("method")
    assert summary.loc["avgfolder", "EN_dropped"] == 1 and summary.loc["average", "EN_n"] == 3
    assert np.isnan(summary.loc["ir", "SCD_mean"])  # SCD undefined when F is a source
    md = (out / "summary.md").read_text()
    assert "EN ↑" in md and "**" in md and "<u>" in md and "±" in md
    ir_row = next(line for line in md.splitlines() if line.startswith("| ir "))
    assert "**" not in ir_row and "<u>" not in ir_row  # a source is a reference, never "best"
    assert (out / "comparison_grid.png").stat().st_size > 10_000

    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{out / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["evaluate-folder"])
    children = runs[runs["tags.mlflow.parentRunId"].notna()]
    assert set(children["params.method"]) == {"average", "ir", "avgfolder"}
    row = children[children["params.method"] == "average"].iloc[0]
    assert row["metrics.EN_mean"] == pytest.approx(summary.loc["average", "EN_mean"])

    # rerun: per-method caches are reused and no MLflow run is duplicated
    assert (
        evaluate.main(_args(methods=["average", "ir", f"avgfolder={pre}"], allow_missing=True, **common)) == 0
    )
    runs2 = mlflow.search_runs(experiment_names=["evaluate-folder"])
    assert len(runs2) == len(runs)


def test_bad_methods_fail_before_work(tno_subset, tmp_path, capsys):
    assert evaluate.main(_args(dataset="folder", root=tno_subset, out=tmp_path, methods=["s4fusion"])) == 2
    assert "needs --checkpoint" in capsys.readouterr().err
    assert (
        evaluate.main(_args(dataset="folder", root=tno_subset, out=tmp_path, methods=["nosuchmethod"])) == 2
    )
    assert "not a baseline" in capsys.readouterr().err
    assert not (tmp_path / "per_method").exists()  # nothing computed


def test_summary_markdown_marks_best_and_second():
    frame = pd.DataFrame({"method": ["a", "b", "c"], "Nabf": [0.3, 0.1, 0.2], "SF": [1.0, 3.0, 2.0]})
    md = summary_markdown(frame, decimals=1)
    assert "Nabf ↓" in md and "SF ↑" in md
    row_b = next(line for line in md.splitlines() if line.startswith("| b "))
    row_c = next(line for line in md.splitlines() if line.startswith("| c "))
    assert row_b.count("**") == 4 and row_c.count("<u>") == 2
