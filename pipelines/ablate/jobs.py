"""One variant = one independent job: train -> fuse the test pairs -> metrics -> params/FLOPs.

:func:`run_variant` is a module-level function of picklable inputs (a :class:`VariantSpec`), so
the serial and the Ray executor run it alike. Every stage is cached in the run folder by what
determines it (folders via ``<name>.tmp`` + ``done.json``, pipelines.cache; files atomically), so
a rerun after an interruption or a finished run redoes nothing that is complete. The job never
talks to MLflow: its training curves are recorded (runtime.tracking.RecordingTracker, also kept in the
training folder) and returned, and the driver replays them into the variant's child run -- the same
path as fuse_then_detect's in-run training.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from data.io import (
    digest,
    file_sha256,
    read_csv_cached,
    write_csv_atomic,
    write_png_atomic,
    write_text_atomic,
)
from pipelines.cache import DONE, commit, fresh_tmp, read_done
from pipelines.executor import JobContext
from pipelines.fusion_metrics import per_image_metrics


@dataclass(frozen=True)
class VariantSpec:
    """Everything a variant's job needs, as plain data."""

    name: str
    slug: str
    train: dict[str, Any]  # TrainConfig.to_dict()
    test: list[dict[str, Any]]  # DataSource fields
    classical: list[str]  # metrics of fusion.metrics.compute_metrics
    perceptual: dict[str, str]  # Table V column -> pyiqa metric (empty: not computed)
    convention: str
    cost_size: tuple[int, int]
    run_dir: str
    record_tracking: bool = False  # record the training's MLflow calls (False: its child run is finished)


@dataclass
class VariantResult:
    name: str
    slug: str
    checkpoint: str
    trained_now: bool  # False when the trained model came from the run folder's cache
    per_image: pd.DataFrame
    cost: dict[str, float]
    seconds: dict[str, float] = field(default_factory=dict)
    tracking_calls: list[tuple[str, tuple]] = field(default_factory=list)  # for the driver to replay


def run_variant(ctx: JobContext, spec: VariantSpec) -> VariantResult:
    """The job: every stage in order, each timed."""
    seconds: dict[str, float] = {}
    tick = time.perf_counter()
    checkpoint, trained_now, tracking_calls = train_stage(spec, ctx)
    seconds["train"] = time.perf_counter() - tick
    tick = time.perf_counter()
    pairs = test_pairs(spec)
    fused_dir = fuse_stage(spec, checkpoint, pairs)
    seconds["fuse"] = time.perf_counter() - tick
    tick = time.perf_counter()
    per_image = metrics_stage(spec, fused_dir, pairs)
    seconds["metrics"] = time.perf_counter() - tick
    cost = cost_stage(spec, checkpoint)
    return VariantResult(
        spec.name, spec.slug, str(checkpoint), trained_now, per_image, cost, seconds, tracking_calls
    )


def train_stage(spec: VariantSpec, ctx: JobContext) -> tuple[Path, bool, list[tuple[str, tuple]]]:
    """The variant's exported model (trained unless the run folder has it; training resumes from
    its own checkpoints). Returns (path, trained in this call, the training's recorded MLflow calls:
    all of them, also those of earlier attempts, as replaying is idempotent)."""
    from fusion.train import TrainConfig, train
    from fusion.train.mlflow_logger import MlflowTrainLogger
    from runtime.tracking import RecordingTracker

    out = Path(spec.run_dir) / "train" / f"{spec.slug}-{digest(spec.train)}"
    recorder = RecordingTracker(out / "tracking_calls.jsonl") if spec.record_tracking else None
    calls = recorder.calls if recorder is not None else []
    done = read_done(out)
    if done is not None:
        return Path(done["export"]), False, calls
    cfg = TrainConfig.from_dict(spec.train)
    if ctx.device is not None:  # the executor pinned a device (Ray): "0" is the task's GPU
        cfg.device = "cpu" if ctx.device == "cpu" else "cuda"
    callbacks = [MlflowTrainLogger(recorder.handle())] if recorder is not None else []
    export = Path(train(cfg, out, resume=True, callbacks=callbacks)).resolve()
    write_text_atomic(
        out / DONE, json.dumps({"export": str(export), "sha256": file_sha256(export)}, indent=2) + "\n"
    )
    return export, True, calls


def test_pairs(spec: VariantSpec) -> list[tuple[str, Any, str]]:
    """``(image id, dataset, stem)`` for every test pair; ids are ``<source>/<stem>``."""
    from fusion.train import DataSource, resolve_sources

    sources = [DataSource(**s) for s in spec.test]
    datasets, split = resolve_sources(sources, seed=0)
    return [
        (f"{key}/{stem}", ds, stem) for ds, (key, stems) in zip(datasets, split.items()) for stem in stems
    ]


def _test_identity(pairs: list[tuple[str, Any, str]]) -> str:
    files = []
    for image_id, ds, stem in pairs:
        f = ds.files(stem)
        files.append([image_id] + [[str(p), p.stat().st_size, p.stat().st_mtime_ns] for p in (f.ir, f.vi)])
    return digest(files, 16)


def fuse_stage(spec: VariantSpec, checkpoint: Path, pairs: list[tuple[str, Any, str]]) -> Path:
    """``<run>/fused/<slug>-<key>/<source>/<stem>.png`` for every test pair (cached)."""
    from fusion.methods import MethodInputs, S4FusionCheckpoint

    key = digest([file_sha256(checkpoint), _test_identity(pairs)], 16)
    out = Path(spec.run_dir) / "fused" / f"{spec.slug}-{key}"
    if read_done(out) is not None:
        return out
    tmp = fresh_tmp(out)
    fuse = S4FusionCheckpoint(spec.name, str(checkpoint)).fuser(MethodInputs(checkpoint=checkpoint))
    for image_id, ds, stem in tqdm(pairs, desc=f"fuse {spec.name}", unit="img", leave=False):
        sample = ds[stem]
        write_png_atomic(tmp / f"{image_id}.png", fuse(sample.ir, sample.vi))
    commit(tmp, out, {"variant": spec.name, "checkpoint": str(checkpoint), "images": len(pairs)})
    return out


def metrics_stage(spec: VariantSpec, fused_dir: Path, pairs: list[tuple[str, Any, str]]) -> pd.DataFrame:
    """Per-image metrics: fusion.metrics (shared cached stage) plus, when pyiqa is there, MUSIQ/TOPIQ."""
    from data.io import read_image

    by_id = {image_id: (ds, stem) for image_id, ds, stem in pairs}

    def pair(image_id: str):
        ds, stem = by_id[image_id]
        sample = ds[stem]
        return sample.ir, sample.vi

    def fused(image_id: str):
        return read_image(fused_dir / f"{image_id}.png", "unchanged")

    ids = list(by_id)
    # named by slug: the cache file name (a display name such as "w/o L_per" is no file name)
    frame = per_image_metrics(
        spec.slug,
        ids,
        pair,
        fused,
        {"fused": fused_dir.name},
        spec.convention,
        spec.classical,
        Path(spec.run_dir) / "metrics",
        progress=False,
    )
    frame["method"] = spec.name
    if spec.perceptual:
        frame = frame.merge(perceptual_stage(spec, fused_dir, ids, fused), on="image")
    return frame


def perceptual_stage(spec: VariantSpec, fused_dir: Path, ids: list[str], fused) -> pd.DataFrame:
    """``image`` + one column per Table V perceptual metric (pyiqa), cached beside the others."""
    from fusion.metrics.perceptual import perceptual_scores

    cache = Path(spec.run_dir) / "metrics" / f"{spec.slug}-{fused_dir.name}-perceptual.csv"
    cached = read_csv_cached(cache)
    if cached is not None:
        return cached
    rows = []
    for image_id in ids:
        scores = perceptual_scores(fused(image_id), list(spec.perceptual.values()))
        rows.append({"image": image_id, **{col: scores[m] for col, m in spec.perceptual.items()}})
    frame = pd.DataFrame(rows, columns=["image", *spec.perceptual])
    write_csv_atomic(cache, frame)
    return frame


def cost_stage(spec: VariantSpec, checkpoint: Path) -> dict[str, float]:
    """Parameters (used, M) and GFLOPs (the paper's fvcore convention) at ``cost_size`` (cached)."""
    h, w = spec.cost_size
    cache = Path(spec.run_dir) / "cost" / f"{spec.slug}-{file_sha256(checkpoint)[:16]}-{h}x{w}.json"
    if cache.is_file():
        return json.loads(cache.read_text(encoding="utf-8"))
    from fusion.flops import count_model
    from fusion.inference import load_model

    c = count_model(load_model(checkpoint), h, w)
    cost = {
        "params_M": c.params_used / 1e6,
        "GFLOPs": c.flops_paper_convention / 1e9,
        "height": h,
        "width": w,
    }
    write_text_atomic(cache, json.dumps(cost, indent=2) + "\n")
    return cost
