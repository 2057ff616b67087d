"""``python -m pipelines.run check_data``: validate a dataset folder and print a summary (exit code 2
when the dataset has errors)."""

from __future__ import annotations

import argparse

from data.adapters import DATASET_NAMES
from data.dataset_check import check_dataset
from pipelines.cli_common import run_cli

# Ctrl-C (pipelines.run)
RESUME_HINT = "rerun the same command to check again (it writes nothing)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, choices=DATASET_NAMES, help="dataset layout")
    parser.add_argument("--root", required=True, help="dataset folder")
    parser.add_argument("--split", default=None, help="train or test, for msrs and llvip roots holding both")
    parser.add_argument(
        "--class-names",
        default=None,
        help="comma-separated class names (YOLO-labelled datasets without classes.txt)",
    )
    parser.add_argument("--max-errors", type=int, default=50, help="errors to print (all are counted)")


def _check(args: argparse.Namespace) -> int:
    names = [n.strip() for n in args.class_names.split(",")] if args.class_names else None
    report = check_dataset(args.dataset, args.root, split=args.split, class_names=names)
    print(report.summary(max_errors=args.max_errors))
    return 0 if report.ok else 2  # like every command: bad input -> exit code 2


def main(args: argparse.Namespace) -> int:
    return run_cli("check_data", lambda: _check(args))
