"""Command-line entry point: ``python -m pipelines.run <command> [options]``.

Each command lives in its own module of this package (``fuse_then_detect``: its ``cli`` module)
exposing ``add_arguments(parser)`` and ``main(args) -> int``; modules are imported lazily so
``--help`` and light commands stay fast. Input errors exit with code 2 (pipelines.cli_common).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# Before anything imports torch: idle OpenMP threads sleep instead of spinning, so torch ops and the
# numba selective-scan kernel do not starve each other (see fusion/__init__.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# command name -> (module under pipelines/, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "fuse": ("fuse", "fuse IR/VIS image pairs with S4Fusion (or a baseline) and write PNGs"),
    "check_data": ("check_data", "validate a dataset folder and print a summary"),
    "train_fusion": ("train_fusion", "train S4Fusion from a YAML config"),
    "evaluate": ("evaluate", "fusion metrics, Tables I-IV/VII style reports"),
    "held_out": (
        "held_out",
        "trained runs (e.g. cross-validation folds) against baselines on their held-out pairs, pair by pair",
    ),
    "analyze": (
        "analyze",
        "Table VIII (delta per CMSA layer) and Fig. 13 (ResNet50 entropy) of trained models",
    ),
    "ablate": (
        "ablate.cli",
        "Table V: train every ablation variant the same way, fuse, measure, compare to the paper",
    ),
    "fuse_then_detect": (
        "fuse_then_detect.cli",
        "fuse a detection dataset per method, train YOLO on each, compare mAP",
    ),
}


# What an interrupted command (Ctrl-C) tells the user; a command module may say otherwise in RESUME_HINT.
RESUME_HINT = "rerun the same command to resume: the outputs that finished are kept and reused"
INTERRUPTED_EXIT = 130  # the shell's code for a command ended by SIGINT


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # Build only the requested command's parser when we can (keeps imports light).
    if argv and argv[0] in COMMANDS:
        module = None
        try:
            module = importlib.import_module(f"pipelines.{COMMANDS[argv[0]][0]}")
            parser = argparse.ArgumentParser(
                prog=f"python -m pipelines.run {argv[0]}", description=COMMANDS[argv[0]][1]
            )
            module.add_arguments(parser)
            args = parser.parse_args(argv[1:])
            return int(module.main(args) or 0)
        except KeyboardInterrupt:  # Ctrl-C: one line saying how to go on, not the stack of wherever it landed
            hint = getattr(module, "RESUME_HINT", RESUME_HINT)
            print(f"\n{argv[0]}: interrupted; {hint}", file=sys.stderr)
            return INTERRUPTED_EXIT
    parser = argparse.ArgumentParser(prog="python -m pipelines.run")
    parser.add_argument("command", choices=sorted(COMMANDS))
    parser.epilog = "\n".join(f"  {k:18s} {v[1]}" for k, v in COMMANDS.items())
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.parse_args(argv)
    return 2


if __name__ == "__main__":
    sys.exit(main())
