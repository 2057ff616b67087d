"""``python -m pipelines.run fuse_then_detect``: fuse a detection dataset with every method, train a
YOLO detector per method under identical seeds, compare mAP@50 (S4Fusion paper, Table VI).

Modules (imports flow down this list; none imports one above it):

- ``cli``: the command line (options, error policy) -> ``orchestration.run_pipeline``;
- ``orchestration``: the driver -- runs the jobs on an executor (serial or Ray, pipelines.executor)
  and alone talks to MLflow as each job ends (parent run per invocation, nested child run per
  method, and in it one run per (method, seed), by explicit parent run id);
- ``report``: Table VI (Markdown/CSV, mean ± std over seeds), paired bootstrap vs the best
  source-only row, bar chart, heat map, sample detections, verdict, summary;
- ``mlflow_view``: what the MLflow UI shows (split as dataset input, the (method, seed) runs' keys,
  Table VI as a table on the parent run, the experiment's saved Table VI view, S4Fusion as a pyfunc
  model, the printed links), called by ``orchestration`` and ``report``;
- ``jobs``: the stages as executor jobs (per method: fusion, fusion metrics, one detector job per
  seed), minus the stages already committed in the run folder;
- ``stages``: the units of work, plain functions of their inputs returning results and artifact
  paths, cached in the run folder (an interrupted run resumes where it stopped): data + split,
  input checks, S4Fusion model, one method's fusion, YOLO export, one (method, seed) detector job,
  fusion metrics;
- ``types``: the data passed between them (PreparedData, MethodOutcome, PipelineResult).

Cached stages are written to a temporary folder and renamed when complete (``done.json``), so a
partial output is never used.
"""
