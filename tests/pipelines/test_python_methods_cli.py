"""``fuse --method module:function`` and ``evaluate --methods module:function`` through the real
command line, with the function in a module outside the repository (its folder on PYTHONPATH)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
from helpers import REPO_ROOT

from data.io import read_image, write_png_atomic

MODULE = "import numpy as np\n\n\ndef fuse(ir, vi):\n    return np.maximum(ir, vi[..., {channel}])\n"


def _run(*argv: str, plugin_dir) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_dir), str(REPO_ROOT)])}
    return subprocess.run(
        [sys.executable, "-m", "pipelines.run", *argv],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _pairs(root):
    rng = np.random.default_rng(0)
    for stem in ("a", "b"):
        write_png_atomic(root / "ir" / f"{stem}.png", rng.integers(0, 256, (24, 32), dtype=np.uint8))
        write_png_atomic(root / "vi" / f"{stem}.png", rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
    return root


def test_fuse_and_evaluate_a_function_outside_the_repo_and_an_edit_is_not_served_from_cache(tmp_path):
    plugin = tmp_path / "plugin"
    plugin.mkdir()
    (plugin / "outside_fusion.py").write_text(MODULE.format(channel=0))
    data = _pairs(tmp_path / "data")

    out = tmp_path / "fused"
    fuse_argv = (
        "fuse",
        "--ir",
        str(data / "ir"),
        "--vi",
        str(data / "vi"),
        "--method",
        "outside_fusion:fuse",
    )
    done = _run(*fuse_argv, "--out", str(out), plugin_dir=plugin)
    assert done.returncode == 0, done.stderr
    vi = read_image(data / "vi" / "a.png", "unchanged")
    assert np.array_equal(
        read_image(out / "a.png", "unchanged"),
        np.maximum(read_image(data / "ir" / "a.png", "gray"), vi[..., 0]),
    )
    record = json.loads((out / "fuse.json").read_text())
    assert record["target"] == "outside_fusion:fuse" and len(record["source_sha256"]) == 64

    evaluate_argv = ("evaluate", "--dataset", "folder", "--root", str(data), "--metrics", "EN", "SF")
    evaluate_argv += ("--out", str(tmp_path / "eval"), "--latency-runs", "1", "--methods")
    done = _run(*evaluate_argv, "outside_fusion:fuse", "average", plugin_dir=plugin)
    assert done.returncode == 0, done.stderr
    summary = pd.read_csv(tmp_path / "eval" / "summary.csv")
    assert list(summary["method"]) == ["outside_fusion.fuse", "average"]
    assert len(list((tmp_path / "eval" / "per_method").glob("outside_fusion.fuse-*.csv"))) == 1

    # the function is edited: evaluate measures it again, fuse refuses to resume into the old images
    (plugin / "outside_fusion.py").write_text(MODULE.format(channel=2))
    done = _run(*evaluate_argv, "outside_fusion:fuse", "average", plugin_dir=plugin)
    assert done.returncode == 0, done.stderr
    assert len(list((tmp_path / "eval" / "per_method").glob("outside_fusion.fuse-*.csv"))) == 2
    refused = _run(*fuse_argv, "--out", str(out), plugin_dir=plugin)
    assert refused.returncode == 2 and "holds fused images made by" in refused.stderr


def test_a_bad_target_is_one_line_exit_2_before_any_work(tmp_path):
    data = _pairs(tmp_path / "data")
    out = tmp_path / "fused"
    for target, says in (
        ("no_such_module_xyz:fuse", "module 'no_such_module_xyz' does not import"),
        ("plugins.my_fusion:NOT_CALLABLE", "not callable"),
    ):
        done = _run(
            "fuse",
            "--ir",
            str(data / "ir"),
            "--vi",
            str(data / "vi"),
            "--method",
            target,
            "--out",
            str(out),
            plugin_dir=REPO_ROOT / "tests",
        )
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
        assert target in done.stderr and says in done.stderr and not out.exists()
    done = _run(
        "evaluate",
        "--dataset",
        "folder",
        "--root",
        str(data),
        "--out",
        str(tmp_path / "eval"),
        "--methods",
        "average",
        "no_such_module_xyz:fuse",
        plugin_dir=REPO_ROOT / "tests",
    )
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "no_such_module_xyz:fuse" in done.stderr and not (tmp_path / "eval").exists()


def test_readme_bring_your_own_method_example_runs_as_shown(tmp_path):
    """README "Bring your own method": its function, YAML line and command line, as written there."""
    import re

    import yaml

    from fusion.methods import config_problems

    section = (REPO_ROOT / "README.md").read_text(encoding="utf-8").split("## Bring your own method")[1]
    code, entry, command = re.findall(r"```(?:python|yaml|bash)\n(.*?)```", section, re.S)[:3]
    plugin = tmp_path / "plugin"
    plugin.mkdir()
    (plugin / "my_fusion.py").write_text(code)
    (method,) = yaml.safe_load(entry)
    assert method == {"name": "Mine", "kind": "python", "target": "my_fusion:fuse"}
    data = _pairs(tmp_path / "data")
    argv = command.split("#")[0].split()[3:]  # after `python -m pipelines.run`
    argv = [{"my/ir": str(data / "ir"), "my/vi": str(data / "vi")}.get(a, a) for a in argv]
    argv[argv.index("--out") + 1] = str(tmp_path / "mine")
    done = _run(*argv, plugin_dir=plugin)
    assert done.returncode == 0, done.stderr
    ir, vi = read_image(data / "ir" / "b.png", "gray"), read_image(data / "vi" / "b.png", "unchanged")
    assert np.array_equal(read_image(tmp_path / "mine" / "b.png", "unchanged"), ir // 2 + vi[..., 1] // 2)
    import sys as _sys

    _sys.path.insert(0, str(plugin))
    try:
        assert config_problems("python", {"target": method["target"]}) == []
    finally:
        _sys.path.remove(str(plugin))


def test_fuse_device_reaches_setup_of_a_class_target(tmp_path):
    """docs/pipeline.md: a class target is instantiated once and ``setup`` gets ``fuse --device``."""
    plugin = tmp_path / "plugin"
    plugin.mkdir()
    record = tmp_path / "setup.txt"
    (plugin / "with_setup.py").write_text(
        "class Fuse:\n"
        "    def setup(self, device):\n"
        f"        open({str(record)!r}, 'a').write(str(device) + '\\n')\n"
        "    def __call__(self, ir, vi):\n"
        "        return ir\n"
    )
    data = _pairs(tmp_path / "data")
    argv = ("fuse", "--ir", str(data / "ir"), "--vi", str(data / "vi"), "--method", "with_setup:Fuse")
    done = _run(*argv, "--device", "cuda:7", "--out", str(tmp_path / "out"), plugin_dir=plugin)
    assert done.returncode == 0, done.stderr
    assert record.read_text() == "cuda:7\n"  # once, for both pairs
    assert np.array_equal(
        read_image(tmp_path / "out" / "b.png", "unchanged"), read_image(data / "ir" / "b.png", "gray")
    )
