"""``python -m pipelines.run train_fusion --config experiments/<name>.yaml [--resume] [--out DIR] [key=value ...]``

Trains S4Fusion (fusion.train). Multi-GPU / multi-node: ``torchrun --nproc_per_node=N -m pipelines.run
train_fusion ...`` (same arguments). Overrides use dotted keys with YAML values, list items by
index: ``max_steps=100 optim.lr_peak=1e-3 data.train.0.root=/data/MSRS``.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from fusion.train import CheckpointError, TrainConfig, train


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, type=Path, help="training YAML (see experiments/train_s4fusion_*.yaml)")
    parser.add_argument("--out", type=Path, default=None, help="run directory (default: runs/train_fusion/<name>)")
    parser.add_argument("--resume", action="store_true", help="continue from <out>/checkpoints/last.pt")
    parser.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: sqlite:///<out>/mlflow.db)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides (YAML values)")


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    overrides = list(args.overrides)
    if args.tracking_uri:
        overrides.append(f"tracking.uri={args.tracking_uri}")
    try:
        cfg = TrainConfig.from_yaml(args.config, overrides)
        out = args.out if args.out is not None else Path("runs") / "train_fusion" / cfg.name
        exported = train(cfg, out, resume=args.resume)
    except (FileNotFoundError, FileExistsError, ValueError, CheckpointError) as e:
        print(f"train_fusion: error: {e}", file=sys.stderr)
        return 2
    print(f"exported model: {exported}")
    return 0
