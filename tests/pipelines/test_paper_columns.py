"""The paper beside ours: Tables I-IV and VII in `evaluate`, Table VI rows of the paper profile, and
the column helpers, every value checked against fusion.paper."""

from __future__ import annotations

import argparse
import shutil

import pandas as pd
import pytest
import yaml
from helpers import search_runs

from fusion import S4Fusion, paper
from fusion.model import S4FusionConfig
from pipelines import evaluate
from pipelines.fuse_then_detect.report import table6_vs_paper
from pipelines.paper_columns import fusion_table_vs_paper, table7_vs_paper
from runtime.profiles import experiments_dir


def _args(**kw) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    evaluate.add_arguments(parser)
    argv = []
    for k, v in kw.items():
        argv += [f"--{k.replace('_', '-')}", *(v if isinstance(v, list) else [str(v)])]
    return parser.parse_args(argv)


@pytest.fixture(scope="module")
def tno_pairs(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("tno")
    for sub in ("ir", "vi"):
        (root / sub).mkdir()
        for stem in ("01", "02"):
            shutil.copy(shared_data / "samples" / "TNO" / sub / f"{stem}.png", root / sub / f"{stem}.png")
    return root


def test_evaluate_on_a_paper_dataset_shows_the_papers_table(tno_pairs, tmp_path):
    tiny = S4Fusion(S4FusionConfig.from_spec("tiny")).save_exported(tmp_path / "tiny.pt")
    out = tmp_path / "tno"
    assert (
        evaluate.main(
            _args(
                dataset="tno",
                root=tno_pairs,
                out=out,
                methods=["average", "s4fusion"],
                checkpoint=tiny,
                metrics=["SF", "AG", "Qabf"],
                latency_runs=1,
            )
        )
        == 0
    )
    md = (out / "summary.md").read_text(encoding="utf-8")
    assert "Beside the paper: Table III (TNO)" in md and "| S4Fusion (paper) |" in md and "11.407" in md
    assert "not measured here: VIF, MUSIQ, TOPIQ" in md
    both = pd.read_csv(out / "summary_vs_paper.csv").set_index("method")
    summary = pd.read_csv(out / "summary.csv").set_index("method")
    assert both.loc["average", "SF"] == pytest.approx(summary.loc["average", "SF_mean"])
    for method, values in paper.table_metrics("tno").items():
        assert both.loc[f"{method} (paper)", ["SF", "AG", "VIF", "Qabf", "MUSIQ", "TOPIQ"]].tolist() == list(
            values.values()
        )
    table7 = (out / "table7.md").read_text(encoding="utf-8")
    assert "Beside the paper: Table VII" in table7 and "| S4Fusion (paper) |" in table7
    t7 = pd.read_csv(out / "table7_vs_paper.csv").set_index("method")
    assert t7.loc["S4Fusion (paper)", "GFLOPs"] == 48.93 and t7.loc["s4fusion", "source"] == "ours"
    parent = search_runs(f"sqlite:///{out / 'mlflow.db'}", "evaluate-tno").query(
        "`tags.mlflow.parentRunId`.isna()"
    )
    assert float(parent["params.paper.EMMA.SF"].iloc[0]) == paper.table_metrics("tno")["EMMA"]["SF"]
    assert float(parent["params.paper.table7.S4Fusion.params_M"].iloc[0]) == 2.03

    other = tmp_path / "folder"  # not a dataset of the paper: no paper rows
    assert (
        evaluate.main(_args(dataset="folder", root=tno_pairs, out=other, methods=["average"], metrics=["SF"]))
        == 0
    )
    assert "Beside the paper" not in (other / "summary.md").read_text()
    assert not (other / "summary_vs_paper.csv").exists()


def test_column_helpers_line_up_with_the_paper():
    assert fusion_table_vs_paper(pd.DataFrame({"method": ["x"], "SF_mean": [1.0]}), "llvip") is None
    frame, text = fusion_table_vs_paper(pd.DataFrame({"method": ["ours"], "SF_mean": [99.0]}), "MSRS")
    assert "Table I (MSRS)" in text and "**99.000**" in text  # best over all rows, ours included
    assert list(frame["method"])[1:] == [f"{m} (paper)" for m in paper.table_metrics("msrs")]
    frame7, _ = table7_vs_paper(pd.DataFrame({"method": ["m"], "params_used_M": [0.1], "GFLOPs": [1.0]}))
    assert frame7.set_index("method").loc["DDFM (paper)", "GFLOPs"] == 664000
    md = table6_vs_paper(pd.DataFrame({"method": ["IR", "Mine", "S4Fusion"], "mAP50": [0.7, 0.5, 0.82]}))
    assert "| IR | 70.0 | 73.8 | -3.8 |" in md and "| Mine | 50.0 | – | – |" in md
    assert "| S4Fusion | 82.0 | 81.3 | +0.7 |" in md


def test_table6_profile_lists_the_papers_rows_in_order():
    raw = yaml.safe_load((experiments_dir() / "table6_m3fd.yaml").read_text(encoding="utf-8"))
    methods = raw["methods"]
    assert [m["name"] for m in methods] == list(paper.table6_map50())
    kinds = {m["name"]: m["kind"] for m in methods}
    assert kinds.pop("IR") == kinds.pop("VI") == "source" and kinds.pop("S4Fusion") == "s4fusion"
    assert set(kinds.values()) == {"precomputed"}


def test_no_second_copy_of_table7_in_flops():
    import fusion.flops

    assert not hasattr(fusion.flops, "PAPER_TABLE_VII")  # fusion.paper is the one source
