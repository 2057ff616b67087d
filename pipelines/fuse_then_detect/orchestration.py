"""The fuse_then_detect driver: runs the stages as executor jobs (serial or Ray, pipelines.executor)
in dependency order and is the only part that talks to MLflow (as each job ends, in this process).

MLflow layout: one parent run per invocation of one exact config in one run folder (a rerun after
an interruption continues it), one child run per method nested by the parent's run id (a child
that already finished is never redone or duplicated).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import yaml

from data.io import digest, file_sha256, write_text_atomic
from fusion.methods import MethodInputs
from pipelines.config import MethodConfig, PipelineConfig
from pipelines.executor import JobFailure, make_executor
from pipelines.fuse_then_detect import mlflow_view, stages
from pipelines.fuse_then_detect.jobs import plan_jobs
from pipelines.fuse_then_detect.report import build_report, method_samples_png, table6_frame, verdict_line
from pipelines.fuse_then_detect.types import MethodOutcome, PipelineResult, PreparedData, RunContext
from pipelines.paper_columns import table6_params
from runtime.tracking import Tracker, default_tracking_uri, environment_info, replay


class JobsFailedError(RuntimeError):
    """Some jobs failed after their retries; the others finished and the report covers them."""

    def __init__(self, failures: list[JobFailure], report_dir: Path | None):
        self.failures, self.report_dir = failures, report_dir
        lines = [f"{len(failures)} job(s) failed (the other jobs finished):"] + [
            f"  {describe(f)}" for f in failures
        ]
        if report_dir is not None:
            lines.append(f"report of the methods that finished: {report_dir / 'report.md'}")
        if any(f.permanent for f in failures):  # bad input: a rerun would fail the same way
            lines.append("fix the input named above, then rerun the same command: finished stages are reused")
        else:
            lines.append("rerun the same command to retry them: finished stages are reused")
        super().__init__("\n".join(lines))


def describe(failure: JobFailure) -> str:
    """``detect S4Fusion seed 1: ValueError: ...`` (the worker's error, or the failed job it needed)."""
    kind, method, *seed = failure.key
    where = f"{kind} {method}" + (f" seed {seed[0]}" if seed else "")
    return f"{where}: {failure.error}"


def run_pipeline(cfg: PipelineConfig, progress: bool = True) -> PipelineResult:
    start = time.perf_counter()
    run_dir = cfg.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run_dir / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    timings: dict[str, float] = {}
    tick = time.perf_counter()
    run = RunContext(cfg, stages.prepare_data(cfg.dataset, run_dir, progress))
    data = run.data
    method_inputs = stages.check_inputs(run)
    timings["data+checks"] = time.perf_counter() - tick

    with make_executor(cfg.executor) as executor:
        executor.check_storage(run_dir)  # refuses a run folder the workers do not share, before any work
        tracker, parent_id = _open_parent_run(run)
        driver = MethodRuns(run, method_inputs, tracker, parent_id, executor.placement)
        try:
            jobs, done = plan_jobs(run, method_inputs)
            for key, result in done.items():
                driver.job_ended(key, result)
            tick = time.perf_counter()
            executor.run(jobs, progress, on_job_end=driver.job_ended)
            timings["jobs"] = time.perf_counter() - tick
            timings.update(driver.job_seconds)
            outcomes = [driver.outcomes[m.name] for m in cfg.methods if m.name in driver.outcomes]
            tick = time.perf_counter()
            report_dir = (
                build_report(run, outcomes, run_dir / "report", [describe(f) for f in driver.failures])
                if outcomes
                else None
            )
            timings["report"] = time.perf_counter() - tick
            if report_dir is not None:
                tracker.log_artifact(parent_id, report_dir, "report")
            verdict = verdict_line(outcomes)
            if report_dir is not None:
                mlflow_view.log_parent_view(
                    tracker,
                    parent_id,
                    table6_frame(outcomes, data.class_names),
                    report_dir,
                    verdict,
                    data.class_names,
                )
            tracker.set_tags(parent_id, {"verdict": verdict})
            if driver.failures:
                raise JobsFailedError(driver.failures, report_dir)
        except BaseException as exc:
            status = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
            driver.close(status)
            tracker.finish(parent_id, status)
            raise
    tracker.finish(parent_id)
    timings["total"] = time.perf_counter() - start
    write_text_atomic(run_dir / "timings.json", json.dumps(timings, indent=2) + "\n")
    return PipelineResult(
        run_dir,
        report_dir,
        outcomes,
        verdict,
        tracker.tracking_uri,
        tracker.experiment,
        parent_id,
        timings=timings,
    )


def _open_parent_run(run: RunContext) -> tuple[Tracker, str]:
    cfg, data, run_dir = run.cfg, run.data, run.run_dir
    uri = cfg.tracking.uri or default_tracking_uri(run_dir)
    tracker = Tracker(uri, cfg.tracking.experiment or f"fuse_then_detect/{cfg.dataset.name}/{cfg.name}")
    parent_id, _ = tracker.start_run(
        digest([cfg.to_dict(), str(run_dir)], 24),
        cfg.name,
        "pipeline",
        tags={"s4fuse.run_dir": str(run_dir), "executor": cfg.executor.kind},
    )
    # sweep-level params (several sweeps in one experiment compare on them); hashes are tags, so that
    # MLflow's default comparisons pick meaningful axes
    tracker.log_params(
        parent_id,
        {
            "config": {k: v for k, v in cfg.to_dict().items() if k != "methods"},
            "methods": [m.name for m in cfg.methods],
            "executor": cfg.executor.kind,
            "split": {p: len(v) for p, v in data.split.items()},
        },
    )
    tracker.log_params(parent_id, table6_params())  # the paper's Table VI beside ours
    tracker.set_tags(
        parent_id,
        {
            "config_sha256": cfg.digest(),
            "split.sha256": data.split_hash,
            **{f"env.{k}": v for k, v in environment_info().items()},
        },
    )
    tracker.log_artifact(parent_id, run_dir / "config.yaml")
    tracker.log_artifact(parent_id, data.split_dir, "split")
    mlflow_view.log_split_input(tracker, parent_id, data, cfg.dataset.name)
    return tracker, parent_id


class MethodRuns:
    """The driver's side of the jobs: called as each job ends (``on_job_end``), it opens a method's
    child run when its fusion is done (replaying an in-run training's MLflow calls), and logs and
    finishes it when all of the method's jobs are done -- or marks it FAILED. Each job that ran in this
    invocation leaves a tag ``node.<job>`` (e.g. ``node.detect.seed0``) on the child run: the node it
    ran on, from the executor's ``placement``."""

    def __init__(
        self,
        run: RunContext,
        method_inputs: dict[str, MethodInputs],
        tracker: Tracker,
        parent_id: str,
        placement: dict[tuple, str],
    ):
        self.run, self.method_inputs = run, method_inputs
        self.tracker, self.parent_id = tracker, parent_id
        self.placement = placement
        self.results: dict[tuple, Any] = {}
        self.runs: dict[
            str, tuple[str, bool]
        ] = {}  # method -> (child run id, finished before this invocation)
        self.outcomes: dict[str, MethodOutcome] = {}
        self.failures: list[JobFailure] = []
        self.job_seconds: dict[str, float] = {}
        self._open: set[str] = set()

    @property
    def cfg(self) -> PipelineConfig:
        return self.run.cfg

    @property
    def data(self) -> PreparedData:
        return self.run.data

    def job_ended(self, key: tuple, result: Any) -> None:
        self.results[key] = result
        m = next(m for m in self.cfg.methods if m.name == key[1])
        if getattr(result, "seconds", 0.0):
            self.job_seconds["/".join(map(str, key))] = result.seconds
        if isinstance(result, JobFailure):
            self.failures.append(result)
            self._child(m)
            self._finish(m.name, "FAILED")
        elif key[0] == "fuse":
            run_id, finished = self._child(m)
            if not finished:
                replay(result.tracking_calls, self.tracker.handle(run_id, owns_run=False))
        if key in self.placement and m.name in self._open:
            job = ".".join([key[0], *(f"seed{s}" for s in key[2:])])
            self.tracker.set_tags(self.runs[m.name][0], {f"node.{job}": self.placement[key]})
        keys = [("fuse", m.name), ("metrics", m.name), *(("detect", m.name, s) for s in self.cfg.seeds)]
        if all(k in self.results for k in keys) and not any(
            isinstance(self.results[k], JobFailure) for k in keys
        ):
            self._complete(m, keys)

    def _child(self, m: MethodConfig) -> tuple[str, bool]:
        if m.name not in self.runs:
            # The child run is keyed by what determines its results; for a trained S4Fusion that is
            # its train config (the checkpoint does not exist yet on the first run).
            inputs = self.method_inputs[m.name]
            ident = m.method().identity()
            if inputs.train_config is not None:
                ident = {**ident, "train": inputs.train_config.to_dict()}
            child_key = digest(
                [
                    m.name,
                    ident,
                    self.data.data_id,
                    stages.detector_key(self.cfg.detector, self.data.class_names),
                    self.cfg.seeds,
                    self.cfg.report.fusion_metrics,
                    self.cfg.report.metrics_convention,
                ],
                24,
            )
            self.runs[m.name] = self.tracker.start_run(
                child_key,
                m.name,
                "method",
                parent_id=self.parent_id,
                tags={"method": m.name, "method_kind": m.kind},
            )
            if not self.runs[m.name][1]:
                self._open.add(m.name)
        return self.runs[m.name]

    def _finish(self, name: str, status: str) -> None:
        if name in self._open:
            self._open.discard(name)
            self.tracker.finish(self.runs[name][0], status)

    def _complete(self, m: MethodConfig, keys: list[tuple]) -> None:
        fusion, fusion_frame, *detectors = (self.results[k] for k in keys)
        run_id, finished = self._child(m)
        outcome = MethodOutcome(
            m.name,
            m.kind,
            fusion.key,
            fusion.fused,
            fusion.data_yaml,
            list(self.cfg.seeds),
            [d.result for d in detectors],
            [d.coco for d in detectors],
            fusion_frame,
            run_id,
        )
        self.outcomes[m.name] = outcome
        if not finished:
            _log_method(
                self.tracker,
                run_id,
                m,
                outcome,
                fusion.checkpoint,
                [d.folder for d in detectors],
                self.run,
            )
            self._log_seed_runs(m, outcome, run_id)
            self.tracker.finish(run_id)
            self._open.discard(m.name)

    def _log_seed_runs(self, m: MethodConfig, outcome: MethodOutcome, method_run_id: str) -> None:
        """One run per (method, seed), nested in the method's run (mlflow_view.seed_run_view)."""
        sweep = f"{self.cfg.name} ({self.parent_id[:8]})"
        fusion_means = outcome.fusion_means(self.cfg.report.fusion_metrics)
        for seed, result, coco in zip(outcome.seeds, outcome.detections, outcome.coco):
            run_id, finished = self.tracker.start_run(
                digest([method_run_id, seed], 24),
                f"{m.name} seed {seed}",
                mlflow_view.SEED_RUN_KIND,
                parent_id=method_run_id,
                tags={"method": m.name, mlflow_view.SWEEP_TAG: sweep, "fused_key": outcome.key},
            )
            if finished:
                continue
            params, metrics = mlflow_view.seed_run_view(
                m.name, seed, result, coco.map50, self.data.class_names, fusion_means
            )
            self.tracker.log_params(run_id, params)
            self.tracker.log_metrics(run_id, metrics)
            self.tracker.finish(run_id)

    def close(self, status: str) -> None:
        """Mark the child runs still open (their method did not finish) ``status``."""
        for name in list(self._open):
            self._finish(name, status)


def _log_method(
    tracker: Tracker,
    run_id: str,
    m: MethodConfig,
    outcome: MethodOutcome,
    checkpoint: Path | None,
    detector_dirs: list[Path],
    run: RunContext,
) -> None:
    cfg, data = run.cfg, run.data
    tracker.log_params(run_id, child_params(m, cfg))
    tracker.log_metrics(run_id, child_metrics(outcome, data.class_names, cfg.report.fusion_metrics))
    tracker.set_tags(run_id, child_tags(outcome.key, checkpoint, cfg))
    samples = method_samples_png(run, outcome, run.run_dir / "report" / "methods")
    tracker.log_artifact(run_id, samples, "samples")
    for seed, r, folder in zip(cfg.seeds, outcome.detections, detector_dirs):
        tracker.log_artifact(run_id, r.weights, f"weights/seed{seed}")
        tracker.log_artifact(run_id, folder / "result.json", f"results/seed{seed}")
    mlflow_view.log_child_view(tracker, run_id, data, cfg.dataset.name, checkpoint)


def child_params(m: MethodConfig, cfg: PipelineConfig) -> dict:
    return {
        "method": {
            k: (json.dumps(v) if isinstance(v, dict) else v) for k, v in m.method().identity().items()
        },
        "detector": cfg.detector.to_dict(),
        "detector.initialisation": cfg.detector.initialisation,
        "seeds": cfg.seeds,
    }


def child_tags(outcome_key: str, checkpoint: Path | None, cfg: PipelineConfig) -> dict:
    """Hashes and checksums: tags, not params (MLflow's compare page plots params that differ)."""
    tags = {"detector.initialisation": cfg.detector.initialisation, "fused_key": outcome_key}
    if checkpoint is not None:
        tags["method.checkpoint_sha256"] = file_sha256(checkpoint)
    return tags


def child_metrics(
    outcome: MethodOutcome, class_names: list[str], fusion_metric_names: list[str]
) -> dict[str, float]:
    m50, s50 = outcome.mean_std("map50")
    m5095, s5095 = outcome.mean_std("map50_95")
    metrics = {
        "mAP50": m50,
        "mAP50_95": m5095,
        "mAP50_coco": outcome.coco_mean(),
        "mAP50_coco_minus_ultralytics": outcome.coco_mean() - m50,
    }
    if len(outcome.seeds) > 1:
        metrics.update({"mAP50_std": s50, "mAP50_95_std": s5095})
        for seed, r in zip(outcome.seeds, outcome.detections):
            metrics[f"seed{seed}/mAP50"] = r.map50
    for c in class_names:
        metrics[f"AP50/{c}"] = outcome.class_ap50(c)[0]
    for k, v in outcome.fusion_means(fusion_metric_names).items():
        metrics[f"fusion/{k}"] = v
    return metrics
