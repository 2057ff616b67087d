"""Executors for the fuse-then-detect jobs: run a DAG of independent jobs serially or on Ray.

A :class:`Job` is a key such as ``("detect", "S4Fusion", 0)``, a picklable module-level function
``fn(ctx, **kwargs)``, the keys of the jobs it runs after, and whether it wants a GPU. An executor
runs a list of jobs and returns ``{key: result or JobFailure}``; a job's failure (after its
retries) never stops the others, only the jobs that depend on it. The driver (the caller) does
every side effect that must happen once, e.g. MLflow: executors never touch it.

``SerialExecutor`` runs in this process and needs no Ray; ``RayExecutor`` submits Ray tasks
(``pip install -e '.[ray]'``) and imports ``ray`` only when used. Imports: the standard library,
tqdm, (lazily) ray, and runtime.errors (bad input -- :class:`runtime.errors.InputError` -- fails a job at
once: retrying cannot fix it).
"""

from pipelines.executor.base import (
    Executor,
    ExecutorConfig,
    Job,
    JobContext,
    JobFailure,
    JobKey,
    SharedStorageError,
)
from pipelines.executor.serial import SerialExecutor


def make_executor(cfg: ExecutorConfig) -> Executor:
    """The executor ``cfg.kind`` names; use it as a context manager (Ray starts/stops there)."""
    if cfg.kind == "ray":
        from pipelines.executor.ray_executor import RayExecutor

        return RayExecutor(cfg)
    return SerialExecutor(cfg)


__all__ = [
    "Executor",
    "ExecutorConfig",
    "Job",
    "JobContext",
    "JobFailure",
    "JobKey",
    "SerialExecutor",
    "SharedStorageError",
    "make_executor",
]
