"""Optimiser and learning-rate schedule: AdamW, linear warmup then cosine decay, per step."""

from __future__ import annotations

import math

import torch
from torch import nn

from fusion.train.config import OptimConfig

# Parameter names (last component) exempt from weight decay besides all 1-D tensors (norms, biases).
NO_DECAY_NAMES = ("A_logs", "Ds")


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on weights only: not on A_logs, Ds, norms and biases (all 1-D)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name.rsplit(".", 1)[-1] in NO_DECAY_NAMES else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def warmup_cosine(
    step: int, warmup_steps: int, total_steps: int, start: float, peak: float, end: float
) -> float:
    """Learning rate at ``step``: linear start->peak over warmup, then cosine peak->end at total."""
    if step < warmup_steps:
        return start + (peak - start) * step / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return end + 0.5 * (peak - end) * (1.0 + math.cos(math.pi * progress))


def build_optimizer(
    model: nn.Module, o: OptimConfig, steps_per_epoch: int, total_steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    optimizer = torch.optim.AdamW(param_groups(model, o.weight_decay), lr=o.lr_peak, betas=o.betas)
    warmup_steps = round(o.warmup_epochs * steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: warmup_cosine(s, warmup_steps, total_steps, o.lr_start, o.lr_peak, o.lr_end) / o.lr_peak,
    )
    return optimizer, scheduler
