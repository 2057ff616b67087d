"""The ``ablate`` command line: options -> config -> :func:`run_ablation` -> Table V on screen."""

from __future__ import annotations

import argparse
import logging

from pipelines.ablate.config import AblationConfig, load_ablation_config
from pipelines.cli_common import add_run_folder_arguments, add_set_argument, run_cli, run_folder_overrides
from runtime.config_loader import ConfigError

DEFAULT_CONFIG = "table5_cpu.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        default=DEFAULT_CONFIG,
        help=f"YAML profile (default: experiments/{DEFAULT_CONFIG}; the paper's setting: "
        "experiments/table5_msrs.yaml)",
    )
    add_set_argument(parser, "base.max_steps=50")
    add_run_folder_arguments(parser)
    parser.add_argument(
        "--variants",
        default=None,
        help="comma-separated subset: Table V experiment numbers and/or variant names",
    )
    parser.add_argument("--check", action="store_true", help="validate the config and data, then stop")


def resolve_args(args: argparse.Namespace) -> AblationConfig:
    overrides = list(args.overrides) + run_folder_overrides(args)
    cfg = load_ablation_config(args.config, overrides)
    if args.variants:
        wanted = [s.strip() for s in args.variants.split(",") if s.strip()]
        named = {v.name: c for v, c in zip(cfg.resolved_variants(), cfg.variants)}
        by_exp = {str(c.exp): c for c in cfg.variants if c.exp is not None}
        unknown = [w for w in wanted if w not in named and w not in by_exp]
        if unknown:
            raise ConfigError(
                f"--variants: unknown {unknown}; the config has {list(named)} (exp {list(by_exp)})"
            )
        cfg.variants = [c for w in wanted for c in [named.get(w) or by_exp[w]]]
    return cfg


def _run(args: argparse.Namespace) -> int:
    from pipelines.ablate.driver import run_ablation

    cfg = resolve_args(args)
    if args.check:
        print(
            f"config {cfg.name}: OK ({len(cfg.variants)} variants: {[v.name for v in cfg.resolved_variants()]})"
        )
        return 0
    result = run_ablation(cfg)
    if result.report:
        print(result.report["markdown"].read_text(encoding="utf-8"))
    print(f"run folder: {result.run_dir}\nmlflow ui --backend-store-uri {result.tracking_uri}")
    for slug, failure in result.failures.items():
        print(f"variant {slug} FAILED: {failure.error}\n{failure.traceback}")
    return 1 if result.failures else 0


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return run_cli("ablate", lambda: _run(args))
