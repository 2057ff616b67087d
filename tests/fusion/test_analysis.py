"""Paper values as data (fusion.paper), Table VIII / Fig. 13 measurements (fusion.analysis) and the
``analyze`` command, on a tiny random model."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from helpers import SHARED_DATA

from data.io import read_image, write_png_atomic
from fusion import S4Fusion, S4FusionConfig, paper
from fusion.analysis import DELTA_COLUMNS, DeltaRecorder, delta_means, fuse_and_record_deltas, image_entropies
from fusion.losses import PerceptionNet
from fusion.modules.cmsa import CrossSS2D
from fusion.ops.cross_scan import interleave_modalities
from pipelines.run import main as run_main

TINY = dict(
    dims=(8, 16, 32), depths=(1, 1, 1), depths_decoder=(1, 1, 1), num_cmsa=2, d_state=4, d_state_fusion=4
)
PAPER_MD = SHARED_DATA.parent / "paper" / "s4fusion_tables.md"


# ---- paper values: an independent reading of the markdown sheet -----------------------------------
def _number(cell: str) -> float:
    return float(cell[:-1]) * 1000 if cell.endswith("k") else float(cell)


def _section(text: str, heading: str) -> list[list[str]]:
    """Table rows (cells) of the section whose heading starts with ``heading``; header and rule dropped."""
    block = re.split(r"^## ", text, flags=re.M)
    body = next(b for b in block if b.startswith(heading + " ") or b.startswith(heading + "\n"))
    rows = [
        [c.strip() for c in line.strip().strip("|").split("|")]
        for line in body.splitlines()
        if line.startswith("|")
    ]
    return [rows[0]] + rows[2:]  # header, then data rows


@pytest.fixture(scope="module")
def paper_md() -> str:
    if not PAPER_MD.is_file():
        pytest.fail(
            f"paper reference sheet not found at {PAPER_MD} (it sits beside the checkout in ../shared/paper)"
        )
    return PAPER_MD.read_text(encoding="utf-8")


def test_tables_1_to_4_match_the_sheet(paper_md):
    header, *rows = _section(paper_md, "Tables I-IV")
    columns = ["SF", "AG", "VIF", "Qabf", "MUSIQ", "TOPIQ"]
    for col, dataset in enumerate(["msrs", "roadscene", "tno", "m3fd"], start=1):
        ours = paper.table_metrics(dataset)
        expected = {row[0]: dict(zip(columns, map(float, row[col].split()), strict=True)) for row in rows}
        assert ours == expected
        assert list(ours) == [row[0] for row in rows]  # paper order
    assert [paper.fusion_table_number(d) for d in ("MSRS", "roadscene", "tno", "m3fd")] == [
        "I",
        "II",
        "III",
        "IV",
    ]


def test_table_5_matches_the_sheet(paper_md):
    header, *rows = _section(paper_md, "Table V")
    columns = ["AG", "VIF", "Qabf", "SF", "MUSIQ", "TOPIQ"]
    ours = paper.table5_rows()
    assert [(r.exp, r.variant) for r in ours] == [(int(row[0]), row[1]) for row in rows]
    assert [r.values for r in ours] == [dict(zip(columns, map(float, row[2].split()))) for row in rows]
    # the overrides name real model variants
    for row in ours:
        model_cfg = row.overrides.get("model", {})
        S4FusionConfig(**{**TINY, **model_cfg})


def test_tables_6_7_8_and_lists_match_the_sheet(paper_md):
    header, values = _section(paper_md, "Table VI")
    assert paper.table6_map50() == dict(zip(header, map(float, values), strict=True))
    assert list(paper.table6_map50()) == header
    header, gflops, params = _section(paper_md, "Table VII")
    ours = paper.table7_efficiency()
    assert list(ours) == header[1:]
    assert {m: e.gflops for m, e in ours.items()} == dict(zip(header[1:], map(_number, gflops[1:])))
    assert {m: e.params_m for m, e in ours.items()} == dict(zip(header[1:], map(_number, params[1:])))
    header, *rows = _section(paper_md, "Table VIII")
    assert {k: (v.delta_ir, v.delta_vis) for k, v in paper.table8_deltas().items()} == {
        int(r[0]): (float(r[1]), float(r[2])) for r in rows
    }
    listed = re.search(r"Competing methods \(Sec\. IV-A1\): ([^.]+)\.", paper_md.replace("\n", " ")).group(1)
    assert paper.competing_methods() == [m.strip() for m in listed.split(",")]
    assert "2405.20881" in paper.citation()


# ---- Table VIII: delta capture --------------------------------------------------------------------
def _cross_scan_reference(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, 4, C, HW): row-major, column-major, and both reversed."""
    row, col = x.flatten(2), x.transpose(2, 3).flatten(2)
    return torch.stack([row, col, row.flip(-1), col.flip(-1)], dim=1)


def _delta_reference(block: CrossSS2D, x: torch.Tensor, x_proj: torch.Tensor) -> torch.Tensor:
    """Delta (before bias/softplus) of one modality from the block's input, written out from the parameters."""
    feats = block.in_proj(x)[..., : block.d_inner].permute(0, 3, 1, 2)
    feats = F.silu(F.conv2d(feats, block.conv2d.weight, block.conv2d.bias, padding=1, groups=block.d_inner))
    seq = _cross_scan_reference(feats)  # (B, 4, D, L)
    low_rank = torch.einsum("kcd,bkdl->bkcl", x_proj[:, : block.dt_rank], seq)  # (B, 4, R, L)
    return torch.einsum("kdr,bkrl->bkdl", block.dt_projs_weight, low_rank)


def _blocks(model):
    return [((level, i), b) for level, layer in enumerate(model.fusion) for i, b in enumerate(layer.blocks)]


@pytest.fixture(scope="module")
def tiny64() -> S4Fusion:
    torch.manual_seed(0)
    return S4Fusion(S4FusionConfig(**TINY)).double().eval()


def test_hooked_delta_means_equal_an_independent_recomputation(tiny64):
    gen = torch.Generator().manual_seed(1)
    ir, vi = (
        torch.rand(2, 1, 30, 40, generator=gen, dtype=torch.float64),
        torch.rand(2, 1, 30, 40, generator=gen, dtype=torch.float64),
    )
    inputs = {}
    handles = [
        block.register_forward_pre_hook(lambda m, args, key=key: inputs.__setitem__(key, args))
        for key, block in _blocks(tiny64)
    ]
    try:
        _, recorded = fuse_and_record_deltas(tiny64, ir, vi)
    finally:
        for h in handles:
            h.remove()
    assert sorted(recorded) == sorted(k for k, _ in _blocks(tiny64))  # level 0 included: 3 levels x 2 blocks
    for key, block in _blocks(tiny64):
        x_ir, x_vis = inputs[key]
        with torch.no_grad():
            d_ir = _delta_reference(block, x_ir, block.x_proj_weight_ir)
            d_vis = _delta_reference(block, x_vis, block.x_proj_weight_vis)
        bias = block.dt_projs_bias.detach().view(1, 4, -1, 1)
        expected = torch.stack(
            [d.mean(dim=(1, 2, 3)) for d in (d_ir, d_vis, F.softplus(d_ir + bias), F.softplus(d_vis + bias))],
            dim=1,
        )
        assert recorded[key].shape == (2, len(DELTA_COLUMNS))
        assert (recorded[key] - expected).abs().max().item() <= 1e-10, key
        # the modalities' deltas do differ, so a swapped split would be caught above
        assert (expected[:, 0] - expected[:, 1]).abs().min().item() > 1e-6


def test_split_follows_the_interleave_order():
    ir = torch.full((1, 4, 3, 5), 2.0)
    vis = torch.full((1, 4, 3, 5), -3.0)
    delta = interleave_modalities(ir, vis)
    assert torch.equal(delta[..., 0::2], ir)  # IR at even positions
    bias = torch.zeros(4, 3)
    means = delta_means(delta, bias)[0].tolist()
    # means of equal small integers are exact in float32; softplus is within a few u (pytest's rel 1e-6)
    assert means == pytest.approx([2.0, -3.0, math.log1p(math.exp(2.0)), math.log1p(math.exp(-3.0))])


def test_recorder_removes_its_hooks(tiny64):
    with DeltaRecorder(tiny64) as recorder:
        assert recorder._handles
    block = tiny64.fusion[1].blocks[0]
    assert not block.delta_tap._forward_hooks


# ---- Fig. 13: entropy ------------------------------------------------------------------------------
def test_entropy_of_a_constant_logit_model_is_log_1000():
    with pytest.warns(UserWarning, match="UNTRAINED"):
        net = PerceptionNet("random")
    torch.nn.init.zeros_(net.net.fc.weight)
    torch.nn.init.constant_(net.net.fc.bias, 0.7)
    images = torch.rand(3, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    entropies = image_entropies(net, images)
    assert entropies.shape == (3,)
    # equal logits, so float32 log_softmax is exactly -log(1000) rounded; the entropy is a float32 sum of
    # 1000 equal terms: <= (1000 + 4) u log(1000) = 4.1e-4 off in any summation order (measured 8e-7)
    assert entropies.tolist() == pytest.approx(
        [math.log(1000)] * 3, abs=(1000 + 4) * 2.0**-24 * math.log(1000)
    )


# ---- the analyze command --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_tno(shared_data, tmp_path_factory) -> Path:
    """Two shared TNO pairs, centre-cropped to 61x73 so the CPU run takes seconds."""
    root = tmp_path_factory.mktemp("tno")
    for stem in ("01", "02"):
        for folder in ("ir", "vi"):
            img = read_image(shared_data / "samples" / "TNO" / folder / f"{stem}.png", "unchanged")
            h, w = img.shape[:2]
            write_png_atomic(
                root / folder / f"{stem}.png", img[h // 2 - 30 : h // 2 + 31, w // 2 - 36 : w // 2 + 37]
            )
    return root


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    full = S4Fusion(S4FusionConfig(**TINY)).save_exported(folder / "full.pt")
    wo_lper = S4Fusion(S4FusionConfig(**TINY)).save_exported(folder / "wo_lper.pt")
    return full, wo_lper


def _analyze(out: Path, root: Path, full: Path, compare: Path) -> int:
    return run_main(
        [
            "analyze",
            "--checkpoint",
            f"full={full}",
            "--compare",
            f"wo_lper={compare}",
            "--dataset",
            "tno",
            "--root",
            str(root),
            "--out",
            str(out),
            "--resnet-weights",
            "random",
            "--bins",
            "5",
        ]
    )


def test_analyze_cli_end_to_end(small_tno, checkpoints, tmp_path):
    full, compare = checkpoints
    with pytest.warns(UserWarning, match="UNTRAINED"):
        assert _analyze(tmp_path / "a", small_tno, full, compare) == 0
    out = tmp_path / "a"
    table8 = pd.read_csv(out / "table8.csv")
    assert list(table8["checkpoint"]) == ["full"] * 3 + ["wo_lper"] * 3
    assert list(table8["layer"]) == [1, 2, 3] * 2 and list(table8["images"]) == [2] * 6
    assert list(table8["paper_delta_vis"][:3]) == [paper.table8_deltas()[k].delta_vis for k in (1, 2, 3)]
    per_image = pd.read_csv(out / "table8_per_image.csv")
    assert len(per_image) == 2 * 2 * 3 * TINY["num_cmsa"]  # checkpoints x images x levels x blocks
    level = per_image[(per_image.checkpoint == "full") & (per_image.level == 2)]
    assert table8.loc[2, "delta_vis"] == pytest.approx(level["delta_vis"].mean(), rel=1e-12)
    md = (out / "table8.md").read_text(encoding="utf-8")
    assert "Δ̄_I paper" in md and "-19.811" in md
    entropies = pd.read_csv(out / "fig13_entropy.csv")
    assert sorted(entropies["checkpoint"].unique()) == ["full", "wo_lper"] and len(entropies) == 4
    assert ((entropies["entropy"] >= 0) & (entropies["entropy"] <= math.log(1000) + 1e-6)).all()
    assert "untrained (random) ResNet50" in (out / "fig13_entropy.md").read_text(encoding="utf-8")
    assert (out / "fig13_entropy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # deterministic: a second run gives identical numbers
    with pytest.warns(UserWarning, match="UNTRAINED"):
        assert _analyze(tmp_path / "b", small_tno, full, compare) == 0
    for name in ("table8.csv", "table8_per_image.csv", "fig13_entropy.csv"):
        assert (out / name).read_text() == (tmp_path / "b" / name).read_text(), name


def test_analyze_bad_input_is_one_line_and_exit_2(small_tno, checkpoints, tmp_path, capsys):
    full, _ = checkpoints
    code = run_main(
        [
            "analyze",
            "--checkpoint",
            str(tmp_path / "nope.pt"),
            "--dataset",
            "tno",
            "--root",
            str(small_tno),
            "--out",
            str(tmp_path / "o"),
            "--resnet-weights",
            "random",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "nope.pt does not exist" in err and "Traceback" not in err
    code = run_main(
        [
            "analyze",
            "--checkpoint",
            str(full),
            "--dataset",
            "tno",
            "--root",
            str(tmp_path / "no_root"),
            "--out",
            str(tmp_path / "o"),
            "--resnet-weights",
            "random",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "no_root does not exist" in err
    assert not (tmp_path / "o").exists()  # nothing written
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    code = run_main(
        [
            "analyze",
            "--checkpoint",
            str(garbage),
            "--dataset",
            "tno",
            "--root",
            str(small_tno),
            "--out",
            str(tmp_path / "o"),
            "--resnet-weights",
            "random",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "cannot read S4Fusion checkpoint" in err
    assert not (tmp_path / "o").exists()


def test_analyze_missing_imagenet_weights_is_a_clear_error(
    small_tno, checkpoints, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    full, _ = checkpoints
    code = run_main(
        [
            "analyze",
            "--checkpoint",
            str(full),
            "--dataset",
            "tno",
            "--root",
            str(small_tno),
            "--out",
            str(tmp_path / "o"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "ImageNet ResNet50 weights not found" in err and "--resnet-weights random" in err


def test_analyze_reads_the_official_format_and_skips_table8_without_cmsa(
    small_tno, shared_data, tmp_path, capsys
):
    case = torch.load(shared_data / "reference" / "s4fusion_case1.pt", weights_only=True)
    official = tmp_path / "model.pkl"
    torch.save({"model": case["state_dict"]}, official)  # the release's wrapper around vmunet.* keys
    add = S4Fusion(S4FusionConfig(**{**TINY, "interaction": "add"})).save_exported(tmp_path / "add.pt")
    out = tmp_path / "o"
    with pytest.warns(UserWarning, match="UNTRAINED"):
        assert (
            run_main(
                [
                    "analyze",
                    "--checkpoint",
                    str(official),
                    "--dataset",
                    "tno",
                    "--root",
                    str(small_tno),
                    "--out",
                    str(out),
                    "--limit",
                    "1",
                    "--resnet-weights",
                    "random",
                ]
            )
            == 0
        )
    per_image = pd.read_csv(out / "table8_per_image.csv")
    assert sorted(set(zip(per_image["level"], per_image["block"]))) == [
        (lv, b) for lv in range(3) for b in range(3)
    ]
    with pytest.warns(UserWarning, match="UNTRAINED"):
        assert (
            run_main(
                [
                    "analyze",
                    "--checkpoint",
                    str(add),
                    "--dataset",
                    "tno",
                    "--root",
                    str(small_tno),
                    "--out",
                    str(tmp_path / "add"),
                    "--limit",
                    "1",
                    "--resnet-weights",
                    "random",
                ]
            )
            == 0
        )
    assert "Table VIII skipped" in capsys.readouterr().err
    assert not (tmp_path / "add" / "table8.csv").exists()
    assert len(pd.read_csv(tmp_path / "add" / "fig13_entropy.csv")) == 1
