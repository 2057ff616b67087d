"""Benchmark: how each fuse_then_detect stage's cost grows with the dataset, from 10² pairs to M3FD's 4,200.

    python -m bench.scaling --quick          # 25, 100, 200 pairs (<= 12 min on an idle 2-core machine)
    python -m bench.scaling                  # 100, 400, 1000 pairs
    python -m bench.scaling --full           # 525, 1050, 2100, 4200 pairs (M3FD's size)
    python -m bench.scaling --sizes 30,90,240 --out bench/out/mine

Data: the embedded generator (data.synthetic) at 1024x768, six classes, VOC XML, in the M3FD layout:
``--distinct-pairs`` (50) generated once, each size a folder of n pairs that repeat them under their
own names (hard links), opened as ``m3fd``; every stage treats each pair as a separate image.
Stages (bench.scaling_stage), each in its own process per size: dataset check, classical fusion
(Average), S4Fusion fusion (the shipped demo model on every K-th image of each split part, its costs
scaled to all images: ``--s4fusion-every``), YOLO export,
per-image fusion metrics (test split), one YOLOv8n epoch at imgsz 640 (+ test evaluation), and the
report + MLflow logging. Measured per stage and size: wall and CPU time of the stage body (imports
excluded), peak RSS of its process (its own high-water mark or its dataloader workers', whichever is
larger: bench.scaling_stage) and the disk it adds (blocks of files not already in its inputs: the YOLO tree
hard-links the fused images).

Writes OUT/scaling.json (``{"stages": {stage: [{"n", "wall_s", "cpu_s", "peak_rss_mb", "disk_mb"}]},
"slopes": ..., "checks": ..., ...}``) and OUT/scaling.png (log-log time vs n, peak RSS vs n), then
checks: every stage's CPU-time slope <= 1.2 and its peak RSS not growing with n (see ``checks``);
exit 1 when a check fails. Each measurement is appended to OUT/measurements.jsonl as it ends, so a
killed run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from bench.scaling_stage import STAGES
from data.io import write_text_atomic

SIZES = {"quick": (25, 100, 200), "default": (100, 400, 1000), "full": (525, 1050, 2100, 4200)}
S4FUSION_EVERY = {"quick": 32, "default": 16, "full": 16}
WIDTH, HEIGHT = 1024, 768  # M3FD's image size
M3FD_PAIRS = 4200
MAX_SLOPE = 1.2
# Peak RSS may differ between sizes by allocator noise: "not growing" = at most this much more at the largest size.
MEM_TOLERANCE_MB, MEM_TOLERANCE_FRACTION = 64.0, 0.10
CHILD_ENV = {
    "YOLO_OFFLINE": "1",
    "YOLO_AUTOINSTALL": "false",
    "MPLBACKEND": "Agg",
    "OMP_WAIT_POLICY": "PASSIVE",
}


def config_yaml(n: int, data_root: Path, runs_dir: Path) -> str:
    """One size's pipeline config: the classical method, S4Fusion (demo model), one YOLOv8n epoch at 640."""
    cfg = {
        "name": f"scaling_n{n}",
        "dataset": {"name": "m3fd", "root": str(data_root), "split_ratios": [0.7, 0.1, 0.2], "split_seed": 0},
        "methods": [
            {"name": "Average", "kind": "baseline", "baseline": "average"},
            {"name": "S4Fusion", "kind": "s4fusion", "checkpoint": "demo"},
        ],
        "detector": {
            "model": "yolov8n.yaml",
            "imgsz": 640,
            "epochs": 1,
            "batch": 8,
            "optimizer": "AdamW",
            "lr0": 0.002,
            "close_mosaic": 0,
            "device": "cpu",
            "train_args": {"val": False},
        },
        "seeds": [0],
        "runs_dir": str(runs_dir),
        "report": {
            "sample_images": 2,
            "fusion_metrics": ["EN", "SD", "SF", "AG", "MI", "SCD", "VIF", "Qabf"],
        },
        "executor": {"kind": "serial", "cpus_per_job": 2},
    }
    return json.dumps(cfg, indent=2) + "\n"  # JSON is YAML


def make_data(out: Path, sizes: list[int], distinct: int) -> dict:
    """Generate ``distinct`` pairs once; size n is a folder of n pairs, pair i a hard link to generated
    pair i mod ``distinct`` (under its own name: every stage treats it as a separate image)."""
    from data.synthetic import SyntheticConfig, generate_synthetic_dataset, is_generated

    full = out / "data" / "distinct"
    synth = SyntheticConfig(n_images=min(distinct, max(sizes)), width=WIDTH, height=HEIGHT, seed=0)
    start = time.perf_counter()
    generated = not is_generated(full, synth)
    generate_synthetic_dataset(full, synth, overwrite=generated and full.exists())
    seconds = time.perf_counter() - start
    for n in sizes:
        subset = out / "data" / f"n{n}"
        for sub, ext in (("Ir", ".png"), ("Vis", ".png"), ("Annotation", ".xml")):
            (subset / sub).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                if not (subset / sub / f"{i:05d}{ext}").exists():
                    os.link(full / sub / f"{i % synth.n_images:05d}{ext}", subset / sub / f"{i:05d}{ext}")
    return {
        "distinct_pairs": synth.n_images,
        "width": WIDTH,
        "height": HEIGHT,
        "generation_s": round(seconds, 1) if generated else None,
        "disk_mb": round(_disk_mb([full]), 1),
    }


def _files(paths: list[Path]):
    for path in paths:
        if path.is_file():
            yield path
        elif path.is_dir():
            yield from (p for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _disk_mb(paths: list[Path], known: set[tuple[int, int]] | None = None) -> float:
    """Allocated size of the files under ``paths``, each inode once, skipping ``known`` inodes."""
    seen = set(known or ())
    total = 0
    for f in _files(paths):
        st = f.stat()
        if (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            total += st.st_blocks * 512
    return total / 2**20


def _inodes(paths: list[Path]) -> set[tuple[int, int]]:
    return {(st.st_dev, st.st_ino) for st in (f.stat() for f in _files(paths))}


def measure(
    stage: str, n: int, config: Path, work: Path, data_root: Path, earlier: list[Path], s4fusion_every: int
) -> tuple[dict, list[Path]]:
    """Run one stage in a subprocess; its record and the folders it wrote."""
    result = work / f"{stage}.json"
    result.unlink(missing_ok=True)
    known = _inodes([data_root, *earlier])  # before the stage: what it finds is not its own
    cmd = [
        sys.executable,
        "-m",
        "bench.scaling_stage",
        stage,
        str(config),
        str(result),
        "--s4fusion-every",
        str(s4fusion_every),
    ]
    log = (work / f"{stage}.log").open("w")
    proc = subprocess.Popen(cmd, env={**os.environ, **CHILD_ENV}, stdout=log, stderr=subprocess.STDOUT)
    _, status, _ = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    log.close()
    if proc.returncode != 0:
        raise RuntimeError(
            f"stage {stage} at n={n} failed (exit {proc.returncode}); see {work / f'{stage}.log'}"
        )
    body = json.loads(result.read_text())
    outputs = [Path(p) for p in body["outputs"]]
    scale = n / body["images"] if stage == "fuse_s4fusion" else 1.0  # a sample of the images, scaled to all
    disk = _disk_mb(outputs, known)
    record = {
        "n": n,
        "wall_s": round(body["wall_s"] * scale, 2),
        "cpu_s": round(body["cpu_s"] * scale, 2),
        "peak_rss_mb": body["peak_rss_mb"],
        "disk_mb": round(disk * scale, 2),
    }
    if scale != 1.0:
        record["sampled_images"] = body["images"]
    return record, outputs


def slope(points: list[dict], key: str) -> tuple[float, list[int]]:
    """Log-log least-squares slope of ``key`` vs n over the sizes but the smallest (when >= 2 remain):
    fixed per-stage costs (model building, MLflow's database set-up) flatten the small sizes."""
    fit = points[1:] if len(points) >= 3 else points
    n = np.log([p["n"] for p in fit])
    y = np.log([max(p[key], 1e-3) for p in fit])
    return float(np.polyfit(n, y, 1)[0]), [p["n"] for p in fit]


def checks(stages: dict[str, list[dict]], sizes: list[int]) -> list[dict]:
    found = [
        {
            "check": f">= 5 stages measured at every size ({len(stages)})",
            "ok": len(stages) >= 5 and all(len(v) == len(sizes) for v in stages.values()),
        },
        {
            "check": f"sizes span >= 8x ({max(sizes)}/{min(sizes)} = {max(sizes) / min(sizes):.1f}x)",
            "ok": max(sizes) >= 8 * min(sizes),
        },
    ]
    for name, points in stages.items():
        k, fitted = slope(points, "cpu_s")
        found.append(
            {
                "check": f"{name}: CPU-time slope {k:.2f} <= {MAX_SLOPE} (fit on n={fitted})",
                "ok": k <= MAX_SLOPE,
            }
        )
        small, large = points[0]["peak_rss_mb"], points[-1]["peak_rss_mb"]
        allowed = max(MEM_TOLERANCE_MB, MEM_TOLERANCE_FRACTION * small)
        found.append(
            {
                "check": f"{name}: peak RSS {small:.0f} MB at n={points[0]['n']} -> {large:.0f} MB at "
                f"n={points[-1]['n']} (growth <= {allowed:.0f} MB)",
                "ok": large - small <= allowed,
            }
        )
    return found


def plot(stages: dict[str, list[dict]], slopes: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, points in stages.items():
        n = [p["n"] for p in points]
        ax_t.loglog(n, [p["cpu_s"] for p in points], "o-", label=f"{name} (slope {slopes[name]['cpu']:.2f})")
        ax_m.semilogx(n, [p["peak_rss_mb"] for p in points], "o-", label=name)
    ax_t.set(xlabel="pairs n", ylabel="CPU time of the stage [s]", title="time vs n (log-log)")
    ax_m.set(xlabel="pairs n", ylabel="peak RSS [MB]", title="peak memory vs n")
    for ax in (ax_t, ax_m):
        ax.grid(True, which="both", alpha=0.3)
    ax_t.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def extrapolate(stages: dict[str, list[dict]], slopes: dict, n_target: int) -> dict:
    """Each stage at ``n_target`` pairs from its largest measured size and its CPU-time slope (at
    least 1: a slope below 1 comes from fixed costs that do not shrink the per-image work). Wall time
    uses the same exponent: its own slope measures how the machine's load changed during the run."""
    out = {}
    for name, points in stages.items():
        last = points[-1]
        factor = (n_target / last["n"]) ** max(1.0, slopes[name]["cpu"])
        out[name] = {
            "cpu_s": round(last["cpu_s"] * factor, 1),
            "wall_s": round(last["wall_s"] * factor, 1),
            "disk_mb": round(last["disk_mb"] * n_target / last["n"], 1),
        }
    return out


def _cpu_model() -> str:
    """fusion.train.cost's reader, imported only when the measurements are done (it imports torch)."""
    from fusion.train.cost import cpu_model

    return cpu_model()


def _record_key(stage: str, n: int, s4fusion_every: int) -> tuple:
    """What a measurement depends on, for resuming: the sampling matters to the S4Fusion stage only."""
    return stage, n, s4fusion_every if stage == "fuse_s4fusion" else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help=f"sizes {SIZES['quick']}")
    mode.add_argument("--full", action="store_true", help=f"sizes {SIZES['full']}")
    mode.add_argument("--sizes", default=None, help="comma-separated pair counts, e.g. 30,90,240")
    parser.add_argument("--out", default="bench/out/scaling")
    parser.add_argument(
        "--s4fusion-every",
        type=int,
        default=None,
        help=f"S4Fusion fuses every K-th image of each split part, its costs scaled to all "
        f"(default {S4FUSION_EVERY}: ~4 CPU-s an image at 1024x768 on this CPU)",
    )
    parser.add_argument(
        "--distinct-pairs",
        type=int,
        default=50,
        help="pairs generated (the rest repeat them under other names; generation is ~1 s a pair)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the run folders (default: deleted at the end)"
    )
    args = parser.parse_args(argv)
    mode_name = "quick" if args.quick else "full" if args.full else "default"
    if args.s4fusion_every is None:
        args.s4fusion_every = S4FUSION_EVERY[mode_name]
    try:
        sizes = sorted({int(s) for s in args.sizes.split(",")}) if args.sizes else list(SIZES[mode_name])
    except ValueError:
        sizes = []
    problems = []
    if len(sizes) < 2 or min(sizes) < 20:
        problems.append(
            f"--sizes needs >= 2 pair counts >= 20 (the split needs train, val and test pairs), "
            f"got {args.sizes!r}"
        )
    for name in ("s4fusion_every", "distinct_pairs"):
        if getattr(args, name) < 1:
            problems.append(f"--{name.replace('_', '-')} needs >= 1, got {getattr(args, name)}")
    if problems:
        parser.error("; ".join(problems))
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    load_start, started = os.getloadavg(), time.perf_counter()
    print(f"bench.scaling: sizes {sizes}, {len(STAGES)} stages, {WIDTH}x{HEIGHT}; out {out}", flush=True)
    data = make_data(out, sizes, args.distinct_pairs)
    done_file = out / "measurements.jsonl"
    done = {}
    if done_file.is_file():
        for line in done_file.read_text().splitlines():
            rec = json.loads(line)
            done[_record_key(rec["stage"], rec["n"], rec["s4fusion_every"])] = rec["record"]
    stages: dict[str, list[dict]] = {name: [] for name in STAGES}
    for n in sizes:
        work, runs = out / "work" / f"n{n}", out / "runs" / f"n{n}"
        work.mkdir(parents=True, exist_ok=True)
        config = work / "config.yaml"
        write_text_atomic(config, config_yaml(n, out / "data" / f"n{n}", runs))
        earlier: list[Path] = []
        for name in STAGES:
            key = _record_key(name, n, args.s4fusion_every)
            if key in done:
                record = done[key]
                earlier += [runs]  # its outputs are in the run folder (kept until the end)
            else:
                record, outputs = measure(name, n, config, work, out / "data", earlier, args.s4fusion_every)
                earlier += outputs
                with open(done_file, "a") as fh:
                    fh.write(
                        json.dumps(
                            {"stage": name, "n": n, "s4fusion_every": args.s4fusion_every, "record": record}
                        )
                        + "\n"
                    )
            stages[name].append({k: record[k] for k in ("n", "wall_s", "cpu_s", "peak_rss_mb", "disk_mb")})
            print(
                f"  n={n:<5} {name:<15} wall {record['wall_s']:8.1f} s  cpu {record['cpu_s']:8.1f} s  "
                f"peak {record['peak_rss_mb']:7.0f} MB  disk {record['disk_mb']:8.1f} MB",
                flush=True,
            )
    slopes = {}
    for name, points in stages.items():
        (cpu, fitted), (wall, _) = slope(points, "cpu_s"), slope(points, "wall_s")
        slopes[name] = {"cpu": round(cpu, 3), "wall": round(wall, 3), "fit_sizes": fitted}
    results = checks(stages, sizes)
    per_method = ("fuse_classical", "split_export", "fusion_metrics", "detector_epoch")
    summary = {
        "stages": stages,
        "slopes": slopes,
        "checks": results,
        "disk_per_method_mb": {
            str(p["n"]): round(sum(stages[s][i]["disk_mb"] for s in per_method), 1)
            for i, p in enumerate(stages["fuse_classical"])
        },
        f"extrapolated_n{M3FD_PAIRS}": extrapolate(stages, slopes, M3FD_PAIRS),
        "data": data,
        "s4fusion_every": args.s4fusion_every,
        "mode": mode_name,
        "machine": {
            "cpu": _cpu_model(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "load_average_1min": {"start": round(load_start[0], 2), "end": round(os.getloadavg()[0], 2)},
        "bench_wall_s": round(time.perf_counter() - started, 1),
    }
    write_text_atomic(out / "scaling.json", json.dumps(summary, indent=2) + "\n")
    plot(stages, slopes, out / "scaling.png")
    if not args.keep:
        shutil.rmtree(out / "runs", ignore_errors=True)
        done_file.unlink()  # the records are in scaling.json; a rerun measures afresh
    failed = [c for c in results if not c["ok"]]
    for c in results:
        print(f"  {'ok  ' if c['ok'] else 'FAIL'} {c['check']}")
    print(
        f"wrote {out / 'scaling.json'} and {out / 'scaling.png'} ({summary['bench_wall_s'] / 60:.1f} min); "
        f"{len(failed)} check(s) failed; into the docs: python -m bench.scaling_report {out / 'scaling.json'}",
        flush=True,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
