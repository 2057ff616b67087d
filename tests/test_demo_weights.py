"""The shipped demo weights (fusion/weights/s4fusion_demo.*): they load by name, and the numbers of their
model card are what the weights give on the held-out pairs (recomputed here)."""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

from fusion import S4Fusion
from fusion.checkpoints import CHECKPOINT_ALIASES, resolve_checkpoint
from fusion.inference import load_model, make_fuser
from fusion.train import TrainConfig, resolve_sources
from fusion.validation import fuser_metrics, load_pairs, model_fuser

from conftest import REPO_ROOT

WEIGHTS = CHECKPOINT_ALIASES["demo"]
SIDECAR = json.loads(WEIGHTS.with_suffix(".json").read_text(encoding="utf-8"))
CARD = WEIGHTS.with_suffix(".md").read_text(encoding="utf-8")
METRICS = ("SF", "AG", "Qabf", "VIF")


@pytest.fixture(scope="module")
def held_out(shared_data, monkeypatch_module):
    cfg = TrainConfig.from_dict(SIDECAR["config"])
    monkeypatch_module.chdir(REPO_ROOT)  # the recipe's data roots are relative to the repository root
    return load_pairs(resolve_sources(cfg.data.val, cfg.data.split_seed)[0])


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_demo_weights_resolve_and_load():
    assert resolve_checkpoint("demo") == WEIGHTS and WEIGHTS.is_file()
    assert hashlib.sha256(WEIGHTS.read_bytes()).hexdigest() == SIDECAR["sha256"]
    assert WEIGHTS.stat().st_size < 2_000_000  # small enough to ship in the package
    model = S4Fusion.load(WEIGHTS)
    assert model.cfg == TrainConfig.from_dict(SIDECAR["config"]).model_config()  # the recipe's model, as built
    assert not load_model("demo").training


def test_sidecar_is_the_current_recipe_and_held_out_pairs_are_unseen():
    recipe_cfg = TrainConfig.from_yaml(REPO_ROOT / SIDECAR["recipe"])
    shipped_cfg = TrainConfig.from_dict(SIDECAR["config"])
    # the model as built (a named size such as {size: demo} equals its spelled-out fields)
    assert recipe_cfg.model_config() == shipped_cfg.model_config()
    recipe, shipped = recipe_cfg.to_dict(), shipped_cfg.to_dict()
    ignored = ("tracking", "ckpt_every", "log_every", "val_every", "max_steps", "model")
    assert {k: v for k, v in recipe.items() if k not in ignored} == {k: v for k, v in shipped.items() if k not in ignored}
    trained = {(s["dataset"], stem) for s in SIDECAR["config"]["data"]["train"] for stem in s["stems"]}
    held = {tuple(name.split("/")) for name in SIDECAR["held_out_pairs"]}
    assert len(held) == len(SIDECAR["held_out_pairs"]) >= 10 and not trained & held


def test_card_table_matches_the_sidecar():
    rows = {m.group(1): [float(v) for v in m.group(2).split("|")]
            for m in re.finditer(r"^\| (\w+) \| ([-\d.| ]+) \|$", CARD, flags=re.M)}
    assert set(rows) == set(SIDECAR["metrics"]) and "s4fusion_demo" in rows and "average" in rows
    for method, values in rows.items():
        assert values == [round(SIDECAR["metrics"][method][k], 4) for k in METRICS], method
    assert f"{SIDECAR['steps']} steps" in CARD


def test_shipped_weights_reproduce_the_card_numbers(held_out):
    assert [p.name for p in held_out] == SIDECAR["held_out_pairs"]
    recomputed = fuser_metrics(model_fuser(load_model("demo")), held_out, METRICS)
    for k in METRICS:
        # the same weights on another CPU/thread count may round a few fused pixels differently
        assert recomputed[k] == pytest.approx(SIDECAR["metrics"]["s4fusion_demo"][k], rel=2e-3), k
    for baseline in set(SIDECAR["metrics"]) - {"s4fusion_demo"}:
        scores = fuser_metrics(make_fuser(baseline), held_out, METRICS)
        assert scores == pytest.approx(SIDECAR["metrics"][baseline], rel=1e-9), baseline


def test_fuse_command_accepts_demo(shared_data, tmp_path):
    from pipelines.run import main

    out = tmp_path / "fused"
    root = shared_data / "samples" / "RoadScene"
    assert main(["fuse", "--dataset", "roadscene", "--root", str(root), "--checkpoint", "demo", "--out", str(out)]) == 0
    fused = sorted(out.glob("*.png"))
    assert len(fused) == 10
    from data.io import read_image
    img = read_image(fused[0], "unchanged")
    assert img.ndim == 3 and img.dtype == np.uint8  # color VIS -> color result


def test_fuse_then_detect_and_evaluate_accept_demo(tmp_path):
    from pipelines.config import parse_config
    from pipelines.evaluate import resolve_methods
    from pipelines.fuse_then_detect.stages import s4fusion_checkpoint

    pipeline = parse_config({"name": "t", "methods": [{"name": "S4", "kind": "s4fusion", "checkpoint": "demo"}],
                             "detector": {"model": "yolov8n.yaml", "imgsz": 64, "epochs": 1}})  # validates
    assert s4fusion_checkpoint(pipeline.methods[0], None, tmp_path) == WEIGHTS.resolve()
    (method,) = resolve_methods(["s4fusion"], [], "demo", allow_missing=False)
    assert method.kind == "s4fusion" and Path(method.source) == WEIGHTS.resolve()
