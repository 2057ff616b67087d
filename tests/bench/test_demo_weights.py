"""The shipped demo weights (fusion/weights/s4fusion_demo.*): they load by name, and the numbers of their
model card are what the weights give on the held-out pairs (recomputed here)."""

from __future__ import annotations

import hashlib
import json
import re

import numpy as np
import pytest
import torch
from helpers import REPO_ROOT

from fusion import S4Fusion
from fusion.inference import load_model
from fusion.methods import make_fuser
from fusion.shipped_weights import CHECKPOINT_ALIASES, resolve_checkpoint
from fusion.train import TrainConfig, resolve_sources
from fusion.validation import fuser_metrics, load_pairs, model_fuser

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
    assert WEIGHTS.stat().st_size < 4_500_000  # small enough to ship in the package: float16 storage
    stored = torch.load(WEIGHTS, weights_only=True)["state_dict"]
    assert (
        {v.dtype for v in stored.values() if v.is_floating_point()}
        == {torch.float16}
        == {getattr(torch, SIDECAR["storage_dtype"])}
    )
    model = S4Fusion.load(WEIGHTS)
    assert next(model.parameters()).dtype == torch.float32  # loaded back as float32
    assert (
        model.cfg == TrainConfig.from_dict(SIDECAR["config"]).model_config()
    )  # the recipe's model, as built
    assert not load_model("demo").training


def test_sidecar_is_the_current_recipe_and_held_out_pairs_are_unseen():
    recipe_cfg = TrainConfig.from_yaml(REPO_ROOT / SIDECAR["recipe"])
    shipped_cfg = TrainConfig.from_dict(SIDECAR["config"])
    # the model as built (a named size such as {size: demo} equals its spelled-out fields)
    assert recipe_cfg.model_config() == shipped_cfg.model_config()
    recipe, shipped = recipe_cfg.to_dict(), shipped_cfg.to_dict()
    ignored = ("tracking", "ckpt_every", "log_every", "val_every", "max_steps", "model")
    assert {k: v for k, v in recipe.items() if k not in ignored} == {
        k: v for k, v in shipped.items() if k not in ignored
    }
    trained = {(s["dataset"], stem) for s in SIDECAR["config"]["data"]["train"] for stem in s["stems"]}
    held = {tuple(name.split("/")) for name in SIDECAR["held_out_pairs"]}
    assert len(held) == len(SIDECAR["held_out_pairs"]) >= 10 and not trained & held


def test_card_table_matches_the_sidecar():
    rows = {
        m.group(1): [float(v) for v in m.group(2).split("|")]
        for m in re.finditer(r"^\| (\w+) \| ([-\d.| ]+) \|$", CARD, flags=re.M)
    }
    assert set(rows) == set(SIDECAR["metrics"]) and "s4fusion_demo" in rows and "average" in rows
    for method, values in rows.items():
        assert values == [round(SIDECAR["metrics"][method][k], 4) for k in METRICS], method
    assert f"{SIDECAR['steps']} steps" in CARD
    cost = SIDECAR["train_cost"]  # measured by the run (train_cost.json), never typed in
    assert (
        f"{cost['cpu_s'] / 60:.0f} CPU minutes over {cost['processes']} processes" in CARD
        and cost["cpu_model"] in CARD
    )
    # the cross-validation the card quotes is the sidecar's (from the recipe's held_out report)
    if SIDECAR["crossval"] is None:
        assert "No cross-validation of this recipe is recorded." in CARD
    for ref, by_metric in (SIDECAR["crossval"] or {}).items():
        for metric, c in by_metric.items():
            if ref in ("average", "laplacian") and metric in ("Qabf", "VIF"):
                assert (
                    f"{metric} {c['ours']:.3f} vs {c['reference']:.3f}, better on {c['wins']} of {c['pairs']}"
                    in CARD
                )
    # every ordering the card states is one of the sidecar's, decided by more than the margin
    from bench.demo_weights import CARD_MARGIN, verdict_sentences

    assert verdict_sentences(SIDECAR) in CARD
    for ref, by_metric in SIDECAR["comparisons"].items():
        for metric, c in by_metric.items():
            ref_mean = SIDECAR["metrics"][ref][metric]
            assert (c["ordering"] == "level") == (abs(c["difference"]) <= CARD_MARGIN * abs(ref_mean)), (
                ref,
                metric,
            )


def test_card_states_a_stopped_schedule(monkeypatch, tmp_path):
    """A run stopped by max_steps (the <= 15-minute recipe) is not described as annealed to lr_end."""
    import bench.demo_weights as dw

    monkeypatch.setattr(dw, "CARD", tmp_path / "card.md")
    config = TrainConfig.from_yaml(REPO_ROOT / "experiments" / "train_s4fusion_demo.yaml").to_dict()
    dw.render_card({**SIDECAR, "config": config, "crossval": None})
    card = (tmp_path / "card.md").read_text(encoding="utf-8")
    assert f"on the cosine towards {config['optim']['lr_end']}, stopped at step {config['max_steps']}" in card
    assert "cosine-annealed" not in card and "No cross-validation of this recipe is recorded." in card


def test_shipped_weights_reproduce_the_card_numbers_and_orderings(held_out):
    assert [p.name for p in held_out] == SIDECAR["held_out_pairs"]
    recomputed = {"s4fusion_demo": fuser_metrics(model_fuser(load_model("demo")), held_out, METRICS)}
    for k in METRICS:
        # the same weights on another CPU/thread count may round a few fused pixels differently
        assert recomputed["s4fusion_demo"][k] == pytest.approx(
            SIDECAR["metrics"]["s4fusion_demo"][k], rel=2e-3
        ), k
    for baseline in set(SIDECAR["metrics"]) - {"s4fusion_demo"}:
        recomputed[baseline] = fuser_metrics(make_fuser(baseline), held_out, METRICS)
        assert recomputed[baseline] == pytest.approx(SIDECAR["metrics"][baseline], rel=1e-9), baseline
    # each ordering the card states holds in the recomputed means (its margin is 2.5x the tolerance above)
    for ref, by_metric in SIDECAR["comparisons"].items():
        for metric, c in by_metric.items():
            diff = recomputed["s4fusion_demo"][metric] - recomputed[ref][metric]
            if c["ordering"] != "level":
                assert (diff > 0) == (c["ordering"] == "above"), (ref, metric, diff)


def test_fuse_command_accepts_demo(shared_data, tmp_path):
    from pipelines.run import main

    out = tmp_path / "fused"
    root = shared_data / "samples" / "RoadScene"
    assert (
        main(
            ["fuse", "--dataset", "roadscene", "--root", str(root), "--checkpoint", "demo", "--out", str(out)]
        )
        == 0
    )
    fused = sorted(out.glob("*.png"))
    assert len(fused) == 10
    from data.io import read_image

    img = read_image(fused[0], "unchanged")
    assert img.ndim == 3 and img.dtype == np.uint8  # color VIS -> color result


def test_fuse_then_detect_and_evaluate_accept_demo(tmp_path):
    from data.adapters import PairedImageDataset
    from pipelines.config import parse_config
    from pipelines.evaluate import resolve_methods

    pipeline = parse_config(
        {
            "name": "t",
            "methods": [{"name": "S4", "kind": "s4fusion", "checkpoint": "demo"}],
            "detector": {"model": "yolov8n.yaml", "imgsz": 64, "epochs": 1},
        }
    )  # validates
    assert pipeline.methods[0].method().prepare().checkpoint == WEIGHTS.resolve()
    (method,) = resolve_methods(["s4fusion"], PairedImageDataset([]), [], "demo", allow_missing=False)
    assert method.method.kind == "s4fusion" and method.inputs.checkpoint == WEIGHTS.resolve()


def test_crossval_curves_pool_the_folds_as_one_mean_over_all_pairs(tmp_path, shared_data, monkeypatch):
    """``bench.demo_weights crossval-curves``: each fold's validation means, weighted by its number of
    held-out pairs, give the mean over all pairs; steps a fold has not reached are left out."""
    from bench.demo_weights import crossval_curves, held_out_pair_count, pool_fold_histories, report_means

    folds = [
        [{"step": 10, "val/VIF": 0.2}, {"step": 20, "val/VIF": 0.4}, {"step": 30, "val/VIF": 0.5}],
        [{"step": 10, "val/VIF": 0.6}, {"step": 20, "val/VIF": 0.7}],
    ]
    pooled = pool_fold_histories(folds, [3, 1])
    assert [r["step"] for r in pooled] == [10, 20]
    assert pooled[0]["val/VIF"] == pytest.approx((3 * 0.2 + 0.6) / 4)
    assert pooled[1]["val/VIF"] == pytest.approx((3 * 0.4 + 0.7) / 4)

    monkeypatch.chdir(REPO_ROOT)  # the fold configs' data roots are relative to the repository root
    runs = []
    for k in range(3):
        run = tmp_path / f"fold{k}"
        (run / "val").mkdir(parents=True)
        (run / "config.yaml").write_text(
            (REPO_ROOT / f"experiments/crossval/train_demo_fold{k}.yaml").read_text()
        )
        records = [
            {"step": s, **{f"{p}/{m}": s / 100 + k for p in ("val", "val_average") for m in METRICS}}
            for s in (900, 1800)
        ]
        (run / "val" / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
        runs.append(run)
    assert [held_out_pair_count(r) for r in runs] == [15, 15, 13]
    report = tmp_path / "report"  # a held_out report's per-pair table: S4Fusion rows are averaged, others not
    report.mkdir()
    (report / "per_pair.csv").write_text(
        "run,pair,method,"
        + ",".join(METRICS)
        + "\n"
        + "".join(
            f"fold0,tno/0{i},{m}," + ",".join([str(v)] * 4) + "\n"
            for i, (m, v) in enumerate([("s4fusion", 1), ("s4fusion", 2), ("average", 9)])
        )
    )
    assert report_means(report) == {m: 1.5 for m in METRICS}
    out = tmp_path / "curves.png"
    crossval_curves([("long", runs)], [("short", 1800, report)], out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_comparisons_state_an_ordering_only_beyond_the_margin():
    from bench.demo_weights import CARD_MARGIN, REFERENCES, comparisons

    base = [1.0, 2.0, 3.0]
    per_pair = {"s4fusion_demo": {k: [v * (1 + 3 * CARD_MARGIN) for v in base] for k in METRICS}}
    per_pair.update({ref: {k: list(base) for k in METRICS} for ref in REFERENCES})
    per_pair["gff"] = {k: [v * (1 + 2 * CARD_MARGIN) for v in base] for k in METRICS}  # within the margin
    per_pair["max"] = {k: [v * 2 for v in base] for k in METRICS}
    out = comparisons(per_pair)
    assert {c["ordering"] for c in out["average"].values()} == {"above"}
    assert {c["ordering"] for c in out["gff"].values()} == {"level"}
    assert {(c["ordering"], c["wins"], c["pairs"]) for c in out["max"].values()} == {("below", 0, 3)}


def test_card_ships_a_run_with_its_measured_cost(tmp_path, monkeypatch, shared_data):
    """``bench.demo_weights card`` on a (tiny) finished run: float16 weights, the numbers measured on them,
    the run's own train_cost.json, and a card the checks above accept."""
    import bench.demo_weights as dw
    from fusion.train import train

    roadscene = shared_data / "samples" / "RoadScene"
    cfg = TrainConfig.from_dict(
        {
            "name": "tiny",
            "seed": 0,
            "model": {"size": "tiny"},
            "data": {
                "train": [
                    {"dataset": "roadscene", "root": str(roadscene), "stems": ["FLIR_00211", "FLIR_04269"]}
                ],
                "val": [
                    {"dataset": "roadscene", "root": str(roadscene), "stems": ["FLIR_04688", "FLIR_04722"]}
                ],
                "crop_size": 25,
            },
            "loss": {"perception": {"enabled": False, "weights": "random"}, "omega_features": "image"},
            "optim": {"warmup_epochs": 0},
            "batch_size": 2,
            "epochs": 2,
            "device": "cpu",
            "val_every": 1000,
            "tracking": {"enabled": False},
            "validation": {"metrics": list(METRICS), "references": ["average"]},
        }
    )
    run = tmp_path / "run"
    train(cfg, run)
    for name in ("WEIGHTS", "SIDECAR", "CARD"):
        monkeypatch.setattr(dw, name, tmp_path / "ship" / f"w{getattr(dw, name).suffix}")
    (tmp_path / "ship").mkdir()
    dw.card(run, "experiments/tiny.yaml")
    sidecar = json.loads(dw.SIDECAR.read_text(encoding="utf-8"))
    card = dw.CARD.read_text(encoding="utf-8")
    assert sidecar["train_cost"] == json.loads((run / "train_cost.json").read_text(encoding="utf-8"))
    assert sidecar["held_out_pairs"] == ["roadscene/FLIR_04688", "roadscene/FLIR_04722"]
    assert set(sidecar["comparisons"]) == set(dw.REFERENCES) and dw.verdict_sentences(sidecar) in card
    assert sidecar["metrics"]["s4fusion_demo"] == pytest.approx(sidecar["float32_metrics"], rel=2e-2)
    stored = torch.load(dw.WEIGHTS, weights_only=True)["state_dict"]
    assert {v.dtype for v in stored.values() if v.is_floating_point()} == {torch.float16}
    assert f"{sidecar['steps']} steps" in card and "No cross-validation of this recipe is recorded." in card
