"""pipelines.executor: serial and Ray executors on a toy job DAG (fusion jobs, then detector jobs).

The Ray tests share one local instance with 2 CPUs (Ray starts in ~10 s); jobs reserve 1 CPU. The
instance declares one GPU that does not exist (Ray only counts it), so GPU reservation and
``CUDA_VISIBLE_DEVICES`` pinning are exercised on a CPU machine; no job here touches CUDA.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest
from plugins.storage_probe import probe_elsewhere

from pipelines.executor import (
    ExecutorConfig,
    Job,
    JobContext,
    JobFailure,
    SerialExecutor,
    SharedStorageError,
    make_executor,
    ray_executor,
)
from pipelines.executor.base import check_jobs
from pipelines.executor.ray_executor import gpus_per_job_on, job_slots
from runtime.config_loader import ConfigError

METHODS = ("IR", "VI", "avg")
SEEDS = (0, 1)


# ---- job functions (module level: Ray ships them to workers by value, see the ray fixture) --------
def fuse_job(ctx: JobContext, method: str, out: str) -> str:
    marker = Path(out) / f"fused-{method}"
    marker.write_text(method)
    return marker.name  # relative: the serial and Ray runs write into different folders


def detect_job(ctx: JobContext, method: str, seed: int, out: str) -> dict:
    fused = Path(out) / ctx.inputs[("fuse", method)]
    if not fused.is_file():  # the driver must keep the order: fusion before its detectors
        raise RuntimeError(f"{fused} missing: detector started before its fusion job")
    (Path(out) / f"detect-{method}-{seed}").write_text("done")
    return {
        "method": method,
        "seed": seed,
        "map50": (len(method) * 7 + seed * 3) % 10 / 10,
        "workers": ctx.workers,
        "fused": fused.name,
    }


def flaky_job(ctx: JobContext, marker: str, crash: bool = False) -> str:
    """Fails its first attempt (raises, or kills its worker process when ``crash``)."""
    marker_file = Path(marker)
    if not marker_file.exists():
        marker_file.write_text("first attempt")
        if crash:
            os._exit(1)
        raise RuntimeError("injected first-attempt failure")
    return "recovered"


def broken_job(ctx: JobContext, method: str) -> str:
    raise ValueError(f"bad weights for {method}")


def bad_config_job(ctx: JobContext, attempts: str) -> str:
    """Counts its attempts, then fails on bad input (a config error): retrying cannot fix that."""
    with open(attempts, "a") as f:
        f.write("x")
    raise ConfigError("report.fusion_metrics: unknown metric 'VIFF'")


def where_job(ctx: JobContext) -> dict:
    return {
        "device": ctx.device,
        "workers": ctx.workers,
        "resolved": ctx.resolve_device("auto"),
        "cuda_visible": os.environ.get("CUDA_VISIBLE_DEVICES") if ctx.device == "0" else None,
    }


def toy_dag(out: Path) -> list[Job]:
    jobs = [
        Job(("fuse", m), fuse_job, {"method": m, "out": str(out)}, uses_gpu=(m == "avg")) for m in METHODS
    ]
    jobs += [
        Job(("detect", m, s), detect_job, {"method": m, "seed": s, "out": str(out)}, after=(("fuse", m),))
        for m in METHODS
        for s in SEEDS
    ]
    return jobs[::-1]  # detectors listed first: the executor, not the list order, must keep the order


def failing_dag(out: Path) -> list[Job]:
    """The toy DAG with the fusion of 'VI' always failing: its detectors cannot run."""
    return [Job(j.key, broken_job, {"method": "VI"}) if j.key == ("fuse", "VI") else j for j in toy_dag(out)]


# ---- fixtures -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_instance():
    ray = pytest.importorskip("ray", reason="Ray tests need Ray: pip install -e '.[test]'")
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield ray
    ray.shutdown()


def ray_cfg(**kw) -> ExecutorConfig:
    return ExecutorConfig(kind="ray", cpus_per_job=1, **kw)


# ---- config and job validation (no Ray) -----------------------------------------------------------
def test_config_validation_names_every_problem():
    with pytest.raises(ValueError) as err:
        ExecutorConfig(kind="dask", gpus_per_job=-1, cpus_per_job=0, max_retries=1.5)
    for key in ("kind", "gpus_per_job", "cpus_per_job", "max_retries"):
        assert f"executor.{key}" in str(err.value)
    with pytest.raises(ValueError, match="only used with kind: ray"):
        ExecutorConfig(kind="serial", address="auto")
    with pytest.raises(ValueError, match="executor.address"):
        ExecutorConfig(kind="ray", address="not an address")
    for address in (None, "auto", "10.0.0.1:6379", "ray://head:10001"):
        assert ExecutorConfig(kind="ray", address=address).address == address
    assert ExecutorConfig(kind="ray", gpus_per_job=0.5).gpus_per_job == 0.5


def test_check_jobs_refuses_duplicates_unknown_dependencies_and_cycles():
    def job(key, *after):
        return Job(key, where_job, after=after)

    with pytest.raises(ValueError, match=r"duplicate job key \('a',\).*unknown job \('zz',\)"):
        check_jobs([job(("a",)), job(("a",)), job(("b",), ("zz",))])
    with pytest.raises(ValueError, match="dependency cycle"):
        check_jobs([job(("a",), ("b",)), job(("b",), ("a",)), job(("c",))])


# ---- serial ---------------------------------------------------------------------------------------
def test_serial_runs_the_dag_in_dependency_order(tmp_path):
    ended = []
    with SerialExecutor(ExecutorConfig(cpus_per_job=3)) as executor:
        results = executor.run(toy_dag(tmp_path), progress=False, on_job_end=lambda k, o: ended.append(k))
    assert not [r for r in results.values() if isinstance(r, JobFailure)]
    assert executor.placement == {k: f"{socket.gethostname()} (serial)" for k in results}
    for m in METHODS:
        assert all(ended.index(("fuse", m)) < ended.index(("detect", m, s)) for s in SEEDS)
        assert results[("detect", m, 1)]["workers"] == 3
    assert list(results) == [j.key for j in toy_dag(tmp_path)]
    assert make_executor(ExecutorConfig()).run([Job(("w",), where_job)], progress=False)[("w",)] == {
        "device": None,
        "workers": 2,
        "resolved": "auto",
        "cuda_visible": None,
    }  # serial does not pin devices


def test_ready_jobs_start_highest_priority_first(tmp_path):
    """The long chain (priority 1: a training and its detector) goes first, and its dependant jumps the
    queue as soon as it is ready; equal priorities keep the list order."""
    jobs = [
        Job(("a",), where_job),
        Job(("train",), where_job, priority=1),
        Job(("detect",), where_job, after=(("train",),), priority=1),
        Job(("b",), where_job),
    ]
    ended = []
    SerialExecutor(ExecutorConfig()).run(jobs, progress=False, on_job_end=lambda k, o: ended.append(k))
    assert ended == [("train",), ("detect",), ("a",), ("b",)]


def test_ray_submits_up_to_the_clusters_cpu_slots():
    assert job_slots(ExecutorConfig(kind="ray", cpus_per_job=1), [{"CPU": 2}]) == 2
    assert job_slots(ExecutorConfig(kind="ray", cpus_per_job=2), [{"CPU": 16, "GPU": 8}, {"CPU": 3}]) == 9
    assert job_slots(ExecutorConfig(kind="ray", cpus_per_job=4), [{"CPU": 2}]) == 1


def test_serial_retries_and_reports_failures(tmp_path):
    jobs = failing_dag(tmp_path) + [Job(("flaky",), flaky_job, {"marker": str(tmp_path / "m")})]
    results = SerialExecutor(ExecutorConfig(max_retries=1)).run(jobs, progress=False)
    assert results[("flaky",)] == "recovered"
    assert results[("fuse", "VI")].error == "ValueError: bad weights for VI"
    assert "broken_job" in results[("fuse", "VI")].traceback
    for s in SEEDS:
        assert results[("detect", "VI", s)].failed_dependency == ("fuse", "VI")
        assert results[("detect", "IR", s)]["method"] == "IR"
    ok = [k for k, r in results.items() if not isinstance(r, JobFailure)]
    assert len(ok) == len(jobs) - 3


def assert_failed_once_permanently(results: dict, attempts: Path) -> None:
    failure = results[("config",)]
    assert isinstance(failure, JobFailure) and failure.permanent
    assert failure.error == "ConfigError: report.fusion_metrics: unknown metric 'VIFF'"
    assert attempts.read_text() == "x"  # one attempt although max_retries=2
    assert results[("flaky",)] == "recovered"  # other errors are still retried


def test_serial_never_retries_a_config_error(tmp_path):
    jobs = [
        Job(("config",), bad_config_job, {"attempts": str(tmp_path / "attempts")}),
        Job(("flaky",), flaky_job, {"marker": str(tmp_path / "m")}),
    ]
    results = SerialExecutor(ExecutorConfig(max_retries=2)).run(jobs, progress=False)
    assert_failed_once_permanently(results, tmp_path / "attempts")


def test_progress_bar_counts_running_waiting_done_failed(tmp_path, capsys):
    SerialExecutor(ExecutorConfig(max_retries=0)).run(failing_dag(tmp_path), progress=True)
    final = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]
    assert "running=0" in final and "waiting=0" in final and "done=6" in final and "failed=3" in final


# ---- Ray ------------------------------------------------------------------------------------------
def test_ray_gives_the_serial_results(ray_instance, tmp_path):
    serial_out, ray_out = tmp_path / "serial", tmp_path / "ray"
    serial_out.mkdir(), ray_out.mkdir()
    serial = SerialExecutor(ExecutorConfig(cpus_per_job=1, max_retries=0)).run(
        toy_dag(serial_out), progress=False
    )
    with make_executor(ray_cfg(max_retries=0)) as executor:
        ray = executor.run(toy_dag(ray_out), progress=False)
        node = ray_instance.get_runtime_context().get_node_id()
    assert not [r for r in ray.values() if isinstance(r, JobFailure)], ray
    assert executor.placement == {
        job.key: f"{ray_instance.util.get_node_ip_address()} ray node {node}" for job in toy_dag(ray_out)
    }  # where each job ran (one node here)
    assert ray == serial and list(ray) == list(serial)
    assert sorted(p.name for p in ray_out.iterdir()) == sorted(p.name for p in serial_out.iterdir())


def test_ray_pins_the_reserved_gpu_as_device_0(ray_instance):
    jobs = [Job(("gpu",), where_job), Job(("cpu",), where_job, uses_gpu=False)]
    with make_executor(ray_cfg()) as executor:
        results = executor.run(jobs, progress=False)
    assert results[("gpu",)] == {"device": "0", "workers": 1, "resolved": "0", "cuda_visible": "0"}
    assert results[("cpu",)]["device"] == "cpu" and results[("cpu",)]["resolved"] == "cpu"


def test_gpus_per_job_applies_only_on_a_cluster_with_gpus():
    cfg = ExecutorConfig(kind="ray", gpus_per_job=0.5, cpus_per_job=4)
    assert gpus_per_job_on(cfg, [{"CPU": 8.0}, {"CPU": 4.0, "GPU": 2.0}]) == 0.5
    assert gpus_per_job_on(cfg, [{"CPU": 8.0}, {"CPU": 16.0}]) == 0.0  # CPU-only: jobs get num_gpus=0
    with pytest.raises(ValueError, match="no Ray node has 4 CPUs and 0.5 GPUs"):
        gpus_per_job_on(cfg, [{"CPU": 8.0}, {"CPU": 2.0, "GPU": 1.0}])  # CPUs and GPUs on different nodes


def test_ray_retries_a_raising_job_and_a_dead_worker(ray_instance, tmp_path):
    jobs = [
        Job(("raises",), flaky_job, {"marker": str(tmp_path / "raise")}),
        Job(("dies",), flaky_job, {"marker": str(tmp_path / "die"), "crash": True}),
    ]
    with make_executor(ray_cfg(max_retries=1)) as executor:
        results = executor.run(jobs, progress=False)
    assert results == {("raises",): "recovered", ("dies",): "recovered"}


def test_ray_never_retries_a_config_error(ray_instance, tmp_path):
    jobs = [
        Job(("config",), bad_config_job, {"attempts": str(tmp_path / "attempts")}),
        Job(("flaky",), flaky_job, {"marker": str(tmp_path / "m")}),
    ]
    with make_executor(ray_cfg(max_retries=2)) as executor:
        results = executor.run(jobs, progress=False)
    assert_failed_once_permanently(results, tmp_path / "attempts")


def test_ray_reports_a_failing_job_by_key_while_the_others_finish(ray_instance, tmp_path):
    with make_executor(ray_cfg(max_retries=1)) as executor:
        results = executor.run(failing_dag(tmp_path), progress=False)
    failure = results[("fuse", "VI")]
    assert isinstance(failure, JobFailure) and failure.key == ("fuse", "VI")
    assert failure.error == "ValueError: bad weights for VI"
    assert "bad weights for VI" in str(failure)
    assert {k for k, r in results.items() if isinstance(r, JobFailure)} == {
        ("fuse", "VI"),
        *(("detect", "VI", s) for s in SEEDS),
    }
    assert all(results[("detect", m, s)]["seed"] == s for m in ("IR", "avg") for s in SEEDS)


def test_ray_storage_check_accepts_a_shared_folder_and_refuses_one_workers_cannot_see(
    ray_instance, tmp_path, monkeypatch
):
    run_dir, elsewhere = tmp_path / "run", tmp_path / "other_mount"
    elsewhere.mkdir()
    with make_executor(ray_cfg()) as executor:
        assert len(executor.check_storage(run_dir)) == 1  # one node, this machine
        assert not [p for p in run_dir.iterdir() if p.name.startswith(".storage-probe")]  # probes cleaned up
        # a node that mounts another filesystem at the run folder's path (tests/plugins/storage_probe.py)
        monkeypatch.setattr(ray_executor, "_probe_storage", probe_elsewhere(elsewhere))
        with pytest.raises(SharedStorageError) as err:
            executor.check_storage(run_dir)
    message = str(err.value)
    assert str(run_dir) in message and "cannot read the driver's probe file" in message
    assert "the driver does not see it" in message and "--executor serial" in message


def test_ray_refuses_a_job_no_node_can_fit(ray_instance):
    with pytest.raises(ValueError, match="no Ray node has 64 CPUs"):
        with make_executor(ExecutorConfig(kind="ray", cpus_per_job=64)):
            pass
