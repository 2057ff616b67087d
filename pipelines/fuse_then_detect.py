"""``python -m pipelines.run fuse_then_detect``: fuse a detection dataset with every method, train a
YOLO detector per method under identical seeds, compare mAP@50 (S4Fusion paper, Table VI).

Stages (each cached in the run folder, so an interrupted run resumes where it stopped):

1. data: the dataset (the synthetic default is generated on first use) and its seeded 7:1:2 split;
2. checks: every method's inputs (precomputed folders complete and size-matched, checkpoints,
   detector weights) are validated before any long work starts;
3. S4Fusion models: a given checkpoint, or trained in-run on the detection train split;
4. fusion: fused images for every split image, cached by (method, checkpoint hash, data hash);
5. detection: one ultralytics detector per method and seed, evaluated on the test split
   (mAP@50, mAP@50-95, per-class AP@50), cross-checked with pycocotools;
6. fusion metrics of each method on the test split;
7. report (Table VI Markdown/CSV, bar chart, sample detections) and MLflow (parent run per
   invocation, nested child run per method).

Cached stages are written to a temporary folder and renamed when complete (``done.json``), so a
partial output is never used.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from tqdm import tqdm

from data.adapters import DatasetError, PairedImageDataset, open_dataset
from data.io import IMAGE_EXTENSIONS, image_size, read_image, write_png_atomic, write_text_atomic
from data.splits import SplitMismatchError, split_stems, write_split
from data.yolo_export import export_yolo
from detection.coco_eval import CocoMetrics, coco_map, ground_truth_from_yolo
from detection.yolo import DetectionResult, train_and_evaluate
from pipelines.config import ConfigError, MethodConfig, PipelineConfig, load_config
from pipelines.tracking import Tracker, default_tracking_uri, environment_info

DONE = "done.json"


# ---- small helpers ---------------------------------------------------------------------------
def _digest(obj: Any, n: int = 12) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_done(directory: Path) -> dict | None:
    marker = directory / DONE
    return json.loads(marker.read_text(encoding="utf-8")) if marker.is_file() else None


def _fresh_tmp(directory: Path) -> Path:
    """Empty temporary sibling of ``directory``; leftovers of an interrupted attempt are discarded."""
    tmp = directory.with_name(directory.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def _commit(tmp: Path, directory: Path, info: dict) -> None:
    """Mark ``tmp`` complete and move it into place (the rename makes it visible atomically)."""
    write_text_atomic(tmp / DONE, json.dumps(info, indent=2, default=str) + "\n")
    if directory.exists():
        shutil.rmtree(directory)
    os.replace(tmp, directory)


# ---- stage 1: data ---------------------------------------------------------------------------
@dataclass
class PreparedData:
    dataset: PairedImageDataset
    split: dict[str, list[str]]
    split_hash: str
    data_id: str  # identity of the images + split (cache key component)
    class_names: list[str]
    split_dir: Path
    root: Path


def prepare_data(cfg: PipelineConfig, run_dir: Path, progress: bool = True) -> PreparedData:
    ds_cfg = cfg.dataset
    if ds_cfg.name == "synthetic":
        from data.synthetic import SyntheticConfig, generate_synthetic_dataset

        try:
            synth = SyntheticConfig(**ds_cfg.synthetic)
        except TypeError as exc:
            raise ConfigError(f"dataset.synthetic: {exc}") from None
        target = Path(ds_cfg.root).expanduser() if ds_cfg.root else run_dir / "data" / "synthetic"
        try:
            root = generate_synthetic_dataset(target, synth, progress=progress)
        except FileExistsError as exc:
            raise ConfigError(str(exc)) from None
        identity = {"dataset": "synthetic", "config_hash": synth.config_hash()}
    else:
        root = Path(ds_cfg.root).expanduser().resolve()
        identity = {"dataset": ds_cfg.name, "root": str(root)}
    dataset = open_dataset(ds_cfg.name, root)
    if not dataset.has_boxes:
        raise DatasetError(f"{ds_cfg.name} at {root}: no box annotations found; detection needs them")
    split = split_stems(dataset.stems, ds_cfg.split_ratios, seed=ds_cfg.split_seed,
                        group_consecutive=ds_cfg.group_consecutive)
    for part in ("train", "val", "test"):
        if not split[part]:
            raise ConfigError(f"dataset split: the {part} part is empty ({len(dataset)} pairs, "
                              f"ratios {ds_cfg.split_ratios}); use more images or other ratios")
    split_dir = run_dir / "split"
    try:
        s_hash = write_split(split, split_dir)
    except SplitMismatchError as exc:
        raise ConfigError(f"{exc}\n(this run folder belongs to another dataset/split: choose another --runs-dir)") from None
    return PreparedData(dataset, split, s_hash, _digest({**identity, "split": s_hash}, 16),
                        list(dataset.class_names), split_dir, Path(root).resolve())


def all_stems(data: PreparedData) -> list[str]:
    return [s for part in ("train", "val", "test") for s in data.split[part]]


# ---- stage 2: checks before long work ----------------------------------------------------------
def precomputed_files(method: MethodConfig, data: PreparedData) -> dict[str, Path]:
    """Map stem -> fused image of a ``precomputed`` method, checking completeness and sizes."""
    folder = Path(method.folder).expanduser()
    by_stem: dict[str, Path] = {}
    for f in sorted(folder.iterdir()):
        if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS:
            by_stem.setdefault(f.stem, f)
    missing, mis_sized = [], []
    for stem in all_stems(data):
        f = by_stem.get(stem)
        if f is None:
            missing.append(stem)
            continue
        expected = image_size(data.dataset.files(stem).ir)
        got = image_size(f)
        if got != expected:
            mis_sized.append(f"{f} is {got[0]}x{got[1]}, the pair is {expected[0]}x{expected[1]}")
    problems = []
    if missing:
        problems.append(f"{len(missing)} image(s) missing (expected <stem>.png/.jpg/... for every dataset image), "
                        f"e.g. {missing[:10]}")
    if mis_sized:
        problems.append(f"{len(mis_sized)} image(s) of the wrong size, e.g.\n    " + "\n    ".join(mis_sized[:10]))
    if problems:
        raise ConfigError(f"method {method.name!r} (precomputed, folder {folder}):\n  " + "\n  ".join(problems))
    return {s: by_stem[s] for s in all_stems(data)}


def _train_config(method: MethodConfig, data: PreparedData, run_dir: Path):
    """The method's train_fusion config, with its data set to the detection train split."""
    from fusion.train import DataSource, TrainConfig

    try:
        if isinstance(method.train, str):
            cfg = TrainConfig.from_yaml(method.train)
        else:
            cfg = TrainConfig.from_dict(method.train, source=f"methods.{method.name}.train")
    except (ValueError, FileNotFoundError) as exc:
        raise ConfigError(f"method {method.name!r}: invalid S4Fusion train config: {exc}") from None
    root = str(data.root)
    cfg.data.train = [DataSource(dataset=data.dataset.name, root=root, stems=list(data.split["train"]))]
    cfg.data.val = [DataSource(dataset=data.dataset.name, root=root, stems=list(data.split["val"]))]
    cfg.tracking.enabled = False  # logged into the method's child run instead
    return cfg


def check_inputs(cfg: PipelineConfig, data: PreparedData, run_dir: Path) -> dict[str, Any]:
    """Everything that can fail is checked here, before fusion or training starts."""
    prepared: dict[str, Any] = {}
    for m in cfg.methods:
        if m.kind == "precomputed":
            prepared[m.name] = precomputed_files(m, data)
        elif m.kind == "s4fusion" and m.train is not None:
            prepared[m.name] = _train_config(m, data, run_dir)
        elif m.kind == "s4fusion":
            from fusion.inference import load_model

            try:
                load_model(m.checkpoint)
            except (ValueError, KeyError, RuntimeError) as exc:
                raise ConfigError(f"method {m.name!r}: cannot load S4Fusion checkpoint {m.checkpoint}: {exc}") from None
    return prepared


# ---- stage 3: S4Fusion models ------------------------------------------------------------------
def s4fusion_checkpoint(method: MethodConfig, train_cfg, run_dir: Path, tracker: Tracker | None,
                        run_id: str | None) -> Path:
    """The exported model of an ``s4fusion`` method (trained here when ``train`` is given)."""
    if method.checkpoint is not None:
        from fusion.inference import resolve_checkpoint

        return resolve_checkpoint(method.checkpoint).resolve()  # a file, or "demo" (the shipped weights)
    from fusion.train import train

    out = run_dir / "s4fusion" / f"{method.name}-{_digest(train_cfg.to_dict())}"
    done = _read_done(out)
    if done is not None:
        return Path(done["export"])
    active = None
    if tracker is not None and run_id is not None:
        import mlflow

        mlflow.set_tracking_uri(tracker.tracking_uri)
        active = tracker.client.get_run(run_id)
    # fusion.train resumes from its own checkpoints (written atomically) in `out`.
    export = train(train_cfg, out, resume=True, tracking=active)
    write_text_atomic(out / DONE, json.dumps({"export": str(Path(export).resolve()),
                                              "sha256": file_sha256(export)}, indent=2) + "\n")
    return Path(export).resolve()


# ---- stage 4: fusion ---------------------------------------------------------------------------
def fused_key(method: MethodConfig, data: PreparedData, checkpoint: Path | None,
              precomputed: dict[str, Path] | None) -> str:
    ident: dict[str, Any] = {"method": method.identity(), "data": data.data_id}
    ident["method"].pop("train", None)  # a trained model is identified by its checkpoint hash
    if checkpoint is not None:
        ident["checkpoint_sha256"] = file_sha256(checkpoint)
    if precomputed is not None:
        ident["files"] = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in precomputed.values()]
    return _digest(ident)


def fuse_method(method: MethodConfig, data: PreparedData, run_dir: Path, key: str, checkpoint: Path | None,
                progress: bool = True) -> Path:
    """Folder with ``<stem>.png`` for every split image (cached; written to a temp folder first)."""
    out = run_dir / "fused" / f"{method.name}-{key}"
    if _read_done(out) is not None:
        return out
    tmp = _fresh_tmp(out)
    if method.kind in ("s4fusion", "baseline"):
        from fusion.inference import make_fuser

        fuse = make_fuser(method.baseline if method.kind == "baseline" else "s4fusion", checkpoint)
    else:  # source

        def fuse(ir, vi):
            return ir if method.source == "ir" else vi
    for stem in tqdm(all_stems(data), desc=f"fuse {method.name}", unit="img", disable=not progress):
        sample = data.dataset[stem]
        write_png_atomic(tmp / f"{stem}.png", fuse(sample.ir, sample.vi))
    _commit(tmp, out, {"method": method.name, "key": key, "images": len(all_stems(data))})
    return out


def image_for(fused: Path | dict[str, Path]):
    if isinstance(fused, dict):
        return lambda stem: fused[stem]
    return lambda stem: fused / f"{stem}.png"


def export_method(name: str, key: str, fused: Path | dict[str, Path], data: PreparedData, run_dir: Path) -> Path:
    """One YOLO tree per method (its own label caches); returns its data YAML."""
    from data.yolo_export import yolo_dataset_yaml

    out = run_dir / "yolo" / f"{name}-{key}"
    if _read_done(out) is None:
        tmp = _fresh_tmp(out)
        export_yolo(tmp, data.split, image_for(fused), data.dataset.boxes, data.class_names, progress=False)
        _commit(tmp, out, {"method": name, "key": key})
    # data.yaml holds absolute paths: (re)write it for the tree's final location.
    return yolo_dataset_yaml(out, data.class_names)


# ---- stage 6: fusion metrics on the test split ---------------------------------------------------
def fusion_metrics(name: str, key: str, fused: Path | dict[str, Path], data: PreparedData, run_dir: Path,
                   cfg: PipelineConfig, progress: bool = True):
    """Per-image fusion metrics of one method on the test split (a DataFrame, cached as CSV)."""
    import pandas as pd

    from fusion.metrics import compute_metrics
    from pipelines.reports import write_csv_atomic

    metrics = cfg.report.fusion_metrics
    out = run_dir / "fusion_metrics" / f"{name}-{key}-{_digest([metrics, cfg.report.metrics_convention], 8)}.csv"
    if out.is_file():
        return pd.read_csv(out, dtype={"image": str})
    rows = []
    get = image_for(fused)
    for stem in tqdm(data.split["test"], desc=f"fusion metrics {name}", unit="img", disable=not progress):
        sample = data.dataset[stem]
        values = compute_metrics(sample.ir, sample.vi, read_image(get(stem), "unchanged"),
                                 convention=cfg.report.metrics_convention, metrics=metrics)
        rows.append({"method": name, "image": stem, **values})
    frame = pd.DataFrame(rows)
    write_csv_atomic(out, frame)
    return frame


# ---- stage 5: detection ------------------------------------------------------------------------
@dataclass
class MethodOutcome:
    name: str
    kind: str
    key: str
    fused: Path | dict[str, Path]
    data_yaml: Path
    seeds: list[int]
    detections: list[DetectionResult]
    coco: list[CocoMetrics]
    fusion: Any  # pandas DataFrame: per-image fusion metrics on the test split
    run_id: str | None = None

    def fusion_means(self, metrics: list[str]) -> dict[str, float]:
        from fusion.metrics import summarize

        row = summarize(self.fusion, group_by="method", metrics=metrics).iloc[0]
        return {m: float(row[f"{m}_mean"]) for m in metrics}

    def mean_std(self, attr: str) -> tuple[float, float]:
        values = np.array([getattr(r, attr) for r in self.detections], dtype=np.float64)
        return float(values.mean()), float(values.std())

    def coco_mean(self) -> float:
        return float(np.mean([c.map50 for c in self.coco]))

    def class_ap50(self, class_name: str) -> tuple[float, float]:
        values = np.array([r.ap50_per_class[class_name] for r in self.detections], dtype=np.float64)
        if np.all(np.isnan(values)):
            return float("nan"), float("nan")
        return float(np.nanmean(values)), float(np.nanstd(values))


def detector_key(cfg: PipelineConfig, data: PreparedData) -> str:
    return _digest({"detector": cfg.detector.to_dict(), "classes": data.class_names})


def detector_dir(run_dir: Path, name: str, key: str, cfg: PipelineConfig, data: PreparedData, seed: int) -> Path:
    return run_dir / "detect" / f"{name}-{key}" / detector_key(cfg, data) / f"seed{seed}"


def detect_method(name: str, key: str, data_yaml: Path, data: PreparedData, cfg: PipelineConfig,
                  run_dir: Path) -> tuple[list[DetectionResult], list[CocoMetrics]]:
    results, cocos = [], []
    gt = ground_truth_from_yolo(data_yaml.parent, "test")
    for seed in tqdm(cfg.seeds, desc=f"detector {name}", unit="seed", disable=len(cfg.seeds) == 1):
        out = detector_dir(run_dir, name, key, cfg, data, seed)
        result = train_and_evaluate(data_yaml, out, cfg.detector, seed, data.class_names)
        results.append(result)
        cocos.append(coco_map(gt, result.predictions, data.class_names, max_dets=cfg.detector.max_det))
    return results, cocos


# ---- MLflow ------------------------------------------------------------------------------------
def child_params(m: MethodConfig, outcome_key: str, checkpoint: Path | None, cfg: PipelineConfig) -> dict:
    params = {"method": {k: (json.dumps(v) if isinstance(v, dict) else v) for k, v in m.identity().items()},
              "fused_key": outcome_key, "detector": cfg.detector.to_dict(),
              "detector.initialisation": cfg.detector.initialisation, "seeds": cfg.seeds}
    if checkpoint is not None:
        params["method"]["checkpoint_sha256"] = file_sha256(checkpoint)
    return params


def child_metrics(outcome: MethodOutcome, class_names: list[str], fusion_metric_names: list[str]) -> dict[str, float]:
    metrics: dict[str, float] = {}
    m50, s50 = outcome.mean_std("map50")
    m5095, s5095 = outcome.mean_std("map50_95")
    metrics.update({"mAP50": m50, "mAP50_95": m5095, "mAP50_coco": outcome.coco_mean(),
                    "mAP50_coco_minus_ultralytics": outcome.coco_mean() - m50})
    if len(outcome.seeds) > 1:
        metrics.update({"mAP50_std": s50, "mAP50_95_std": s5095})
        for seed, r in zip(outcome.seeds, outcome.detections):
            metrics[f"seed{seed}/mAP50"] = r.map50
    for c in class_names:
        metrics[f"AP50/{c}"] = outcome.class_ap50(c)[0]
    for k, v in outcome.fusion_means(fusion_metric_names).items():
        metrics[f"fusion/{k}"] = v
    return metrics


# ---- orchestration -------------------------------------------------------------------------------
@dataclass
class PipelineResult:
    run_dir: Path
    report_dir: Path
    outcomes: list[MethodOutcome]
    verdict: str
    tracking_uri: str
    experiment: str
    parent_run_id: str
    timings: dict[str, float] = field(default_factory=dict)


def run_pipeline(cfg: PipelineConfig, progress: bool = True) -> PipelineResult:
    from pipelines.table6 import build_report, verdict_line

    start = time.perf_counter()
    run_dir = cfg.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run_dir / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    timings: dict[str, float] = {}

    tick = time.perf_counter()
    data = prepare_data(cfg, run_dir, progress)
    prepared = check_inputs(cfg, data, run_dir)
    timings["data+checks"] = time.perf_counter() - tick

    uri = cfg.tracking.uri or default_tracking_uri(run_dir)
    experiment = cfg.tracking.experiment or f"fuse_then_detect/{cfg.dataset.name}/{cfg.name}"
    tracker = Tracker(uri, experiment)
    # A parent run is one invocation of one exact config in one run folder: rerunning it after an
    # interruption continues that run; any config change starts a new parent.
    parent_id, _ = tracker.start_run(_digest([cfg.to_dict(), str(run_dir)], 24), cfg.name, "pipeline",
                                     tags={"s4fuse.run_dir": str(run_dir)})
    tracker.log_params(parent_id, {"config": {k: v for k, v in cfg.to_dict().items() if k != "methods"},
                                   "methods": [m.name for m in cfg.methods], "config_sha256": cfg.digest(),
                                   "split": {"sha256": data.split_hash,
                                             **{p: len(v) for p, v in data.split.items()}}})
    tracker.set_tags(parent_id, {f"env.{k}": v for k, v in environment_info().items()})
    tracker.log_artifact(parent_id, run_dir / "config.yaml")
    tracker.log_artifact(parent_id, data.split_dir, "split")

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
    except BaseException:
        tracker.finish(parent_id, "FAILED" if not isinstance(sys.exc_info()[1], KeyboardInterrupt) else "KILLED")
        raise
    tracker.finish(parent_id)
    timings["total"] = time.perf_counter() - start
    result = PipelineResult(run_dir, report_dir, outcomes, verdict, uri, experiment, parent_id, timings=timings)
    write_text_atomic(run_dir / "timings.json", json.dumps(timings, indent=2) + "\n")
    return result


def _run_method(m: MethodConfig, cfg: PipelineConfig, data: PreparedData, prepared: Any, run_dir: Path,
                tracker: Tracker, parent_id: str, timings: dict[str, float], progress: bool) -> MethodOutcome:
    tick = time.perf_counter()
    precomputed = prepared if m.kind == "precomputed" else None
    # The child run is keyed by what determines its results; for a trained S4Fusion that is its
    # train config (the checkpoint does not exist yet on the first run).
    ident = m.identity() if m.kind != "s4fusion" or m.train is None else {**m.identity(), "train": prepared.to_dict()}
    child_key = _digest([m.name, ident, data.data_id, detector_key(cfg, data), cfg.seeds,
                         cfg.report.fusion_metrics, cfg.report.metrics_convention], 24)
    run_id, finished = tracker.start_run(child_key, m.name, "method", parent_id=parent_id,
                                         tags={"method": m.name, "method_kind": m.kind})
    try:
        checkpoint = None
        if m.kind == "s4fusion":
            checkpoint = s4fusion_checkpoint(m, prepared, run_dir, None if finished else tracker, run_id)
        key = fused_key(m, data, checkpoint, precomputed)
        fused = precomputed if precomputed is not None else fuse_method(m, data, run_dir, key, checkpoint, progress)
        data_yaml = export_method(m.name, key, fused, data, run_dir)
        timings[f"{m.name}/fusion"] = time.perf_counter() - tick
        tick = time.perf_counter()
        detections, cocos = detect_method(m.name, key, data_yaml, data, cfg, run_dir)
        timings[f"{m.name}/detection"] = time.perf_counter() - tick
        fusion = fusion_metrics(m.name, key, fused, data, run_dir, cfg, progress)
        outcome = MethodOutcome(m.name, m.kind, key, fused, data_yaml, list(cfg.seeds), detections, cocos, fusion,
                                run_id)
        if not finished:
            from pipelines.table6 import method_samples_png

            tracker.log_params(run_id, child_params(m, key, checkpoint, cfg))
            tracker.log_metrics(run_id, child_metrics(outcome, data.class_names, cfg.report.fusion_metrics))
            tracker.set_tags(run_id, {"detector.initialisation": cfg.detector.initialisation})
            samples = method_samples_png(outcome, data, cfg, run_dir / "report" / "methods")
            tracker.log_artifact(run_id, samples, "samples")
            for seed, r in zip(cfg.seeds, detections):
                tracker.log_artifact(run_id, r.weights, f"weights/seed{seed}")
                tracker.log_artifact(run_id, detector_dir(run_dir, m.name, key, cfg, data, seed) / "result.json",
                                     f"results/seed{seed}")
            if checkpoint is not None:
                tracker.log_artifact(run_id, checkpoint, "s4fusion")
            tracker.finish(run_id)
    except BaseException:
        if not finished:
            tracker.finish(run_id, "KILLED" if isinstance(sys.exc_info()[1], KeyboardInterrupt) else "FAILED")
        raise
    return outcome


# ---- command line --------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None,
                        help="YAML profile (default: experiments/fuse_then_detect_demo.yaml; a bare file name is "
                             "looked up in experiments/)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, value as YAML (repeatable), e.g. --set detector.epochs=5")
    parser.add_argument("--runs-dir", default=None, help="run folder (default: runs/<config name>)")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow tracking URI (default: sqlite:///<run folder>/mlflow.db)")
    parser.add_argument("--methods", default=None, help="comma-separated subset of the config's method names")
    parser.add_argument("--seeds", default=None, help="comma-separated detector seeds (default: from the config)")
    parser.add_argument("--check", action="store_true",
                        help="validate the config, data and method inputs, then stop (no fusion or training)")


def resolve_args(args: argparse.Namespace) -> PipelineConfig:
    overrides = list(args.overrides)
    if args.runs_dir:
        overrides.append(f"runs_dir={json.dumps(str(args.runs_dir))}")
    if args.tracking_uri:
        overrides.append(f"tracking.uri={json.dumps(args.tracking_uri)}")
    if args.seeds:
        overrides.append(f"seeds=[{args.seeds}]")
    cfg = load_config(args.config, overrides)
    if args.methods:
        wanted = [s.strip() for s in args.methods.split(",") if s.strip()]
        unknown = sorted(set(wanted) - {m.name for m in cfg.methods})
        if unknown:
            raise ConfigError(f"--methods: unknown method(s) {unknown}; the config has {[m.name for m in cfg.methods]}")
        cfg.methods = [m for m in cfg.methods if m.name in wanted]
    return cfg


def main(args: argparse.Namespace) -> int:
    from pipelines.table6 import summary_text

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        cfg = resolve_args(args)
        if args.check:
            data = prepare_data(cfg, cfg.run_dir)
            check_inputs(cfg, data, cfg.run_dir)
            print(f"config {cfg.name}: OK ({len(cfg.methods)} methods, dataset {cfg.dataset.name}: "
                  f"{ {p: len(v) for p, v in data.split.items()} } pairs, split {data.split_hash[:12]})")
            return 0
        result = run_pipeline(cfg)
    except (ConfigError, DatasetError, FileNotFoundError) as exc:
        print(f"fuse_then_detect: error: {exc}", file=sys.stderr)
        return 2
    print(summary_text(result, cfg))
    return 0
