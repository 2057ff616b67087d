"""The ablate config: a shared ``base`` training config, the variants, the test data, the metrics.

A variant is a Table V experiment (``exp: 1``..``8``: the paper's variant name and the training
overrides fusion.paper gives for it) and/or its own ``overrides`` (nested training-config keys),
applied on top of ``base``: every variant trains with the same recipe and seed. ``base`` is a
training YAML (path or shipped profile name, inlined on load so ``--set base.a.b=VALUE`` works) or
a mapping. Checked on load, all problems at once, data folders included.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fusion.train.config import DataSource, TrainConfig
from pipelines.config import TrackingConfig
from pipelines.executor import ExecutorConfig
from runtime.config_loader import (
    ConfigError,
    apply_overrides,
    build,
    match_names,
    parse_override,
    read_yaml_mapping,
    to_plain,
)
from runtime.profiles import config_data_path, resolve_experiment

PERCEPTUAL = {"MUSIQ": "musiq", "TOPIQ": "topiq_nr"}  # Table V column -> pyiqa metric
_NAME = re.compile(r"[^a-z0-9]+")


@dataclass
class VariantConfig:
    exp: int | None = None  # a Table V experiment (1-8): its name and overrides from fusion.paper
    name: str | None = None  # default: the paper's variant name
    overrides: dict[str, Any] = field(default_factory=dict)  # nested training-config keys


@dataclass(frozen=True)
class Variant:
    """A resolved variant: display name, folder-safe slug, Table V experiment and training config."""

    name: str
    slug: str
    exp: int | None
    overrides: dict[str, Any]
    train: TrainConfig


@dataclass
class AblationConfig:
    name: str
    base: str | dict[str, Any]
    variants: list[VariantConfig]
    test: list[DataSource]  # the pairs each variant fuses and is measured on
    metrics: list[str] = field(default_factory=lambda: ["AG", "VIF", "Qabf", "SF", "MUSIQ", "TOPIQ"])
    metrics_convention: str = "mmif"
    cost_size: list[int] = field(default_factory=lambda: [480, 640])  # H, W of the params/FLOPs count
    runs_dir: str | None = None  # default runs/<name>
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_dir if self.runs_dir else Path("runs") / self.name).resolve()

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)

    def classical_metrics(self) -> list[str]:
        return [m for m in self.metrics if m not in PERCEPTUAL]

    def perceptual_metrics(self) -> list[str]:
        return [m for m in self.metrics if m in PERCEPTUAL]

    def resolved_variants(self) -> list[Variant]:
        """Every variant with its training config (raises ConfigError listing every bad one)."""
        variants, problems = [], []
        for i, v in enumerate(self.variants):
            try:
                variants.append(resolve_variant(self.base, v, f"variants.{i}"))
            except ConfigError as exc:
                problems += exc.problems
        if problems:
            raise ConfigError(problems)
        return variants

    def validate(self) -> list[str]:
        problems = _metric_problems(self)
        if not isinstance(self.base, Mapping):
            return problems + [
                "base: expected a training config (a mapping; load_ablation_config inlines a path)"
            ]
        if not self.variants:
            problems.append("variants: list at least one variant (exp: 1-8 and/or overrides)")
        if not self.test:
            problems.append("test: list at least one source of test pairs")
        if len(self.cost_size) != 2 or min(self.cost_size) < 1:
            problems.append(f"cost_size: expected [height, width], got {self.cost_size}")
        try:
            variants = self.resolved_variants()
        except ConfigError as exc:
            return problems + exc.problems
        slugs = [v.slug for v in variants]
        problems += [
            f"variants.{i}: the name {v.name!r} is used twice"
            for i, v in enumerate(variants)
            if v.slug in slugs[:i]
        ]
        sources = [(f"test.{i}", s) for i, s in enumerate(self.test)]
        if variants:
            data = variants[0].train.data
            sources += [(f"base.data.train.{i}", s) for i, s in enumerate(data.train)]
            sources += [(f"base.data.val.{i}", s) for i, s in enumerate(data.val)]
        return problems + [p for where, s in sources for p in _source_problems(where, s)]


def _metric_problems(cfg: AblationConfig) -> list[str]:
    """Problems of ``metrics`` (which it spells as the convention does: ``vif`` -> ``VIF``)."""
    from fusion.metrics import CONVENTIONS

    defined = CONVENTIONS.get(cfg.metrics_convention)
    if defined is None:
        return [
            f"metrics_convention: unknown {cfg.metrics_convention!r}; expected one of {sorted(CONVENTIONS)}"
        ]
    try:
        cfg.metrics = match_names(
            cfg.metrics,
            [*defined, *PERCEPTUAL],
            f"metric(s) (the {cfg.metrics_convention} convention's, or pyiqa's)",
        )
    except ConfigError as exc:
        return [f"metrics: {p}" for p in exc.problems]
    return []


def _source_problems(where: str, src: DataSource) -> list[str]:
    root = config_data_path(src.root)
    if root.is_dir():
        return []
    folders = "Ir/ and Vis/" if src.dataset == "m3fd" else "ir/ and vi/"
    if src.split:
        folders = f"{src.split}/{folders.replace(' and ', f' and {src.split}/')}"
    return [
        f"{where}.root: {src.root} does not exist (looked for {root}); put the {src.dataset} dataset there ({folders}) "
        f"or point --set {where}.root=PATH at it"
    ]


def deep_merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` merged in, mappings recursively (neither input is modified)."""
    out = copy.deepcopy(dict(base))
    for k, v in extra.items():
        out[k] = (
            deep_merge(out[k], v)
            if isinstance(v, Mapping) and isinstance(out.get(k), Mapping)
            else copy.deepcopy(v)
        )
    return out


def resolve_variant(base: Mapping[str, Any], v: VariantConfig, where: str) -> Variant:
    from fusion.paper import table5_rows

    paper = {row.exp: row for row in table5_rows()}
    if v.exp is not None and v.exp not in paper:
        raise ConfigError(f"{where}.exp: {v.exp} is not a Table V experiment (1-{len(paper)})")
    if v.exp is None and not v.name:
        raise ConfigError(f"{where}: give exp (a Table V experiment, 1-{len(paper)}) or a name")
    name = v.name or paper[v.exp].variant
    overrides = deep_merge(paper[v.exp].overrides if v.exp is not None else {}, v.overrides)
    raw = dict(base)
    if isinstance(raw.get("model"), str):  # a named size, e.g. "tiny": made a mapping so overrides merge
        raw["model"] = {"size": raw["model"]}
    raw = deep_merge(raw, overrides)
    train = build(TrainConfig, raw, source="", path=f"{where} (base + overrides)")
    train.tracking.enabled = False  # logged into the variant's child run by the driver
    slug = _NAME.sub("_", name.lower()).strip("_") or f"exp{v.exp}"
    return Variant(name, slug, v.exp, overrides, train)


def load_ablation_config(path: str | Path, overrides: list[str] | None = None) -> AblationConfig:
    """Read the YAML (a bare name is looked up in experiments/), inline ``base``, apply ``--set``."""
    path = resolve_experiment(path)
    items = dict(parse_override(t) for t in overrides or [])
    raw = apply_overrides(read_yaml_mapping(path), {k: v for k, v in items.items() if k == "base"})
    if isinstance(raw.get("base"), str):
        raw["base"] = read_yaml_mapping(resolve_experiment(raw["base"]))
    raw = apply_overrides(raw, {k: v for k, v in items.items() if k != "base"})
    return build(AblationConfig, raw, str(path))


__all__ = [
    "AblationConfig",
    "PERCEPTUAL",
    "Variant",
    "VariantConfig",
    "deep_merge",
    "load_ablation_config",
    "resolve_variant",
]
