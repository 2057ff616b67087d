"""The console of a fuse_then_detect run scales: one bar per stage, one line per finished job (with
the run's ETA), never a line per image -- so twice the images print exactly as many lines.

The real fusion and fusion-metrics jobs (no detectors: seconds) of two methods on the tiny profile's
synthetic data, at 30 and 60 pairs, through the serial executor with the progress display on.
"""

from __future__ import annotations

import re

from pipelines.config import EXPERIMENTS_DIR, load_config
from pipelines.executor import SerialExecutor
from pipelines.fuse_then_detect import stages
from pipelines.fuse_then_detect.jobs import plan_jobs
from pipelines.fuse_then_detect.types import RunContext

TINY = EXPERIMENTS_DIR / "fuse_then_detect_tiny.yaml"


def console_of_a_run(run_dir, n_images: int, capsys) -> tuple[list[str], int, list[str]]:
    """The console lines (a bar's in-place updates count as its one line), the number of jobs and the stems."""
    cfg = load_config(
        TINY,
        [f"runs_dir={run_dir}", f"dataset.synthetic.n_images={n_images}", "report.fusion_metrics=[EN]"],
        only_methods=["VI", "Average"],
    )
    capsys.readouterr()
    run = RunContext(cfg, stages.prepare_data(cfg.dataset, cfg.run_dir, progress=True))
    prepared = stages.check_inputs(run)
    jobs, _ = plan_jobs(run, prepared)
    jobs = [job for job in jobs if job.key[0] != "detect"]
    SerialExecutor(cfg.executor).run(jobs, progress=True)
    captured = capsys.readouterr()
    lines = [line for line in (captured.out + captured.err).split("\n") if line.strip()]
    return lines, len(jobs), run.data.all_stems()


def test_console_shows_one_line_per_job_never_per_image(tmp_path, capsys):
    small, jobs, _ = console_of_a_run(tmp_path / "small", 30, capsys)
    large, same_jobs, stems = console_of_a_run(tmp_path / "large", 60, capsys)
    assert jobs == same_jobs == 4  # fuse + metrics for each of the two methods
    assert len(large) == len(small)  # twice the images, not one line more
    job_lines = [
        line for line in large if re.match(r"^\[\d+/4 jobs, ETA \d+:\d\d\] done +(fuse|metrics)/", line)
    ]
    assert len(job_lines) == jobs and job_lines[-1].startswith("[4/4 jobs, ETA 0:00]")
    assert all("(serial)" in line for line in job_lines)  # where it ran
    bars = [line for line in large if not line.startswith("[")]
    assert any(line.split("\r")[-1].startswith("jobs: ") for line in bars), large
    assert len(bars) <= 3  # the synthetic data, the pair check, the jobs
    assert not [line for line in large if any(stem in line for stem in stems)]  # no image is ever named
