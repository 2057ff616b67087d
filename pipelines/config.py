"""Configuration of ``fuse_then_detect``: dataclasses, YAML loading, ``--set key=value`` overrides.

Everything is validated on load so that a typo or a missing file fails in the first second, not
after an hour of training. Relative paths are resolved against the current working directory.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from detection.yolo import DetectorConfig
from fusion.inference import resolve_checkpoint

EXPERIMENTS_DIR = Path(__file__).resolve().parents[1] / "experiments"
DEFAULT_CONFIG = EXPERIMENTS_DIR / "fuse_then_detect_demo.yaml"
METHOD_KINDS = ("source", "baseline", "s4fusion", "precomputed")
_METHOD_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


class ConfigError(ValueError):
    """The pipeline configuration is invalid; the message names the file/key and the problem."""


@dataclass
class DatasetConfig:
    """``name`` is a data.adapters dataset name at ``root``. ``synthetic`` is generated (once, with
    ``synthetic`` as its data.synthetic.SyntheticConfig) into ``root``, default ``<run folder>/data``."""

    name: str = "synthetic"
    root: str | None = None
    synthetic: dict[str, Any] = field(default_factory=dict)  # data.synthetic.SyntheticConfig fields
    split_ratios: list[float] = field(default_factory=lambda: [0.7, 0.1, 0.2])
    split_seed: int = 0
    group_consecutive: int | None = None


@dataclass
class MethodConfig:
    """One row of Table VI.

    kind ``source``: ``source`` is ``ir`` or ``vi``; ``baseline``: ``baseline`` names a
    fusion.baselines entry; ``s4fusion``: exactly one of ``checkpoint`` (exported model file) or
    ``train`` (a train_fusion YAML path or an inline mapping, trained in-run on the detection
    train split); ``precomputed``: ``folder`` holds one fused image per dataset stem.
    """

    name: str
    kind: str
    source: str | None = None
    baseline: str | None = None
    checkpoint: str | None = None
    train: str | dict[str, Any] | None = None
    folder: str | None = None

    def identity(self) -> dict[str, Any]:
        """What determines this method's fused images (the display name does not)."""
        d = dataclasses.asdict(self)
        d.pop("name")
        return {k: v for k, v in d.items() if v is not None}


@dataclass
class ReportConfig:
    sample_images: int = 4  # test images shown with detections for every method
    fusion_metrics: list[str] = field(default_factory=lambda: ["EN", "SD", "SF", "AG", "MI", "SCD", "VIF", "Qabf"])
    metrics_convention: str = "mmif"


@dataclass
class TrackingConfig:
    uri: str | None = None  # default sqlite:///<runs_dir>/mlflow.db
    experiment: str | None = None  # default fuse_then_detect/<dataset>/<config name>


@dataclass
class PipelineConfig:
    name: str
    methods: list[MethodConfig]
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    seeds: list[int] = field(default_factory=lambda: [0])
    runs_dir: str | None = None  # default runs/<name>
    report: ReportConfig = field(default_factory=ReportConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_dir if self.runs_dir else Path("runs") / self.name).resolve()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def digest(self) -> str:
        """Hash of everything that determines the results (not where they are written or tracked)."""
        d = self.to_dict()
        for key in ("runs_dir", "tracking", "report"):
            d.pop(key)
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()


def _build(cls, data: Any, where: str):
    """Instantiate dataclass ``cls`` from a mapping, naming unknown or missing keys."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys: {sorted(names)}")
    try:
        return cls(**data)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    except (ValueError, FileNotFoundError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def parse_config(raw: dict[str, Any], source: str = "<config>") -> PipelineConfig:
    """Build and validate a PipelineConfig from a plain mapping (as read from YAML).

    Every problem found is reported at once (one ConfigError listing them all).
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping")
    raw = copy.deepcopy(raw)
    problems: list[str] = []
    if "name" not in raw:
        problems.append(f"{source}: missing key 'name'")
    methods = raw.pop("methods", None)
    if not methods or not isinstance(methods, list):
        problems.append(f"{source}: 'methods' must be a non-empty list")
        methods = []
    sections = {"dataset": DatasetConfig, "detector": DetectorConfig, "report": ReportConfig,
                "tracking": TrackingConfig}
    for key, cls in sections.items():
        if key in raw:
            try:
                raw[key] = _build(cls, raw[key] or {}, f"{source}: {key}")
            except ConfigError as exc:
                problems.append(str(exc))
                raw.pop(key)
    built = []
    for i, m in enumerate(methods):
        try:
            built.append(_build(MethodConfig, m, f"{source}: methods[{i}]"))
        except ConfigError as exc:
            problems.append(str(exc))
    raw["methods"] = built
    if not problems:
        try:
            cfg = _build(PipelineConfig, raw, source)
        except ConfigError as exc:
            problems.append(str(exc))
        else:
            problems += validate(cfg, source)
    elif built:
        raw.setdefault("name", "?")
        try:
            problems += validate(_build(PipelineConfig, raw, source), source)
        except ConfigError:
            pass  # already reported above
    if problems:
        raise ConfigError(problems[0] if len(problems) == 1 else
                          f"{len(problems)} problems:\n  " + "\n  ".join(problems))
    return cfg


def validate(cfg: PipelineConfig, source: str = "<config>") -> list[str]:
    """Static checks (no dataset access): kinds, required keys, files that must exist."""
    from fusion.baselines import BASELINES

    problems: list[str] = []
    seen: set[str] = set()
    for i, m in enumerate(cfg.methods):
        where = f"{source}: methods[{i}] ({m.name!r})"
        if not _METHOD_NAME.match(str(m.name)):
            problems.append(f"{where}: method names may use letters, digits and _ . + - only")
        if m.name in seen:
            problems.append(f"{where}: duplicate method name")
        seen.add(m.name)
        if m.kind not in METHOD_KINDS:
            problems.append(f"{where}: unknown method kind {m.kind!r}; expected one of {list(METHOD_KINDS)}")
            continue
        allowed = {"source": {"source"}, "baseline": {"baseline"}, "s4fusion": {"checkpoint", "train"},
                   "precomputed": {"folder"}}[m.kind]
        extra = sorted(k for k in m.identity() if k != "kind" and k not in allowed)
        if extra:
            problems.append(f"{where}: key(s) {extra} do not apply to kind {m.kind!r} (allowed: {sorted(allowed)})")
        if m.kind == "source" and m.source not in ("ir", "vi"):
            problems.append(f"{where}: source must be 'ir' or 'vi', got {m.source!r}")
        if m.kind == "baseline" and m.baseline not in BASELINES:
            problems.append(f"{where}: unknown baseline {m.baseline!r}; available: {sorted(BASELINES)}")
        if m.kind == "s4fusion":
            if (m.checkpoint is None) == (m.train is None):
                problems.append(f"{where}: give exactly one of 'checkpoint' (a trained model file) or "
                                f"'train' (a train_fusion config, path or mapping)")
            elif m.checkpoint is not None and not resolve_checkpoint(m.checkpoint).is_file():
                problems.append(f"{where}: S4Fusion checkpoint {m.checkpoint} does not exist")
            elif isinstance(m.train, str) and not Path(m.train).expanduser().is_file():
                problems.append(f"{where}: train config {m.train} does not exist")
        if m.kind == "precomputed":
            if not m.folder:
                problems.append(f"{where}: 'folder' (the method's fused images) is required")
            elif not Path(m.folder).expanduser().is_dir():
                problems.append(f"{where}: folder {m.folder} does not exist; put the method's fused images "
                                f"there, one per dataset image, named by the dataset's file stems")
    if not cfg.seeds or len(set(cfg.seeds)) != len(cfg.seeds):
        problems.append(f"{source}: 'seeds' must be a non-empty list of distinct integers, got {cfg.seeds}")
    ds = cfg.dataset
    if ds.name != "synthetic":
        if not ds.root:
            problems.append(f"{source}: dataset.root is required for dataset {ds.name!r} (only 'synthetic' is "
                            f"generated)")
        elif not Path(ds.root).expanduser().is_dir():
            problems.append(f"{source}: dataset.root {ds.root} does not exist; download {ds.name} and point "
                            f"dataset.root (or --set dataset.root=PATH) at it")
    if len(ds.split_ratios) != 3 or any(r < 0 for r in ds.split_ratios) or ds.split_ratios[2] <= 0:
        problems.append(f"{source}: dataset.split_ratios must be 3 non-negative train/val/test ratios with a "
                        f"test share, got {ds.split_ratios}")
    if cfg.report.sample_images < 0:
        problems.append(f"{source}: report.sample_images must be >= 0")
    return problems


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides (value parsed as YAML) to a raw config mapping."""
    raw = copy.deepcopy(raw)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value (e.g. detector.epochs=5)")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        node = raw
        for p in parts[:-1]:
            if node.get(p) is None:
                node[p] = {}
            if not isinstance(node[p], dict):
                raise ConfigError(f"--set {item!r}: '{p}' is not a section")
            node = node[p]
        try:
            node[parts[-1]] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {item!r}: value is not valid YAML ({exc})") from None
    return raw


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> PipelineConfig:
    """Read a YAML config (default: the demo profile), apply overrides, validate."""
    path = Path(path) if path is not None else DEFAULT_CONFIG
    if not path.is_file():
        candidate = EXPERIMENTS_DIR / path.name
        if path.parent == Path(".") and candidate.is_file():  # `--config table6_m3fd.yaml` finds experiments/
            path = candidate
        else:
            raise ConfigError(f"config file {path} does not exist (profiles live in {EXPERIMENTS_DIR})")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    raw = apply_overrides(raw, overrides or [])
    return parse_config(raw, str(path))
