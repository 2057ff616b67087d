"""The stages of fuse_then_detect: plain functions of their inputs returning results and artifact
paths, each cached in the run folder by a key of what determines it. None of them talks to MLflow
(the driver in ``orchestration`` does); the S4Fusion training stage only forwards the driver's run
handle to the trainer, which logs its curves there.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

from tqdm import tqdm

from data.adapters import DatasetError, open_dataset
from data.dataset_check import bad_pairs
from data.io import digest, file_sha256, read_image, write_png_atomic, write_text_atomic
from data.splits import SplitMismatchError, split_stems, write_split
from data.yolo_export import export_yolo, yolo_dataset_yaml
from detection.coco_eval import CocoMetrics, coco_map, ground_truth_from_yolo
from detection.yolo import DetectionResult, DetectorConfig, train_and_evaluate
from fusion.methods import MethodInputs, PairSet, fuse_checked
from pipelines.cache import DONE, commit, fresh_tmp, read_done
from pipelines.config import DatasetConfig, MethodConfig, PipelineConfig, ReportConfig
from pipelines.fuse_then_detect.types import FusedImages, PreparedData, RunContext, image_for
from pipelines.fusion_metrics import metrics_cache_file, per_image_metrics
from runtime import hooks
from runtime.config_loader import ConfigError
from runtime.errors import RunFolderError
from runtime.profiles import config_data_path
from runtime.tracking import RunHandle

log = logging.getLogger(__name__)


# ---- data ------------------------------------------------------------------------------------
def synthetic_target(dataset: DatasetConfig, run_dir: Path) -> Path:
    return config_data_path(dataset.root) if dataset.root else run_dir / "data" / "synthetic"


def synthetic_pending(cfg: PipelineConfig) -> Path | None:
    """Where the synthetic dataset would be generated, when it is not there yet (else None)."""
    from data.synthetic import is_generated

    if cfg.dataset.name != "synthetic":
        return None
    target = synthetic_target(cfg.dataset, cfg.run_dir)
    return None if is_generated(target, cfg.dataset.synthetic_config()) else target


def prepare_data(ds_cfg: DatasetConfig, run_dir: Path, progress: bool = True) -> PreparedData:
    """The dataset (the synthetic one generated on first use) and its seeded train/val/test split,
    written to ``run_dir/split``."""
    if ds_cfg.name == "synthetic":
        from data.synthetic import generate_synthetic_dataset

        synth = ds_cfg.synthetic_config()
        target = synthetic_target(ds_cfg, run_dir)
        try:
            root = generate_synthetic_dataset(target, synth, progress=progress)
        except FileExistsError as exc:  # the folder holds another synthetic config's images
            raise RunFolderError(str(exc)) from exc
        identity = {"dataset": "synthetic", "config_hash": synth.config_hash()}
    else:
        root = config_data_path(ds_cfg.root).resolve()
        identity = {"dataset": ds_cfg.name, "root": str(root)}
    dataset = open_dataset(ds_cfg.name, root)
    if ds_cfg.name != "synthetic":  # caches follow the files, not only their folder's path
        identity["files"] = files_identity(dataset)
    if not dataset.has_boxes:
        raise DatasetError(f"{ds_cfg.name} at {root}: no box annotations found; detection needs them")
    split = split_stems(
        dataset.stems, ds_cfg.split_ratios, seed=ds_cfg.split_seed, group_consecutive=ds_cfg.group_consecutive
    )
    for part in ("train", "val", "test"):
        if not split[part]:
            raise ConfigError(
                f"dataset split: the {part} part is empty ({len(dataset)} pairs, "
                f"ratios {ds_cfg.split_ratios}); use more images or other ratios"
            )
    split_dir = run_dir / "split"
    try:
        s_hash = write_split(split, split_dir)
    except SplitMismatchError as exc:
        raise RunFolderError(
            f"{exc}\n(this run folder belongs to another dataset/split: choose another --runs-dir)"
        ) from exc
    return PreparedData(
        dataset,
        split,
        s_hash,
        digest({**identity, "split": s_hash}, 16),
        list(dataset.class_names),
        split_dir,
        Path(root).resolve(),
    )


def files_identity(dataset) -> str:
    """Digest of every pair's files by name, size and modification time (cheap; changes on edit)."""
    files = []
    for stem in dataset.stems:
        f = dataset.files(stem)
        paths = [p for p in (f.ir, f.vi, f.annotation) if p is not None and p.exists()]
        files.append([stem] + [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in paths])
    return digest(files, 32)


# ---- checks before long work ---------------------------------------------------------------------
def method_pairs(data: PreparedData) -> PairSet:
    """The pairs every method fuses, as fusion.methods' ``prepare`` sees them."""
    return PairSet(data.dataset, data.all_stems(), data.split, data.root)


def check_inputs(run: RunContext) -> dict[str, MethodInputs]:
    """Everything that can fail is checked here, before fusion or training starts: every dataset
    pair (decoded: corrupt files, size mismatches) and every method's inputs (``prepare``: a model
    file loads, a folder is complete, a python target imports)."""
    data = run.data
    bad = bad_pairs([data.dataset.files(s) for s in data.all_stems()], desc="checking pairs")
    if bad:
        raise DatasetError(
            f"{run.cfg.dataset.name}: {len(bad)} bad pair(s), nothing started (fix or remove "
            "them): " + "; ".join(bad.values())
        )
    pairs = method_pairs(data)
    return {m.name: m.method().prepare(pairs) for m in run.cfg.methods}


# ---- S4Fusion model ----------------------------------------------------------------------------
def s4fusion_dir(method: MethodConfig, train_cfg, run_dir: Path) -> Path:
    return run_dir / "s4fusion" / f"{method.name}-{digest(train_cfg.to_dict())}"


def model_inputs(
    method: MethodConfig,
    inputs: MethodInputs,
    run_dir: Path,
    run: RunHandle | None = None,
    device: str | None = None,
) -> MethodInputs:
    """``inputs`` with the model file of a method trained in this run (trained here unless
    committed; the trainer logs its curves into ``run``, which the caller owns); other methods'
    inputs as they are. ``device`` (e.g. the GPU an executor pinned) replaces the config's device
    without changing the cache folder."""
    if not method.method().trains_in_run:
        return inputs
    from fusion.train import train
    from fusion.train.mlflow_logger import MlflowTrainLogger, tracking_callbacks

    train_cfg = inputs.train_config
    out = s4fusion_dir(method, train_cfg, run_dir)
    done = read_done(out)
    if done is None:
        if device is not None:
            train_cfg = dataclasses.replace(train_cfg, device=device)
        # fusion.train resumes from its own checkpoints (written atomically) in `out`.
        callbacks = [MlflowTrainLogger(run)] if run is not None else tracking_callbacks(train_cfg)
        export = Path(train(train_cfg, out, resume=True, callbacks=callbacks)).resolve()
        record = {"export": str(export), "sha256": file_sha256(export)}
        write_text_atomic(out / DONE, json.dumps(record, indent=2) + "\n")
        done = record
    return dataclasses.replace(inputs, checkpoint=Path(done["export"]))


# ---- one method's fusion ---------------------------------------------------------------------------
def fused_key(method: MethodConfig, data: PreparedData, inputs: MethodInputs) -> str:
    """Content identity of a method's fused images: the method's content identity (checkpoint and
    file hashes, not paths; a python target's source hash) and the data. Laid out as before the
    method interface existed, so that existing run folders keep their caches."""
    ident = method.method().content_identity(inputs)
    key: dict[str, Any] = {
        "method": {k: v for k, v in ident.items() if k not in ("checkpoint_sha256", "files")},
        "data": data.data_id,
    }
    if "checkpoint_sha256" in ident:
        key["checkpoint_sha256"] = ident["checkpoint_sha256"]
    if "files" in ident:
        key["files"] = list(ident["files"].items())
    return digest(key)


def fuse_method(
    run: RunContext, method: MethodConfig, key: str, inputs: MethodInputs, progress: bool = True
) -> Path:
    """Folder with ``<stem>.png`` for every split image (cached; written to a temp folder first)."""
    data = run.data
    out = run.run_dir / "fused" / f"{method.name}-{key}"
    if read_done(out) is not None:
        return out
    tmp = fresh_tmp(out)
    fuse = method.method().fuser(inputs)
    for stem in tqdm(data.all_stems(), desc=f"fuse {method.name}", unit="img", disable=not progress):
        sample = data.dataset[stem]
        write_png_atomic(tmp / f"{stem}.png", fuse_checked(method.name, fuse, stem, sample.ir, sample.vi))
        hooks.fire("fuse.image")
    commit(tmp, out, {"method": method.name, "key": key, "images": len(data.all_stems())})
    return out


def export_method(run: RunContext, name: str, key: str, fused: FusedImages) -> Path:
    """One YOLO tree per method (its own label caches); returns its data YAML."""
    data = run.data
    out = run.run_dir / "yolo" / f"{name}-{key}"
    if read_done(out) is None:
        tmp = fresh_tmp(out)
        export_yolo(tmp, data.split, image_for(fused), data.dataset.boxes, data.class_names, progress=False)
        hooks.fire("yolo.export")
        commit(tmp, out, {"method": name, "key": key})
    # data.yaml holds absolute paths: (re)write it for the tree's final location.
    return yolo_dataset_yaml(out, data.class_names)


# ---- one (method, seed) detector job ------------------------------------------------------------------
def detector_key(detector: DetectorConfig, class_names: list[str]) -> str:
    return digest({"detector": detector.to_dict(), "classes": class_names})


def detector_dir(run: RunContext, name: str, key: str, seed: int) -> Path:
    detector = detector_key(run.cfg.detector, run.data.class_names)
    return run.run_dir / "detect" / f"{name}-{key}" / detector / f"seed{seed}"


def detect_seed(
    run: RunContext, name: str, key: str, data_yaml: Path, seed: int, device: str | None = None
) -> tuple[DetectionResult, CocoMetrics, Path]:
    """Train + evaluate one detector; returns its result, the pycocotools check and its folder.
    ``device`` (e.g. the GPU an executor pinned) replaces the config's, not the cache folder."""
    out, class_names = detector_dir(run, name, key, seed), run.data.class_names
    configured = run.cfg.detector
    detector = configured if device is None else dataclasses.replace(configured, device=device)
    result = train_and_evaluate(data_yaml, out, detector, seed, class_names)
    gt = ground_truth_from_yolo(data_yaml.parent, "test")
    # In the job's log only: the console's line per job is the executor's; ultralytics' output is in its log file.
    log.debug(
        "detector %-12s seed %d: mAP@50 %.3f  (trained %.0f s; log %s)",
        name,
        seed,
        result.map50,
        result.train_seconds,
        out / "ultralytics.log",
    )
    return result, coco_map(gt, result.predictions, class_names, max_dets=configured.max_det), out


# ---- fusion metrics on the test split ------------------------------------------------------------------
def fusion_metrics_file(run: RunContext, name: str, key: str) -> Path:
    """The cache file of :func:`fusion_metrics` (complete once it exists)."""
    report: ReportConfig = run.cfg.report
    return metrics_cache_file(
        name,
        run.data.split["test"],
        {"fused": key, "data": run.data.data_id},
        report.metrics_convention,
        report.fusion_metrics,
        run.run_dir / "fusion_metrics",
    )


def fusion_metrics(run: RunContext, name: str, key: str, fused: FusedImages, progress: bool = True):
    """Per-image fusion metrics of one method on the test split (pipelines.fusion_metrics, cached)."""
    get, data, report = image_for(fused), run.data, run.cfg.report

    def pair(stem: str):
        sample = data.dataset[stem]
        return sample.ir, sample.vi

    return per_image_metrics(
        name,
        data.split["test"],
        pair,
        lambda stem: read_image(get(stem), "unchanged"),
        {"fused": key, "data": data.data_id},
        report.metrics_convention,
        report.fusion_metrics,
        run.run_dir / "fusion_metrics",
        progress,
    )
