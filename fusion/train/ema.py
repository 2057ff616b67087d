"""Exponential moving average (EMA) of the weights, on torch's ``AveragedModel``.

The t-th update (t = 1, 2, ... after each optimiser step) moves the average towards the current
weights with decay ``d_t = decay * (1 - exp(-t / warmup_steps))``: the ramp lets the first, random
weights fade within a few hundred steps even in short runs (the same ramp as ultralytics' ModelEMA,
with a shorter time constant for CPU-sized runs). With EMA on, validation and the export use the
averaged weights; the raw weights keep training.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel

from fusion.train.config import EmaConfig


def ema_decay(cfg: EmaConfig, update: int) -> float:
    """The decay of the ``update``-th update (1-based)."""
    return cfg.decay * (1.0 - math.exp(-update / cfg.warmup_steps))


def build_ema(model: nn.Module, cfg: EmaConfig) -> AveragedModel | None:
    """An ``AveragedModel`` of ``model`` (call ``update_parameters(model)`` after each step), or None."""
    if not cfg.enabled:
        return None

    @torch.no_grad()
    def lerp_towards_current(averaged: list[Tensor], current: list[Tensor], num_averaged: Tensor) -> None:
        # AveragedModel copies the weights on its first update and counts it; this is update n + 1
        weight = 1.0 - ema_decay(cfg, int(num_averaged) + 1)
        torch._foreach_lerp_(averaged, current, weight)

    return AveragedModel(model, multi_avg_fn=lerp_towards_current)
