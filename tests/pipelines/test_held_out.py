"""``held_out``: trained runs against baselines on their held-out pairs, pooled (cross-validation)."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from fusion import S4Fusion, S4FusionConfig
from fusion.baselines import fuse_baseline
from fusion.inference import fuse_image_arrays, load_model
from fusion.metrics import compute_metrics
from pipelines.run import main

TINY = dict(
    dims=(8, 16, 32), depths=(1, 1, 1), depths_decoder=(1, 1, 1), num_cmsa=1, d_state=4, d_state_fusion=4
)
METRICS = ["SF", "Qabf"]


@pytest.fixture()
def pairs(shared_data, tmp_path):
    """A folder dataset of four real TNO pairs cropped to 61x73 (metrics stay fast)."""
    root = tmp_path / "pairs"
    for sub in ("ir", "vi"):
        (root / sub).mkdir(parents=True)
        for stem in ("01", "02", "03", "04"):
            with Image.open(shared_data / "samples" / "TNO" / sub / f"{stem}.png") as im:
                im.crop((40, 40, 113, 101)).save(root / sub / f"{stem}.png")
    return root


def make_run(folder, root, train, val, checkpoint=None):
    """A train_fusion output folder: its config (folder dataset, these stems) and a model."""
    folder.mkdir(parents=True)
    cfg = {
        "name": folder.name,
        "model": {"size": "tiny"},
        "data": {
            "train": [{"dataset": "folder", "root": str(root), "stems": train}],
            "val": [{"dataset": "folder", "root": str(root), "stems": val}],
        },
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg))
    if checkpoint is None:
        torch.manual_seed(len(val))
        S4Fusion(S4FusionConfig(**TINY)).save_exported(folder / "s4fusion.pt")
    else:
        shutil.copy(checkpoint, folder / "s4fusion.pt")
    return folder


def test_pooled_folds_score_each_pair_with_the_model_that_held_it_out(pairs, tmp_path, capsys):
    from fusion.shipped_weights import resolve_checkpoint

    fold_a = make_run(tmp_path / "fold_a", pairs, ["03", "04"], ["01", "02"], resolve_checkpoint("demo"))
    fold_b = make_run(tmp_path / "fold_b", pairs, ["01", "02"], ["03", "04"])
    out = tmp_path / "report"
    assert (
        main(
            [
                "held_out",
                "--runs",
                str(fold_a),
                str(fold_b),
                "--references",
                "average",
                "--metrics",
                *METRICS,
                "--out",
                str(out),
            ]
        )
        == 0
    )
    per_pair = pd.read_csv(out / "per_pair.csv", dtype={"pair": str})
    assert len(per_pair) == 8 and set(per_pair.method) == {"s4fusion", "average"}

    # every value recomputed here, each pair with its own fold's model
    models = {"fold_a": load_model(fold_a / "s4fusion.pt"), "fold_b": load_model(fold_b / "s4fusion.pt")}
    for row in per_pair.itertuples():
        stem = row.pair.split("/")[1]
        ir = np.asarray(Image.open(pairs / "ir" / f"{stem}.png").convert("L"))
        vi = np.asarray(Image.open(pairs / "vi" / f"{stem}.png"))
        fused = (
            fuse_image_arrays(models[row.run], ir, vi)
            if row.method == "s4fusion"
            else fuse_baseline("average", ir, vi)
        )
        expected = compute_metrics(ir, vi, fused, metrics=METRICS)
        assert {m: getattr(row, m) for m in METRICS} == pytest.approx(expected, rel=1e-9), row
    assert set(zip(per_pair.run, per_pair.pair)) == {
        ("fold_a", "folder/01"),
        ("fold_a", "folder/02"),
        ("fold_b", "folder/03"),
        ("fold_b", "folder/04"),
    }

    # the comparison from the per-pair values, by hand: mean difference, wins, t = mean / (sd / sqrt(n))
    table = pd.read_csv(out / "comparison.csv")
    for m in METRICS:
        ours = per_pair[per_pair.method == "s4fusion"][m].to_numpy()
        average = per_pair[per_pair.method == "average"][m].to_numpy()
        diff = ours - average
        row = table[(table.reference == "average") & (table.metric == m)].iloc[0]
        assert row.pairs == 4 and row.wins == int((diff > 0).sum())
        assert row.difference == pytest.approx(diff.mean()) and row.s4fusion == pytest.approx(ours.mean())
        assert row.t == pytest.approx(diff.mean() / (diff.std(ddof=1) / 2))
    assert "| average | Qabf | 4 |" in (out / "comparison.md").read_text()
    assert (out / "per_pair_differences.png").stat().st_size > 10_000
    assert "comparison.md" in capsys.readouterr().out


def test_bad_runs_are_all_named_before_any_work(pairs, tmp_path, capsys):
    leaky = make_run(tmp_path / "leaky", pairs, ["01", "02"], ["02"])
    overlap = make_run(tmp_path / "overlap", pairs, ["01"], ["03", "04"])
    other = make_run(tmp_path / "other", pairs, ["01"], ["04"])
    unfinished = make_run(tmp_path / "unfinished", pairs, ["01"], ["03"])
    (unfinished / "s4fusion.pt").unlink()
    corrupt = make_run(tmp_path / "corrupt", pairs, ["02"], ["01"])
    (corrupt / "s4fusion.pt").write_bytes(b"not a checkpoint")
    out = tmp_path / "report"
    assert (
        main(
            [
                "held_out",
                "--runs",
                *map(str, (leaky, overlap, other, unfinished, corrupt)),
                "--references",
                "average",
                "--out",
                str(out),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "held_out: error:" in err and "Traceback" not in err
    assert "leaky: held-out pair(s) also in its training pairs: ['folder/02']" in err
    assert "held out by more than one run (overlap, other)" in err and "folder/04" in err
    assert (
        "unfinished: no s4fusion.pt" in err
        and "corrupt/s4fusion.pt: corrupt, or not a file of tensors" in err
    )
    assert len([ln for ln in err.splitlines() if ln.strip()]) == 6  # the header line and one line per problem
    assert not out.exists()


def test_a_bad_held_out_pair_is_refused(pairs, tmp_path, capsys):
    data = (pairs / "vi" / "03.png").read_bytes()
    (pairs / "vi" / "03.png").write_bytes(data[: len(data) // 2])
    run = make_run(tmp_path / "run", pairs, ["01"], ["02", "03"])
    assert main(["held_out", "--runs", str(run), "--out", str(tmp_path / "report")]) == 2
    err = capsys.readouterr().err
    assert "1 bad held-out pair(s)" in err and "03.png" in err and not (tmp_path / "report").exists()
