"""The training configuration: dataclass sections read from YAML by the shared loader (runtime.config_loader)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fusion.losses import LossConfig
from fusion.validation import ValidationConfig
from runtime.config_loader import ConfigError, apply_overrides, build, read_yaml_mapping, to_plain


@dataclass
class DataSource:
    """One source of IR/VIS pairs (``data.adapters.open_dataset``) and which of its pairs to use."""

    dataset: str  # m3fd | synthetic | msrs | roadscene | tno | llvip | folder
    root: str
    split: str | None = None  # adapter split folder, e.g. MSRS "train"
    split_file: str | None = None  # text file, one stem per line
    stems: list[str] | None = None
    fraction: float = 1.0  # seeded fraction of the pairs left after split_file / stems (data.splits)


@dataclass
class DataConfig:
    train: list[DataSource] = field(default_factory=list)
    val: list[DataSource] = field(default_factory=list)  # held-out pairs shown in the validation grid
    val_pairs: int = 4  # at most this many validation pairs in the grid
    crop_size: int = 229  # must be 12k+1 for the default model
    hflip: bool = True
    vflip: bool = True
    split_seed: int = 0  # seed of the `fraction` selections (data.splits.build_fusion_mix)
    num_workers: int = 0
    # keep every training pair decoded in memory (float32 IR and VIS-Y: 8 bytes per pixel and pair, in
    # each loader worker); for small sets such as the CPU demo's, where decoding PNGs cost ~1/4 of a step
    cache_images: bool = False


@dataclass
class OptimConfig:
    """AdamW with a per-step linear warmup (lr_start -> lr_peak) then cosine decay to lr_end."""

    lr_start: float = 3e-4
    lr_peak: float = 1.5e-3
    lr_end: float = 6e-4
    warmup_epochs: float = 20.0  # not stated in the paper (our choice, 2.5% of 800 epochs)
    weight_decay: float = 0.05  # not stated in the paper (VMamba's AdamW default)
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass
class EmaConfig:
    """Exponential moving average of the weights (fusion.train.ema): validated and exported instead of the
    raw weights when enabled. Not in the paper (a documented option of the CPU recipe)."""

    enabled: bool = False
    decay: float = 0.998
    warmup_steps: float = 100.0  # time constant of the decay's ramp from 0 (the first, random weights fade)


@dataclass
class TrackingConfig:
    enabled: bool = True
    uri: str | None = None  # None: sqlite:///<out_dir>/mlflow.db
    experiment: str = "s4fusion-train"


@dataclass
class TrainConfig:
    name: str = "s4fusion"
    seed: int = 0
    # S4FusionConfig fields, or a named size ("paper", "demo", "tiny"; fusion.model.MODEL_SIZES)
    model: str | dict[str, Any] = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    ema: EmaConfig = field(default_factory=EmaConfig)
    batch_size: int = 20  # global: split evenly over DDP ranks
    epochs: int = 800  # defines the schedule
    max_steps: int | None = None  # stop (checkpoint + export) after this step; rerun with more to continue
    ckpt_every: int = 500
    log_every: int = 10
    val_every: int = 1000
    device: str = "auto"  # auto | cpu | cuda
    amp: bool = True  # bf16 autocast on CUDA (ignored on CPU)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)  # held-out metrics at val_every

    def validate(self) -> list[str]:
        """Checks across sections, run on load (runtime.config_loader.build)."""
        from fusion.model import S4FusionConfig  # torch: only when a training config is built

        try:
            model = S4FusionConfig.from_spec(self.model)
        except ValueError as exc:
            return [f"model: {exc}"]
        problems = []
        if not 0.0 <= self.ema.decay < 1.0:
            problems.append(f"ema.decay: {self.ema.decay} is not in [0, 1)")
        if self.ema.warmup_steps <= 0:
            problems.append(f"ema.warmup_steps: {self.ema.warmup_steps} must be > 0")
        m = model.size_multiple
        if (self.data.crop_size - 1) % m or self.data.crop_size < m + 1:
            problems.append(
                f"data.crop_size: {self.data.crop_size} is not of the form {m}k+1 required by the model"
            )
        return problems

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)

    @classmethod
    def from_dict(
        cls,
        d: Mapping[str, Any],
        overrides: Sequence[str] | Mapping[str, Any] | None = None,
        source: str = "config",
    ) -> TrainConfig:
        """Build from plain data; ``overrides`` are ``"a.b.0.c=VALUE"`` strings or a mapping."""
        return build(cls, apply_overrides(to_plain(dict(d)), overrides), source)

    @classmethod
    def from_yaml(
        cls, path: str | os.PathLike, overrides: Sequence[str] | Mapping[str, Any] | None = None
    ) -> TrainConfig:
        """Load a YAML config (a bare name is looked up among the shipped experiments)."""
        from runtime.profiles import resolve_experiment

        path = resolve_experiment(path)
        return cls.from_dict(read_yaml_mapping(path), overrides, source=str(path))

    def model_config(self):
        """The :class:`fusion.model.S4FusionConfig` this config trains."""
        from fusion.model import S4FusionConfig

        return S4FusionConfig.from_spec(self.model)


__all__ = [
    "ConfigError",
    "DataConfig",
    "DataSource",
    "EmaConfig",
    "OptimConfig",
    "TrackingConfig",
    "TrainConfig",
]
