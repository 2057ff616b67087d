"""What a training run cost, measured by the run itself: wall time, CPU time over every process, load.

The trainer updates it at every checkpoint, validation and the export, stores it in the checkpoint (so
it adds up across resumes) and writes ``<out>/train_cost.json`` at the end; the model card quotes that
file instead of numbers typed by hand. Time between a run's last checkpoint and a kill is not counted.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import time
from dataclasses import dataclass

import torch

from fusion.train.distributed import DistContext, mean_over_ranks


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@dataclass
class TrainCost:
    wall_s: float = 0.0  # wall time of the training processes (validation and checkpoints included)
    cpu_s: float = 0.0  # user + system CPU time summed over all ranks
    load_sum: float = 0.0  # 1-minute load averages sampled at each update, for their mean
    load_samples: int = 0
    processes: int = 1
    cpu_model: str = ""
    cpu_count: int = 0

    def __post_init__(self) -> None:
        self._wall_mark, self._cpu_mark = time.perf_counter(), time.process_time()

    def update(self, ctx: DistContext) -> None:
        """Add the time since the last update (a collective: every rank calls it at the same step)."""
        wall, cpu = time.perf_counter(), time.process_time()
        cpu_delta = mean_over_ranks(torch.tensor([cpu - self._cpu_mark], dtype=torch.float64), ctx)
        self.cpu_s += float(cpu_delta) * ctx.world_size
        self.wall_s += wall - self._wall_mark
        self._wall_mark, self._cpu_mark = wall, cpu
        if hasattr(os, "getloadavg"):
            self.load_sum += os.getloadavg()[0]
            self.load_samples += 1
        self.processes, self.cpu_model, self.cpu_count = ctx.world_size, cpu_model(), os.cpu_count() or 0

    @property
    def load_mean(self) -> float | None:
        return self.load_sum / self.load_samples if self.load_samples else None

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "load_mean": self.load_mean}

    @classmethod
    def from_dict(cls, d: dict | None) -> TrainCost:
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in (d or {}).items() if k in fields})
