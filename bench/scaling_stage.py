"""One stage of ``bench.scaling`` in a process of its own (clean peak RSS), on one size's config.

    python -m bench.scaling_stage STAGE CONFIG.yaml RESULT.json [--s4fusion-every K]

It imports everything first, then times the stage body: wall (``time.perf_counter``) and CPU (this
process plus its reaped children, ``resource.getrusage``), and writes RESULT.json: those two, the
folders the stage wrote (the parent measures their disk) and the images its loop processed. Every body
starts by opening the dataset and its split (``stages.prepare_data``: one ``stat`` per file), as a
resumed pipeline does; the stages run the pipeline's own functions (pipelines.fuse_then_detect.stages)
on the classical method ``Average``, except the S4Fusion fusion, which fuses every K-th image of
each split part with the shipped demo model (its time is scaled to all images by the parent).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

from data.io import write_text_atomic
from fusion.methods import MethodInputs
from pipelines.config import PipelineConfig, load_config
from pipelines.fuse_then_detect import stages
from pipelines.fuse_then_detect.orchestration import run_pipeline
from pipelines.fuse_then_detect.types import RunContext

CLASSICAL = "Average"
S4FUSION = "S4Fusion"


def _method(cfg: PipelineConfig, name: str):
    return next(m for m in cfg.methods if m.name == name)


def _classical_fused(cfg: PipelineConfig, data) -> tuple[str, Path]:
    key = stages.fused_key(_method(cfg, CLASSICAL), data, MethodInputs())
    return key, cfg.run_dir / "fused" / f"{CLASSICAL}-{key}"


def dataset_check(cfg: PipelineConfig, args) -> tuple[list[Path], int]:
    data = stages.prepare_data(cfg.dataset, cfg.run_dir, progress=False)
    stages.check_inputs(RunContext(cfg, data))  # decodes every pair
    return [cfg.run_dir / "split"], len(data.all_stems())


def fuse_classical(cfg: PipelineConfig, args) -> tuple[list[Path], int]:
    data = stages.prepare_data(cfg.dataset, cfg.run_dir, progress=False)
    key, _ = _classical_fused(cfg, data)
    return [
        stages.fuse_method(
            RunContext(cfg, data), _method(cfg, CLASSICAL), key, MethodInputs(), progress=False
        )
    ], len(data.all_stems())


def fuse_s4fusion(cfg: PipelineConfig, args) -> tuple[list[Path], int]:
    data = stages.prepare_data(cfg.dataset, cfg.run_dir, progress=False)
    sample = dataclasses.replace(
        data, split={part: stems[:: args.s4fusion_every] for part, stems in data.split.items()}
    )
    method = _method(cfg, S4FUSION)
    inputs = method.method().prepare()  # a given checkpoint (the scaling profile trains none)
    key = stages.fused_key(method, sample, inputs)
    # the sample's own folder: the key names the data, not which images of it were sampled
    sample_dir = cfg.run_dir / f"s4fusion_every{args.s4fusion_every}"
    run = RunContext(dataclasses.replace(cfg, runs_dir=str(sample_dir)), sample)
    out = stages.fuse_method(run, method, key, inputs, progress=False)
    return [out], len(sample.all_stems())


def split_export(cfg: PipelineConfig, args) -> tuple[list[Path], int]:
    data = stages.prepare_data(cfg.dataset, cfg.run_dir, progress=False)
    key, fused = _classical_fused(cfg, data)
    return [stages.export_method(RunContext(cfg, data), CLASSICAL, key, fused).parent], len(data.all_stems())


def fusion_metrics(cfg: PipelineConfig, args) -> tuple[list[Path], int]:
    data = stages.prepare_data(cfg.dataset, cfg.run_dir, progress=False)
    key, fused = _classical_fused(cfg, data)
    stages.fusion_metrics(RunContext(cfg, data), CLASSICAL, key, fused, progress=False)
    return [cfg.run_dir / "fusion_metrics"], len(data.split["test"])


def detector_epoch(cfg: PipelineConfig, args) -> tuple[list[Path], int]:
    data = stages.prepare_data(cfg.dataset, cfg.run_dir, progress=False)
    key, fused = _classical_fused(cfg, data)
    run = RunContext(cfg, data)
    data_yaml = stages.export_method(run, CLASSICAL, key, fused)  # committed by split_export
    *_, folder = stages.detect_seed(run, CLASSICAL, key, data_yaml, cfg.seeds[0])
    return [folder], len(data.all_stems())


def report_mlflow(cfg: PipelineConfig, args) -> tuple[list[Path], None]:
    """The command rerun on the finished stages of the classical method: it checks the data again,
    then writes the report and logs everything to MLflow (the driver's share of a run)."""
    outputs = [cfg.run_dir / "mlflow.db", cfg.run_dir / "mlartifacts", cfg.run_dir / "report"]
    for path in outputs:  # what an interrupted measurement left: this one logs everything afresh
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    run_pipeline(load_config(args.config, only_methods=[CLASSICAL]), progress=False)
    return outputs, None


STAGES: dict[str, Callable] = {
    f.__name__: f
    for f in (
        dataset_check,
        fuse_classical,
        fuse_s4fusion,
        split_export,
        fusion_metrics,
        detector_epoch,
        report_mlflow,
    )
}


def _cpu_s() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _peak_rss_mb() -> float:
    """The stage's peak RSS: its own high-water mark (``VmHWM`` of this address space) and that of its
    reaped children (dataloader workers). Not ``ru_maxrss`` of this process: on Linux it starts from the
    RSS of the process this one was forked from (the benchmark's driver), kept across exec."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            own = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):  # no procfs: the inherited floor is the best there is
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return round(max(own, children), 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=list(STAGES))
    parser.add_argument("config")
    parser.add_argument("result")
    parser.add_argument("--s4fusion-every", type=int, default=8)
    args = parser.parse_args(argv)
    cfg = load_config(args.config)
    wall, cpu = time.perf_counter(), _cpu_s()
    outputs, images = STAGES[args.stage](cfg, args)
    wall, cpu = time.perf_counter() - wall, _cpu_s() - cpu
    write_text_atomic(
        Path(args.result),
        json.dumps(
            {
                "wall_s": wall,
                "cpu_s": cpu,
                "peak_rss_mb": _peak_rss_mb(),
                "images": images,
                "outputs": [str(p) for p in outputs],
            }
        )
        + "\n",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
