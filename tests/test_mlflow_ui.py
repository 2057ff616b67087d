"""What the MLflow UI shows of a finished fuse_then_detect run, checked through a real ``mlflow server``.

One tiny run (module fixture; the YOLO detector is the orchestration tests' stub, everything else
is real: synthetic data, fusion, an S4Fusion checkpoint, MLflow logging) is served by ``mlflow
server`` in its own process on a free loopback port; the test reads what the UI reads, through the
REST API: the experiment kind, the parent's Table VI metrics, one child per method named after
it, the split as dataset input, and the logged S4Fusion pyfunc model, which must fuse a pair.
The server is killed by the fixture whatever the outcome.
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests

import pipelines.fuse_then_detect.stages as stages
from data.adapters import open_dataset
from data.tracking import EXPERIMENT_KIND
from fusion.inference import fuse_image_arrays, load_model
from pipelines.fuse_then_detect.orchestration import run_pipeline
from test_pipeline_fuse_then_detect import StubDetector, inputs, make_cfg  # noqa: F401 (inputs: a fixture)

EXPERIMENT = "ui"


@pytest.fixture(scope="module")
def finished_run(inputs, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("ui_run")
    uri = f"sqlite:///{run_dir / 'mlflow.db'}"
    cfg = make_cfg(inputs, run_dir / "run", uri, EXPERIMENT)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(stages, "train_and_evaluate", StubDetector())
        result = run_pipeline(cfg, progress=False)
    return {"cfg": cfg, "result": result, "uri": uri, "run_dir": run_dir}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(finished_run):
    """``mlflow server`` on the run's store; yields its base URL; always stopped (process group)."""
    port = _free_port()
    log = open(finished_run["run_dir"] / "server.log", "wb")
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    proc = subprocess.Popen([str(mlflow_cli), "server", "--backend-store-uri", finished_run["uri"],
                             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if requests.get(f"{base}/health", timeout=2).ok:
                    break
            except requests.RequestException:  # not up yet (refused, or too busy to answer)
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not start (exit {proc.poll()}); see {log.name}")
            time.sleep(0.5)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def _api(base: str, path: str, **body):
    url = f"{base}/api/2.0/mlflow/{path}"
    response = requests.post(url, json=body, timeout=30) if body else requests.get(url, timeout=30)
    response.raise_for_status()
    return response.json()


@pytest.fixture(scope="module")
def ui_runs(server, finished_run):
    experiment = requests.get(f"{server}/api/2.0/mlflow/experiments/get-by-name",
                              params={"experiment_name": EXPERIMENT}, timeout=30).json()["experiment"]
    runs = _api(server, "runs/search", experiment_ids=[experiment["experiment_id"]], max_results=100)["runs"]
    parent_id = finished_run["result"].parent_run_id
    parent = next(r for r in runs if r["info"]["run_id"] == parent_id)
    children = [r for r in runs if r["info"]["run_id"] != parent_id]
    return experiment, parent, children


def _metrics(run) -> dict[str, float]:
    return {m["key"]: m["value"] for m in run["data"].get("metrics", [])}


def _tags(run) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


def test_experiment_opens_as_model_training(ui_runs):
    experiment, _, _ = ui_runs
    tags = {t["key"]: t["value"] for t in experiment["tags"]}
    assert tags[EXPERIMENT_KIND[0]] == EXPERIMENT_KIND[1] == "custom_model_development"


def test_parent_carries_table6_and_one_named_child_per_method(ui_runs, finished_run):
    _, parent, children = ui_runs
    names = [m.name for m in finished_run["cfg"].methods]
    assert sorted(c["info"]["run_name"] for c in children) == sorted(names)
    assert {_tags(c)["mlflow.parentRunId"] for c in children} == {parent["info"]["run_id"]}
    metrics = _metrics(parent)
    for o in finished_run["result"].outcomes:
        child = next(c for c in children if c["info"]["run_name"] == o.name)
        assert metrics[f"mAP50/{o.name}"] == pytest.approx(_metrics(child)["mAP50"])
        assert metrics[f"mAP50/{o.name}"] == pytest.approx(o.mean_std("map50")[0])
        assert metrics[f"mAP50_95/{o.name}"] == pytest.approx(o.mean_std("map50_95")[0])
        assert metrics[f"mAP50_std/{o.name}"] == pytest.approx(o.mean_std("map50")[1])  # two seeds


def test_every_run_names_its_split_as_dataset_input(ui_runs, finished_run):
    _, parent, children = ui_runs
    run_dir = finished_run["cfg"].run_dir
    split_hash = (run_dir / "split" / "split.sha256").read_text().split()[0]
    sizes = {p: len((run_dir / "split" / f"{p}.txt").read_text().split()) for p in ("train", "val", "test")}
    for run in [parent, *children]:
        (dataset_input,) = run["inputs"]["dataset_inputs"]
        dataset = dataset_input["dataset"]
        assert dataset["digest"] == split_hash[:36] and dataset["name"].startswith("synthetic@")
        profile = json.loads(dataset["profile"])
        assert {p: profile[p] for p in sizes} == sizes and profile["split_sha256"] == split_hash
        assert str(finished_run["cfg"].dataset.root) in dataset["source"] or "synthetic" in dataset["source"]


def test_logged_s4fusion_model_fuses_a_pair(ui_runs, server, inputs, finished_run):
    import mlflow
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    from pipelines.fuse_then_detect.report import summary_text

    _, _, children = ui_runs
    s4 = next(c for c in children if c["info"]["run_name"] == "S4Fusion")
    sample = open_dataset("synthetic", inputs["root"])[0]
    printed = summary_text(finished_run["result"], finished_run["cfg"])
    (model_uri,) = re.findall(r"runs:/[0-9a-f]+/s4fusion", printed)  # the command prints the child's URI
    assert model_uri == f"runs:/{s4['info']['run_id']}/s4fusion"
    with _use_tracking_uri(server):
        model = mlflow.pyfunc.load_model(model_uri)
    assert model.metadata.signature is not None and model.metadata.saved_input_example_info is not None
    vi = sample.vi if sample.vi.ndim == 3 else sample.vi[..., None]
    fused = model.predict({"ir": sample.ir, "vi": vi})
    expected = fuse_image_arrays(load_model(inputs["checkpoint"]), sample.ir, sample.vi)
    assert fused.shape[:2] == sample.ir.shape[:2]
    assert np.array_equal(fused.reshape(expected.shape), expected)
    # no pyfunc for methods without a model
    assert s4["outputs"]["model_outputs"]
    assert all(not c.get("outputs", {}).get("model_outputs") for c in children if c["info"]["run_name"] != "S4Fusion")


def test_printed_link_opens_the_parent_run_page_in_the_model_training_layout(ui_runs, finished_run):
    from pipelines.fuse_then_detect.mlflow_view import ui_link
    from pipelines.fuse_then_detect.report import summary_text

    experiment, parent, _ = ui_runs
    link = ui_link(finished_run["uri"], parent["info"]["run_id"])
    assert link == (f"http://127.0.0.1:5000/#/experiments/{experiment['experiment_id']}/runs/"
                    f"{parent['info']['run_id']}?workflowType=machine_learning")
    assert link in summary_text(finished_run["result"], finished_run["cfg"])
    # the page's description is the verdict and Table VI
    note = _tags(parent)["mlflow.note.content"]
    assert finished_run["result"].verdict in note and "| IR |" in note
