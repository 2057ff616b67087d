"""Run jobs as Ray tasks: one task per job, on a local Ray instance or a running cluster.

Ray schedules each task on a node with ``num_cpus``/``num_gpus`` free and sets
``CUDA_VISIBLE_DEVICES`` to the GPUs it reserved, so a job sees its GPU as device 0. Retries are
Ray's (``max_retries`` with ``retry_exceptions=True``: a raising job and a dead worker are both
retried). Results travel back to the driver; jobs must therefore return small picklable values
(paths, metrics), with large outputs written to the shared run folder.
"""

from __future__ import annotations

import secrets
import socket
from pathlib import Path
from typing import Any

from pipelines.executor.base import (
    Executor,
    ExecutorConfig,
    Job,
    JobContext,
    JobFailure,
    JobKey,
    SharedStorageError,
    call_job,
)

PROBE_TIMEOUT_S = 120.0


def _import_ray():
    try:
        import ray
    except ImportError as error:
        raise ImportError(
            "executor.kind: ray needs Ray: pip install -e '.[ray]' (or use --executor serial)"
        ) from error
    return ray


def _run_job(fn, key: JobKey, workers: int, inputs: dict, kwargs: dict) -> tuple[str, Any]:
    """The Ray task body: build the job's context on the worker, run the job; returns where it ran
    (the node of the attempt that succeeded, after any retry elsewhere) and its result."""
    import ray

    device = "0" if ray.get_gpu_ids() else "cpu"
    result = call_job(fn, JobContext(key, device=device, workers=workers, inputs=inputs), kwargs)
    node = f"{ray.util.get_node_ip_address()} ray node {ray.get_runtime_context().get_node_id()}"
    return node, result


def _probe_storage(run_dir: str, driver_file: str, driver_token: str, worker_token: str) -> dict[str, Any]:
    """The probe task: read the driver's token, write our own, report what happened."""
    folder = Path(run_dir)
    report: dict[str, Any] = {"host": socket.gethostname(), "read": False, "write_error": None}
    try:
        report["read"] = (folder / driver_file).read_text() == driver_token
    except OSError:
        pass
    try:
        (folder / f".storage-probe-worker-{worker_token}").write_text(worker_token)
    except OSError as error:
        report["write_error"] = f"{type(error).__name__}: {error}"
    return report


def job_slots(cfg: ExecutorConfig, nodes: list[dict[str, float]]) -> int:
    """How many jobs of ``cfg.cpus_per_job`` CPUs the alive nodes with these resources run at once."""
    return max(1, sum(int(r.get("CPU", 0) // cfg.cpus_per_job) for r in nodes))


def gpus_per_job_on(cfg: ExecutorConfig, nodes: list[dict[str, float]]) -> float:
    """``num_gpus`` of a GPU job on a cluster whose alive nodes have these resources:
    ``cfg.gpus_per_job`` when any node has GPUs, else 0 (Ray cannot place a GPU task on a
    cluster without GPUs). Refuses a job that no node can fit, which would wait forever."""
    num_gpus = float(cfg.gpus_per_job) if any(r.get("GPU", 0) > 0 for r in nodes) else 0.0
    if not any(r.get("CPU", 0) >= cfg.cpus_per_job and r.get("GPU", 0) >= num_gpus for r in nodes):
        nodes_cpu_gpu = [(r.get("CPU", 0), r.get("GPU", 0)) for r in nodes]
        raise ValueError(
            f"no Ray node has {cfg.cpus_per_job} CPUs and {num_gpus:g} GPUs for one job "
            f"(nodes' CPU, GPU: {nodes_cpu_gpu}); lower executor.cpus_per_job / gpus_per_job"
        )
    return num_gpus


class RayExecutor(Executor):
    """Submits ready jobs up to the cluster's CPU slots (its CPUs // ``cpus_per_job``, counted when it
    starts), so the driver, not Ray's queue, decides which ready job runs next (``Job.priority``);
    Ray places each one on a node with the CPUs/GPUs it reserves."""

    def __init__(self, cfg: ExecutorConfig) -> None:
        super().__init__(cfg)
        self._ray = _import_ray()
        self._started_ray = False
        self._refs: dict[Any, JobKey] = {}
        self._num_gpus = 0.0

    def __enter__(self) -> RayExecutor:
        ray = self._ray
        if not ray.is_initialized():
            try:
                # Workers' output (ultralytics' logs) stays in Ray's session logs: the driver shows one bar.
                ray.init(address=self.cfg.address, log_to_driver=False)
            except ConnectionError as error:
                raise ConnectionError(
                    f"could not join the Ray cluster at executor.address={self.cfg.address!r} "
                    f"({error}); start it with `ray start --head` on the head node, or set "
                    "executor.address: null for a local instance"
                ) from error
            self._started_ray = True
        nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
        self._num_gpus = gpus_per_job_on(self.cfg, nodes)
        self.max_in_flight = job_slots(self.cfg, nodes)
        self._remote = ray.remote(_run_job)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._started_ray:
            self._ray.shutdown()
            self._started_ray = False

    def check_storage(self, run_dir: str | Path) -> list[str]:
        """A probe task on every alive node reads a token the driver wrote into ``run_dir`` and
        writes its own, which the driver must then read. Raises :class:`SharedStorageError`
        naming each node that failed; returns the hosts checked."""
        ray = self._ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        run_dir = Path(run_dir).resolve()
        run_dir.mkdir(parents=True, exist_ok=True)
        driver_token = secrets.token_hex(16)
        driver_file = run_dir / f".storage-probe-driver-{driver_token}"
        driver_file.write_text(driver_token)
        probe = ray.remote(_probe_storage)
        options: dict[str, Any] = {"num_cpus": 0, "max_retries": 0}
        pending = {}
        for node in (n for n in ray.nodes() if n.get("Alive")):
            token = secrets.token_hex(16)
            strategy = NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
            ref = probe.options(scheduling_strategy=strategy, **options).remote(
                str(run_dir), driver_file.name, driver_token, token
            )
            pending[ref] = token
        try:
            reports = ray.get(list(pending), timeout=PROBE_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError as error:
            raise SharedStorageError(
                f"the storage probe did not finish on every Ray node within {PROBE_TIMEOUT_S:.0f} s; "
                "check the cluster (ray status)"
            ) from error
        finally:
            driver_file.unlink(missing_ok=True)
        problems = [
            p
            for report, token in zip(reports, pending.values())
            for p in _probe_problems(report, token, run_dir)
        ]
        if problems:
            raise SharedStorageError(
                f"run folder {run_dir} is not on storage every Ray node sees at the same path:\n  "
                + "\n  ".join(problems)
                + "\nPut runs_dir on a filesystem every node mounts at the same path (NFS, Lustre, a shared "
                "Kubernetes volume), or run with --executor serial."
            )
        return [report["host"] for report in reports]

    def _submit(self, job: Job, inputs: dict[JobKey, Any]) -> None:
        ref = self._remote.options(
            num_cpus=self.cfg.cpus_per_job,
            num_gpus=self._num_gpus if job.uses_gpu else 0,
            max_retries=self.cfg.max_retries,
            retry_exceptions=True,
        ).remote(job.fn, job.key, self.cfg.cpus_per_job, inputs, dict(job.kwargs))
        self._refs[ref] = job.key

    def _wait_any(self) -> tuple[JobKey, Any]:
        ray = self._ray
        [ref], _ = ray.wait(list(self._refs), num_returns=1)
        key = self._refs.pop(ref)
        try:
            self.placement[key], result = ray.get(ref)
            return key, result
        except ray.exceptions.RayTaskError as error:  # the job raised on its last attempt
            cause = error.cause if isinstance(error.cause, BaseException) else error
            return key, JobFailure(key, f"{type(cause).__name__}: {cause}", str(error))
        except ray.exceptions.RayError as error:  # the worker died (OOM, node lost) on its last attempt
            return key, JobFailure(key, f"{type(error).__name__}: {error}", str(error))


def _probe_problems(report: dict[str, Any], token: str, run_dir: Path) -> list[str]:
    host = report["host"]
    problems = []
    if not report["read"]:
        problems.append(f"node {host}: cannot read the driver's probe file in {run_dir}")
    if report["write_error"]:
        problems.append(f"node {host}: cannot write into {run_dir} ({report['write_error']})")
    else:
        worker_file = run_dir / f".storage-probe-worker-{token}"
        if worker_file.is_file() and worker_file.read_text() == token:
            worker_file.unlink()
        else:
            problems.append(f"node {host}: wrote a probe file into {run_dir} but the driver does not see it")
    return problems
