"""What a new user meets command by command (issue 25): metric names, Ctrl-C, --skip-bad with
unpaired files, the ``demo`` checkpoint everywhere, the logged pyfunc, a bad ``methods`` entry.

Each bad input must end in one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from pipelines.run import INTERRUPTED_EXIT, main


def error_lines(capsys, command: str) -> list[str]:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return [line.strip() for line in err.splitlines() if line.startswith(f"{command}: ")]


# ---- metric names -------------------------------------------------------------------------------
def test_evaluate_refuses_an_unknown_metric_with_a_suggestion_and_accepts_any_case(
    small_tno, tmp_path, capsys
):
    argv = [
        "evaluate",
        "--dataset",
        "tno",
        "--root",
        str(small_tno),
        "--methods",
        "average",
        "--limit",
        "1",
        "--latency-runs",
        "0",
        "--out",
        str(tmp_path / "ev"),
    ]
    assert main([*argv, "--metrics", "VIFF", "en"]) == 2
    (line,) = error_lines(capsys, "evaluate")
    assert "'VIFF' (did you mean 'VIF'?)" in line and "valid: EN, SD" in line and "'en'" not in line
    assert not (tmp_path / "ev").exists()  # refused before any work
    assert main([*argv, "--metrics", "vif", "sf"]) == 0
    header = (tmp_path / "ev" / "per_image_metrics.csv").read_text().splitlines()[0]
    assert header.endswith("VIF,SF"), header  # spelled as the convention spells them


def test_held_out_refuses_an_unknown_metric(tmp_path, capsys):
    assert (
        main(
            ["held_out", "--runs", str(tmp_path / "run"), "--metrics", "Qabff", "--out", str(tmp_path / "o")]
        )
        == 2
    )
    (line,) = error_lines(capsys, "held_out")
    assert "'Qabff' (did you mean 'Qabf'?)" in line


@pytest.mark.parametrize("metrics,expected", [("[vif, qabf]", ["VIF", "Qabf"]), ("[VIFF]", None)])
def test_fuse_then_detect_check_resolves_report_metrics(metrics, expected, capsys):
    from pipelines.config import load_config

    argv = [
        "fuse_then_detect",
        "--config",
        "fuse_then_detect_tiny.yaml",
        "--check",
        "--set",
        f"report.fusion_metrics={metrics}",
    ]
    if expected is None:
        assert main(argv) == 2
        (line,) = error_lines(capsys, "fuse_then_detect")
        assert "report: fusion_metrics: unknown metric(s)" in line and "'VIFF' (did you mean 'VIF'?)" in line
    else:
        assert main(argv) == 0
        cfg = load_config("fuse_then_detect_tiny.yaml", [f"report.fusion_metrics={metrics}"])
        assert cfg.report.fusion_metrics == expected


def test_ablate_resolves_metric_names():
    from pipelines.ablate.config import load_ablation_config

    cfg = load_ablation_config("table5_cpu.yaml", ["metrics=[vif, musiq]"])
    assert cfg.metrics == ["VIF", "MUSIQ"]


@pytest.mark.parametrize("methods", ["[{name: X, kind: foo, weights: y}]", "[{kind: foo}]", "[3]"])
def test_a_bad_methods_entry_is_a_one_line_config_error(methods, capsys):
    argv = [
        "fuse_then_detect",
        "--config",
        "fuse_then_detect_tiny.yaml",
        "--check",
        "--set",
        f"methods={methods}",
    ]
    assert main(argv) == 2
    assert error_lines(capsys, "fuse_then_detect")[0].startswith("fuse_then_detect: error: ")


def test_a_failed_job_on_bad_input_says_fix_it_not_retry():
    from pipelines.executor import JobFailure
    from pipelines.fuse_then_detect.orchestration import JobsFailedError

    bad_input = JobFailure(("metrics", "S4Fusion"), "ConfigError: unknown metric 'VIFF'", permanent=True)
    crashed = JobFailure(("detect", "IR", 0), "RuntimeError: worker died")
    assert "fix the input named above, then rerun" in str(JobsFailedError([bad_input, crashed], None))
    assert "rerun the same command to retry them" in str(JobsFailedError([crashed], None))


# ---- Ctrl-C -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "command,module,function,argv",
    [
        ("fuse", "pipelines.fuse", "_fuse", ["--ir", "a", "--vi", "b", "--out", "o"]),
        ("fuse_then_detect", "pipelines.fuse_then_detect.cli", "_run", []),
        ("train_fusion", "pipelines.train_fusion", "_train", ["--config", "x.yaml"]),
    ],
)
def test_ctrl_c_prints_one_line_saying_how_to_resume(command, module, function, argv, monkeypatch, capsys):
    import importlib

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(importlib.import_module(module), function, interrupted)
    assert main([command, *argv]) == INTERRUPTED_EXIT
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().count("\n") == 0, err
    assert err.strip().startswith(f"{command}: interrupted; rerun the same command")
    assert ("--resume" in err) == (command == "train_fusion")


# ---- fuse --skip-bad with unpaired files --------------------------------------------------------
def test_skip_bad_fuses_the_pairs_when_files_are_unpaired_and_caps_the_list(small_tno, tmp_path, capsys):
    for i in range(12):  # IR files without a VIS partner
        shutil.copy(small_tno / "ir" / "01.png", small_tno / "ir" / f"lonely{i:02d}.png")
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
    assert main(argv) == 2
    (line,) = error_lines(capsys, "fuse")
    assert "2 pairs" in line and "12 unpaired" in line and "--skip-bad" in line
    assert (
        "lonely09.png" in line and "lonely10.png" not in line and "… and 2 more" in line
    )  # first 10 + count
    assert not out.exists()
    assert main([*argv, "--skip-bad"]) == 0
    captured = capsys.readouterr()
    assert sorted(p.name for p in out.glob("*.png")) == ["01.png", "02.png"]
    assert "fused 2 pair(s)" in captured.out and "skipped 12 unpaired file(s):" in captured.err
    assert "… and 2 more" in captured.err


# ---- the demo checkpoint ------------------------------------------------------------------------
def test_demo_is_accepted_wherever_a_checkpoint_is_taken(tmp_path):
    from fusion import S4Fusion
    from fusion.shipped_weights import resolve_checkpoint
    from pipelines.analyze import _checkpoints

    assert sum(p.numel() for p in S4Fusion.load("demo").parameters()) == sum(
        p.numel() for p in S4Fusion.load(resolve_checkpoint("demo")).parameters()
    )
    (checkpoint,), errors = _checkpoints(["demo"])
    assert errors == [] and checkpoint.label == "demo" and checkpoint.path == resolve_checkpoint("demo")


def test_a_missing_checkpoint_says_where_model_pkl_comes_from(small_tno, tmp_path, capsys):
    from fusion import S4Fusion
    from fusion.model import ModelFileNotFoundError

    with pytest.raises(ModelFileNotFoundError, match="github.com/zipper112/S4Fusion.*--checkpoint demo"):
        S4Fusion.load(tmp_path / "model.pkl")
    argv = [
        "--dataset",
        "tno",
        "--root",
        str(small_tno),
        "--checkpoint",
        str(tmp_path / "model.pkl"),
        "--out",
        str(tmp_path / "o"),
    ]
    assert main(["fuse", *argv]) == 2
    (line,) = error_lines(capsys, "fuse")
    assert "zipper112/S4Fusion" in line and "--checkpoint demo" in line


# ---- the logged pyfunc --------------------------------------------------------------------------
def test_pyfunc_accepts_what_the_cli_accepts_and_its_errors_print_no_array(tmp_path, shared_data):
    from data.io import read_image
    from fusion.inference import fuse_image_arrays, load_model
    from fusion.mlflow_model import load_logged_model, log_s4fusion_model
    from fusion.shipped_weights import resolve_checkpoint
    from runtime.tracking import Tracker

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, "pyfunc")
    run_id, _ = tracker.start_run("k", "S4Fusion", "method")
    model_uri = log_s4fusion_model(tracker.handle(run_id), resolve_checkpoint("demo"))
    fuser = load_logged_model(model_uri, uri)  # public MLflow API only, no global tracking URI
    ir_file, vi_file = (shared_data / "samples" / "TNO" / sub / "01.png" for sub in ("ir", "vi"))
    ir_gray, vi = read_image(ir_file, "gray")[:64, :80], read_image(vi_file, "gray")[:64, :80]
    ir = np.repeat(ir_gray[..., None], 3, axis=2)  # a gray IR image stored as RGB, which the CLI accepts
    expected = fuse_image_arrays(load_model("demo"), ir_gray, vi)
    for ir_input in (ir, ir[..., :1], ir[..., 0]):
        fused = fuser.predict({"ir": ir_input, "vi": vi})
        assert fused.shape == (64, 80, 1) and np.array_equal(fused[..., 0], expected)
    for bad, named in [
        ({"ir": ir.astype(np.float32), "vi": vi}, "'ir': expected uint8"),
        ({"ir": ir, "vi": vi[:10]}, "sizes differ"),
        ({"ir": ir}, "got ['ir']"),
    ]:
        with pytest.raises(Exception) as err:
            fuser.predict(bad)
        message = str(err.value)
        assert named in message and len(message) < 300 and "[[" not in message, message


# ---- config data paths: relative to the repository root, from any directory ---------------------
def test_config_data_paths_resolve_from_another_directory(shared_data, tmp_path, monkeypatch):
    import os

    from fusion.train import TrainConfig
    from fusion.train.data import resolve_sources
    from pipelines.ablate.config import load_ablation_config
    from pipelines.config import load_config
    from runtime.profiles import REPO_ROOT, config_data_path

    monkeypatch.chdir(tmp_path)  # not the repository root
    assert config_data_path("../shared/data") == REPO_ROOT / "../shared/data"
    assert config_data_path(tmp_path / "x") == tmp_path / "x" and config_data_path("~/x") == Path.home() / "x"
    cfg = TrainConfig.from_yaml("train_s4fusion_demo.yaml")  # data roots ../shared/data/...
    datasets, chosen = resolve_sources(cfg.data.train, cfg.data.split_seed)
    assert sum(len(stems) for stems in chosen.values()) > 0 and all(len(ds) for ds in datasets)
    assert load_ablation_config("table5_cpu.yaml").test  # its data roots are checked on load
    tno = os.path.relpath(shared_data / "samples" / "TNO", REPO_ROOT)
    assert not tno.startswith("/")
    assert (
        load_config("fuse_then_detect_tiny.yaml", [f"dataset={{name: tno, root: {tno}}}"]).dataset.root == tno
    )


@pytest.mark.slow  # two fresh interpreters fusing 576x768 pairs: ~20 CPU-s; the handler itself is tested above
def test_a_real_sigint_during_fuse_prints_one_line_and_the_rerun_resumes(small_tno, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from helpers import REPO_ROOT

    out = tmp_path / "out"
    argv = [
        sys.executable,
        "-m",
        "pipelines.run",
        "fuse",
        "--dataset",
        "tno",
        "--root",
        str(small_tno),
        "--checkpoint",
        "demo",
        "--out",
        str(out),
    ]
    proc = subprocess.Popen(
        argv,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    deadline = time.monotonic() + 300

    def fused() -> list[str]:  # finished outputs only (an atomic write's temporary file is hidden)
        return [p.name for p in out.glob("[0-9]*.png")]

    while not fused() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, "fuse ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
    _, err = proc.communicate(timeout=120)
    lines = [
        line
        for line in err.replace("\r", "\n").splitlines()
        if line.strip() and "fuse [" not in line and "checking pairs" not in line
    ]
    assert proc.returncode == INTERRUPTED_EXIT and "Traceback" not in err, err
    assert lines == [
        "fuse: interrupted; rerun the same command to resume: the outputs that finished are kept and reused"
    ]
    done = len(fused())
    assert done == 1  # of 2
    rerun = subprocess.run(
        argv,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert rerun.returncode == 0 and f"({done} already there)" in rerun.stdout, rerun.stderr[-2000:]
