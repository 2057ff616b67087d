"""The ablate driver: one job per variant through pipelines.executor; the only part that talks to MLflow.

MLflow: one parent run per config in one run folder (a rerun continues it), one child run per
variant (keyed by its training config, test data and metrics; a finished child is never redone
or duplicated). The job records its training curves (runtime.tracking.RecordingTracker); when it
ends the driver replays them into its child and logs the rest, and the paper's Table V as params
of the parent -- the one path from a job to MLflow, shared with fuse_then_detect.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from data.io import digest, file_sha256, write_text_atomic
from pipelines.ablate.config import PERCEPTUAL, AblationConfig, Variant
from pipelines.ablate.jobs import VariantResult, VariantSpec, run_variant
from pipelines.ablate.report import write_table5
from pipelines.executor import Job, JobFailure, make_executor
from pipelines.paper_columns import table5_params
from runtime.tracking import Tracker, default_tracking_uri, environment_info, replay


@dataclass
class AblationResult:
    run_dir: Path
    report: dict[str, Path]
    results: dict[str, VariantResult]  # by variant slug
    failures: dict[str, JobFailure]
    tracking_uri: str
    parent_run_id: str
    child_run_ids: dict[str, str]
    notes: list[str] = field(default_factory=list)


def perceptual_note(cfg: AblationConfig) -> tuple[dict[str, str], list[str]]:
    """The pyiqa metrics to compute, or none and a note saying why (pyiqa is an optional extra)."""
    wanted = {m: PERCEPTUAL[m] for m in cfg.perceptual_metrics()}
    if not wanted:
        return {}, []
    try:
        import pyiqa  # noqa: F401
    except ImportError:
        return {}, [
            f"{', '.join(wanted)} not computed: pyiqa is not installed (pip install -e '.[iqa]', "
            "non-commercial licence; its weights download on first use). The paper's values are shown."
        ]
    return wanted, []


def run_ablation(cfg: AblationConfig, progress: bool = True) -> AblationResult:
    start = time.perf_counter()
    run_dir = cfg.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(
        run_dir / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False, allow_unicode=True)
    )
    variants = cfg.resolved_variants()
    perceptual, notes = perceptual_note(cfg)
    tracker, parent = _open_parent(cfg, run_dir, variants)
    children = {
        v.slug: tracker.start_run(
            _child_key(cfg, v),
            v.name,
            "variant",
            parent_id=parent,
            tags={"variant": v.name, "exp": str(v.exp)},
        )
        for v in variants
    }
    jobs = [
        Job(
            ("variant", v.slug),
            run_variant,
            {"spec": _spec(cfg, v, perceptual, finished=children[v.slug][1])},
        )
        for v in variants
    ]
    by_slug = {v.slug: v for v in variants}

    def on_job_end(key: tuple, outcome: Any) -> None:
        run_id, finished = children[key[1]]
        if not finished:
            _log_child(tracker, run_id, by_slug[key[1]], outcome)

    try:
        with make_executor(cfg.executor) as executor:
            executor.check_storage(run_dir)
            outcomes = executor.run(jobs, progress=progress, on_job_end=on_job_end)
        results = {k[1]: o for k, o in outcomes.items() if not isinstance(o, JobFailure)}
        failures = {k[1]: o for k, o in outcomes.items() if isinstance(o, JobFailure)}
        notes += [f"{by_slug[s].name}: FAILED ({f.error})" for s, f in failures.items()]
        report = write_table5(variants, results, cfg, run_dir / "report", notes) if results else {}
        for path in report.values():
            tracker.log_artifact(parent, path, "report")
    except BaseException as exc:
        tracker.finish(parent, "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        raise
    tracker.finish(parent, "FAILED" if failures else "FINISHED")
    timings = {
        "total": time.perf_counter() - start,
        "variants": {s: {**r.seconds, "trained_now": r.trained_now} for s, r in results.items()},
    }
    write_text_atomic(run_dir / "timings.json", json.dumps(timings, indent=2) + "\n")
    return AblationResult(
        run_dir,
        report,
        results,
        failures,
        tracker.tracking_uri,
        parent,
        {s: c[0] for s, c in children.items()},
        notes,
    )


def _open_parent(cfg: AblationConfig, run_dir: Path, variants: list[Variant]) -> tuple[Tracker, str]:
    tracker = Tracker(
        cfg.tracking.uri or default_tracking_uri(run_dir), cfg.tracking.experiment or f"ablate/{cfg.name}"
    )
    config = {k: v for k, v in cfg.to_dict().items() if k not in ("variants", "base", "tracking")}
    parent, _ = tracker.start_run(
        digest([cfg.to_dict(), str(run_dir)], 24), cfg.name, "ablation", tags={"s4fuse.run_dir": str(run_dir)}
    )
    tracker.log_params(parent, {"config": config, "variants": [v.name for v in variants], **table5_params()})
    tracker.set_tags(parent, {f"env.{k}": v for k, v in environment_info().items()})
    tracker.log_artifact(parent, run_dir / "config.yaml")
    return tracker, parent


def _child_key(cfg: AblationConfig, v: Variant) -> str:
    return digest(
        [
            v.name,
            v.train.to_dict(),
            [t.__dict__ for t in cfg.test],
            cfg.metrics,
            cfg.metrics_convention,
            cfg.cost_size,
        ],
        24,
    )


def _spec(cfg: AblationConfig, v: Variant, perceptual: dict[str, str], finished: bool) -> VariantSpec:
    return VariantSpec(
        v.name,
        v.slug,
        v.train.to_dict(),
        [dict(t.__dict__) for t in cfg.test],
        cfg.classical_metrics(),
        perceptual,
        cfg.metrics_convention,
        tuple(cfg.cost_size),
        str(cfg.run_dir),
        record_tracking=not finished,  # a finished child run takes nothing more
    )


def _log_child(tracker: Tracker, run_id: str, v: Variant, outcome: Any) -> None:
    if isinstance(outcome, JobFailure):
        tracker.set_tags(run_id, {"error": outcome.error[:5000]})
        tracker.finish(run_id, "FAILED")
        return
    replay(outcome.tracking_calls, tracker.handle(run_id, owns_run=False))  # the training's curves
    tracker.log_params(
        run_id,
        {
            "variant": v.name,
            "exp": v.exp,
            "overrides": json.dumps(v.overrides),
            "checkpoint_sha256": file_sha256(outcome.checkpoint),
        },
    )
    numeric = outcome.per_image.select_dtypes("number")
    metrics = {f"test/{m}": float(numeric[m].mean()) for m in numeric.columns}
    metrics.update({f"cost/{k}": float(outcome.cost[k]) for k in ("params_M", "GFLOPs")})
    metrics.update({f"seconds/{k}": s for k, s in outcome.seconds.items()})
    tracker.log_metrics(run_id, metrics)
    tracker.log_artifact(run_id, outcome.checkpoint, "model")
    tracker.finish(run_id)
