"""Training S4Fusion: YAML config, trainer loop, checkpoints and resume, DDP, MLflow, export.

``config`` (TrainConfig sections) -> ``data`` (sources, crops, sampler) / ``schedule`` (AdamW +
warmup-cosine) / ``ema`` (weight averaging) / ``checkpoint`` (atomic, hashed, RNG state) /
``distributed`` (torchrun) / ``val_grid`` -> ``trainer`` (:func:`train`, the loop as named steps).
Imports fusion.model, fusion.losses, fusion.inference and data/ (config loader, MLflow tracker).

Entry points: :meth:`TrainConfig.from_yaml` and :func:`train`; the command line is
``python -m pipelines.run train_fusion --config experiments/<name>.yaml [--set key=value]``
(multi-GPU: prefix ``torchrun --nproc_per_node=N -m``). See docs/training.md.
"""

from fusion.train.checkpoint import (
    CheckpointError,
    content_hash,
    load_checkpoint,
    save_checkpoint,
    seed_everything,
)
from fusion.train.config import (
    ConfigError,
    DataConfig,
    DataSource,
    EmaConfig,
    OptimConfig,
    TrackingConfig,
    TrainConfig,
)
from fusion.train.data import PairedCropDataset, ResumableDistributedSampler, resolve_sources
from fusion.train.schedule import param_groups, warmup_cosine
from fusion.train.trainer import EXPORT_NAME, build_model, train
from fusion.train.val_grid import validation_grid

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataConfig",
    "DataSource",
    "EXPORT_NAME",
    "EmaConfig",
    "OptimConfig",
    "PairedCropDataset",
    "ResumableDistributedSampler",
    "TrackingConfig",
    "TrainConfig",
    "build_model",
    "content_hash",
    "load_checkpoint",
    "param_groups",
    "resolve_sources",
    "save_checkpoint",
    "seed_everything",
    "train",
    "validation_grid",
    "warmup_cosine",
]
