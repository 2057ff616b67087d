"""What a person sees of a fuse_then_detect run in the MLflow UI (3.x), without clicking around.

- every run (parent and one child per method) carries the split it used as an MLflow dataset input
  (name, split hash as digest, source folder, train/val/test sizes), so the runs table's Dataset
  column says which split each number comes from;
- the parent carries Table VI as metrics (``mAP50/<method>``, ``mAP50_95/<method>``, ``mAP50_std/...`` with
  several seeds) and its figures as images, so its run page shows the comparison;
- a method's S4Fusion is logged as a pyfunc model (``runs:/<child>/s4fusion`` fuses a pair);
- the parent's description (Markdown on its run page) is the verdict and Table VI;
- :func:`ui_link` is the URL printed at the end: the parent's run page on a local ``mlflow ui``.
"""
from __future__ import annotations

from pathlib import Path

from data.tracking import Tracker
from pipelines.fuse_then_detect.types import MethodOutcome, PreparedData

MODEL_NAME = "s4fusion"
NOTE_TAG = "mlflow.note.content"  # a run's description, rendered as Markdown on its run page
# MLflow 3.17's UI picks its GenAI or model-training layout from this URL parameter (or the
# browser's last choice), not from the experiment's kind tag alone.
WORKFLOW_PARAM = "workflowType=machine_learning"


def log_split_input(tracker: Tracker, run_id: str, data: PreparedData, dataset_name: str) -> None:
    """Log the split as the run's dataset input: ``<dataset>@<split hash>``, digest = split hash,
    profile = train/val/test sizes (once: a resumed run already has it)."""
    sizes = {part: len(stems) for part, stems in data.split.items()}
    tracker.log_dataset_input(run_id, f"{dataset_name}@{data.split_hash[:12]}", data.split_hash, str(data.root),
                              {**sizes, "split_sha256": data.split_hash, "split_dir": str(data.split_dir)},
                              "train/val/test")


def table6_metrics(outcomes: list[MethodOutcome]) -> dict[str, float]:
    """``mAP50/<method>``, ``mAP50_95/<method>`` (and ``mAP50_std/<method>``... over several seeds) for the
    parent run, in Table VI order: its run page lists each metric for every method together."""
    metrics: dict[str, float] = {}
    several = any(len(o.seeds) > 1 for o in outcomes)
    for attr, key in (("map50", "mAP50"), ("map50_95", "mAP50_95")):
        for o in outcomes:
            metrics[f"{key}/{o.name}"] = o.mean_std(attr)[0]
        for o in outcomes if several else []:
            metrics[f"{key}_std/{o.name}"] = o.mean_std(attr)[1]
    return metrics


def description(verdict: str, report_dir: Path) -> str:
    """The parent's run description (Markdown, shown on its run page): verdict, Table VI, where the figures are."""
    table = (report_dir / "table6.md").read_text(encoding="utf-8")
    return (f"**{verdict}**\n\n### Table VI (test split)\n\n{table}\n"
            "Figures: Artifacts → `figures/` (bar chart, per-class heat map, sample detections); "
            "full report: `report/report.md`. One child run per method (links above).")


def log_parent_view(tracker: Tracker, parent_id: str, outcomes: list[MethodOutcome], report_dir: Path,
                    verdict: str) -> None:
    """Table VI as metrics, description and images on the parent run (its run page shows them)."""
    tracker.log_metrics(parent_id, table6_metrics(outcomes))
    tracker.set_tags(parent_id, {NOTE_TAG: description(verdict, report_dir)})
    for figure in ("table6_map50.png", "table6_heatmap.png", "detections.png"):
        if (report_dir / figure).is_file():
            tracker.log_artifact(parent_id, report_dir / figure, "figures")


def has_logged_model(tracker: Tracker, run_id: str, name: str = MODEL_NAME) -> bool:
    found = tracker.client.search_logged_models(experiment_ids=[tracker.experiment_id],
                                                filter_string=f"name = '{name}'")
    return any(m.source_run_id == run_id for m in found)


def log_child_view(tracker: Tracker, run_id: str, data: PreparedData, dataset_name: str,
                   checkpoint: Path | None) -> None:
    """A method's run: its split as dataset input; its S4Fusion (if any) as the pyfunc ``s4fusion``
    (the checkpoint file is inside it; logged once: a resumed run that has it skips it)."""
    log_split_input(tracker, run_id, data, dataset_name)
    if checkpoint is None or has_logged_model(tracker, run_id):
        return
    from fusion.mlflow_model import log_s4fusion_model

    log_s4fusion_model(tracker.handle(run_id, owns_run=False), checkpoint, MODEL_NAME)


def ui_link(tracking_uri: str, parent_id: str, port: int = 5000) -> str:
    """The parent's run page on ``mlflow ui --backend-store-uri <tracking_uri>`` (default port), in the
    model-training layout: child runs, dataset, verdict + Table VI (description) and metrics at once."""
    from mlflow import MlflowClient

    experiment_id = MlflowClient(tracking_uri=tracking_uri).get_run(parent_id).info.experiment_id
    return f"http://127.0.0.1:{port}/#/experiments/{experiment_id}/runs/{parent_id}?{WORKFLOW_PARAM}"
