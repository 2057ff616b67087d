"""The ``fuse_then_detect`` command line: options -> config -> :func:`run_pipeline` -> summary."""

from __future__ import annotations

import argparse
import json
import sys

from pipelines.cli_common import (
    add_run_folder_arguments,
    add_set_argument,
    configure_logging,
    run_cli,
    run_folder_overrides,
)
from pipelines.config import PipelineConfig, load_config
from runtime.config_loader import ConfigError
from runtime.errors import RunFolderError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        default=None,
        help="YAML profile (default: experiments/fuse_then_detect_demo.yaml; a bare file name is "
        "looked up in experiments/)",
    )
    add_set_argument(parser, "detector.epochs=5")
    add_run_folder_arguments(parser)
    parser.add_argument("--methods", default=None, help="comma-separated subset of the config's method names")
    parser.add_argument(
        "--seeds", default=None, help="comma-separated detector seeds (default: from the config)"
    )
    parser.add_argument(
        "--executor",
        choices=("serial", "ray"),
        default=None,
        help="run the jobs one after another here (serial) or as Ray tasks (ray, needs "
        "pip install -e '.[ray]'); default: the config's executor.kind (serial)",
    )
    parser.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDR",
        help="with --executor ray: null = start a local Ray instance on this machine, "
        "auto = join the cluster `ray start` runs here, or HOST:PORT / ray://HOST:PORT",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="validate the config, data and method inputs, then stop (no fusion or training)",
    )


def resolve_args(args: argparse.Namespace) -> PipelineConfig:
    overrides = list(args.overrides) + run_folder_overrides(args)
    if args.seeds:
        overrides.append(f"seeds=[{args.seeds}]")
    if getattr(args, "executor", None):
        overrides.append(f"executor.kind={args.executor}")
    if getattr(args, "ray_address", None):
        address = None if args.ray_address.lower() in ("null", "none", "local") else args.ray_address
        overrides.append(f"executor.address={json.dumps(address)}")
    wanted = [s.strip() for s in args.methods.split(",") if s.strip()] if args.methods else None
    return load_config(args.config, overrides, only_methods=wanted)  # left-out methods are not checked


def _run(args: argparse.Namespace) -> int:
    from pipelines.executor import SharedStorageError
    from pipelines.fuse_then_detect.orchestration import JobsFailedError, run_pipeline
    from pipelines.fuse_then_detect.report import summary_text
    from pipelines.fuse_then_detect.stages import check_inputs, prepare_data, synthetic_pending
    from pipelines.fuse_then_detect.types import RunContext

    cfg = resolve_args(args)
    if args.check:
        pending = synthetic_pending(cfg)
        if pending is not None:  # validate only: say what a run would generate, generate nothing
            print(
                f"config {cfg.name}: OK ({len(cfg.methods)} methods); a run would first generate "
                f"{cfg.dataset.synthetic_config().n_images} synthetic pairs into {pending} (not done by "
                "--check, so the data-dependent checks wait for that run)"
            )
            return 0
        data = prepare_data(cfg.dataset, cfg.run_dir)
        check_inputs(RunContext(cfg, data))
        print(
            f"config {cfg.name}: OK ({len(cfg.methods)} methods, dataset {cfg.dataset.name}: "
            f"{ {p: len(v) for p, v in data.split.items()} } pairs, split {data.split_hash[:12]})"
        )
        return 0
    try:
        result = run_pipeline(cfg)
    except SharedStorageError as exc:  # an input problem of the set-up: one clear message, exit 2
        raise RunFolderError(str(exc)) from exc
    except ImportError as exc:
        if "needs Ray" not in str(
            exc
        ):  # pipelines.executor's "executor.kind: ray needs Ray: pip install ..."
            raise
        raise ConfigError(str(exc)) from exc
    except JobsFailedError as exc:
        print(f"fuse_then_detect: {exc}", file=sys.stderr)
        return 1
    print(summary_text(result, cfg))
    return 0


def main(args: argparse.Namespace) -> int:
    configure_logging()
    return run_cli("fuse_then_detect", lambda: _run(args))
