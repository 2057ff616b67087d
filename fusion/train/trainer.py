"""The training loop: :func:`train` sets up the run, then :class:`Trainer` repeats named steps.

One step = ``train_step`` (forward, loss, backward, optimiser) followed, when due, by
``log_interval``, ``checkpoint`` and ``validate``; ``export`` writes the model at the end.

What else happens along the way (MLflow logging, a test's SIGKILL) is a callback on one of the
trainer's :data:`EVENTS` (docs/training.md, "Callbacks"): the loop fires them and knows nothing of
their subscribers. Each event is also fired as the process-wide hook point ``train.<event without
on_>`` (runtime.hooks), where tests subscribe without access to the trainer object.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
import yaml
from PIL import Image
from tqdm import tqdm

from data.io import write_atomic, write_text_atomic
from data.splits import write_split
from fusion.losses import S4FusionLoss
from fusion.model import S4Fusion
from fusion.train.checkpoint import (
    RESUMABLE_KEYS,
    CheckpointError,
    config_differences,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    seed_everything,
    set_rng_state,
)
from fusion.train.config import TrainConfig
from fusion.train.cost import TrainCost
from fusion.train.data import TrainData, build_train_data
from fusion.train.distributed import DistContext, barrier, mean_over_ranks, setup_distributed, wrap_model
from fusion.train.ema import build_ema
from fusion.train.schedule import build_optimizer
from fusion.train.val_grid import validation_grid
from fusion.validation import record_metrics
from runtime import hooks
from runtime.config_loader import ConfigError
from runtime.errors import RunFolderError

log = logging.getLogger(__name__)

EXPORT_NAME = "s4fusion.pt"
COST_NAME = "train_cost.json"  # fusion.train.cost.TrainCost of the whole run

# The trainer's events, in the order a step meets them; each callback gets the trainer first.
EVENTS = (
    "on_train_start",  # (trainer): before the first step (of this attempt: a resumed run starts mid-way)
    "on_train_metrics",  # (trainer, metrics): every log_every steps, the interval's means, on every rank
    "on_step_end",  # (trainer): after every step, its metrics logged, before its checkpoint
    "on_checkpoint_saved",  # (trainer, path): main rank, checkpoints/last.pt written
    "on_validation_end",  # (trainer, metrics, grid): metrics {} and grid None except on the main rank
    "on_export_end",  # (trainer, export_path): main rank, s4fusion.pt written
)


def build_model(cfg: TrainConfig) -> S4Fusion:
    return S4Fusion(cfg.model_config())


def train(
    cfg: TrainConfig, out_dir: str | os.PathLike, resume: bool = True, callbacks: Iterable[object] = ()
) -> Path:
    """Train S4Fusion per ``cfg`` into ``out_dir``; returns the exported model's path.

    ``out_dir`` receives ``checkpoints/last.pt`` (every ``ckpt_every`` steps and at the end),
    ``s4fusion.pt`` (the export, loadable by ``S4Fusion.load`` and the fuse command),
    ``config.yaml``, ``fusion_split/`` (the stems trained on, with a content hash), ``val/*.png``
    and, with the train command's default tracking, ``mlflow.db``. A checkpoint in ``out_dir`` is
    resumed when ``resume`` is true and refused otherwise. ``callbacks``: handlers whose methods named
    like :data:`EVENTS` are registered (e.g. fusion.train.mlflow_logger.MlflowTrainLogger; nothing is
    tracked without one).
    Launch under ``torchrun`` for multi-GPU/multi-node DDP; plain calls run single-process.
    """
    out_dir = Path(out_dir)
    ctx = setup_distributed(cfg.device)
    if ctx.device.type == "cpu":
        # As the scans' decays exp(delta*A) shrink during training, denormal floats appear and x86 CPUs
        # slow down on them: a 2600-step paper-width model's training step took 1.31x the CPU time of a
        # fresh one, 1.00x with them flushed to zero (docs/experiments/demo_wide.md).
        torch.set_flush_denormal(True)
    if cfg.batch_size % ctx.world_size:
        raise ConfigError(
            f"batch_size {cfg.batch_size} is not divisible by the {ctx.world_size} DDP processes"
        )
    export_path = out_dir / EXPORT_NAME
    state = resume_state(cfg, out_dir, resume)
    if (
        state is not None
        and state["step"] >= min(state["total_steps"], cfg.max_steps or state["total_steps"])
        and export_path.exists()
    ):
        log.info("%s: training already finished at step %d; using %s", out_dir, state["step"], export_path)
        return export_path
    if ctx.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out_dir / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    data = build_train_data(cfg, ctx)  # the selected stems are written once per run directory
    if ctx.is_main:
        write_split(data.split, out_dir / "fusion_split")
    trainer = Trainer(cfg, ctx, data, out_dir, state)
    for handler in callbacks:
        trainer.callbacks.add_handler(handler)
    trainer.fit()
    return export_path


def resume_state(cfg: TrainConfig, out_dir: Path, resume: bool) -> dict | None:
    """The checkpoint to continue from (checked against ``cfg``), or None for a fresh run."""
    ckpt_path = out_dir / "checkpoints" / "last.pt"
    if not ckpt_path.exists():
        return None
    if not resume:
        raise RunFolderError(
            f"{out_dir} already holds a training checkpoint ({ckpt_path}); pass --resume "
            "to continue it or choose another output directory"
        )
    state = load_checkpoint(ckpt_path)
    changed = config_differences(state["config"], cfg.to_dict())
    if changed:
        raise CheckpointError(
            f"cannot resume {ckpt_path}: the config differs in {changed} "
            f"(only {list(RESUMABLE_KEYS)} may change on resume)"
        )
    return state


class Trainer:
    """Model, loss, optimiser and schedule of one run; :meth:`fit` is the loop."""

    def __init__(
        self, cfg: TrainConfig, ctx: DistContext, data: TrainData, out_dir: Path, state: dict | None
    ):
        self.cfg, self.ctx, self.data, self.out_dir, self.state = cfg, ctx, data, out_dir, state
        self.ckpt_path = out_dir / "checkpoints" / "last.pt"
        seed_everything(cfg.seed)
        self.model = build_model(cfg).to(ctx.device)
        self.ema = build_ema(self.model, cfg.ema)  # None unless cfg.ema.enabled
        self.loss_fn = S4FusionLoss(cfg.loss).to(ctx.device)
        self.optimizer, self.scheduler = build_optimizer(
            self.model, cfg.optim, data.steps_per_epoch, data.total_steps
        )
        self.step = 0
        self.cost = TrainCost()
        self.callbacks = hooks.Callbacks(EVENTS)
        # saved with every checkpoint and back in ``state`` on resume (the MLflow logger's run id)
        self.checkpoint_extras: dict[str, Any] = {}
        if state is not None:
            self._restore(state)
        self.train_model = wrap_model(self.model, ctx)
        self.amp = cfg.amp and ctx.device.type == "cuda"
        self.sums: dict[str, torch.Tensor] = {}
        self.interval_steps, self.interval_time, self.tick = 0, 0.0, 0.0  # compute + data time only

    def _restore(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        self.step = state["step"]
        self.cost = TrainCost.from_dict(
            state.get("cost")
        )  # checkpoints before the cost was kept: counted from here
        if (state["epoch"], state["batch_in_epoch"]) != divmod(self.step, self.data.steps_per_epoch):
            raise CheckpointError(
                f"{self.ckpt_path}: sampler position {state['epoch']}/{state['batch_in_epoch']} "
                f"does not match step {self.step} with {self.data.steps_per_epoch} steps per "
                f"epoch (data changed?)"
            )

    def add_callback(self, event: str, fn) -> None:
        """Run ``fn(trainer, ...)`` at ``event`` (one of :data:`EVENTS`)."""
        self.callbacks.add(event, fn)

    def fire(self, event: str, *args: Any) -> None:
        self.callbacks.fire(event, self, *args)
        hooks.fire(f"train.{event.removeprefix('on_')}", self, *args)

    # ---- the loop ---------------------------------------------------------------------------
    def fit(self) -> None:
        cfg, d = self.cfg, self.data
        bar = tqdm(
            total=d.stop_step,
            initial=self.step,
            desc=f"train {cfg.name}",
            unit="step",
            disable=not self.ctx.is_main,
            dynamic_ncols=True,
        )
        self.model.train()
        self.fire("on_train_start")
        while self.step < d.stop_step:
            for ir, vi in self.epoch_batches():
                self.train_step(ir, vi)
                bar.update(1)
                if self._due(cfg.log_every):
                    bar.set_postfix(self.log_interval())
                self.fire("on_step_end")
                if self._due(cfg.ckpt_every):
                    self.checkpoint()
                if self._due(cfg.val_every):
                    self.validate()
                if self.step == d.stop_step:
                    break
                self.tick = time.perf_counter()
        bar.close()
        self.export()

    def _due(self, every: int) -> bool:
        return self.step % every == 0 or self.step == self.data.stop_step

    def epoch_batches(self):
        """The rest of the current epoch's batches (mid-epoch after a resume)."""
        d = self.data
        epoch, batch_in_epoch = divmod(self.step, d.steps_per_epoch)
        d.sampler.set_epoch(epoch)
        d.sampler.set_start(batch_in_epoch * d.per_rank_batch)
        d.train_set.set_epoch(epoch)
        self.tick = time.perf_counter()
        return iter(d.loader)

    def train_step(self, ir: torch.Tensor, vi: torch.Tensor) -> None:
        dev = self.ctx.device
        ir, vi = ir.to(dev, non_blocking=True), vi.to(dev, non_blocking=True)
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=self.amp):
            fused = self.train_model(ir, vi)
            total, terms = self.loss_fn(ir, vi, fused)
        if not torch.isfinite(total):
            raise FloatingPointError(
                f"non-finite loss {total.item()} at step {self.step} (terms "
                f"{ {k: float(v) for k, v in terms.items()} }); lower optim.lr_peak?"
            )
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.optimizer.step()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        self.step += 1
        self.interval_steps += 1
        self.interval_time += time.perf_counter() - self.tick
        for k, v in {"loss": total.detach(), **terms}.items():
            self.sums[k] = self.sums.get(k, 0.0) + v.float()

    def log_interval(self) -> dict[str, str]:
        """Mean loss terms since the last log (over all ranks), lr and throughput; returns the bar text."""
        names = sorted(self.sums)
        means = mean_over_ranks(torch.stack([self.sums[k] for k in names]) / self.interval_steps, self.ctx)
        metrics = {f"train/{k}": float(v) for k, v in zip(names, means)}
        metrics["train/lr"] = self.optimizer.param_groups[0]["lr"]
        metrics["train/samples_per_s"] = (
            self.interval_steps * self.cfg.batch_size / max(self.interval_time, 1e-9)
        )
        self.fire("on_train_metrics", metrics)
        self.sums, self.interval_steps, self.interval_time = {}, 0, 0.0
        return {k.split("/")[1]: f"{v:.4g}" for k, v in metrics.items() if k != "train/samples_per_s"}

    def checkpoint(self) -> None:
        self.cost.update(self.ctx)
        if not self.ctx.is_main:
            return
        epoch, batch_in_epoch = divmod(self.step, self.data.steps_per_epoch)
        save_checkpoint(
            self.ckpt_path,
            {
                "step": self.step,
                "epoch": epoch,
                "batch_in_epoch": batch_in_epoch,
                "total_steps": self.data.total_steps,
                "config": self.cfg.to_dict(),
                "model": self.model.state_dict(),
                "ema": self.ema.state_dict() if self.ema is not None else None,
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "rng": rng_state(),
                "cost": self.cost.to_dict(),
                **self.checkpoint_extras,
            },
        )
        self.fire("on_checkpoint_saved", self.ckpt_path)

    @property
    def result_model(self) -> S4Fusion:
        """The weights validated and exported: the EMA's when enabled."""
        return self.ema.module if self.ema is not None else self.model

    def validate(self) -> None:
        """Held-out metrics (``val/<metric>`` and the reference baselines' lines, also in
        ``val/metrics.jsonl``) and the validation grid (``val/step_NNNNNNN.png``), then
        ``on_validation_end``."""
        metrics = self.data.held_out(
            self.result_model
        )  # {} unless rank 0 with data.val and validation.metrics
        self.cost.update(self.ctx)
        if metrics:
            metrics.update({"cost/wall_s": self.cost.wall_s, "cost/cpu_s": self.cost.cpu_s})
            record_metrics(self.out_dir / "val" / "metrics.jsonl", self.step, metrics)
        path = None
        if self.ctx.is_main and self.data.val_pairs:
            grid = validation_grid(self.result_model, self.data.val_pairs, self.ctx.device)
            path = write_atomic(
                self.out_dir / "val" / f"step_{self.step:07d}.png",
                lambda fh: Image.fromarray(grid).save(fh, format="PNG"),
            )
        self.fire("on_validation_end", metrics, path)

    def export(self) -> None:
        self.cost.update(self.ctx)
        if self.ctx.is_main:
            write_text_atomic(self.out_dir / COST_NAME, json.dumps(self.cost.to_dict(), indent=1) + "\n")
            export_path = self.result_model.save_exported(self.out_dir / EXPORT_NAME)
            self.fire("on_export_end", export_path)
        barrier(self.ctx)
