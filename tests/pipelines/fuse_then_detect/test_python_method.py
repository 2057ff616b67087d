"""fuse_then_detect with a ``kind: python`` method (stub detector): its own Table VI row, fused by
the callable, re-fused when its module is edited; a bad target refuses the run before any work."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest
from helpers import search_runs
from stub_pipeline import SYNTH, make_cfg

import pipelines.fuse_then_detect.cli as cli
from data.adapters import open_dataset
from data.io import read_image
from pipelines.config import ConfigError
from pipelines.fuse_then_detect.orchestration import run_pipeline
from pipelines.fuse_then_detect.types import RunContext

MODULE = "def fuse(ir, vi):\n    import numpy as np\n    return np.maximum(ir, {vi})\n"


def _methods(target: str) -> list[dict]:
    return [
        {"name": "IR", "kind": "source", "source": "ir"},
        {"name": "Average", "kind": "baseline", "baseline": "average"},
        {"name": "Mine", "kind": "python", "target": target},
    ]


def test_a_function_outside_the_repo_gets_its_own_table6_row_and_an_edit_refuses_the_cache(
    inputs, mlflow_db, tmp_path, stub, monkeypatch
):
    plugin = tmp_path / "plugin_dir"
    plugin.mkdir()
    (plugin / "outside_fusion.py").write_text(MODULE.format(vi="vi if vi.ndim == 2 else vi[..., 1]"))
    monkeypatch.syspath_prepend(str(plugin))
    cfg = make_cfg(inputs, tmp_path / "run", mlflow_db, "python", methods=_methods("outside_fusion:fuse"))
    cfg.seeds = [0]
    result = run_pipeline(cfg, progress=False)

    table = pd.read_csv(result.report_dir / "table6.csv")
    assert list(table["method"]) == ["IR", "Average", "Mine"]
    assert table.set_index("method").loc["Mine", "kind"] == "python"
    fused = next((tmp_path / "run" / "fused").glob("Mine-*"))
    stem = (tmp_path / "run" / "split" / "test.txt").read_text().split()[0]
    sample = open_dataset("synthetic", inputs["root"])[stem]
    vi = sample.vi if sample.vi.ndim == 2 else sample.vi[..., 1]
    assert np.array_equal(read_image(fused / f"{sample.name}.png", "unchanged"), np.maximum(sample.ir, vi))
    runs = search_runs(mlflow_db, "python")
    assert set(runs.loc[runs["tags.mlflow.runName"] == "Mine", "tags.method_kind"]) == {"python"}

    # edited function (this process reloads it): a new fused folder made by the new code (the identity
    # includes the module's source hash); only Mine's detector is trained again
    (plugin / "outside_fusion.py").write_text(MODULE.format(vi="vi if vi.ndim == 2 else vi[..., 0]"))
    calls_before = len(stub.calls)
    cfg = make_cfg(inputs, tmp_path / "run", mlflow_db, "python", methods=_methods("outside_fusion:fuse"))
    cfg.seeds = [0]
    run_pipeline(cfg, progress=False)
    (new,) = set((tmp_path / "run" / "fused").glob("Mine-*")) - {fused}
    vi = sample.vi if sample.vi.ndim == 2 else sample.vi[..., 0]
    assert np.array_equal(read_image(new / f"{sample.name}.png", "unchanged"), np.maximum(sample.ir, vi))
    retrained = stub.calls[calls_before:]
    assert len(retrained) == 1 and retrained[0].parts[-3].startswith("Mine-")


def test_a_bad_target_refuses_the_config_in_one_line_before_any_work(
    inputs, mlflow_db, tmp_path, stub, capsys
):
    with pytest.raises(ConfigError) as err:
        make_cfg(inputs, tmp_path / "run", mlflow_db, "bad", methods=_methods("no_such_module_xyz:fuse"))
    assert str(err.value).startswith(
        "<config>: methods.2 ('Mine'): python method target 'no_such_module_xyz:fuse': module "
    )
    assert "\n" not in str(err.value) and stub.calls == [] and not (tmp_path / "run").exists()

    # the command line: one line on stderr, exit code 2
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    dataset = {"name": "synthetic", "root": str(inputs["root"]), "synthetic": SYNTH}
    args = parser.parse_args(
        ["--set", "name=bad", "--runs-dir", str(tmp_path / "cli"), "--set", f"dataset={json.dumps(dataset)}"]
        + ["--set", "methods=[{name: Mine, kind: python, target: 'plugins.my_fusion:NOT_CALLABLE'}]"]
    )
    assert cli.main(args) == 2
    err_text = capsys.readouterr().err
    assert err_text.count("\n") == 1 and "'plugins.my_fusion:NOT_CALLABLE' is a int, not callable" in err_text
    assert not (tmp_path / "cli").exists()


def test_a_wrong_output_fails_the_fusion_naming_method_and_image(inputs, mlflow_db, tmp_path, stub):
    cfg = make_cfg(
        inputs, tmp_path / "run", mlflow_db, "wrong", methods=_methods("plugins.my_fusion:half_size")
    )
    cfg.seeds = [0]
    with pytest.raises(Exception) as err:
        run_pipeline(cfg, progress=False)
    assert "method 'Mine' returned a uint8 array of shape" in str(err.value) and "for image '" in str(
        err.value
    )


def test_fuse_then_detect_and_evaluate_set_a_class_target_up_on_the_cpu(inputs, mlflow_db, tmp_path):
    """docs/pipeline.md: evaluate and fuse_then_detect fuse on the CPU: ``setup`` gets ``cpu``."""
    from plugins.my_fusion import Blend

    from fusion.methods import MethodInputs
    from pipelines.evaluate import fused_images, resolve_methods
    from pipelines.fuse_then_detect import stages

    cfg = make_cfg(inputs, tmp_path / "run", mlflow_db, "cpu", methods=_methods("plugins.my_fusion:Blend"))
    data = stages.prepare_data(cfg.dataset, cfg.run_dir, progress=False)
    Blend.device = None
    stages.fuse_method(RunContext(cfg, data), cfg.methods[2], "k", MethodInputs(), progress=False)
    assert Blend.device == "cpu"

    Blend.device = None
    stems = data.all_stems()[:1]
    (entry,) = resolve_methods(["plugins.my_fusion:Blend"], data.dataset, stems, None, False)
    assert fused_images(entry, data.dataset)(stems[0]).dtype == np.uint8 and Blend.device == "cpu"
