"""What every command line shares: the ``--set KEY=VALUE`` option and the error policy.

Error policy: a typed input error (runtime.errors.InputError and its subclasses: config, dataset,
image, checkpoint, run folder) is printed as one line on stderr, ``<command>: error: <message>``,
and the command exits with code 2; any other exception is a bug and propagates with its traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable

from runtime.errors import InputError


def add_set_argument(parser: argparse.ArgumentParser, example: str) -> None:
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a config key (repeatable; value as YAML, coerced to the key's type; "
        f"list items by index, e.g. data.train.0.root=PATH), e.g. --set {example}",
    )


def add_run_folder_arguments(parser: argparse.ArgumentParser) -> None:
    """``--runs-dir`` and ``--tracking-uri``, shared by the commands that own a run folder."""
    parser.add_argument("--runs-dir", default=None, help="run folder (default: runs/<config name>)")
    parser.add_argument(
        "--tracking-uri", default=None, help="MLflow tracking URI (default: sqlite:///<run folder>/mlflow.db)"
    )


def run_folder_overrides(args: argparse.Namespace) -> list[str]:
    """``--set`` overrides for the options of :func:`add_run_folder_arguments` that were given."""
    overrides = []
    if args.runs_dir:
        overrides.append(f"runs_dir={json.dumps(str(args.runs_dir))}")
    if args.tracking_uri:
        overrides.append(f"tracking.uri={json.dumps(args.tracking_uri)}")
    return overrides


OUR_PACKAGES = ("pipelines", "fusion", "detection", "data")


def configure_logging(fmt: str = "%(message)s") -> None:
    """INFO from s4fuse's own packages; other libraries (MLflow, alembic, ...) only from WARNING up,
    so their INFO lines never mix into a command's output (MLflow sets its own logger up on import,
    from MLFLOW_LOGGING_LEVEL)."""
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    logging.getLogger("mlflow").setLevel(os.environ["MLFLOW_LOGGING_LEVEL"].upper())
    logging.basicConfig(level=logging.WARNING, format=fmt)
    for name in OUR_PACKAGES:
        logging.getLogger(name).setLevel(logging.INFO)


def run_cli(command: str, body: Callable[[], int]) -> int:
    """Run ``body``; map typed input errors to one stderr line and exit code 2."""
    try:
        return int(body() or 0)
    except InputError as exc:
        print(f"{command}: error: {exc}", file=sys.stderr)
        return 2
