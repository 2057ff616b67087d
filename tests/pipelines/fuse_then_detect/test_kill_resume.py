"""SIGKILL safety: a command killed by a real SIGKILL at a named hook point (runtime/hooks.py; the kill
is installed by tests/plugins/kill_at.py, which launches the command) and rerun unchanged gives exactly the uninterrupted result, with its MLflow
runs reused (never duplicated, none left RUNNING) and no metric step logged twice.

Kill points: ``train.step_end`` (S4Fusion training, before and after its first checkpoint),
``fuse.image`` (mid-fusion), ``yolo.export`` (YOLO tree written, not committed) and
``detector.batch`` (inside ultralytics' training loop). ``fuse_then_detect`` is killed at each point
in turn in one run folder (every rerun resumes from the previous kill's leftovers), then rerun to
the end. Each command runs in a child process, as a user would run it; the uninterrupted reference
run is shared per module.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from helpers import REPO_ROOT
from PIL import Image
from plugins import kill_at

pytestmark = pytest.mark.slow

TRAIN_SETS = [
    "model={dims: [8, 16, 32], depths: [1, 1, 1], depths_decoder: [1, 1, 1], num_cmsa: 1, d_state: 4, "
    "d_state_fusion: 4}",
    "data.crop_size=25",
    "batch_size=2",
    "max_steps=4",
    "ckpt_every=2",
    "log_every=1",
    "val_every=1000",
    'data.train.0.stems=["01", "07"]',
    "data.train.1.stems=[FLIR_04269]",
    "validation.metrics=[]",
    "data.val_pairs=1",
]  # the end-of-run validation: one grid pair, no metrics
PIPELINE_SETS = ["methods.3.train.max_steps=4", "methods.3.train.ckpt_every=2"]


def run_command(args: list[str], kill_point: str | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m pipelines.run ARGS`` in a child process; with ``kill_point`` (``POINT[@N]``) the
    child SIGKILLs itself there (tests/plugins/kill_at.py) and must die of it."""
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "YOLO_OFFLINE": "1",
        "YOLO_AUTOINSTALL": "false",
        "MPLBACKEND": "Agg",
    }
    module_args = ["pipelines.run", *args]
    proc = subprocess.run(
        kill_at.command(kill_point, module_args) if kill_point else [sys.executable, "-m", *module_args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    expected = -signal.SIGKILL if kill_point else 0
    assert proc.returncode == expected, (
        f"{args} (kill at {kill_point}): rc {proc.returncode}\n{proc.stderr[-3000:]}"
    )
    return proc


def all_runs(db: Path) -> pd.DataFrame:
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{db}")
    try:
        return mlflow.search_runs(search_all_experiments=True)
    finally:
        mlflow.set_tracking_uri(previous)


def loss_history(db: Path, run_id: str) -> list[tuple[int, float]]:
    client = mlflow.MlflowClient(f"sqlite:///{db}")
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, "train/loss"))


def exported_weights(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


# ---- train_fusion ------------------------------------------------------------------------------
def train_args(out: Path) -> list[str]:
    args = ["train_fusion", "--config", "experiments/train_s4fusion_demo.yaml", "--out", str(out), "--resume"]
    return args + [a for s in TRAIN_SETS for a in ("--set", s)]


@pytest.fixture(scope="module")
def train_reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("train_reference")
    run_command(train_args(out))
    return out


@pytest.mark.parametrize(
    "kill_point", ["train.step_end@1", "train.step_end@3"]
)  # before / after the first checkpoint
def test_train_fusion_killed_and_rerun_equals_uninterrupted(train_reference, tmp_path, kill_point):
    run_command(train_args(tmp_path), kill_point)
    run_command(train_args(tmp_path))
    ref, got = exported_weights(train_reference / "s4fusion.pt"), exported_weights(tmp_path / "s4fusion.pt")
    assert ref.keys() == got.keys() and all(torch.equal(ref[k], got[k]) for k in ref)
    runs = all_runs(tmp_path / "mlflow.db")
    assert len(runs) == 1 and list(runs["status"]) == ["FINISHED"]  # reused, not duplicated
    (ref_id,) = all_runs(train_reference / "mlflow.db")["run_id"]
    history = loss_history(tmp_path / "mlflow.db", runs["run_id"][0])
    assert [s for s, _ in history] == [1, 2, 3, 4]  # no step logged twice
    assert history == loss_history(train_reference / "mlflow.db", ref_id)


# ---- fuse_then_detect --------------------------------------------------------------------------
def pipeline_args(run_dir: Path) -> list[str]:
    args = [
        "fuse_then_detect",
        "--config",
        "fuse_then_detect_tiny.yaml",
        "--runs-dir",
        str(run_dir),
        "--methods",
        "S4Fusion",
    ]
    return args + [a for s in PIPELINE_SETS for a in ("--set", s)]


def pipeline_outputs(run_dir: Path) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    table = pd.read_csv(run_dir / "report" / "table6.csv")
    (fused_dir,) = (run_dir / "fused").glob("S4Fusion-*")
    images = {p.name: np.asarray(Image.open(p)) for p in sorted(fused_dir.glob("*.png"))}
    return table, images


@pytest.fixture(scope="module")
def pipeline_reference(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("pipeline_reference")
    run_command(pipeline_args(run_dir))
    return run_dir


# In pipeline order: each rerun resumes from what the previous kill left and is killed at the next point.
PIPELINE_KILL_POINTS = ["train.step_end@3", "fuse.image@5", "yolo.export", "detector.batch@2"]


def test_fuse_then_detect_killed_at_each_point_in_turn_and_rerun_equals_uninterrupted(
    pipeline_reference, tmp_path
):
    """One run folder, killed by SIGKILL during in-run S4Fusion training (after step 3, past the step-2
    checkpoint), then mid-fusion, then with the YOLO tree written but not committed, then inside
    ultralytics' training loop; the last rerun must give exactly the uninterrupted run."""
    for kill_point in PIPELINE_KILL_POINTS:
        run_command(pipeline_args(tmp_path), kill_point)  # asserts the process died by SIGKILL there
    run_command(pipeline_args(tmp_path))
    ref_table, ref_images = pipeline_outputs(pipeline_reference)
    table, images = pipeline_outputs(tmp_path)
    pd.testing.assert_frame_equal(table, ref_table)  # the exact uninterrupted numbers
    assert images.keys() == ref_images.keys() and all(
        np.array_equal(images[k], ref_images[k]) for k in images
    )
    runs = all_runs(tmp_path / "mlflow.db")
    # one parent, one method run, one (method, seed) run: reused, not duplicated
    assert sorted(runs["tags.s4fuse.kind"]) == ["detector", "method", "pipeline"]
    assert set(runs["status"]) == {"FINISHED"}  # nothing left RUNNING by the killed process
    child = runs[runs["tags.s4fuse.kind"] == "method"]["run_id"].iloc[0]
    ref_runs = all_runs(pipeline_reference / "mlflow.db")
    ref_child = ref_runs[ref_runs["tags.s4fuse.kind"] == "method"]["run_id"].iloc[0]
    history = loss_history(tmp_path / "mlflow.db", child)
    assert [s for s, _ in history] == [1, 2, 3, 4]  # the in-run training logged each step once
    assert history == loss_history(pipeline_reference / "mlflow.db", ref_child)
