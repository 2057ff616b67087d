"""The trainer's MLflow logging as trainer callbacks (docs/training.md, "Callbacks").

:class:`MlflowTrainLogger` is registered by whoever configures tracking: the ``train_fusion`` command
(its own run, from ``cfg.tracking``) or a pipeline that trains inside one of its runs (the caller's
:class:`~runtime.tracking.RunHandle`, often a recording one that its driver replays). The training loop
itself knows nothing of MLflow.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from data.io import digest
from data.splits import split_hash
from runtime.config_loader import flatten
from runtime.tracking import RunHandle, Tracker, default_tracking_uri

if TYPE_CHECKING:
    from fusion.train.config import TrainConfig
    from fusion.train.trainer import Trainer

# the checkpoint key that remembers the run, so that a resumed training continues it
RUN_ID_KEY = "mlflow_run_id"


def open_run(cfg: TrainConfig, out_dir: Path, run_id: str | None) -> RunHandle:
    """This config's own run in ``cfg.tracking``'s store (resumed by id after an interruption)."""
    tracker = Tracker(
        cfg.tracking.uri or default_tracking_uri(out_dir),
        cfg.tracking.experiment,
        artifact_dir=out_dir / "mlartifacts",
    )
    if run_id is not None:
        return tracker.handle(tracker.reopen(run_id))
    # No checkpoint yet: an attempt killed before its first checkpoint left this run RUNNING; reuse it.
    found, finished = tracker.start_run(
        digest([str(out_dir.resolve()), cfg.to_dict()], 24), cfg.name, "train"
    )
    return tracker.handle(tracker.new_run(cfg.name, "train") if finished else found)


class MlflowTrainLogger:
    """Params at the start, interval curves, validation metrics and grids, and at the end the export,
    the trained-on split and (own run only) the pyfunc model. Only the main rank logs.

    ``run``: a caller's run to log into (the caller finishes it and logs the model itself), or None for
    the config's own run (``cfg.tracking``), which this logger opens, remembers in the checkpoints and
    finishes."""

    def __init__(self, run: RunHandle | None = None) -> None:
        self.caller_run = None if run is None else RunHandle(run.tracker, run.run_id, owns_run=False)
        self.run: RunHandle | None = None
        self.logged_through = 0  # steps a killed attempt logged after its last checkpoint

    def on_train_start(self, trainer: Trainer) -> None:
        if not trainer.ctx.is_main:
            return
        state = trainer.state or {}
        self.run = self.caller_run or open_run(trainer.cfg, trainer.out_dir, state.get(RUN_ID_KEY))
        if self.run.owns_run:
            trainer.checkpoint_extras[RUN_ID_KEY] = self.run.run_id
        # steps a killed attempt logged after its last checkpoint are not logged twice on resume
        self.logged_through = self.run.tracker.last_step(self.run.run_id, "train/loss")
        if trainer.state is None:
            self.run.log_params(training_params(trainer))
            perception = trainer.loss_fn.perception
            if perception is not None and perception.source == "random":
                self.run.set_tags(
                    {"WARNING": "perception.weights=random: untrained ResNet50 in the loss (not the paper's)"}
                )

    def on_train_metrics(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        if self.run is not None and trainer.step > self.logged_through:
            self.run.log_metrics(metrics, trainer.step)

    def on_validation_end(self, trainer: Trainer, metrics: dict[str, float], grid: Path | None) -> None:
        if self.run is None:
            return
        if metrics:
            self.run.log_metrics(metrics, trainer.step)
        if grid is not None:
            self.run.log_artifact(grid, "val")

    def on_export_end(self, trainer: Trainer, export_path: Path) -> None:
        if self.run is None:
            return
        from fusion.mlflow_model import log_s4fusion_model, log_training_split

        self.run.log_artifact(export_path, "model")
        log_training_split(self.run, trainer.data.split, trainer.out_dir / "fusion_split")
        if self.run.owns_run:  # a caller's run (fuse_then_detect) logs the model itself, in its driver
            log_s4fusion_model(self.run, export_path)
        self.run.finish()


def training_params(trainer: Trainer) -> dict[str, Any]:
    """The run's params: the flattened config and what the data and model came to."""
    d, perception = trainer.data, trainer.loss_fn.perception
    params = {f"train.{k}": v for k, v in flatten(trainer.cfg.to_dict()).items()}
    params.update(
        {
            "train.world_size": trainer.ctx.world_size,
            "train.steps_per_epoch": d.steps_per_epoch,
            "train.total_steps": d.total_steps,
            "train.num_pairs": len(d.train_set),
            "train.fusion_split_sha256": split_hash(d.split),
            "train.perception_weights": perception.source if perception else "unused",
            "train.model_parameters": trainer.model.num_parameters(),
        }
    )
    return params


def tracking_callbacks(cfg: TrainConfig) -> list[MlflowTrainLogger]:
    """What the ``train_fusion`` command registers: the MLflow logger when ``cfg.tracking.enabled``."""
    return [MlflowTrainLogger()] if cfg.tracking.enabled else []
