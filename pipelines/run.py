"""Command-line entry point: ``python -m pipelines.run <command> [options]``.

Each command lives in its own module of this package exposing ``add_arguments(parser)`` and
``main(args) -> int``; modules are imported lazily so ``--help`` and light commands stay fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# command name -> (module under pipelines/, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "fuse": ("fuse", "fuse IR/VIS image pairs with S4Fusion (or a baseline) and write PNGs"),
    "check_data": ("check_data", "validate a dataset folder and print a summary"),
    "train_fusion": ("train_fusion", "train S4Fusion from a YAML config"),
    "evaluate": ("evaluate", "fusion metrics, Tables I-IV/VII style reports"),
    "fuse_then_detect": ("fuse_then_detect", "fuse a detection dataset per method, train YOLO on each, compare mAP"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipelines.run", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    for name, (module_name, help_text) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        module = importlib.import_module(f"pipelines.{module_name}")
        module.add_arguments(sp)
        sp.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # Build only the requested command's parser when we can (keeps imports light).
    if argv and argv[0] in COMMANDS:
        module = importlib.import_module(f"pipelines.{COMMANDS[argv[0]][0]}")
        parser = argparse.ArgumentParser(prog=f"python -m pipelines.run {argv[0]}",
                                         description=COMMANDS[argv[0]][1])
        module.add_arguments(parser)
        args = parser.parse_args(argv[1:])
        return int(module.main(args) or 0)
    parser = argparse.ArgumentParser(prog="python -m pipelines.run")
    parser.add_argument("command", choices=sorted(COMMANDS))
    parser.epilog = "\n".join(f"  {k:18s} {v[1]}" for k, v in COMMANDS.items())
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.parse_args(argv)
    return 2


if __name__ == "__main__":
    sys.exit(main())
