"""What the MLflow UI shows of a finished fuse_then_detect run, checked through a real ``mlflow server``.

One tiny run (module fixture; the YOLO detector is the orchestration tests' stub, everything else
is real: synthetic data, fusion, an S4Fusion checkpoint, MLflow logging) is served by ``mlflow
server`` in its own process on a free loopback port; the test reads what the UI reads, through the
REST API: the experiment kind, one child per method named after it and in it one run per seed (params
method and seed only, so the compare page's default axes are those; hashes as tags), Table VI as a
table artifact on the parent, the saved Table VI view the printed link opens (a chart and a table, and
the runs its search returns), the split as dataset input, and the logged S4Fusion pyfunc model, which
must fuse a pair.
The server is killed by the fixture whatever the outcome.
"""

import json
import re

import numpy as np
import pytest
import requests
from stub_pipeline import StubDetector, make_cfg

import pipelines.fuse_then_detect.stages as stages
from data.adapters import open_dataset
from fusion.inference import fuse_image_arrays, load_model
from pipelines.fuse_then_detect.orchestration import run_pipeline
from pipelines.mlflow_server import serve
from runtime.tracking import EXPERIMENT_KIND

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


@pytest.fixture(scope="module")
def server(finished_run):
    """``mlflow server`` on the run's store; yields its base URL; always stopped (process group)."""
    with serve(finished_run["uri"], finished_run["run_dir"] / "server.log") as base:
        yield base


def _api(base: str, path: str, **body):
    url = f"{base}/api/2.0/mlflow/{path}"
    response = requests.post(url, json=body, timeout=30) if body else requests.get(url, timeout=30)
    response.raise_for_status()
    return response.json()


@pytest.fixture(scope="module")
def ui_runs(server, finished_run):
    experiment = requests.get(
        f"{server}/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": EXPERIMENT}, timeout=30
    ).json()["experiment"]
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


def _params(run) -> dict[str, str]:
    return {p["key"]: p["value"] for p in run["data"].get("params", [])}


def test_one_named_child_per_method_and_one_run_per_method_and_seed(ui_runs, finished_run):
    _, parent, children = ui_runs
    methods = [c for c in children if _tags(c)["s4fuse.kind"] == "method"]
    seeds = [c for c in children if _tags(c)["s4fuse.kind"] == "detector"]
    cfg = finished_run["cfg"]
    assert sorted(c["info"]["run_name"] for c in methods) == sorted(m.name for m in cfg.methods)
    assert {_tags(c)["mlflow.parentRunId"] for c in methods} == {parent["info"]["run_id"]}
    method_ids = {c["info"]["run_id"]: c["info"]["run_name"] for c in methods}
    assert len(seeds) == len(cfg.methods) * len(cfg.seeds) == len(children) - len(methods)
    class_names = finished_run["result"].outcomes[0].detections[0].ap50_per_class
    for o in finished_run["result"].outcomes:
        mine = [c for c in seeds if method_ids[_tags(c)["mlflow.parentRunId"]] == o.name]
        assert sorted(int(_params(c)["seed"]) for c in mine) == cfg.seeds
        for run, seed, detection in zip(
            sorted(mine, key=lambda c: int(_params(c)["seed"])), o.seeds, o.detections
        ):
            # only method and seed are params: the compare page's default axes (below)
            assert _params(run) == {"method": o.name, "seed": str(seed)}
            assert run["info"]["run_name"] == f"{o.name} seed {seed}"
            metrics = _metrics(run)
            assert metrics["mAP50"] == pytest.approx(detection.map50)
            assert metrics["mAP50_95"] == pytest.approx(detection.map50_95)
            assert {k for k in metrics if k.startswith("AP50/")} == {
                f"AP50/{c}" for c, v in class_names.items() if v == v
            }  # NaN (absent class) is not logged
            assert _tags(run)["fused_key"] == o.key and "fused_key" not in _params(run)
    # hashes and checksums are tags of the method runs, not params
    s4 = next(c for c in methods if c["info"]["run_name"] == "S4Fusion")
    assert len(_tags(s4)["method.checkpoint_sha256"]) == 64
    assert not any("sha256" in k or k == "fused_key" for c in [parent, *methods] for k in _params(c))
    assert _tags(parent)["config_sha256"] == finished_run["cfg"].digest()


def test_parent_carries_table6_as_an_mlflow_table_and_the_sweep_params(ui_runs, server, finished_run):
    from pipelines.fuse_then_detect.report import table6_frame

    _, parent, _ = ui_runs
    run_id = parent["info"]["run_id"]
    logged = json.loads(_tags(parent)["mlflow.loggedArtifacts"])
    assert {"path": "table6.json", "type": "table"} in logged  # what makes the UI render it as a table
    response = requests.get(
        f"{server}/get-artifact", params={"path": "table6.json", "run_uuid": run_id}, timeout=30
    )
    response.raise_for_status()
    table = response.json()  # pandas "split" layout, as mlflow.log_table writes it
    outcomes = finished_run["result"].outcomes
    expected = table6_frame(outcomes, list(outcomes[0].detections[0].ap50_per_class))
    assert table["columns"] == list(expected.columns)
    rows = [dict(zip(table["columns"], r)) for r in table["data"]]
    assert [r["method"] for r in rows] == [o.name for o in outcomes]
    for row, o in zip(rows, outcomes):
        assert row["mAP50"] == pytest.approx(o.mean_std("map50")[0])
        assert row["mAP50_std"] == pytest.approx(o.mean_std("map50")[1])  # two seeds
    params = _params(parent)
    assert params["config.detector.epochs"] == str(finished_run["cfg"].detector.epochs)
    assert params["config.seeds"] == str(finished_run["cfg"].seeds)
    note = _tags(parent)["mlflow.note.content"]
    assert finished_run["result"].verdict in note and "| IR |" not in note  # verdict + context, no table


def test_every_run_names_its_split_as_dataset_input(ui_runs, finished_run):
    _, parent, children = ui_runs
    run_dir = finished_run["cfg"].run_dir
    split_hash = (run_dir / "split" / "split.sha256").read_text().split()[0]
    sizes = {p: len((run_dir / "split" / f"{p}.txt").read_text().split()) for p in ("train", "val", "test")}
    methods = [
        c for c in children if _tags(c)["s4fuse.kind"] == "method"
    ]  # a seed run sits under its method's run
    for run in [parent, *methods]:
        (dataset_input,) = run["inputs"]["dataset_inputs"]
        dataset = dataset_input["dataset"]
        assert dataset["digest"] == split_hash[:36] and dataset["name"].startswith("synthetic@")
        profile = json.loads(dataset["profile"])
        assert {p: profile[p] for p in sizes} == sizes and profile["split_sha256"] == split_hash
        assert str(finished_run["cfg"].dataset.root) in dataset["source"] or "synthetic" in dataset["source"]


def test_logged_s4fusion_model_fuses_a_pair(ui_runs, server, inputs, finished_run):
    from fusion.mlflow_model import load_logged_model
    from pipelines.fuse_then_detect.report import summary_text

    _, _, children = ui_runs
    s4 = next(c for c in children if c["info"]["run_name"] == "S4Fusion")
    sample = open_dataset("synthetic", inputs["root"])[0]
    printed = summary_text(finished_run["result"], finished_run["cfg"])
    (model_uri,) = re.findall(r"runs:/[0-9a-f]+/s4fusion", printed)  # the command prints the child's URI
    assert model_uri == f"runs:/{s4['info']['run_id']}/s4fusion"
    model = load_logged_model(model_uri, server)
    assert model.metadata.signature is not None and model.metadata.saved_input_example_info is not None
    vi = sample.vi if sample.vi.ndim == 3 else sample.vi[..., None]
    fused = model.predict({"ir": sample.ir, "vi": vi})
    expected = fuse_image_arrays(load_model(inputs["checkpoint"]), sample.ir, sample.vi)
    assert fused.shape[:2] == sample.ir.shape[:2]
    assert np.array_equal(fused.reshape(expected.shape), expected)
    # no pyfunc for methods without a model
    assert s4["outputs"]["model_outputs"]
    assert all(
        not c.get("outputs", {}).get("model_outputs") for c in children if c["info"]["run_name"] != "S4Fusion"
    )


def test_printed_link_opens_the_saved_table6_chart_view(ui_runs, finished_run):
    from pipelines.fuse_then_detect.mlflow_view import table_link, ui_link
    from pipelines.fuse_then_detect.report import summary_text

    experiment, parent, _ = ui_runs
    eid, pid = experiment["experiment_id"], parent["info"]["run_id"]
    link = ui_link(finished_run["uri"], pid)
    assert link == (
        f"http://127.0.0.1:5000/#/experiments/{eid}/runs?viewStateShareKey=table6"
        "&compareRunsMode=CHART&workflowType=machine_learning"
    )
    summary = summary_text(finished_run["result"], finished_run["cfg"])
    assert link in summary and table_link(finished_run["uri"], pid) in summary
    # the view the link names: stored on the experiment as MLflow's shared view state
    tags = {t["key"]: t["value"] for t in experiment["tags"]}
    view = json.loads(tags["mlflow.sharedViewState.table6"])
    assert view["searchFilter"] == "tags.`s4fuse.kind` = 'detector'"
    assert view["groupBy"]["groupByKeys"] == [{"mode": "param", "groupByData": "method"}]  # one sweep
    charts, tables = view["compareRunSections"]
    assert (charts["name"], tables["name"]) == ("Table VI", "Table VI as a table")
    assert all(s["display"] and not s["deleted"] for s in (charts, tables))
    first = view["compareRunCharts"][0]
    assert first["metricSectionId"] == charts["uuid"]
    assert (first["type"], first["xaxis"], first["yaxis"]) == (
        "SCATTER",
        {"key": "method", "type": "PARAM"},
        {"key": "mAP50", "type": "METRIC"},
    )
    # Table VI as a table on the same page: MLflow's difference view, one column per (method, seed) run,
    # one row per metric, nothing to switch on
    (table,) = [c for c in view["compareRunCharts"] if c["metricSectionId"] == tables["uuid"]]
    assert table["type"] == "DIFFERENCE" and table["compareGroups"] == ["Model metrics"]
    assert not table["showDifferencesOnly"] and not table["showChangeFromBaseline"]
    assert table["runsCountToCompare"] >= len(finished_run["cfg"].methods) * len(finished_run["cfg"].seeds)
    assert not view["useGroupedValuesInCharts"]  # MLflow 3.17 leaves a grouped difference view empty


def test_saved_view_search_returns_exactly_the_method_seed_runs(ui_runs, server, finished_run):
    """What the UI asks for with the saved view's filter and order: the (method, seed) runs and nothing
    else. Sorted by start time, MLflow's UI would also fetch their parents (the method runs)."""
    experiment, _, children = ui_runs
    tags = {t["key"]: t["value"] for t in experiment["tags"]}
    view = json.loads(tags["mlflow.sharedViewState.table6"])
    assert view["orderByKey"] != "attributes.start_time"
    order = f"{view['orderByKey']} {'ASC' if view['orderByAsc'] else 'DESC'}"
    found = _api(
        server,
        "runs/search",
        experiment_ids=[experiment["experiment_id"]],
        filter=view["searchFilter"],
        order_by=[order],
        max_results=100,
    )["runs"]
    seeds = [c for c in children if _tags(c)["s4fuse.kind"] == "detector"]
    assert sorted(r["info"]["run_id"] for r in found) == sorted(r["info"]["run_id"] for r in seeds)
    # newest first: the config's last method (the last to finish, serially) opens the table
    ends = [int(r["info"]["end_time"]) for r in found]
    assert ends == sorted(ends, reverse=True)
    assert _params(found[0])["method"] == finished_run["cfg"].methods[-1].name


def test_compare_page_default_axes_are_method_and_seed(ui_runs):
    """MLflow's compare page (parallel coordinates) starts with the params whose values differ among
    the compared runs, sorted, first three: for one sweep's (method, seed) runs, method and seed."""
    _, _, children = ui_runs
    seeds = [c for c in children if _tags(c)["s4fuse.kind"] == "detector"]
    keys = sorted({k for run in seeds for k in _params(run)})
    differing = [k for k in keys if len({_params(run).get(k) for run in seeds}) > 1]
    assert differing[:3] == ["method", "seed"]
