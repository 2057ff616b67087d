"""The demo's numbers are a run record written by ``python -m bench.demo_record``: the committed block in
docs/benchmarks.md (which the README links) is the rendering of the committed record (or says none is
recorded), and the command writes a record with where and when it ran (slow: a real tiny-profile run)."""

from __future__ import annotations

import csv
import json

import pytest
from helpers import REPO_ROOT

from bench import demo_record


def test_docs_block_is_the_rendering_of_the_committed_record():
    doc_file = demo_record.DEFAULT_DOC
    doc = doc_file.read_text(encoding="utf-8")
    record_file = demo_record.DEFAULT_RECORD
    record = json.loads(record_file.read_text()) if record_file.is_file() else None
    expected = demo_record.render(record, record_file.relative_to(doc_file.parent).as_posix())
    assert doc.count(demo_record.BEGIN) == 1 and expected in doc, (
        f"{doc_file.relative_to(REPO_ROOT)}'s demo block differs from the record: rerun python -m bench.demo_record "
        "(it renders both)"
    )


def test_readme_links_the_record_and_quotes_no_wall_time():
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert demo_record.BEGIN not in readme and "docs/benchmarks.md#make-demo-the-run-record" in readme


def fake_record(executors=("ray", "serial")) -> dict:
    runs = [
        {
            "executor": k,
            "command": f"python -m pipelines.run fuse_then_detect --executor {k}",
            "wall_s": wall,
            "pipeline_s": wall - 5,
            "seeds": [0],
            "cpus_per_job": 1,
            "map50": {"IR": 0.7421, "VI": 0.6642, "S4Fusion": 0.887},
            "verdict": "VERDICT: every fused method ...",
        }
        for k, wall in zip(executors, (426.0, 600.0))
    ]
    env = {
        "date_utc": "2026-12-03 14:00",
        "commit": "abc123456789",
        "cpu_model": "AMD EPYC 7B13",
        "cpus": 2,
        "torch": "2.14.1",
    }
    return {"profile": "fuse_then_detect_demo", "environment": env, "runs": runs}


def test_render_names_machine_commit_date_and_the_same_machine_caveat():
    block = demo_record.render(fake_record(), "docs/results/demo_record.json")
    assert block.startswith(demo_record.BEGIN) and block.endswith(demo_record.END)
    for text in (
        "2026-12-03 14:00 UTC",
        "`abc123456789`",
        "AMD EPYC 7B13 (2 CPUs)",
        "1 CPU(s) and torch thread(s)",
        "| ray | 7.1 min | 0.742 | 0.664 | 0.887 |",
        "| serial | 10.0 min |",
        "Serial took 1.41×",
        demo_record.SAME_MACHINE,
    ):
        assert text in block, text
    assert "Serial took" not in demo_record.render(fake_record(("ray",)), "r.json")  # no serial run, no claim
    text = f"intro\n{demo_record.render(None, 'r.json')}\noutro"
    assert demo_record.replace_block(text, block) == f"intro\n{block}\noutro"
    with pytest.raises(ValueError, match="no block"):
        demo_record.replace_block("no markers", block)


def test_environment_names_cpu_model_and_commit():
    env = demo_record.environment()
    assert env["cpu_model"] and env["cpus"] >= 1 and env["torch"]
    assert env["commit"].split("+")[0].isalnum() and len(env["date_utc"]) == 16


@pytest.mark.slow
def test_the_command_writes_the_record_and_renders_it(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    (tmp_path / "docs" / "images").mkdir(parents=True)
    doc = tmp_path / "docs" / "benchmarks.md"
    doc.write_text(f"# x\n{demo_record.render(None, 'r')}\n", encoding="utf-8")
    record_file = tmp_path / "docs" / "results" / "record.json"
    assert (
        demo_record.main(
            [
                "--config",
                "fuse_then_detect_tiny.yaml",
                "--executors",
                "serial",
                "--out",
                str(tmp_path / "runs"),
                "--record",
                str(record_file),
                "--doc",
                str(doc),
            ]
        )
        == 0
    )
    record = json.loads(record_file.read_text())
    (run,) = record["runs"]
    with open(tmp_path / "runs" / "serial" / "report" / "table6.csv", newline="") as f:
        table = {row["method"]: round(float(row["mAP50"]), 4) for row in csv.DictReader(f)}
    assert run["map50"] == table and list(table) == ["IR", "VI", "Average", "S4Fusion"]
    assert run["verdict"].startswith("VERDICT") and run["wall_s"] >= run["pipeline_s"] > 0
    assert run["cpus_per_job"] == 1 and run["seeds"] == [0]
    assert record["environment"]["cpu_model"] and record["profile"] == "fuse_then_detect_tiny"
    assert demo_record.render(record, "results/record.json") in doc.read_text(encoding="utf-8")
    assert (tmp_path / "docs" / demo_record.DEMO_FIGURE).is_file()
