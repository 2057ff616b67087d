"""What a person sees of a fuse_then_detect run in the MLflow UI (3.x), without clicking around.

- every run (parent and one child per method) carries the split it used as an MLflow dataset input
  (name, split hash as digest, source folder, train/val/test sizes), so the runs table's Dataset
  column says which split each number comes from;
- one run per (method, seed) (nested in the method's run) carries the same metric keys (``mAP50``,
  ``mAP50_95``, ``AP50/<class>``) and the params ``method`` and ``seed``; hashes are tags;
- the parent carries Table VI as an MLflow table artifact (``table6.json``) and its figures;
- the experiment carries a saved view (``mlflow.sharedViewState.table6``): those runs grouped by method,
  a chart with every method side by side and one point per seed, and under it a table of their metrics;
- a method's S4Fusion is logged as a pyfunc model (``runs:/<child>/s4fusion`` fuses a pair);
- the parent's description (Markdown on its run page) is the verdict and one line of context;
- :func:`ui_link` is the URL printed at the end: that view on a local ``mlflow ui``; :func:`table_link`
  the table.
"""

from __future__ import annotations

from pathlib import Path

from pipelines.fuse_then_detect.types import PreparedData
from runtime.tracking import Tracker

MODEL_NAME = "s4fusion"
NOTE_TAG = "mlflow.note.content"  # a run's description, rendered as Markdown on its run page
# MLflow 3.17's UI picks its GenAI or model-training layout from this URL parameter (or the
# browser's last choice), not from the experiment's kind tag alone.
WORKFLOW_PARAM = "workflowType=machine_learning"
SHARED_VIEW_TAG = "mlflow.sharedViewState."  # + share key: a saved runs view, opened by ?viewStateShareKey=


def log_split_input(tracker: Tracker, run_id: str, data: PreparedData, dataset_name: str) -> None:
    """Log the split as the run's dataset input: ``<dataset>@<split hash>``, digest = split hash,
    profile = train/val/test sizes (once: a resumed run already has it)."""
    sizes = {part: len(stems) for part, stems in data.split.items()}
    tracker.log_dataset_input(
        run_id,
        f"{dataset_name}@{data.split_hash[:12]}",
        data.split_hash,
        str(data.root),
        {**sizes, "split_sha256": data.split_hash, "split_dir": str(data.split_dir)},
        "train/val/test",
    )


SEED_RUN_KIND = "detector"  # s4fuse.kind of the one run per (method, seed)
VIEW_KEY = (
    "table6"  # the experiment's saved view: tag mlflow.sharedViewState.table6, URL ?viewStateShareKey=table6
)
TABLE_FILE = "table6.json"  # Table VI on the parent run, an MLflow table artifact
TABLE_CARD_NAME = "Table VI per (method, seed) run"
SWEEP_TAG = "sweep"


def seed_run_view(
    method: str,
    seed: int,
    result,
    coco_map50: float,
    class_names: list[str],
    fusion_means: dict[str, float],
) -> tuple[dict, dict[str, float]]:
    """Params and metrics of one (method, seed) run: every such run has the same keys, so MLflow's
    charts and its compare page line them up. The params are only ``method`` and ``seed`` (the
    method's kind is on its method run, hashes are tags): MLflow's compare page plots the params
    whose values differ, sorted, first three, so its parallel coordinates default to method, seed."""
    metrics = {
        "mAP50": result.map50,
        "mAP50_95": result.map50_95,
        "mAP50_coco": coco_map50,
        **{f"AP50/{c}": result.ap50_per_class[c] for c in class_names},
        **{f"fusion/{k}": v for k, v in fusion_means.items()},
    }
    return {"method": method, "seed": seed}, metrics


def table6_view_state(class_names: list[str], group_by_sweep: bool) -> dict:
    """MLflow 3.17's shared view state (what its "Share" button stores): the (method, seed) runs only,
    grouped by method (and by sweep when the experiment holds several), newest first, charts first: a
    "Table VI" section whose first chart puts every method side by side on the x axis with one point
    per seed (the spread), then mAP@50 per run; under it a "Table VI as a table" section, MLflow's
    difference view (one column per run, one row per metric), so the chart and the table are on the
    page the printed link opens. In the table view the same grouping shows mAP columns (group rows:
    the mean over seeds)."""
    keys = [{"mode": "param", "groupByData": "method"}]
    if group_by_sweep:
        keys.insert(0, {"mode": "tag", "groupByData": SWEEP_TAG})
    chart_section, table_section = "table6-section", "table6-table-section"
    card = {"runsCountToCompare": 100, "deleted": False, "isGenerated": False}
    charts = [
        {
            **card,
            "metricSectionId": chart_section,
            "uuid": "table6-per-method",
            "type": "SCATTER",
            "displayName": "mAP@50 per method (one point per seed)",
            "xaxis": {"key": "method", "type": "PARAM"},
            "yaxis": {"key": "mAP50", "type": "METRIC"},
        },
        {
            **card,
            "metricSectionId": chart_section,
            "uuid": "table6-map50",
            "type": "BAR",
            "metricKey": "mAP50",
            "displayName": "mAP@50 per run",
        },
        {  # MLflow's "difference view": a table, one column per run, one row per metric
            **card,
            "metricSectionId": table_section,
            "uuid": "table6-table",
            "type": "DIFFERENCE",
            "chartName": TABLE_CARD_NAME,
            "displayName": TABLE_CARD_NAME,
            "compareGroups": ["Model metrics"],
            "showChangeFromBaseline": False,
            "showDifferencesOnly": False,
            "baselineColumnUuid": "",
        },
    ]
    section = {"display": True, "isReordered": True, "deleted": False, "isGenerated": False}
    columns = [f"metrics.`{k}`" for k in ["mAP50", "mAP50_95", *(f"AP50/{c}" for c in class_names)]]
    return {
        "searchFilter": f"tags.`s4fuse.kind` = '{SEED_RUN_KIND}'",
        # Not start_time: sorted by it, MLflow also fetches the runs' parents (the method runs), which
        # land in an "Additional runs" group and in the charts. Newest first: the table's columns start
        # with the config's last method (S4Fusion in the profiles), the charts' x axis ends with it.
        "orderByKey": "attributes.`end_time`",
        "orderByAsc": False,
        "startTime": "ALL",
        "lifecycleFilter": "Active",
        "datasetsFilter": [],
        "modelVersionFilter": "All Runs",
        "groupBy": {"aggregateFunction": "average", "groupByKeys": keys},
        "groupsExpanded": {},
        "useGroupedValuesInCharts": False,  # the per-method chart plots each seed; the table averages them
        "runsHiddenMode": "SHOW_ALL",
        "hideEmptyCharts": True,
        "isAccordionReordered": True,
        "selectedColumns": ["params.`seed`", *columns],
        "compareRunSections": [
            {**section, "uuid": chart_section, "name": "Table VI", "columns": 2, "cardHeight": 340},
            {
                **section,
                "uuid": table_section,
                "name": "Table VI as a table",
                "columns": 1,
                "cardHeight": 760,  # every row: AP50/<class>, fusion/<metric>, then mAP50, mAP50_95, mAP50_coco
            },
        ],
        "compareRunCharts": charts,
    }


def save_table6_view(tracker: Tracker, class_names: list[str]) -> None:
    """Store the view on the experiment (rewritten by every sweep, so it covers them all)."""
    import json

    sweeps = tracker.client.search_runs(
        [tracker.experiment_id], "tags.`s4fuse.kind` = 'pipeline'", max_results=2
    )
    tracker.set_experiment_tag(
        f"{SHARED_VIEW_TAG}{VIEW_KEY}",
        json.dumps(table6_view_state(class_names, group_by_sweep=len(sweeps) > 1)),
    )


def description(verdict: str, frame) -> str:
    """The parent's run description: the verdict and one line of context (the table is its own artifact)."""
    best = frame.loc[frame["mAP50"].idxmax()]
    return (
        f"**{verdict}**\n\nBest mAP@50: {best['method']} {best['mAP50']:.3f} over {int(best['seeds'])} seed(s). "
        f"Table VI: Artifacts → `{TABLE_FILE}`; the experiment's chart view compares the (method, seed) runs."
    )


def log_parent_view(
    tracker: Tracker, parent_id: str, frame, report_dir: Path, verdict: str, class_names: list[str]
) -> None:
    """Table VI as an MLflow table on the parent run, the verdict as its description, its figures, and
    the experiment's saved Table VI view."""
    tracker.log_table(parent_id, frame, TABLE_FILE)
    tracker.set_tags(parent_id, {NOTE_TAG: description(verdict, frame)})
    for figure in ("table6_map50.png", "table6_heatmap.png", "detections.png"):
        if (report_dir / figure).is_file():
            tracker.log_artifact(parent_id, report_dir / figure, "figures")
    save_table6_view(tracker, class_names)


def has_logged_model(tracker: Tracker, run_id: str, name: str = MODEL_NAME) -> bool:
    found = tracker.client.search_logged_models(
        experiment_ids=[tracker.experiment_id], filter_string=f"name = '{name}'"
    )
    return any(m.source_run_id == run_id for m in found)


def log_child_view(
    tracker: Tracker, run_id: str, data: PreparedData, dataset_name: str, checkpoint: Path | None
) -> None:
    """A method's run: its split as dataset input; its S4Fusion (if any) as the pyfunc ``s4fusion``
    (the checkpoint file is inside it; logged once: a resumed run that has it skips it)."""
    log_split_input(tracker, run_id, data, dataset_name)
    if checkpoint is None or has_logged_model(tracker, run_id):
        return
    from fusion.mlflow_model import log_s4fusion_model

    log_s4fusion_model(tracker.handle(run_id, owns_run=False), checkpoint, MODEL_NAME)


def ui_link(tracking_uri: str, parent_id: str, port: int = 5000) -> str:
    """The experiment's saved Table VI view in chart mode on ``mlflow ui --backend-store-uri <tracking_uri>``
    (default port), in the model-training layout."""
    return (
        f"http://127.0.0.1:{port}/#/experiments/{_experiment_id(tracking_uri, parent_id)}/runs"
        f"?viewStateShareKey={VIEW_KEY}&compareRunsMode=CHART&{WORKFLOW_PARAM}"
    )


def table_link(tracking_uri: str, parent_id: str, port: int = 5000) -> str:
    """Table VI (the table artifact) on the parent's run page."""
    return (
        f"http://127.0.0.1:{port}/#/experiments/{_experiment_id(tracking_uri, parent_id)}/runs/{parent_id}"
        f"/artifacts/{TABLE_FILE}?{WORKFLOW_PARAM}"
    )


def _experiment_id(tracking_uri: str, run_id: str) -> str:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri).get_run(run_id).info.experiment_id
