"""Ship a demo training run as package weights with a model card, and plot training curves.

    python -m bench.demo_weights card --run runs/train_demo_long --recipe experiments/train_s4fusion_demo_long.yaml \
        [--crossval runs/cv_report]   # the recipe's cross-validation: a held_out report of its fold runs
    python -m bench.demo_weights curves --out docs/images/train_demo_curves.png \
        --run "issue recipe=runs/a0" --run "demo recipe=runs/train_demo"
    python -m bench.demo_weights crossval-curves --out docs/images/crossval_budget_curves.png \
        --folds "5400 steps=runs/long0,runs/long1,runs/long2" --point "recipe@2700=runs/cv_report"

``card`` copies ``<run>/s4fusion.pt`` to ``fusion/weights/s4fusion_demo.pt`` (the s4fuse export
format), fuses the held-out pairs of the run's config (``data.val``) with it and with the reference
baselines, and writes ``fusion/weights/s4fusion_demo.json`` (the numbers, full precision) and
``s4fusion_demo.md`` (the model card). ``tests/bench/test_demo_weights.py`` recomputes the numbers from the
shipped weights and compares. ``curves`` plots ``<run>/val/metrics.jsonl`` (written by the trainer's
held-out validation) of one or more runs with the baselines as horizontal lines. ``crossval-curves``
pools the curves of a cross-validation's fold runs into one curve over all held-out pairs (each fold's
mean weighted by its number of pairs), so the budget at which a recipe passes a baseline on unseen
pairs can be read off.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from data.io import write_text_atomic
from fusion.baselines import fuse_baseline
from fusion.inference import load_model
from fusion.model import S4Fusion
from fusion.shipped_weights import CHECKPOINT_ALIASES
from fusion.train import TrainConfig, resolve_sources
from fusion.train.trainer import COST_NAME
from fusion.validation import load_pairs, model_fuser, pair_metrics, read_history
from pipelines.statistics import paired_comparison

WEIGHTS = CHECKPOINT_ALIASES["demo"]
SIDECAR, CARD = WEIGHTS.with_suffix(".json"), WEIGHTS.with_suffix(".md")
METRICS = ("SF", "AG", "Qabf", "VIF")
REFERENCES = ("average", "laplacian", "gff", "max")
# The card states an ordering (above/below a reference) only when the means differ by more than this share of
# the reference's mean: 2.5x the rel 2e-3 to which tests/bench/test_demo_weights.py reproduces the means on other CPUs.
CARD_MARGIN = 5e-3


def held_out_rows(
    weights: Path, cfg: TrainConfig, references: tuple[str, ...] = REFERENCES
) -> dict[str, dict[str, list[float]]]:
    """{method: {metric: per-pair values}} on ``cfg.data.val`` for the weights and each of ``references``,
    and the pair names under the key ``"pairs"``."""
    pairs = load_pairs(resolve_sources(cfg.data.val, cfg.data.split_seed)[0])
    methods = {"s4fusion_demo": model_fuser(load_model(weights))}
    methods.update({name: (lambda ir, vi, n=name: fuse_baseline(n, ir, vi)) for name in references})
    rows = {name: [pair_metrics(fuser, p, METRICS) for p in pairs] for name, fuser in methods.items()}
    return {
        "pairs": [p.name for p in pairs],
        **{name: {k: [r[k] for r in rs] for k in METRICS} for name, rs in rows.items()},
    }


def comparisons(per_pair: dict) -> dict[str, dict[str, dict]]:
    """{reference: {metric: {"difference", "wins", "pairs", "p", "ordering"}}}: the weights against each
    reference, pair by pair. ``ordering`` is "above"/"below" only when the mean difference exceeds
    :data:`CARD_MARGIN` of the reference's mean (what the card may state, and the test asserts), else "level"."""
    ours = per_pair["s4fusion_demo"]
    out: dict[str, dict[str, dict]] = {}
    for ref in REFERENCES:
        for k in METRICS:
            c = paired_comparison(ours[k], per_pair[ref][k])
            ordering = (
                "level"
                if abs(c.mean_difference) <= CARD_MARGIN * abs(c.mean_b)
                else "above"
                if c.mean_difference > 0
                else "below"
            )
            out.setdefault(ref, {})[k] = {
                "difference": c.mean_difference,
                "wins": c.wins,
                "pairs": c.n,
                "p": c.p_t,
                "ordering": ordering,
            }
    return out


def metrics_table(metrics: dict) -> str:
    rows = ["| method | " + " | ".join(METRICS) + " |", "|---|" + "---:|" * len(METRICS)]
    for name, scores in metrics.items():
        rows.append(f"| {name} | " + " | ".join(f"{scores[k]:.4f}" for k in METRICS) + " |")
    return "\n".join(rows)


def card(run: Path, recipe: str, crossval: Path | None = None) -> None:
    """Ship ``<run>/s4fusion.pt`` (its weights stored as float16) with the numbers measured on them."""
    cfg = TrainConfig.from_yaml(run / "config.yaml")
    cost = json.loads((run / COST_NAME).read_text(encoding="utf-8"))
    S4Fusion.load(run / "s4fusion.pt").save_exported(WEIGHTS, dtype=torch.float16)
    per_pair = held_out_rows(WEIGHTS, cfg)
    means = {
        m: {k: float(np.mean(v)) for k, v in per_pair[m].items()} for m in ("s4fusion_demo", *REFERENCES)
    }
    float32 = held_out_rows(run / "s4fusion.pt", cfg, references=())["s4fusion_demo"]  # the rounding's effect
    float32_means = {k: float(np.mean(v)) for k, v in float32.items()}
    history = read_history(run / "val" / "metrics.jsonl")
    sidecar = {
        "weights": WEIGHTS.name,
        "sha256": hashlib.sha256(WEIGHTS.read_bytes()).hexdigest(),
        "storage_dtype": "float16",
        "recipe": recipe,
        "config": cfg.to_dict(),
        "steps": history[-1]["step"],
        "train_cost": cost,
        "convention": "mmif",
        "held_out_pairs": per_pair["pairs"],
        "train_pairs": {s.dataset: s.stems for s in cfg.data.train},
        "metrics": means,
        "float32_metrics": float32_means,
        "comparisons": comparisons(per_pair),
        "crossval": crossval_summary(crossval) if crossval is not None else None,
    }
    write_text_atomic(SIDECAR, json.dumps(sidecar, indent=1) + "\n")
    render_card(sidecar)
    print(CARD.read_text(encoding="utf-8"))


def crossval_summary(report: Path) -> dict:
    """The recipe's cross-validation (a ``held_out`` report of its fold runs) as the card quotes it:
    {reference: {metric: {"ours", "reference", "wins", "pairs", "p"}}}."""
    import pandas as pd

    rows = pd.read_csv(report / "comparison.csv")
    return {
        ref: {
            r.metric: {
                "ours": r.s4fusion,
                "reference": r.reference_mean,
                "wins": int(r.wins),
                "pairs": int(r.pairs),
                "p": r.p_t,
            }
            for r in group.itertuples()
        }
        for ref, group in rows.groupby("reference")
    }


def crossval_sentence(cv: dict | None) -> str:
    if cv is None:
        return "No cross-validation of this recipe is recorded."

    def vs(ref: str, metric: str) -> str:
        c = cv[ref][metric]
        return (
            f"{metric} {c['ours']:.3f} vs {c['reference']:.3f}, better on {c['wins']} of {c['pairs']} pairs, "
            f"paired p = {c['p']:.2g}"
        )

    return (
        f"In a 3-fold cross-validation over {cv['average']['VIF']['pairs']} other shared pairs (each scored by "
        f"the fold model that held it out; docs/training.md), the same recipe scored against averaging: "
        f"{vs('average', 'Qabf')}; {vs('average', 'VIF')}; and against the Laplacian pyramid: "
        f"{vs('laplacian', 'Qabf')}; {vs('laplacian', 'VIF')}."
    )


def verdict_sentences(sidecar: dict) -> str:
    """The orderings the card states: per reference, the metrics above and below it by more than
    :data:`CARD_MARGIN`, with how many held-out pairs agree; the rest are called level."""
    names = {"average": "plain averaging", "laplacian": "the Laplacian pyramid", "gff": "GFF", "max": "max"}
    sentences = []
    for ref, by_metric in sidecar["comparisons"].items():

        def listed(order: str, by_metric=by_metric) -> str:
            return ", ".join(
                f"{k} ({c['difference']:+.3g}, better on {c['wins']} of {c['pairs']} pairs, paired "
                f"p = {c['p']:.2g})"
                for k, c in by_metric.items()
                if c["ordering"] == order
            )

        parts = [
            f"above on {listed('above')}" if listed("above") else "",
            f"**below on {listed('below')}**" if listed("below") else "",
            f"level (within {CARD_MARGIN:.1%}) on {', '.join(k for k, c in by_metric.items() if c['ordering'] == 'level')}"
            if any(c["ordering"] == "level" for c in by_metric.values())
            else "",
        ]
        sentences.append(f"- Against {names.get(ref, ref)}: " + "; ".join(p for p in parts if p) + ".")
    return "\n".join(sentences)


def render_card(sidecar: dict) -> None:
    """Write the model card from the sidecar's numbers (``card`` calls it; rerun alone after editing
    the template: ``python -m bench.demo_weights render``)."""
    cfg = TrainConfig.from_dict(sidecar["config"])
    cost = sidecar["train_cost"]
    f32 = sidecar["float32_metrics"]
    write_text_atomic(
        CARD,
        CARD_TEMPLATE.format(
            recipe=sidecar["recipe"],
            steps=sidecar["steps"],
            wall=cost["wall_s"] / 60,
            cpu=cost["cpu_s"] / 60,
            load=f"{cost['load_mean']:.1f}",
            procs=cost["processes"],
            cores=cost["cpu_count"],
            cpu_model=cost["cpu_model"],
            params=load_model(WEIGHTS).num_parameters(),
            model=f"{cfg.model} = dims {list(cfg.model_config().dims)}",
            ema=(
                f"; the weights are the exponential moving average (decay {cfg.ema.decay}) of the trained ones"
                if cfg.ema.enabled
                else ""
            ),
            crop=cfg.data.crop_size,
            batch=cfg.batch_size,
            lr=cfg.optim.lr_peak,
            temperature=cfg.loss.temperature,
            n_held=len(sidecar["held_out_pairs"]),
            held=", ".join(sidecar["held_out_pairs"]),
            n_train=sum(len(v) for v in sidecar["train_pairs"].values()),
            schedule=(
                f"on the cosine towards {cfg.optim.lr_end}, stopped at step {cfg.max_steps}"
                if cfg.max_steps
                else f"cosine-annealed to {cfg.optim.lr_end}"
            ),
            float32=", ".join(f"{k} {f32[k]:.4f}" for k in METRICS),
            table=metrics_table(sidecar["metrics"]),
            verdict=verdict_sentences(sidecar),
            crossval=crossval_sentence(sidecar.get("crossval")),
        ),
    )


def plot_curves(
    curves_: list[tuple[str, list[dict]]], title: str, out: Path, points: list[tuple[str, int, dict]] = ()
) -> None:
    """One panel per metric: each labelled validation history, the ``points`` (label, step, means) as
    stars, and the references of the last history's last record as horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(METRICS), figsize=(4 * len(METRICS), 3.4))
    for ax, metric in zip(axes, METRICS):
        for label, history in curves_:
            ax.plot(
                [r["step"] for r in history],
                [r[f"val/{metric}"] for r in history],
                marker="o",
                ms=3,
                label=label,
            )
        for label, step, means in points:
            ax.plot([step], [means[metric]], marker="*", ms=10, ls="", label=label)
        last = curves_[-1][1][-1]
        for ref, style in (("average", "--"), ("laplacian", ":"), ("gff", "-.")):
            if f"val_{ref}/{metric}" in last:
                ax.axhline(last[f"val_{ref}/{metric}"], ls=style, color="k", lw=1, label=ref)
        ax.set_title(title.format(metric=metric), fontsize=10)
        ax.set_xlabel("step")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


def curves(runs: list[tuple[str, Path]], out: Path) -> None:
    plot_curves(
        [(label, read_history(path / "val" / "metrics.jsonl")) for label, path in runs],
        "held-out {metric}",
        out,
    )


def held_out_pair_count(run: Path) -> int:
    cfg = TrainConfig.from_yaml(run / "config.yaml")
    return sum(len(ds) for ds in resolve_sources(cfg.data.val, cfg.data.split_seed)[0])


def pool_fold_histories(histories: list[list[dict]], pair_counts: list[int]) -> list[dict]:
    """One history over all folds' held-out pairs: at each step every fold validated at, the
    pair-weighted mean of each fold's means (= the mean over all pairs). Steps some fold lacks are
    dropped, so a fold still running does not bias the pooled curve."""
    by_step = [{r["step"]: r for r in h} for h in histories]
    common = sorted(set.intersection(*(set(s) for s in by_step)))
    total = sum(pair_counts)
    pooled = []
    for step in common:
        keys = set.intersection(*(set(s[step]) for s in by_step)) - {"step"}
        pooled.append(
            {
                "step": step,
                **{
                    k: sum(n * s[step][k] for n, s in zip(pair_counts, by_step)) / total for k in sorted(keys)
                },
            }
        )
    return pooled


def report_means(report: Path) -> dict[str, float]:
    """S4Fusion's means over all pairs of a ``held_out`` report (``<report>/per_pair.csv``)."""
    import pandas as pd

    rows = pd.read_csv(report / "per_pair.csv")
    return rows[rows.method == "s4fusion"][list(METRICS)].mean().to_dict()


def crossval_curves(
    groups: list[tuple[str, list[Path]]], points: list[tuple[str, int, Path]], out: Path
) -> None:
    """Pooled held-out curves of cross-validation runs (``groups``: label, one run per fold) and the
    final means of other cross-validations (``points``: label, steps, ``held_out`` report), with the
    references pooled the same way."""
    counts = [[held_out_pair_count(r) for r in runs] for _, runs in groups]
    pooled = [
        (label, pool_fold_histories([read_history(r / "val" / "metrics.jsonl") for r in runs], n))
        for (label, runs), n in zip(groups, counts)
    ]
    plot_curves(
        pooled,
        f"{{metric}}, mean over {sum(counts[0])} unseen pairs",
        out,
        [(label, step, report_means(report)) for label, step, report in points],
    )


CARD_TEMPLATE = """# S4Fusion demo weights (`s4fusion_demo.pt`)

An S4Fusion trained from scratch on CPU by `{recipe}`. It is a
demonstration that the training recipe works, **not** the paper's model: for the paper's numbers use
the official release or `experiments/train_s4fusion_paper.yaml` on a GPU.

    python -m pipelines.run fuse --dataset tno --root ../shared/data/samples/TNO --checkpoint demo --out runs/fused
    from fusion.inference import load_model; model = load_model("demo")   # S4Fusion.load(path) works too

- **Model**: `{model}` ({params:,} parameters), the s4fuse export format, weights stored as float16
  (loaded as float32; the run's float32 weights score {float32} on the same pairs).
- **Recipe**: {steps} steps, batch {batch}, {crop}x{crop} random crops with flips, AdamW peak lr {lr}
  {schedule}, the paper's L1/SSIM/gradient loss (weights 15/15/15) without L_per
  (no ImageNet ResNet50 offline: the paper's Table V "w/o L_per" setting), source weights ω from the
  images' own Sobel energy with temperature {temperature}{ema}. Trained in {wall:.0f} min wall
  ({cpu:.0f} CPU minutes over {procs} processes, validation included; measured by the run, `train_cost.json`)
  on {cores} cores of an {cpu_model} (mean 1-minute load {load}). Details: docs/training.md,
  docs/experiments/demo_wide.md.
- **Training data** ({n_train} pairs): TNO 01-20, 8 RoadScene pairs, 15 VIFB pairs (the shared real
  samples, `../shared/data`; exact stems in `s4fusion_demo.json`).
- **Held-out evaluation** ({n_held} pairs, never trained on): {held}.

## Held-out metrics (MMIF convention, means over the {n_held} pairs)

{table}

Higher is better for all four. `tests/bench/test_demo_weights.py` recomputes every number above from the
shipped weights and asserts every ordering stated below; `s4fusion_demo.json` holds them at full precision.

## Against the references, pair by pair

{verdict}

## Limitations

A {params:,}-parameter model after {cpu:.0f} CPU minutes, far from the paper's model and budget. A
{n_held}-pair held-out set from three small collections measures transfer only roughly.
{crossval}

## Licence of the training images

The weights are derived from research datasets and redistribute no image. What is known: the TNO
Image Fusion Dataset is published by A. Toet on figshare (CC BY 4.0, attribution required); RoadScene
(H. Xu et al., released with U2Fusion on GitHub) states no licence of its own, and its images come
from the FLIR thermal (ADAS) dataset, whose use is governed by Teledyne FLIR's terms; the VIFB
inputs (X. Zhang et al., CVPRW 2020) are collected from public fusion datasets and distributed for
research without a stated licence. Treat the weights as research-only and check those terms before
any other use. The code is MIT (pyproject.toml).
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("card", help="ship <run>/s4fusion.pt as the demo weights with a model card")
    c.add_argument("--run", type=Path, required=True)
    c.add_argument("--recipe", required=True, help="the run's config file, relative to the repository root")
    c.add_argument("--crossval", type=Path, help="the recipe's cross-validation: a held_out report folder")
    sub.add_parser("render", help="rewrite the model card from the sidecar JSON")
    k = sub.add_parser("curves", help="plot held-out validation curves of runs")
    k.add_argument("--run", action="append", required=True, help="LABEL=RUN_DIR (repeatable)")
    k.add_argument("--out", type=Path, required=True)
    x = sub.add_parser(
        "crossval-curves", help="plot cross-validation curves pooled over the folds' held-out pairs"
    )
    x.add_argument(
        "--folds", action="append", required=True, help="LABEL=RUN_FOLD0,RUN_FOLD1,... (repeatable)"
    )
    x.add_argument(
        "--point",
        action="append",
        default=[],
        help="LABEL@STEPS=HELD_OUT_REPORT_DIR: another cross-validation's means (repeatable)",
    )
    x.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "card":
        card(args.run, args.recipe, args.crossval)
    elif args.command == "render":
        render_card(json.loads(SIDECAR.read_text(encoding="utf-8")))
    elif args.command == "crossval-curves":

        def runs(spec: str) -> tuple[str, list[Path]]:
            label, _, paths = spec.rpartition("=")
            return label, [Path(p) for p in paths.split(",")]

        def point(spec: str) -> tuple[str, int, Path]:
            label, _, path = spec.rpartition("=")
            name, _, steps = label.rpartition("@")
            return name, int(steps), Path(path)

        crossval_curves([runs(s) for s in args.folds], [point(s) for s in args.point], args.out)
    else:
        curves([(s.rpartition("=")[0], Path(s.rpartition("=")[2])) for s in args.run], args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
