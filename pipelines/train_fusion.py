"""``python -m pipelines.run train_fusion --config experiments/<name>.yaml [--resume] [--out DIR] [--set key=value ...]``

Trains S4Fusion (fusion.train). Multi-GPU / multi-node: ``torchrun --nproc_per_node=N -m pipelines.run
train_fusion ...`` (same arguments). Overrides use dotted keys with YAML values coerced to the
field's type, list items by index: ``--set max_steps=100 --set optim.lr_peak=1e-3
--set data.train.0.root=/data/MSRS``. The older positional ``key=value`` form is still accepted.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from pipelines.cli_common import add_set_argument, configure_logging, run_cli

# Ctrl-C (pipelines.run)
RESUME_HINT = (
    "rerun the same command with --resume to continue from the last checkpoint (<out>/checkpoints/last.pt)"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        required=True,
        type=Path,
        help="training YAML (see experiments/train_s4fusion_*.yaml; a bare name is looked up there)",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="run directory (default: runs/train_fusion/<name>)"
    )
    parser.add_argument("--resume", action="store_true", help="continue from <out>/checkpoints/last.pt")
    parser.add_argument(
        "--tracking-uri", default=None, help="MLflow tracking URI (default: sqlite:///<out>/mlflow.db)"
    )
    add_set_argument(parser, "optim.lr_peak=1e-3")
    parser.add_argument(
        "positional_overrides", nargs="*", metavar="key=value", help="deprecated spelling of --set key=value"
    )


def _train(args: argparse.Namespace) -> int:
    from fusion.train import TrainConfig, train
    from fusion.train.mlflow_logger import tracking_callbacks

    overrides = list(args.positional_overrides) + list(args.overrides)
    if args.tracking_uri:
        overrides.append(f"tracking.uri={args.tracking_uri}")
    cfg = TrainConfig.from_yaml(args.config, overrides)
    out = args.out if args.out is not None else Path("runs") / "train_fusion" / cfg.name
    # this command configures tracking: its MLflow logging is a trainer callback (docs/training.md)
    exported = train(cfg, out, resume=args.resume, callbacks=tracking_callbacks(cfg))
    if os.environ.get("RANK", "0") == "0":  # under torchrun, once
        print(f"exported model: {exported}")
    return 0


def main(args: argparse.Namespace) -> int:
    configure_logging("%(levelname)s %(name)s: %(message)s")
    return run_cli("train_fusion", lambda: _train(args))
