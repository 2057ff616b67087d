"""Bad input on every run path: refused before any work with ONE message naming every bad file and
its problem, exit code 2, no traceback, nothing written for the bad items; unwritable or full
output folders give a clear error and leave earlier complete outputs intact; fused outputs carry
their provenance; outputs follow the umask."""

from __future__ import annotations

import argparse
import errno
import json
import os
import shutil

import pytest
import torch
from PIL import Image

from data.io import write_atomic
from fusion import S4Fusion, S4FusionConfig
from pipelines.run import main

TINY = dict(
    dims=(8, 16, 32), depths=(1, 1, 1), depths_decoder=(1, 1, 1), num_cmsa=1, d_state=4, d_state_fusion=4
)


def one_error_line(capsys, command: str) -> str:
    err = capsys.readouterr().err  # progress bars (tqdm, \r-separated) may precede the error
    errors = [line.strip() for line in err.splitlines() if ": error: " in line]
    assert len(errors) == 1 and errors[0].startswith(f"{command}: error: ") and "Traceback" not in err, err
    return errors[0]


@pytest.fixture()
def pairs(shared_data, tmp_path):
    """ir/ vi/ with a good pair 01, a size mismatch 02 and a truncated (corrupt) VIS image 03."""
    root = tmp_path / "pairs"
    for sub in ("ir", "vi"):
        (root / sub).mkdir(parents=True)
        for stem in ("01", "02", "03"):
            shutil.copy(shared_data / "samples" / "TNO" / sub / f"{stem}.png", root / sub / f"{stem}.png")
    with Image.open(root / "vi" / "02.png") as im:
        im.resize((im.width // 2, im.height // 2)).save(root / "vi" / "02.png")
    data = (root / "vi" / "03.png").read_bytes()
    (root / "vi" / "03.png").write_bytes(data[: len(data) // 2])
    return root


def fuse_argv(root, out, *extra):
    return ["fuse", "--ir", str(root / "ir"), "--vi", str(root / "vi"), "--out", str(out), *extra]


def test_fuse_names_every_bad_pair_and_writes_nothing(pairs, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(fuse_argv(pairs, out, "--method", "average")) == 2
    err = one_error_line(capsys, "fuse")
    assert "2 bad pair(s)" in err and "02.png: size" in err and "03.png: unreadable or corrupt" in err
    assert not out.exists()
    (pairs / "ir" / "04.png").write_bytes((pairs / "ir" / "01.png").read_bytes())  # no VIS partner
    assert main(fuse_argv(pairs, out, "--method", "average")) == 2
    assert "04.png" in one_error_line(capsys, "fuse") and not out.exists()


def test_fuse_skip_bad_goes_on_and_lists_them(pairs, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(fuse_argv(pairs, out, "--method", "average", "--skip-bad")) == 0
    assert sorted(p.name for p in out.glob("*.png")) == ["01.png"]
    err = capsys.readouterr().err
    assert "skipped 2 bad pair(s)" in err and "02.png" in err and "03.png" in err


def test_fuse_model_options_refused_up_front(pairs, tmp_path, capsys):
    shutil.rmtree(pairs / "vi"), shutil.copytree(pairs / "ir", pairs / "vi")  # good pairs only
    out = tmp_path / "out"
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a torch file")
    assert main(fuse_argv(pairs, out, "--checkpoint", str(corrupt))) == 2
    assert "corrupt.pt" in one_error_line(capsys, "fuse")
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    last.parent.mkdir(parents=True)
    last.write_bytes(b"x")
    assert main(fuse_argv(pairs, out, "--checkpoint", str(last))) == 2
    assert "s4fusion.pt" in one_error_line(capsys, "fuse")
    ckpt = S4Fusion(S4FusionConfig(**TINY)).save_exported(tmp_path / "m.pt")
    assert main(fuse_argv(pairs, out, "--checkpoint", str(ckpt), "--scan-backend", "mamba")) == 2
    assert "--scan-backend mamba" in one_error_line(capsys, "fuse")
    if not torch.cuda.is_available():
        assert main(fuse_argv(pairs, out, "--checkpoint", str(ckpt), "--device", "cuda")) == 2
        assert "no CUDA device" in one_error_line(capsys, "fuse")
    assert not out.exists()  # no empty output folder left behind


def test_fuse_outputs_carry_provenance(pairs, tmp_path, capsys):
    shutil.rmtree(pairs / "vi"), shutil.copytree(pairs / "ir", pairs / "vi")
    out = tmp_path / "out"
    assert main(fuse_argv(pairs, out, "--method", "average")) == 0
    assert json.loads((out / "fuse.json").read_text()) == {"method": "average"}
    capsys.readouterr()
    assert main(fuse_argv(pairs, out, "--method", "max")) == 2
    err = one_error_line(capsys, "fuse")
    assert '"average"' in err and '"max"' in err and "--overwrite" in err
    assert main(fuse_argv(pairs, out, "--method", "max", "--overwrite")) == 0
    assert json.loads((out / "fuse.json").read_text()) == {"method": "max"}


def test_unwritable_output_and_full_disk_leave_earlier_outputs_intact(pairs, tmp_path, capsys, monkeypatch):
    import pipelines.fuse as fuse

    shutil.rmtree(pairs / "vi"), shutil.copytree(pairs / "ir", pairs / "vi")
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert main(fuse_argv(pairs, blocker / "out", "--method", "average")) == 2
    assert "cannot write" in one_error_line(capsys, "fuse")

    out = tmp_path / "out"
    assert main(fuse_argv(pairs, out, "--method", "average")) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def disk_full(fh):
        fh.write(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(fuse, "write_png_atomic", lambda path, array: write_atomic(path, disk_full))
    assert main(fuse_argv(pairs, out, "--method", "average", "--overwrite")) == 2
    assert "No space left on device" in one_error_line(capsys, "fuse")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # intact, no temp files left


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_outputs_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        path = write_atomic(tmp_path / "f.png", lambda fh: fh.write(b"x"))
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_evaluate_refuses_bad_pairs_before_work(pairs, tmp_path, capsys):
    out = tmp_path / "eval"
    assert (
        main(
            [
                "evaluate",
                "--dataset",
                "folder",
                "--root",
                str(pairs),
                "--methods",
                "average",
                "--out",
                str(out),
            ]
        )
        == 2
    )
    err = one_error_line(capsys, "evaluate")
    assert "02.png: size" in err and "03.png: unreadable or corrupt" in err and not out.exists()


def test_train_fusion_refuses_bad_pairs_before_training(pairs, tmp_path, capsys):
    cfg = tmp_path / "train.yaml"
    cfg.write_text(
        json.dumps(
            {
                "name": "bad",
                "model": {"size": "tiny"},
                "batch_size": 1,
                "max_steps": 1,
                "loss": {"perception": {"enabled": False}},
                "data": {"train": [{"dataset": "folder", "root": str(pairs)}], "crop_size": 25},
            }
        )
    )
    assert main(["train_fusion", "--config", str(cfg), "--out", str(tmp_path / "run")]) == 2
    err = one_error_line(capsys, "train_fusion")
    assert "02.png: size" in err and "03.png: unreadable or corrupt" in err
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_check_data_m3fd_needs_its_annotation_folder(shared_data, capsys):
    assert main(["check_data", "--dataset", "m3fd", "--root", str(shared_data / "samples" / "TNO")]) == 2
    assert "no Annotation/ folder" in capsys.readouterr().out


def _synthetic_check_args(tmp_path, root, *extra):
    from pipelines.fuse_then_detect import cli

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    dataset = {
        "name": "synthetic",
        "root": str(root),
        "synthetic": {"n_images": 10, "width": 64, "height": 64},
    }
    return cli, parser.parse_args(
        ["--runs-dir", str(tmp_path / "run"), "--check", "--set", f"dataset={json.dumps(dataset)}", *extra]
    )


def test_fuse_then_detect_check_validates_only(tmp_path, capsys):
    from data.synthetic import SyntheticConfig, generate_synthetic_dataset

    root = tmp_path / "synth"
    cli, args = _synthetic_check_args(tmp_path, root, "--methods", "IR,VI")
    assert cli.main(args) == 0
    assert "would first generate 10 synthetic pairs" in capsys.readouterr().out and not root.exists()

    generate_synthetic_dataset(root, SyntheticConfig(n_images=10, width=64, height=64), progress=False)
    bad = root / "Vis" / "00003.png"
    bad.write_bytes(bad.read_bytes()[:100])
    # a broken method left out by --methods is not checked; the dataset's pairs always are
    cli, args = _synthetic_check_args(
        tmp_path,
        root,
        "--methods",
        "IR,VI",
        "--set",
        "methods.2={name: Broken, kind: precomputed, folder: /no/such/folder}",
    )
    assert cli.main(args) == 2
    err = one_error_line(capsys, "fuse_then_detect")
    assert "00003.png: unreadable or corrupt" in err and "Broken" not in err


def test_fuse_then_detect_data_key_follows_the_files_not_the_path(pairs):
    from data.adapters import open_dataset
    from pipelines.fuse_then_detect.stages import files_identity

    shutil.rmtree(pairs / "vi"), shutil.copytree(pairs / "ir", pairs / "vi")
    before = files_identity(open_dataset("folder", pairs))
    Image.new("L", (8, 8)).save(pairs / "ir" / "01.png"), Image.new("L", (8, 8)).save(pairs / "vi" / "01.png")
    assert files_identity(open_dataset("folder", pairs)) != before  # same folder, other images: new key
