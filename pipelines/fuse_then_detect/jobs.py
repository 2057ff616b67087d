"""The fuse_then_detect stages as executor jobs (pipelines.executor), and what is already done.

Per method: a ``("fuse", method)`` job (an in-run S4Fusion training, the fusion of the split and
its YOLO export), then a ``("metrics", method)`` job (fusion metrics on the test split) and one
``("detect", method, seed)`` job per seed (detector training + test evaluation + COCO check).
Stages already committed in the run folder are not jobs: :func:`plan_jobs` loads their results
in the driver and hands them to the jobs that need them in ``kwargs``.

Job functions run on Ray workers: they are module level, never talk to MLflow (an in-run
S4Fusion training logs into a runtime.tracking.RecordingTracker that the driver replays) and return
small picklable results; their large outputs are the stage folders in the (shared) run folder.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from contextlib import contextmanager
from typing import Any

from data.io import read_csv_cached
from fusion.methods import MethodInputs
from pipelines.config import MethodConfig
from pipelines.executor import Job, JobContext
from pipelines.fuse_then_detect import stages
from pipelines.fuse_then_detect.types import DetectorOutput, FusionOutput, RunContext
from runtime.tracking import RecordingTracker


@contextmanager
def _job_threads(n: int):
    """A job computes with the CPUs it reserved, whichever executor runs it, and starts from torch's
    default algorithms whatever ran before it in this process (ultralytics turns deterministic
    algorithms on and leaves them on, which changes some CPU kernels' rounding), so that serial, Ray
    and resumed runs give the same results (also a second run in one process: CHANGELOG.md, 2026-11-30)."""
    import torch

    previous = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(n)
    torch.use_deterministic_algorithms(False)
    try:
        yield
    finally:
        torch.set_num_threads(previous[0])
        torch.use_deterministic_algorithms(previous[1])


def _train_device(ctx: JobContext) -> str | None:
    return None if ctx.device is None else ("cuda" if ctx.device != "cpu" else "cpu")


# ---- job functions ------------------------------------------------------------------------------
def fuse_job(ctx: JobContext, run: RunContext, method: MethodConfig, inputs: MethodInputs) -> FusionOutput:
    """S4Fusion model (trained here if configured) -> fused split -> YOLO export."""
    start = time.perf_counter()
    trained_here = method.method().trains_in_run
    recorder = RecordingTracker(
        stages.s4fusion_dir(method, inputs.train_config, run.run_dir) / "tracking_calls.jsonl"
        if trained_here
        else None
    )
    with _job_threads(ctx.workers):
        handle = recorder.handle() if trained_here else None
        inputs = stages.model_inputs(method, inputs, run.run_dir, handle, _train_device(ctx))
        key = stages.fused_key(method, run.data, inputs)
        fused = (
            inputs.files
            if inputs.files is not None
            else stages.fuse_method(run, method, key, inputs, progress=False)
        )
        data_yaml = stages.export_method(run, method.name, key, fused)
    return FusionOutput(key, fused, data_yaml, inputs.checkpoint, recorder.calls, time.perf_counter() - start)


def _fusion_input(ctx: JobContext, method: str, fusion: FusionOutput | None) -> FusionOutput:
    return fusion if fusion is not None else ctx.inputs[("fuse", method)]


def metrics_job(ctx: JobContext, run: RunContext, method: str, fusion: FusionOutput | None):
    """Per-image fusion metrics of one method on the test split (a DataFrame)."""
    fusion = _fusion_input(ctx, method, fusion)
    with _job_threads(ctx.workers):
        return stages.fusion_metrics(run, method, fusion.key, fusion.fused, progress=False)


def detect_job(
    ctx: JobContext, run: RunContext, method: str, seed: int, fusion: FusionOutput | None
) -> DetectorOutput:
    """One detector: training on the GPU the executor pinned (device 0) + test evaluation + COCO check."""
    start = time.perf_counter()
    fusion = _fusion_input(ctx, method, fusion)
    device = None if ctx.device is None else ctx.resolve_device(run.cfg.detector.device)
    with _job_threads(ctx.workers):
        result, coco, folder = stages.detect_seed(run, method, fusion.key, fusion.data_yaml, seed, device)
    return DetectorOutput(seed, result, coco, folder, time.perf_counter() - start)


# ---- the job list, without what is committed ----------------------------------------------------------
def committed_fusion(run: RunContext, method: MethodConfig, inputs: MethodInputs) -> FusionOutput | None:
    """The fusion job's result when its stage folders are complete (done.json), else None. An in-run
    training's recorded MLflow calls come with it, so that a driver that died before replaying them
    (or a new MLflow store) still gets the curves: replaying is idempotent."""
    calls: list[tuple[str, tuple]] = []
    if method.method().trains_in_run:
        train_dir = stages.s4fusion_dir(method, inputs.train_config, run.run_dir)
        if stages.read_done(train_dir) is None:
            return None
        inputs = stages.model_inputs(method, inputs, run.run_dir)  # the committed export
        calls = RecordingTracker(train_dir / "tracking_calls.jsonl").calls
    key = stages.fused_key(method, run.data, inputs)
    fused = inputs.files if inputs.files is not None else run.run_dir / "fused" / f"{method.name}-{key}"
    if inputs.files is None and stages.read_done(fused) is None:
        return None
    if stages.read_done(run.run_dir / "yolo" / f"{method.name}-{key}") is None:
        return None
    data_yaml = stages.export_method(run, method.name, key, fused)
    return FusionOutput(key, fused, data_yaml, inputs.checkpoint, calls)


def plan_jobs(
    run: RunContext, method_inputs: Mapping[str, MethodInputs]
) -> tuple[list[Job], dict[tuple, Any]]:
    """Jobs still to run, and the results of committed stages by job key (loaded here)."""
    jobs: list[Job] = []
    done: dict[tuple, Any] = {}
    for m in run.cfg.methods:
        fuse_key = ("fuse", m.name)
        method = m.method()
        fusion = committed_fusion(run, m, method_inputs[m.name])
        # a method trained in this run is the longest chain (training, then its detectors): it goes first
        priority = int(method.trains_in_run and fusion is None)
        if fusion is None:
            jobs.append(
                Job(
                    fuse_key,
                    fuse_job,
                    {"run": run, "method": m, "inputs": method_inputs[m.name]},
                    uses_gpu=method.needs_gpu,
                    priority=priority,
                )
            )
        else:
            done[fuse_key] = fusion
        after = () if fusion is not None else (fuse_key,)
        common = {"run": run, "method": m.name, "fusion": fusion}
        cached = (
            None if fusion is None else read_csv_cached(stages.fusion_metrics_file(run, m.name, fusion.key))
        )
        if cached is None:
            jobs.append(
                Job(("metrics", m.name), metrics_job, common, after=after, uses_gpu=False, priority=priority)
            )
        else:
            done[("metrics", m.name)] = cached
        for seed in run.cfg.seeds:
            key = ("detect", m.name, seed)
            if (
                fusion is not None
                and (stages.detector_dir(run, m.name, fusion.key, seed) / "result.json").is_file()
            ):
                done[key] = DetectorOutput(
                    seed, *stages.detect_seed(run, m.name, fusion.key, fusion.data_yaml, seed)
                )
            else:
                jobs.append(Job(key, detect_job, {**common, "seed": seed}, after=after, priority=priority))
    return jobs, done
