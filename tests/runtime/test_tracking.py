"""MLflow helpers: SQLite store, resumable parent/child runs found by tag, safe param logging."""

import math

import pytest
from helpers import search_runs

from runtime.tracking import Tracker, default_tracking_uri, flatten


@pytest.fixture(scope="module")
def db_dir(tmp_path_factory):
    # Creating an MLflow SQLite database takes seconds (schema migrations): one per module.
    return tmp_path_factory.mktemp("mlflow")


@pytest.fixture
def tracker(db_dir, request):
    return Tracker(
        default_tracking_uri(db_dir), f"exp/{request.node.name}", artifact_dir=db_dir / request.node.name
    )


def test_default_uri_is_sqlite_in_the_runs_dir(tmp_path):
    uri = default_tracking_uri(tmp_path)
    assert uri == f"sqlite:///{tmp_path.resolve()}/mlflow.db"


def test_runs_are_found_again_and_never_duplicated(tracker, tmp_path):
    parent, done = tracker.start_run("p1", "pipeline", "pipeline")
    assert not done
    child, done = tracker.start_run("c1", "IR", "method", parent_id=parent)
    assert not done
    # interrupted here -> a rerun finds the same (unfinished) runs
    assert tracker.start_run("p1", "pipeline", "pipeline") == (parent, False)
    assert tracker.start_run("c1", "IR", "method", parent_id=parent) == (child, False)
    tracker.log_metrics(child, {"mAP50": 0.5, "AP50/Lamp": float("nan")})
    tracker.finish(child)
    assert tracker.start_run("c1", "IR", "method", parent_id=parent) == (child, True)
    # the same child key under another parent is another run
    other_parent, _ = tracker.start_run("p2", "pipeline", "pipeline")
    other_child, _ = tracker.start_run("c1", "IR", "method", parent_id=other_parent)
    assert other_child != child

    runs = search_runs(tracker.tracking_uri, tracker.experiment)
    assert len(runs) == 4
    row = runs[runs["run_id"] == child].iloc[0]
    assert row["tags.mlflow.parentRunId"] == parent and row["status"] == "FINISHED"
    assert row["metrics.mAP50"] == 0.5
    assert "metrics.AP50/Lamp" not in runs.columns or math.isnan(row["metrics.AP50/Lamp"])


def test_params_are_flattened_relogged_idempotently_and_conflicts_raise(tracker):
    run, _ = tracker.start_run("p", "x", "pipeline")
    params = {"detector": {"epochs": 3, "imgsz": 160}, "seeds": [0, 1]}
    tracker.log_params(run, params)
    tracker.log_params(run, params)  # resume: same values are fine
    logged = tracker.client.get_run(run).data.params
    assert logged == {"detector.epochs": "3", "detector.imgsz": "160", "seeds": "[0, 1]"}
    with pytest.raises(ValueError, match="detector.epochs"):
        tracker.log_params(run, {"detector": {"epochs": 4}})


def test_experiment_artifacts_live_beside_the_database(tracker, db_dir, request):
    exp = tracker.client.get_experiment(tracker.experiment_id)
    assert exp.artifact_location == (db_dir / request.node.name).resolve().as_uri()
    again = Tracker(tracker.tracking_uri, tracker.experiment)
    assert again.experiment_id == tracker.experiment_id


def test_flatten():
    assert flatten({"a": {"b": 1, "c": {"d": 2}}, "e": [1], "f": {}}) == {
        "a.b": 1,
        "a.c.d": 2,
        "e": [1],
        "f": {},
    }


def test_sqlite_artifacts_default_beside_the_database_not_the_working_directory(db_dir):
    t = Tracker(default_tracking_uri(db_dir), "exp/default-artifacts")
    location = t.client.get_experiment(t.experiment_id).artifact_location
    assert location == (db_dir / "mlartifacts").resolve().as_uri()


def test_a_table_is_an_mlflow_table_and_a_rerun_replaces_it_instead_of_appending(tracker, tmp_path):
    import json

    import pandas as pd

    run = tracker.new_run("parent", "pipeline")
    tracker.log_table(run, pd.DataFrame({"method": ["IR", "VI"], "mAP50": [0.5, 0.4]}), "table6.json")
    tracker.log_table(
        run, pd.DataFrame({"method": ["IR", "VI", "Avg"], "mAP50": [0.5, 0.4, 0.6]}), "table6.json"
    )
    logged = pd.read_json(
        tracker.client.download_artifacts(run, "table6.json", str(tmp_path)), orient="split"
    )
    assert list(logged["method"]) == ["IR", "VI", "Avg"] and list(logged["mAP50"]) == pytest.approx(
        [0.5, 0.4, 0.6]
    )
    tags = tracker.client.get_run(run).data.tags
    assert json.loads(tags["mlflow.loggedArtifacts"]) == [{"path": "table6.json", "type": "table"}]


def test_recorded_calls_replay_into_a_run_and_a_second_replay_adds_nothing(tracker, tmp_path):
    """The one way a job reaches MLflow: it records (also into a file, kept across a kill), the driver
    replays; a driver killed mid-replay replays again on its rerun without repeating a metric step."""
    from runtime.tracking import RecordingTracker, replay

    recorder = RecordingTracker(tmp_path / "calls.jsonl")
    run = recorder.handle()
    run.log_params({"train": {"lr": 0.1}})
    run.log_metrics({"train/loss": 1.0}, 1)
    run.log_metrics({"train/loss": 0.5}, 2)
    run.set_tags({"note": "x"})
    run.finish()  # the driver owns the real run: recording a finish does nothing
    (tmp_path / "calls.jsonl").open("a").write('["log_metrics", [{"train/lo')  # a line cut short by a kill
    again = RecordingTracker(tmp_path / "calls.jsonl")
    assert again.calls == recorder.calls and again.last_step("recorded", "train/loss") == 2

    run_id, _ = tracker.start_run("replayed", "S4Fusion", "method")
    for _ in range(2):
        replay(again.calls, tracker.handle(run_id, owns_run=False))
    client = tracker.client
    history = sorted((m.step, m.value) for m in client.get_metric_history(run_id, "train/loss"))
    assert history == [(1, 1.0), (2, 0.5)]
    data = client.get_run(run_id).data
    assert data.params["train.lr"] == "0.1" and data.tags["note"] == "x"
    assert client.get_run(run_id).info.status == "RUNNING"
