"""What a training budget buys: step times per model width, where held-out curves are heading, and the
paper recipe's compute.

    python -m bench.training_budget step-times --config experiments/train_s4fusion_demo_wide.yaml --widths 16 24 32 48
    python -m bench.training_budget extrapolate --run runs/train_demo_wide [--from-step 3000]
    python -m bench.training_budget paper-compute

``step-times`` runs a few training steps (forward, the recipe's loss, backward, AdamW) of the recipe's model
at each first-stage width (dims w/2w/4w) on one thread, with the recipe's batch and crop, and prints the
median CPU seconds per step. ``extrapolate`` fits each held-out metric of a run's validation history
(``<run>/val/metrics.jsonl``) as ``a + b·log2(step)`` from ``--from-step`` on and prints the step at which
the fit would reach each reference's line: a trend read off the curve, not a promise. ``paper-compute``
counts the FLOPs of one step of ``experiments/train_s4fusion_paper.yaml`` (forward at the crop size, x3
for forward + backward, times the batch) and the steps of its schedule on the paper's data sizes.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from fusion.flops import count_model
from fusion.losses import S4FusionLoss
from fusion.model import S4Fusion
from fusion.train import TrainConfig
from fusion.validation import read_history

METRICS = ("SF", "AG", "Qabf", "VIF")
# The paper's training data (Sec. IV-A): MSRS train + 70% of M3FD + 70% of RoadScene, in pairs.
PAPER_TRAIN_PAIRS = {"MSRS train": 1083, "M3FD (70% of 4200)": 2940, "RoadScene (70% of 221)": 155}


def width_config(cfg: TrainConfig, width: int):
    spec = {
        **(cfg.model if isinstance(cfg.model, dict) else {"size": cfg.model}),
        "dims": [width, 2 * width, 4 * width],
    }
    return TrainConfig.from_dict({**cfg.to_dict(), "model": spec}).model_config()


def step_seconds(cfg: TrainConfig, width: int, steps: int) -> tuple[int, float]:
    """(parameters, median CPU seconds per training step) of the recipe's model at ``width``. CPU time of
    this one-thread process, not wall time, so other work on the machine barely moves it."""
    torch.manual_seed(0)
    model = S4Fusion(width_config(cfg, width))
    loss_fn = S4FusionLoss(cfg.loss)
    opt = torch.optim.AdamW(model.parameters(), cfg.optim.lr_peak)
    shape = (cfg.batch_size, 1, cfg.data.crop_size, cfg.data.crop_size)
    ir, vi = torch.rand(shape), torch.rand(shape)
    times = []
    for _ in range(steps + 2):  # the first two warm up
        start = time.process_time()
        total, _ = loss_fn(ir, vi, model(ir, vi))
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        times.append(time.process_time() - start)
    return model.num_parameters(), statistics.median(times[2:])


def step_times(config: Path, widths: list[int], steps: int) -> list[dict]:
    torch.set_num_threads(1)
    cfg = TrainConfig.from_yaml(config)
    rows = []
    for w in widths:
        params, seconds = step_seconds(cfg, w, steps)
        rows.append(
            {
                "dims": [w, 2 * w, 4 * w],
                "params": params,
                "cpu_s_per_step": seconds,
                "steps_per_cpu_hour": 3600 / seconds,
            }
        )
    print(
        f"one thread, batch {cfg.batch_size}, {cfg.data.crop_size}x{cfg.data.crop_size} crops, "
        f"median CPU time of {steps} steps\n\n| dims | parameters | CPU s / step | steps / CPU hour |\n|---|---:|---:|---:|"
    )
    for r in rows:
        print(
            f"| {r['dims']} | {r['params']:,} | {r['cpu_s_per_step']:.3f} | {r['steps_per_cpu_hour']:,.0f} |"
        )
    return rows


def log_fit(steps: np.ndarray, values: np.ndarray) -> tuple[float, float]:
    """Least-squares ``a + b·log2(step)``: returns (a, b); b is the gain per doubling of the steps."""
    b, a = np.polyfit(np.log2(steps), values, 1)
    return float(a), float(b)


def steps_to_reach(a: float, b: float, target: float, last_step: int, last_value: float) -> float | None:
    """The step where the fit reaches ``target``: the last step if already there, None if it never does."""
    if last_value >= target:
        return float(last_step)
    return 2 ** ((target - a) / b) if b > 0 else None


def extrapolate(run: Path, from_step: int | None, references: list[str]) -> list[dict]:
    history = read_history(run / "val" / "metrics.jsonl")
    last = history[-1]
    start = from_step if from_step is not None else last["step"] // 4
    used = [r for r in history if r["step"] >= start]
    if len(used) < 3:
        raise SystemExit(f"{run}: {len(used)} validations from step {start} on; the fit needs at least 3")
    rows = []
    for metric in METRICS:
        steps = np.array([r["step"] for r in used], dtype=np.float64)
        a, b = log_fit(steps, np.array([r[f"val/{metric}"] for r in used]))
        for ref in references:
            key = f"val_{ref}/{metric}"
            if key in last:
                reach = steps_to_reach(a, b, last[key], last["step"], last[f"val/{metric}"])
                rows.append(
                    {
                        "metric": metric,
                        "value": last[f"val/{metric}"],
                        "gain_per_doubling": b,
                        "reference": ref,
                        "reference_value": last[key],
                        "steps_to_reach": reach,
                    }
                )
    print(
        f"{run}: step {last['step']}, fit a + b*log2(step) over steps {int(used[0]['step'])}-{last['step']}\n\n"
        "| metric | at last step | gain per doubling | reference | its value | fit reaches it at step |\n"
        "|---|---:|---:|---|---:|---:|"
    )
    for r in rows:
        reach = (
            "never (not rising)"
            if r["steps_to_reach"] is None
            else f"{r['steps_to_reach']:,.0f}"
            if r["steps_to_reach"] < 1e6
            else f"{r['steps_to_reach']:.1e}"
        )
        print(
            f"| {r['metric']} | {r['value']:.4f} | {r['gain_per_doubling']:+.4f} | {r['reference']} | "
            f"{r['reference_value']:.4f} | {reach} |"
        )
    return rows


def paper_compute(config: Path) -> dict:
    cfg = TrainConfig.from_yaml(config)
    model = S4Fusion(cfg.model_config())
    cost = count_model(model, cfg.data.crop_size, cfg.data.crop_size)
    pairs = sum(PAPER_TRAIN_PAIRS.values())
    steps = cfg.epochs * math.ceil(pairs / cfg.batch_size)
    step_flops = 3 * cost.flops_2mac * cfg.batch_size  # backward ~2x forward
    out = {
        "pairs": pairs,
        "steps": steps,
        "forward_flops_per_crop": cost.flops_2mac,
        "step_flops": step_flops,
        "total_flops": step_flops * steps,
    }
    print(
        f"paper recipe: {pairs} pairs ({', '.join(f'{k} {v}' for k, v in PAPER_TRAIN_PAIRS.items())}), batch "
        f"{cfg.batch_size}, {cfg.epochs} epochs = {steps:,} steps; forward {cost.flops_2mac / 1e9:.2f} GFLOP per "
        f"{cfg.data.crop_size}x{cfg.data.crop_size} crop (2 FLOPs per multiply-add), {step_flops / 1e12:.2f} TFLOP "
        f"per step, {out['total_flops'] / 1e18:.2f} EFLOP in all"
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("step-times", help="seconds per training step at several model widths")
    s.add_argument("--config", type=Path, required=True)
    s.add_argument("--widths", type=int, nargs="+", default=[16, 24, 32, 48])
    s.add_argument("--steps", type=int, default=5)
    s.add_argument("--out", type=Path, help="also write the rows as JSON here")
    e = sub.add_parser("extrapolate", help="where a run's held-out curves reach the references")
    e.add_argument("--run", type=Path, required=True)
    e.add_argument("--from-step", type=int)
    e.add_argument("--references", nargs="+", default=["laplacian", "gff"])
    p = sub.add_parser("paper-compute", help="FLOPs and steps of the paper's training recipe")
    p.add_argument("--config", type=Path, default=Path("experiments/train_s4fusion_paper.yaml"))
    args = parser.parse_args(argv)
    if args.command == "step-times":
        rows = step_times(args.config, args.widths, args.steps)
        if args.out:
            args.out.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    elif args.command == "extrapolate":
        extrapolate(args.run, args.from_step, args.references)
    else:
        paper_compute(args.config)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
