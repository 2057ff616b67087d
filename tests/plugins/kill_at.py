"""Kill points for the SIGKILL-resume tests: SIGKILL this process the ``n``-th time (default 1st) a
hook point of runtime.hooks fires.

A real SIGKILL (no cleanup, no ``finally``) at a named moment is deterministic where timing a kill
from outside is not. A child process cannot receive a fixture, so this file is also its launcher::

    python tests/plugins/kill_at.py train.step_end@3 -- -m pipelines.run train_fusion ...

subscribes the kill, then runs the module as ``python -m`` would (runpy), in this same process.
Points: runtime/hooks.py (``train.<trainer event>``, ``fuse.image``, ``yolo.export``,
``detector.batch``, ``job.start``).
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
from collections.abc import Callable
from pathlib import Path

USAGE = "usage: kill_at.py POINT[@N] -- -m MODULE [ARGS...]"


def install(spec: str) -> Callable[[], None]:
    """Subscribe a SIGKILL to ``POINT[@N]``; returns the function that unsubscribes it."""
    from runtime import hooks

    point, _, nth = spec.partition("@")
    wanted, hits = int(nth or 1), 0

    def kill(*args: object, **kwargs: object) -> None:
        nonlocal hits
        hits += 1
        if hits == wanted:
            os.kill(os.getpid(), signal.SIGKILL)

    return hooks.subscribe(point, kill)


def command(spec: str, module_args: list[str]) -> list[str]:
    """The argv that runs ``python -m <module_args>`` with the kill at ``spec`` installed."""
    return [sys.executable, str(Path(__file__).resolve()), spec, "--", "-m", *module_args]


def main(argv: list[str]) -> None:
    if len(argv) < 4 or argv[1:3] != ["--", "-m"]:
        raise SystemExit(USAGE)
    spec, module, args = argv[0], argv[3], argv[4:]
    # as `python -m`: the working directory first on the path, not this file's folder
    sys.path[0] = os.getcwd()
    install(spec)
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
