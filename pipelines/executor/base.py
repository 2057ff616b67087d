"""Jobs, their outcomes, the executor config and the driver loop both executors share.

The driver loop keeps the dependency order: a job is submitted as soon as every job it runs
``after`` has finished, everything that is ready is submitted at once (up to the backend's
``max_in_flight``, highest ``priority`` first), and a failed job marks its dependants as not
run, naming the failed key.
"""

from __future__ import annotations

import re
import time
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from runtime import hooks
from runtime.errors import InputError

JobKey = tuple[Hashable, ...]
EXECUTOR_KINDS = ("serial", "ray")
_RAY_ADDRESS = re.compile(r"^(auto|(ray://)?[A-Za-z0-9_.\-\[\]:]+:\d+)$")


class SharedStorageError(RuntimeError):
    """The run folder is not on storage that the driver and every Ray node see at the same path."""


@dataclass
class ExecutorConfig:
    """How the jobs run (the ``executor:`` section of a pipeline config).

    ``kind``: ``serial`` (this process, no Ray needed) or ``ray``. ``address`` (ray only):
    ``None`` starts a local Ray instance on this machine's resources, ``auto`` joins the cluster
    started with ``ray start`` on this node, ``HOST:PORT`` / ``ray://HOST:PORT`` joins that one.
    ``gpus_per_job``: GPUs a GPU job reserves (fractions share a GPU). It applies only when the
    cluster has GPUs: Ray cannot schedule a task asking for GPUs on a cluster without any, so
    on a CPU-only cluster every job gets ``num_gpus=0`` and runs on the CPU.
    ``cpus_per_job``: CPUs a job reserves, told to the job as ``workers`` (both executors, so a
    serial and a Ray run train identically; fuse_then_detect runs torch on that many threads
    and ``cpus_per_job - 1`` dataloader workers). ``max_retries``: extra attempts of a job that
    raises or whose worker dies (Ray's ``max_retries`` with ``retry_exceptions=True``); never of a
    job that fails on bad input (:func:`call_job`).
    """

    kind: str = "serial"
    address: str | None = None
    gpus_per_job: float = 1.0
    cpus_per_job: int = 2
    max_retries: int = 2

    def __post_init__(self) -> None:
        problems = []
        if self.kind not in EXECUTOR_KINDS:
            problems.append(f"executor.kind must be one of {list(EXECUTOR_KINDS)}, got {self.kind!r}")
        if self.address is not None:
            if self.kind != "ray":
                problems.append("executor.address is only used with kind: ray; remove it or set kind: ray")
            elif not isinstance(self.address, str) or not _RAY_ADDRESS.match(self.address):
                problems.append(
                    f"executor.address must be null, 'auto' or HOST:PORT (ray://HOST:PORT), "
                    f"got {self.address!r}"
                )
        if not _is_number(self.gpus_per_job) or self.gpus_per_job < 0:
            problems.append(f"executor.gpus_per_job must be a number >= 0, got {self.gpus_per_job!r}")
        if not _is_int(self.cpus_per_job) or self.cpus_per_job < 1:
            problems.append(f"executor.cpus_per_job must be an integer >= 1, got {self.cpus_per_job!r}")
        if not _is_int(self.max_retries) or self.max_retries < 0:
            problems.append(f"executor.max_retries must be an integer >= 0, got {self.max_retries!r}")
        if problems:
            raise ValueError("; ".join(problems))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class JobContext:
    """What the executor tells a job about where it runs (its first argument).

    ``device``: ``"0"`` when the executor pinned a GPU (Ray sets ``CUDA_VISIBLE_DEVICES`` to the
    task's GPU, so inside the task it is device 0), ``"cpu"`` when the job got none, ``None``
    when the executor does not pin devices (serial: the job keeps its configured device).
    ``workers``: CPUs the job may use (= ``cpus_per_job``). ``inputs``: results of the jobs this
    one runs after, by key.
    """

    key: JobKey
    device: str | None
    workers: int
    inputs: Mapping[JobKey, Any] = field(default_factory=dict)

    def resolve_device(self, configured: str) -> str:
        """The device to hand to ultralytics/torch: the pinned one, else ``configured``."""
        return configured if self.device is None else self.device


@dataclass(frozen=True)
class Job:
    """One unit of work: ``fn(ctx, **kwargs)`` returns a picklable result.

    ``fn`` must be a module-level function importable on every worker; ``after`` lists the keys
    of jobs that must finish first; ``uses_gpu=False`` makes it reserve no GPU (e.g. a
    classical fusion baseline). ``priority``: among ready jobs, higher ones are submitted first
    (e.g. the long chain of an in-run training and its detectors), then in list order.
    """

    key: JobKey
    fn: Callable[..., Any]
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    after: tuple[JobKey, ...] = ()
    uses_gpu: bool = True
    priority: int = 0


@dataclass(frozen=True)
class JobFailure:
    """A job that did not produce a result: its error after all retries, or a failed dependency."""

    key: JobKey
    error: str  # "<ExceptionType>: <message>" as raised in the worker
    traceback: str = ""
    failed_dependency: JobKey | None = None  # set when the job was not run because of it
    permanent: bool = False  # bad input (a config, a file): not retried, a rerun fails the same way

    def __str__(self) -> str:
        return f"job {self.key} failed: {self.error}"


def call_job(fn: Callable[..., Any], ctx: JobContext, kwargs: Mapping[str, Any]) -> Any:
    """``fn(ctx, **kwargs)``, with bad input (:class:`runtime.errors.InputError`: a config error, a
    corrupt file) returned as a permanent :class:`JobFailure` instead of raised: a retry cannot fix
    it, and an exception returned is one neither executor retries (Ray retries what a task raises).

    Fires the hook point ``job.start`` (runtime.hooks) with the job's key first, in the process that runs
    the job: a subscriber that raises is a failing attempt (tests inject faults there)."""
    try:
        hooks.fire("job.start", ctx.key)
        return fn(ctx, **kwargs)
    except InputError as error:
        return JobFailure(ctx.key, f"{type(error).__name__}: {error}", traceback.format_exc(), permanent=True)


def check_jobs(jobs: Sequence[Job]) -> None:
    """Refuse duplicate keys, unknown dependencies and cycles, naming every offending key."""
    keys = [job.key for job in jobs]
    problems = [f"duplicate job key {k}" for k in sorted({k for k in keys if keys.count(k) > 1}, key=repr)]
    known = set(keys)
    problems += [
        f"job {job.key} runs after unknown job {d}" for job in jobs for d in job.after if d not in known
    ]
    if not problems:
        done: set[JobKey] = set()
        remaining = list(jobs)
        while remaining:
            ready = [job for job in remaining if all(d in done for d in job.after)]
            if not ready:
                problems.append(f"dependency cycle among jobs {[job.key for job in remaining]}")
                break
            done |= {job.key for job in ready}
            remaining = [job for job in remaining if job.key not in done]
    if problems:
        raise ValueError("invalid job list: " + "; ".join(problems))


class JobProgress:
    """One bar over all jobs (its ETA is tqdm's), whose postfix counts running, waiting (on
    dependencies), done, failed, and one console line per finished job: its key, how long it ran,
    where, and the ETA of the whole run. Never a line per image: a job's own loops show no bar.
    With Ray, running = submitted: running, or queued by Ray until a GPU/CPU frees up."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.bar = tqdm(total=total, desc="jobs", unit="job", disable=not enabled)
        self.enabled = enabled
        self.counts = {"running": 0, "waiting": total, "done": 0, "failed": 0}
        self._started: dict[JobKey, float] = {}
        self._show()

    def started(self, key: JobKey) -> None:
        self._started[key] = time.perf_counter()
        self.counts["waiting"] -= 1
        self.counts["running"] += 1
        self._show()

    def finished(self, key: JobKey, outcome: Any, was_running: bool, where: str | None = None) -> None:
        self.counts["running" if was_running else "waiting"] -= 1
        self.counts["failed" if isinstance(outcome, JobFailure) else "done"] += 1
        self.bar.update(1)
        self._show()
        if self.enabled:
            self.bar.write(self._line(key, outcome, was_running, where))

    def _line(self, key: JobKey, outcome: Any, was_running: bool, where: str | None) -> str:
        name = "/".join(map(str, key))
        if not was_running:
            what = f"not run  {name}: {outcome.error}"
        else:
            seconds = time.perf_counter() - self._started.pop(key)
            status = "FAILED" if isinstance(outcome, JobFailure) else "done"
            what = f"{status:<8} {name} in {tqdm.format_interval(seconds)}" + (
                f" on {where}" if where else ""
            )
            if isinstance(outcome, JobFailure):
                what += f": {outcome.error}"
        info = self.bar.format_dict
        finished = info["n"]
        eta = (
            tqdm.format_interval(info["elapsed"] / finished * (info["total"] - finished))
            if finished < info["total"]
            else "0:00"
        )
        return f"[{finished}/{info['total']} jobs, ETA {eta}] {what}"

    def _show(self) -> None:
        self.bar.set_postfix(self.counts, refresh=True)

    def close(self) -> None:
        self.bar.close()


class Executor(ABC):
    """Runs a job DAG; subclasses submit one job and wait for any submitted one to finish."""

    max_in_flight: int | None = None  # None: submit every ready job at once

    def __init__(self, cfg: ExecutorConfig) -> None:
        self.cfg = cfg
        # where each finished job ran ("<ip> ray node <id>", or this host for the serial executor),
        # filled before ``on_job_end`` is called for it
        self.placement: dict[JobKey, str] = {}

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def check_storage(self, run_dir: str | Path) -> list[str]:
        """Refuse (:class:`SharedStorageError`) a run folder the workers cannot see; returns the
        nodes checked. Every worker of the serial executor is this process, so nothing to check."""
        return []

    def run(
        self,
        jobs: Sequence[Job],
        progress: bool = True,
        on_job_end: Callable[[JobKey, Any], None] | None = None,
    ) -> dict[JobKey, Any]:
        """Run every job; returns ``{key: result or JobFailure}`` in the order of ``jobs``.

        ``on_job_end(key, outcome)`` is called in this (the driver's) process as each job ends,
        in completion order: the place for MLflow logging and other once-only side effects.
        """
        check_jobs(jobs)
        waiting = {
            job.key: job for job in sorted(jobs, key=lambda job: -job.priority)
        }  # stable: list order next
        in_flight: set[JobKey] = set()
        outcomes: dict[JobKey, Any] = {}
        bar = JobProgress(len(jobs), progress)

        def finish(key: JobKey, outcome: Any, was_running: bool) -> None:
            outcomes[key] = outcome
            bar.finished(key, outcome, was_running, self.placement.get(key))
            if on_job_end is not None:
                on_job_end(key, outcome)

        try:
            while waiting or in_flight:
                for job in list(waiting.values()):
                    failed = next((d for d in job.after if isinstance(outcomes.get(d), JobFailure)), None)
                    if failed is not None:
                        del waiting[job.key]
                        finish(
                            job.key, JobFailure(job.key, f"not run: job {failed} failed", "", failed), False
                        )
                    elif all(d in outcomes for d in job.after) and (
                        self.max_in_flight is None or len(in_flight) < self.max_in_flight
                    ):
                        del waiting[job.key]
                        in_flight.add(job.key)
                        bar.started(job.key)
                        inputs = {d: outcomes[d] for d in job.after}
                        self._submit(job, inputs)
                if in_flight:
                    key, outcome = self._wait_any()
                    in_flight.discard(key)
                    finish(key, outcome, True)
        finally:
            bar.close()
        return {job.key: outcomes[job.key] for job in jobs}

    @abstractmethod
    def _submit(self, job: Job, inputs: dict[JobKey, Any]) -> None:
        """Start ``job`` (or queue it) with its dependencies' results."""

    @abstractmethod
    def _wait_any(self) -> tuple[JobKey, Any]:
        """Block until one submitted job ends; its key and result or :class:`JobFailure`."""
