"""Fault injection for the executor's retry/failure tests: a subscriber to the ``job.start`` hook point
(runtime.hooks, fired by pipelines.executor before every job) that raises in the jobs a rules file names.

Rules: a JSON file ``[{"key": ["detect", "VI", 1], "times": 1}]`` (times: how many attempts fail; null:
all). Attempts are counted in files beside it (``<rules>.<key>.attempts``), so every process that runs
jobs (a Ray worker, a retry elsewhere) counts together. No rules file: no faults. Install it with
:func:`installed` (jobs in this process: the serial executor) or :func:`ray_runtime_env` (every Ray
worker process, through Ray's worker setup hook).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class JobFaults:
    """The ``job.start`` subscriber: raises ``RuntimeError("injected fault ...")`` where the rules say."""

    def __init__(self, rules_file: str | Path) -> None:
        self.rules_file = Path(rules_file)

    def __call__(self, key: tuple) -> None:
        if not self.rules_file.is_file():
            return
        for rule in json.loads(self.rules_file.read_text()):
            if tuple(rule["key"]) != tuple(key):
                continue
            attempts = Path(f"{self.rules_file}.{'-'.join(map(str, key))}.attempts")
            n = int(attempts.read_text()) if attempts.is_file() else 0
            attempts.write_text(str(n + 1))
            if rule.get("times") is None or n < rule["times"]:
                raise RuntimeError(f"injected fault in job {key}, attempt {n + 1}")


def install(rules_file: str | Path) -> Callable[[], None]:
    """Subscribe the faults of ``rules_file`` in this process; returns the function that unsubscribes."""
    from runtime import hooks

    return hooks.subscribe("job.start", JobFaults(rules_file))


@contextmanager
def installed(rules_file: str | Path) -> Iterator[None]:
    unsubscribe = install(rules_file)
    try:
        yield
    finally:
        unsubscribe()


def ray_runtime_env(rules_file: str | Path) -> dict[str, Any]:
    """``ray.init(runtime_env=...)`` that installs the faults in every worker process as it starts.

    Ray runs the setup hook before it gives the worker the driver's ``sys.path``, so the hook carries
    that path itself (tests/ for this module, the checkout before any installed copy) and imports this
    module only then; it is pickled by value (a nested function)."""
    rules, driver_path = str(rules_file), list(sys.path)

    def install_job_faults() -> None:  # Ray wants a named function, called with no arguments
        import sys

        sys.path[:0] = [p for p in driver_path if p not in sys.path]
        from plugins.job_faults import install

        install(rules)

    return {"worker_process_setup_hook": install_job_faults}
