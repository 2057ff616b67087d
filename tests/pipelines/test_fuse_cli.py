"""`python -m pipelines.run fuse`: datasets or folders, baselines or a checkpoint, resume, errors."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from fusion import S4Fusion, S4FusionConfig
from pipelines.run import main

TINY = dict(
    dims=(8, 16, 32), depths=(1, 1, 1), depths_decoder=(1, 1, 1), num_cmsa=1, d_state=4, d_state_fusion=4
)


def test_fuse_baseline_from_folders_and_resume(small_tno, tmp_path, capsys):
    out = tmp_path / "out"
    argv = [
        "fuse",
        "--ir",
        str(small_tno / "ir"),
        "--vi",
        str(small_tno / "vi"),
        "--method",
        "average",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    assert sorted(p.name for p in out.glob("*.png")) == ["01.png", "02.png"]
    fused = np.asarray(Image.open(out / "01.png"))
    ir = np.asarray(Image.open(small_tno / "ir" / "01.png"))[..., 0].astype(float)
    vi = np.asarray(Image.open(small_tno / "vi" / "01.png"))[..., 0].astype(float)
    assert fused.ndim == 2 and np.abs(fused - (ir + vi) / 2).max() <= 1.0
    (out / "02.png").unlink()
    assert main(argv) == 0
    assert "fused 1 pair(s)" in capsys.readouterr().out


def test_fuse_with_checkpoint_on_dataset(small_tno, tmp_path):
    torch.manual_seed(0)
    ckpt = S4Fusion(S4FusionConfig(**TINY)).save_exported(tmp_path / "m.pt")
    out = tmp_path / "s4"
    assert (
        main(
            [
                "fuse",
                "--dataset",
                "tno",
                "--root",
                str(small_tno),
                "--checkpoint",
                str(ckpt),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    img = np.asarray(Image.open(out / "02.png"))
    assert img.shape == np.asarray(Image.open(small_tno / "ir" / "02.png")).shape[:2]


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("fuse: error: ") and "Traceback" not in err, err
    return err


def test_fuse_errors(small_tno, tmp_path, capsys):
    # bad input: one line on stderr, exit code 2, no traceback
    assert main(["fuse", "--dataset", "tno", "--root", str(small_tno), "--out", str(tmp_path / "o")]) == 2
    assert "needs --checkpoint" in _one_error_line(capsys)
    assert (
        main(
            [
                "fuse",
                "--dataset",
                "tno",
                "--root",
                str(small_tno),
                "--checkpoint",
                str(tmp_path / "nope.pt"),
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert "nope.pt" in _one_error_line(capsys)
    (small_tno / "vi" / "02.png").unlink()
    assert (
        main(
            [
                "fuse",
                "--ir",
                str(small_tno / "ir"),
                "--vi",
                str(small_tno / "vi"),
                "--method",
                "max",
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert "unpaired" in _one_error_line(capsys)
