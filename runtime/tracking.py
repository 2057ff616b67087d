"""MLflow tracking for every command (training, fuse_then_detect, evaluate): SQLite by default,
parent/child runs that survive a resume.

It lives in ``runtime/`` (the bottom floor) so that fusion/ (training) and pipelines/ share one tracker.

Layout: one experiment per dataset/config; one parent run per pipeline invocation; one nested
child run per method. Runs are found again by tags (``s4fuse.key``), so a rerun after an
interruption continues the same parent run and never duplicates a child that already finished.
All calls go through an explicit :class:`mlflow.MlflowClient` (no global active-run state), so
nothing else in the process (e.g. ultralytics' own MLflow callback, which detection/ disables)
can attach to or end our runs, and no global ``mlflow.set_tracking_uri`` state is touched. Nested
runs are made by passing the parent's run id explicitly. :class:`RunHandle` binds a tracker to one
run, for code (the trainer) that logs into a run it may not own.
"""

from __future__ import annotations

import json
import math
import os
import platform
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.config_loader import flatten

KEY_TAG = "s4fuse.key"
KIND_TAG = "s4fuse.kind"
PARENT_TAG = "mlflow.parentRunId"
# MLflow 3's experiment kind: without it the UI guesses and may open on the GenAI overview page.
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
_MAX_PARAM_CHARS = 6000


def default_tracking_uri(runs_dir: str | os.PathLike) -> str:
    """``sqlite:///<runs_dir>/mlflow.db`` (MLflow 3's plain ``./mlruns`` file store is not supported)."""
    return f"sqlite:///{Path(runs_dir).resolve() / 'mlflow.db'}"


def environment_info() -> dict[str, str]:
    """Versions that matter for reproducing a run."""
    import numpy
    import torch

    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "cuda": str(torch.cuda.is_available()),
    }
    for name in ("ultralytics", "mlflow", "pycocotools"):
        try:
            from importlib.metadata import version

            info[name] = version(name)
        except Exception:  # noqa: BLE001 - a missing optional package is simply not recorded
            continue
    return info


class Tracker:
    """Thin layer over MlflowClient: resumable parent/child runs and safe param logging."""

    def __init__(self, tracking_uri: str, experiment: str, artifact_dir: str | os.PathLike | None = None):
        """``artifact_dir``: where a new experiment stores artifacts (default for SQLite URIs: an
        ``mlartifacts`` folder beside the database; for a server: the server's default)."""
        from mlflow import MlflowClient

        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri=tracking_uri)
        if artifact_dir is None and tracking_uri.startswith("sqlite:///"):
            # MLflow's default artifact root is ./mlruns in the working directory: keep the
            # artifacts beside the database instead.
            artifact_dir = Path(tracking_uri[len("sqlite:///") :]).parent / "mlartifacts"
        found = self.client.get_experiment_by_name(experiment)
        if found is None:
            location = None
            if artifact_dir is not None:
                Path(artifact_dir).mkdir(parents=True, exist_ok=True)
                location = Path(artifact_dir).resolve().as_uri()
            self.experiment_id = self.client.create_experiment(experiment, artifact_location=location)
        else:
            if found.lifecycle_stage == "deleted":
                self.client.restore_experiment(found.experiment_id)
            self.experiment_id = found.experiment_id
        self.client.set_experiment_tag(self.experiment_id, *EXPERIMENT_KIND)
        self.experiment = experiment

    def _find(self, key: str, parent_id: str | None = None):
        query = f"tags.`{KEY_TAG}` = '{key}'"
        if parent_id is not None:
            query += f" and tags.`{PARENT_TAG}` = '{parent_id}'"
        runs = self.client.search_runs(
            [self.experiment_id], filter_string=query, max_results=2, order_by=["attributes.start_time ASC"]
        )
        return runs[0] if runs else None

    def start_run(
        self,
        key: str,
        name: str,
        kind: str,
        parent_id: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> tuple[str, bool]:
        """Open the run tagged ``key`` (under ``parent_id`` if given), creating it if needed.

        Returns ``(run_id, finished)``; ``finished`` is True when that run already completed, in
        which case it is left untouched.
        """
        existing = self._find(key, parent_id)
        if existing is not None:
            if existing.info.status == "FINISHED":
                return existing.info.run_id, True
            self.client.update_run(existing.info.run_id, status="RUNNING")
            return existing.info.run_id, False
        all_tags = {KEY_TAG: key, KIND_TAG: kind, **(tags or {})}
        if parent_id is not None:
            all_tags[PARENT_TAG] = parent_id
        run = self.client.create_run(self.experiment_id, tags=all_tags, run_name=name)
        return run.info.run_id, False

    def new_run(
        self, name: str, kind: str, parent_id: str | None = None, tags: Mapping[str, str] | None = None
    ) -> str:
        """Create a run (no resume-by-key lookup); returns its id."""
        all_tags = {KIND_TAG: kind, **(tags or {})}
        if parent_id is not None:
            all_tags[PARENT_TAG] = parent_id
        return self.client.create_run(self.experiment_id, tags=all_tags, run_name=name).info.run_id

    def reopen(self, run_id: str) -> str:
        """Mark an interrupted run RUNNING again (resume)."""
        self.client.update_run(run_id, status="RUNNING")
        return run_id

    def handle(self, run_id: str, owns_run: bool = True) -> RunHandle:
        return RunHandle(self, run_id, owns_run)

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        """Log params; ones already logged with the same value are skipped (resume), a changed value
        raises (MLflow params are immutable: a different value means a different run)."""
        from mlflow.entities import Param

        logged = self.client.get_run(run_id).data.params
        new = []
        for k, v in flatten(params).items():
            value = str(v)[:_MAX_PARAM_CHARS]
            if k in logged:
                if logged[k] != value:
                    raise ValueError(f"MLflow run {run_id}: param {k!r} was {logged[k]!r}, now {value!r}")
                continue
            new.append(Param(k, value))
        for i in range(0, len(new), 100):  # MLflow's batch limit
            self.client.log_batch(run_id, params=new[i : i + 100])

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        """Log finite metrics (NaN = undefined, e.g. a class absent from the test split, is skipped)."""
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [
            Metric(k, float(v), now, step) for k, v in metrics.items() if v is not None and math.isfinite(v)
        ]
        for i in range(0, len(batch), 500):
            self.client.log_batch(run_id, metrics=batch[i : i + 500])

    def last_step(self, run_id: str, key: str) -> int:
        """The highest step logged for metric ``key`` (0 if none): a resumed run skips those."""
        return max((m.step for m in self.client.get_metric_history(run_id, key)), default=0)

    def logged_steps(self, run_id: str, key: str) -> set[int]:
        """The steps logged for metric ``key``."""
        return {m.step for m in self.client.get_metric_history(run_id, key)}

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        for k, v in tags.items():
            self.client.set_tag(run_id, k, str(v))

    def log_artifact(self, run_id: str, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        path = Path(path)
        if path.is_dir():
            self.client.log_artifacts(run_id, str(path), artifact_path)
        else:
            self.client.log_artifact(run_id, str(path), artifact_path)

    def log_table(self, run_id: str, frame: Any, artifact_file: str) -> None:
        """A pandas DataFrame as an MLflow table artifact (``MlflowClient.log_table``: the UI renders it as a
        sortable table). MLflow appends to a table already there; a rerun replaces it instead (same JSON
        layout), so a resumed or retried run never repeats rows."""
        import tempfile

        folder = str(Path(artifact_file).parent) if Path(artifact_file).parent != Path(".") else None
        if artifact_file not in {a.path for a in self.client.list_artifacts(run_id, folder)}:
            self.client.log_table(run_id, frame, artifact_file)
            return
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(artifact_file).name
            frame.to_json(path, orient="split", index=False, date_format="iso")
            self.client.log_artifact(run_id, str(path), folder)

    def set_experiment_tag(self, key: str, value: str) -> None:
        self.client.set_experiment_tag(self.experiment_id, key, value)

    def log_dataset_input(
        self, run_id: str, name: str, digest: str, source: str, profile: Mapping[str, Any], context: str
    ) -> None:
        """The data a run used, as an MLflow dataset input (the UI's Dataset column); logged once per
        (name, digest), so a resumed run does not repeat it. ``source``: a local path."""
        import json

        from mlflow.entities import Dataset, DatasetInput, InputTag

        logged = self.client.get_run(run_id).inputs.dataset_inputs or []
        if any(d.dataset.name == name and d.dataset.digest == digest[:36] for d in logged):
            return
        dataset = Dataset(
            name=name,
            digest=digest[:36],
            source_type="local",
            source=json.dumps({"uri": Path(source).resolve().as_uri()}),
            profile=json.dumps(dict(profile), default=str),
        )
        self.client.log_inputs(run_id, [DatasetInput(dataset, [InputTag("mlflow.data.context", context)])])

    def finish(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)


@dataclass
class RunHandle:
    """One run of a :class:`Tracker`; ``owns_run`` False: the caller finishes it (e.g. a pipeline's
    child run that the trainer logs into)."""

    tracker: Tracker
    run_id: str
    owns_run: bool = True

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.tracker.log_params(self.run_id, params)

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        self.tracker.log_metrics(self.run_id, metrics, step)

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        self.tracker.log_artifact(self.run_id, path, artifact_path)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self.tracker.set_tags(self.run_id, tags)

    def log_dataset_input(
        self, name: str, digest: str, source: str, profile: Mapping[str, Any], context: str
    ) -> None:
        self.tracker.log_dataset_input(self.run_id, name, digest, source, profile, context)

    def finish(self, status: str = "FINISHED") -> None:
        if self.owns_run:
            self.tracker.finish(self.run_id, status)


# ---- jobs: recorded on the worker, replayed by the driver ----------------------------------------------
class RecordingTracker:
    """Stands in for :class:`Tracker` in an executor job: records the calls that the driver replays
    (:func:`replay`) into the real run. This is the one way a job reaches MLflow, in every pipeline
    (fuse_then_detect's in-run S4Fusion training, ablate's variants): the driver alone talks to the
    tracking store, whichever executor or node ran the job.

    With ``path`` every call is also appended to that JSON-lines file (in the job's own folder), so a
    job killed and resumed keeps what it logged before: :meth:`last_step` then tells the trainer which
    steps are already recorded, exactly as a real run would, and none is logged twice."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.calls: list[tuple[str, tuple]] = []
        if path is not None and path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    name, args = json.loads(line)
                except ValueError:  # a line cut short by a kill: that call was not completed
                    continue
                self.calls.append((name, tuple(args)))

    def handle(self) -> RunHandle:
        """A run handle that records into this tracker; the driver owns (and finishes) the real run."""
        return RunHandle(self, "recorded", owns_run=False)  # type: ignore[arg-type]

    def _record(self, name: str, args: tuple) -> None:
        self.calls.append((name, args))
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps([name, list(args)]) + "\n")

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        self._record("log_params", (dict(params),))

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        self._record("log_metrics", (dict(metrics), step))

    def log_artifact(self, run_id: str, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        self._record("log_artifact", (str(path), artifact_path))

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        self._record("set_tags", (dict(tags),))

    def log_dataset_input(
        self, run_id: str, name: str, digest: str, source: str, profile: Mapping[str, Any], context: str
    ) -> None:
        self._record("log_dataset_input", (name, digest, str(source), dict(profile), context))

    def last_step(self, run_id: str, key: str) -> int:
        """The highest step recorded for metric ``key`` (0 if none)."""
        return max(
            (args[1] for name, args in self.calls if name == "log_metrics" and key in args[0]), default=0
        )

    def finish(self, run_id: str, status: str = "FINISHED") -> None:
        return None  # the driver owns the run


def replay(calls: list[tuple[str, tuple]], run: RunHandle) -> None:
    """Log recorded calls into ``run`` in their order. Replaying again is harmless (a driver killed
    mid-replay replays on its rerun): params, tags, artifacts and dataset inputs are idempotent, and a
    metric at a step the run already has is skipped."""
    logged: dict[str, set[int]] = {}  # metric key -> steps the run has, read once per key
    for name, args in calls:
        if name == "log_metrics":
            metrics, step = args
            for key in metrics:
                if key not in logged:
                    logged[key] = run.tracker.logged_steps(run.run_id, key)
            fresh = {k: v for k, v in metrics.items() if step not in logged[k]}
            if fresh:
                run.log_metrics(fresh, step)
            continue
        getattr(run, name)(*args)
