"""Held-out validation metrics (fusion.validation): fuser means, reference lines, history file, config errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import SHARED_DATA

from data.adapters import open_dataset
from fusion import S4Fusion, S4FusionConfig
from fusion.baselines import fuse_baseline
from fusion.metrics import compute_metrics
from fusion.validation import (
    HeldOutValidation,
    ValidationConfig,
    fuser_metrics,
    load_pairs,
    read_history,
    record_metrics,
)

TINY_MODEL = dict(
    dims=[8, 16, 32], depths=[1, 1, 1], depths_decoder=[1, 1, 1], num_cmsa=1, d_state=4, d_state_fusion=4
)
KEYS = ("SF", "AG", "Qabf", "VIF")


@pytest.fixture(scope="module")
def pairs(shared_data):
    """Two small real pairs: a gray TNO one and a color RoadScene one."""
    tno = open_dataset("tno", SHARED_DATA / "samples" / "TNO").subset(["07"])
    road = open_dataset("roadscene", SHARED_DATA / "samples" / "RoadScene").subset(["FLIR_04722"])
    return load_pairs([tno, road])


def test_load_pairs_names_and_limit(pairs, shared_data):
    assert [p.name for p in pairs] == ["tno/07", "roadscene/FLIR_04722"]
    assert pairs[0].vi.ndim == 2 and pairs[1].vi.ndim == 3 and pairs[1].ir.dtype == np.uint8
    tno = open_dataset("tno", SHARED_DATA / "samples" / "TNO")
    assert len(load_pairs([tno], max_pairs=3)) == 3


def test_fuser_metrics_are_the_means_of_compute_metrics(pairs):
    fuser = lambda ir, vi: fuse_baseline("laplacian", ir, vi)  # noqa: E731
    got = fuser_metrics(fuser, pairs, KEYS)
    rows = [compute_metrics(p.ir, p.vi, fuser(p.ir, p.vi), metrics=KEYS) for p in pairs]
    assert set(got) == set(KEYS)
    for k in KEYS:
        assert got[k] == pytest.approx(np.mean([r[k] for r in rows]), rel=1e-12)
    # laplacian transfers more edge information than averaging on these pairs
    avg = fuser_metrics(lambda ir, vi: fuse_baseline("average", ir, vi), pairs, KEYS)
    assert got["Qabf"] > avg["Qabf"] and got["SF"] > avg["SF"]


def test_fuser_metrics_ignores_undefined_values(pairs):
    # A constant fused image has undefined VIF on no pair but SF = AG = 0; Qabf of a constant image is 0.
    flat = lambda ir, vi: np.full(ir.shape[:2], 128, np.uint8)  # noqa: E731
    got = fuser_metrics(flat, pairs, ("SF", "AG"))
    assert got == {"SF": 0.0, "AG": 0.0}
    with pytest.raises(ValueError, match="at least one pair"):
        fuser_metrics(flat, [], ("SF",))


def test_held_out_validation_reports_model_and_reference_lines(pairs, shared_data):
    torch.manual_seed(0)
    model = S4Fusion(S4FusionConfig(**TINY_MODEL)).train()
    tno = open_dataset("tno", SHARED_DATA / "samples" / "TNO").subset(["07"])
    road = open_dataset("roadscene", SHARED_DATA / "samples" / "RoadScene").subset(["FLIR_04722"])
    validation = HeldOutValidation(
        ValidationConfig(metrics=["Qabf", "SF"], references=["average", "max"]), [tno, road]
    )
    scores = validation(model)
    assert set(scores) == {
        "val/Qabf",
        "val/SF",
        "val_average/Qabf",
        "val_average/SF",
        "val_max/Qabf",
        "val_max/SF",
    }
    assert model.training  # the model's mode is restored
    avg = fuser_metrics(lambda ir, vi: fuse_baseline("average", ir, vi), pairs, ("Qabf", "SF"))
    assert scores["val_average/Qabf"] == pytest.approx(avg["Qabf"]) and scores[
        "val_average/SF"
    ] == pytest.approx(avg["SF"])
    assert validation.references() is validation.references()  # computed once
    assert HeldOutValidation(ValidationConfig(metrics=[]), [tno])(model) == {}
    assert HeldOutValidation(ValidationConfig(), [])(model) == {}


def test_validation_config_errors_name_the_problem():
    with pytest.raises(ValueError, match="unknown metric"):
        ValidationConfig(metrics=["Qabf", "NotAMetric"])
    with pytest.raises(ValueError, match=r"references \['bilateral'\] are not baselines"):
        ValidationConfig(references=["bilateral"])


def test_metric_history_is_rewritten_on_resume(tmp_path):
    path = tmp_path / "val" / "metrics.jsonl"
    record_metrics(path, 100, {"val/Qabf": 0.3})
    record_metrics(path, 200, {"val/Qabf": 0.4})
    record_metrics(path, 200, {"val/Qabf": 0.45})  # the same step again after a resume
    record_metrics(path, 300, {"val/Qabf": 0.5})
    assert read_history(path) == [
        {"step": 100, "val/Qabf": 0.3},
        {"step": 200, "val/Qabf": 0.45},
        {"step": 300, "val/Qabf": 0.5},
    ]
