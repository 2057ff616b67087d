"""The fuse_then_detect driver: runs the stages in order and is the only part that talks to MLflow.

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
from data.tracking import Tracker, default_tracking_uri, environment_info
from pipelines.config import MethodConfig, PipelineConfig
from pipelines.fuse_then_detect import stages
from pipelines.fuse_then_detect.report import build_report, method_samples_png, verdict_line
from pipelines.fuse_then_detect.types import MethodOutcome, PipelineResult, PreparedData
from pipelines.paper_columns import table6_params


def run_pipeline(cfg: PipelineConfig, progress: bool = True) -> PipelineResult:
    start = time.perf_counter()
    run_dir = cfg.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run_dir / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    timings: dict[str, float] = {}
    tick = time.perf_counter()
    data = stages.prepare_data(cfg, run_dir, progress)
    prepared = stages.check_inputs(cfg, data)
    timings["data+checks"] = time.perf_counter() - tick

    tracker, parent_id = _open_parent_run(cfg, data, run_dir)
    outcomes: list[MethodOutcome] = []
    try:
        for m in cfg.methods:
            outcomes.append(_run_method(m, cfg, data, prepared.get(m.name), run_dir, tracker, parent_id,
                                        timings, progress))
        tick = time.perf_counter()
        report_dir = build_report(outcomes, data, cfg, run_dir / "report")
        timings["report"] = time.perf_counter() - tick
        tracker.log_artifact(parent_id, report_dir, "report")
        verdict = verdict_line(outcomes)
        tracker.set_tags(parent_id, {"verdict": verdict})
    except BaseException as exc:
        tracker.finish(parent_id, "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        raise
    tracker.finish(parent_id)
    timings["total"] = time.perf_counter() - start
    write_text_atomic(run_dir / "timings.json", json.dumps(timings, indent=2) + "\n")
    return PipelineResult(run_dir, report_dir, outcomes, verdict, tracker.tracking_uri, tracker.experiment, parent_id,
                          timings=timings)


def _open_parent_run(cfg: PipelineConfig, data: PreparedData, run_dir: Path) -> tuple[Tracker, str]:
    uri = cfg.tracking.uri or default_tracking_uri(run_dir)
    tracker = Tracker(uri, cfg.tracking.experiment or f"fuse_then_detect/{cfg.dataset.name}/{cfg.name}")
    parent_id, _ = tracker.start_run(digest([cfg.to_dict(), str(run_dir)], 24), cfg.name, "pipeline",
                                     tags={"s4fuse.run_dir": str(run_dir)})
    tracker.log_params(parent_id, {"config": {k: v for k, v in cfg.to_dict().items() if k != "methods"},
                                   "methods": [m.name for m in cfg.methods], "config_sha256": cfg.digest(),
                                   "split": {"sha256": data.split_hash,
                                             **{p: len(v) for p, v in data.split.items()}}})
    tracker.log_params(parent_id, table6_params())  # the paper's Table VI beside ours
    tracker.set_tags(parent_id, {f"env.{k}": v for k, v in environment_info().items()})
    tracker.log_artifact(parent_id, run_dir / "config.yaml")
    tracker.log_artifact(parent_id, data.split_dir, "split")
    return tracker, parent_id


def _run_method(m: MethodConfig, cfg: PipelineConfig, data: PreparedData, prepared: Any, run_dir: Path,
                tracker: Tracker, parent_id: str, timings: dict[str, float], progress: bool) -> MethodOutcome:
    """One method: S4Fusion model -> fusion -> YOLO export -> detector per seed -> fusion metrics."""
    tick = time.perf_counter()
    precomputed = prepared if m.kind == "precomputed" else None
    # The child run is keyed by what determines its results; for a trained S4Fusion that is its
    # train config (the checkpoint does not exist yet on the first run).
    ident = m.identity() if m.kind != "s4fusion" or m.train is None else {**m.identity(), "train": prepared.to_dict()}
    child_key = digest([m.name, ident, data.data_id, stages.detector_key(cfg, data), cfg.seeds,
                        cfg.report.fusion_metrics, cfg.report.metrics_convention], 24)
    run_id, finished = tracker.start_run(child_key, m.name, "method", parent_id=parent_id,
                                         tags={"method": m.name, "method_kind": m.kind})
    try:
        checkpoint = None
        if m.kind == "s4fusion":
            run = None if finished else tracker.handle(run_id, owns_run=False)
            checkpoint = stages.s4fusion_checkpoint(m, prepared, run_dir, run)
        key = stages.fused_key(m, data, checkpoint, precomputed)
        fused = precomputed if precomputed is not None else stages.fuse_method(m, data, run_dir, key, checkpoint,
                                                                              progress)
        data_yaml = stages.export_method(m.name, key, fused, data, run_dir)
        timings[f"{m.name}/fusion"] = time.perf_counter() - tick
        tick = time.perf_counter()
        jobs = [stages.detect_seed(m.name, key, data_yaml, data, cfg, run_dir, seed) for seed in cfg.seeds]
        timings[f"{m.name}/detection"] = time.perf_counter() - tick
        fusion = stages.fusion_metrics(m.name, key, fused, data, run_dir, cfg, progress)
        outcome = MethodOutcome(m.name, m.kind, key, fused, data_yaml, list(cfg.seeds), [j[0] for j in jobs],
                                [j[1] for j in jobs], fusion, run_id)
        if not finished:
            _log_method(tracker, run_id, m, outcome, checkpoint, [j[2] for j in jobs], cfg, data, run_dir)
    except BaseException as exc:
        if not finished:
            tracker.finish(run_id, "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        raise
    return outcome


def _log_method(tracker: Tracker, run_id: str, m: MethodConfig, outcome: MethodOutcome, checkpoint: Path | None,
                detector_dirs: list[Path], cfg: PipelineConfig, data: PreparedData, run_dir: Path) -> None:
    tracker.log_params(run_id, child_params(m, outcome.key, checkpoint, cfg))
    tracker.log_metrics(run_id, child_metrics(outcome, data.class_names, cfg.report.fusion_metrics))
    tracker.set_tags(run_id, {"detector.initialisation": cfg.detector.initialisation})
    samples = method_samples_png(outcome, data, cfg, run_dir / "report" / "methods")
    tracker.log_artifact(run_id, samples, "samples")
    for seed, r, folder in zip(cfg.seeds, outcome.detections, detector_dirs):
        tracker.log_artifact(run_id, r.weights, f"weights/seed{seed}")
        tracker.log_artifact(run_id, folder / "result.json", f"results/seed{seed}")
    if checkpoint is not None:
        tracker.log_artifact(run_id, checkpoint, "s4fusion")
    tracker.finish(run_id)


def child_params(m: MethodConfig, outcome_key: str, checkpoint: Path | None, cfg: PipelineConfig) -> dict:
    params = {"method": {k: (json.dumps(v) if isinstance(v, dict) else v) for k, v in m.identity().items()},
              "fused_key": outcome_key, "detector": cfg.detector.to_dict(),
              "detector.initialisation": cfg.detector.initialisation, "seeds": cfg.seeds}
    if checkpoint is not None:
        params["method"]["checkpoint_sha256"] = file_sha256(checkpoint)
    return params


def child_metrics(outcome: MethodOutcome, class_names: list[str], fusion_metric_names: list[str]) -> dict[str, float]:
    m50, s50 = outcome.mean_std("map50")
    m5095, s5095 = outcome.mean_std("map50_95")
    metrics = {"mAP50": m50, "mAP50_95": m5095, "mAP50_coco": outcome.coco_mean(),
               "mAP50_coco_minus_ultralytics": outcome.coco_mean() - m50}
    if len(outcome.seeds) > 1:
        metrics.update({"mAP50_std": s50, "mAP50_95_std": s5095})
        for seed, r in zip(outcome.seeds, outcome.detections):
            metrics[f"seed{seed}/mAP50"] = r.map50
    for c in class_names:
        metrics[f"AP50/{c}"] = outcome.class_ap50(c)[0]
    for k, v in outcome.fusion_means(fusion_metric_names).items():
        metrics[f"fusion/{k}"] = v
    return metrics
