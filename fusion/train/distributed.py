"""DDP set-up under torchrun (NCCL on GPU, gloo on CPU) and the one collective the trainer uses."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str) -> DistContext:
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK: join the process group (NCCL on GPU, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device: cuda requested but torch.cuda.is_available() is False")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = torch.device(device, local_rank) if device == "cuda" else torch.device(device)
    if device == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device == "cuda" else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    return DistContext(rank, world, local_rank, dev)


def wrap_model(model: nn.Module, ctx: DistContext) -> nn.Module:
    """DDP wrapper when several processes train; the model itself otherwise."""
    if ctx.world_size == 1:
        return model
    # The level-0 fusion layer is kept for checkpoint compatibility but never computed.
    return DistributedDataParallel(
        model,
        device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None,
        find_unused_parameters=True,
    )


def mean_over_ranks(values: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    if ctx.world_size > 1:
        dist.all_reduce(values)
        values /= ctx.world_size
    return values


def barrier(ctx: DistContext) -> None:
    if ctx.world_size > 1:
        dist.barrier()
