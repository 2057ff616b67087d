"""Configuration of ``fuse_then_detect``: dataclass sections read by the shared loader (runtime.config_loader).

Everything is validated on load -- nested sections included (``dataset.synthetic``, inline
``methods[].train``) -- so that a typo or a missing file fails in the first second, not after an
hour of training; all problems are reported at once. A relative ``dataset.root`` is relative to the
repository root (runtime.profiles.config_data_path), whatever the current directory; the other
relative paths (``runs_dir``, method checkpoints and folders) to the current working directory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detection.yolo import DetectorConfig
from fusion.methods import FusionMethod, config_problems, method_from_config
from pipelines.executor import ExecutorConfig
from runtime.config_loader import ConfigError, apply_overrides, build, read_yaml_mapping
from runtime.profiles import config_data_path, experiments_dir, resolve_experiment

EXPERIMENTS_DIR = experiments_dir()
DEFAULT_CONFIG = EXPERIMENTS_DIR / "fuse_then_detect_demo.yaml"
_METHOD_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")

__all__ = [
    "ConfigError",
    "DatasetConfig",
    "MethodConfig",
    "PipelineConfig",
    "apply_overrides",
    "load_config",
    "parse_config",
]


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

    def synthetic_config(self):
        """The :class:`data.synthetic.SyntheticConfig` of ``synthetic`` (validated on load)."""
        from data.synthetic import SyntheticConfig

        return build(SyntheticConfig, self.synthetic, source="", path="dataset.synthetic")


@dataclass
class MethodConfig:
    """One row of Table VI.

    kind ``source``: ``source`` is ``ir`` or ``vi``; ``baseline``: ``baseline`` names a
    fusion.baselines entry; ``s4fusion``: exactly one of ``checkpoint`` (exported model file) or
    ``train`` (a train_fusion YAML path or an inline mapping, trained in-run on the detection
    train split); ``precomputed``: ``folder`` holds one fused image per dataset stem; ``python``:
    ``target`` is ``package.module:function`` (or an ``s4fuse.methods`` entry-point name).
    The kinds themselves live in fusion.methods; this is their YAML form.
    """

    name: str
    kind: str
    source: str | None = None
    baseline: str | None = None
    checkpoint: str | None = None
    train: str | dict[str, Any] | None = None
    folder: str | None = None
    target: str | None = None

    def fields(self) -> dict[str, Any]:
        """The kind's keys as given (name and kind left out; unset keys too)."""
        d = dataclasses.asdict(self)
        return {k: v for k, v in d.items() if k not in ("name", "kind") and v is not None}

    def method(self) -> FusionMethod:
        """The fusion.methods object this entry describes (built once: a python target is imported
        and hashed once per process)."""
        if "_method" not in self.__dict__:
            self.__dict__["_method"] = method_from_config(self.name, self.kind, self.fields())
        return self.__dict__["_method"]


@dataclass
class ReportConfig:
    sample_images: int = 4  # test images shown with detections for every method
    fusion_metrics: list[str] = field(
        default_factory=lambda: ["EN", "SD", "SF", "AG", "MI", "SCD", "VIF", "Qabf"]
    )
    metrics_convention: str = "mmif"

    def __post_init__(self) -> None:
        from fusion.metrics import resolve_metrics

        # on load (so --check sees it too), before any job: `vif` becomes `VIF`, `VIFF` a config error
        try:
            self.fusion_metrics = list(resolve_metrics(self.metrics_convention, self.fusion_metrics))
        except ConfigError as exc:
            raise ValueError(f"fusion_metrics: {exc}") from None


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
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)

    def __post_init__(self) -> None:
        # A job reserves executor.cpus_per_job CPUs: the training process and cpus_per_job - 1
        # dataloader workers, with either executor, so a serial and a Ray run train identically
        # (the workers are part of the detector cache key: each draws its own augmentation stream).
        self.detector.workers = self.executor.cpus_per_job - 1

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_dir if self.runs_dir else Path("runs") / self.name).resolve()

    def to_dict(self) -> dict[str, Any]:
        """The config as loadable YAML data (``detector.workers`` follows ``executor.cpus_per_job``)."""
        d = dataclasses.asdict(self)
        d["detector"].pop("workers")
        return d

    def digest(self) -> str:
        """Hash of everything that determines the results (not where or how they are run or tracked;
        ``executor.cpus_per_job`` counts: it is the detectors' dataloader workers)."""
        d = self.to_dict()
        d["cpus_per_job"] = self.executor.cpus_per_job
        for key in ("runs_dir", "tracking", "report", "executor"):
            d.pop(key)
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()

    def validate(self) -> list[str]:
        return validate(self)


def parse_config(raw: dict[str, Any], source: str = "<config>") -> PipelineConfig:
    """Build and validate a PipelineConfig from a plain mapping (as read from YAML).

    Every problem found is reported at once (one ConfigError listing them all).
    """
    detector = raw.get("detector")
    if not (isinstance(detector, dict) and "workers" in detector):
        return build(PipelineConfig, raw, source)
    problems = [
        f"{source}: detector.workers was replaced by executor.cpus_per_job (the CPUs a job reserves: "
        f"its training process + cpus_per_job - 1 dataloader workers, serial or Ray); remove "
        f"detector.workers and set executor.cpus_per_job: <workers + 1>"
    ]
    try:
        build(
            PipelineConfig, {**raw, "detector": {k: v for k, v in detector.items() if k != "workers"}}, source
        )
    except ConfigError as exc:
        problems += exc.problems
    raise ConfigError(problems)


def validate(cfg: PipelineConfig) -> list[str]:
    """Static checks (no dataset access): kinds, required keys, files that must exist, nested sections."""
    # an entry that is not a MethodConfig (unknown key, not a mapping) already has its problem listed
    methods = [(i, m) for i, m in enumerate(cfg.methods) if isinstance(m, MethodConfig)]
    problems = [p for i, m in methods for p in _method_problems(m, i)]
    names = [m.name for _, m in methods]
    problems += [
        f"methods.{i} ({m.name!r}): duplicate method name"
        for k, (i, m) in enumerate(methods)
        if m.name in names[:k]
    ]
    if not cfg.methods:
        problems.append("'methods' must be a non-empty list")
    return problems + _dataset_problems(cfg)


def _method_problems(m: MethodConfig, index: int) -> list[str]:
    where = f"methods.{index} ({m.name!r})"
    problems: list[str] = []
    if not _METHOD_NAME.match(str(m.name)):
        problems.append(f"{where}: method names may use letters, digits and _ . + - only")
    # an inline train config's problems carry their own dotted path (methods.<i>.train.<key>)
    problems += [
        f"methods.{index}.{p}" if p.startswith("train") else f"{where}: {p}"
        for p in config_problems(m.kind, m.fields())
    ]
    return problems


def _dataset_problems(cfg: PipelineConfig) -> list[str]:
    problems: list[str] = []
    if not cfg.seeds or len(set(cfg.seeds)) != len(cfg.seeds):
        problems.append(f"'seeds' must be a non-empty list of distinct integers, got {cfg.seeds}")
    ds = cfg.dataset
    if ds.name == "synthetic":
        try:
            ds.synthetic_config()
        except ConfigError as exc:
            problems += exc.problems
    else:
        if not ds.root:
            problems.append(
                f"dataset.root is required for dataset {ds.name!r} (only 'synthetic' is generated)"
            )
        elif not config_data_path(ds.root).is_dir():
            problems.append(
                f"dataset.root {ds.root} does not exist (looked for {config_data_path(ds.root)}); download {ds.name} and point "
                f"dataset.root (or --set dataset.root=PATH) at it"
            )
    if len(ds.split_ratios) != 3 or any(r < 0 for r in ds.split_ratios) or ds.split_ratios[2] <= 0:
        problems.append(
            f"dataset.split_ratios must be 3 non-negative train/val/test ratios with a "
            f"test share, got {ds.split_ratios}"
        )
    if cfg.report.sample_images < 0:
        problems.append("report.sample_images must be >= 0")
    return problems


def load_config(
    path: str | Path | None = None, overrides: list[str] | None = None, only_methods: list[str] | None = None
) -> PipelineConfig:
    """Read a YAML config (default: the demo profile; a bare name is looked up in experiments/),
    apply ``--set`` overrides, keep ``only_methods`` (by name; the others are not validated), build
    and validate."""
    path = resolve_experiment(path if path is not None else DEFAULT_CONFIG)
    raw = apply_overrides(read_yaml_mapping(path), overrides or [])
    if only_methods is not None and isinstance(raw.get("methods"), list):
        names = [m.get("name") for m in raw["methods"] if isinstance(m, dict)]
        unknown = sorted(set(only_methods) - set(names))
        if unknown:
            raise ConfigError(f"--methods: unknown method(s) {unknown}; the config has {names}")
        raw["methods"] = [m for m in raw["methods"] if isinstance(m, dict) and m.get("name") in only_methods]
    return parse_config(raw, str(path))
