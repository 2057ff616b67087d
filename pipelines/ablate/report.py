"""Table V of the ablation run: Markdown + CSV, one row per variant, ours beside the paper.

Ours: mean ± std over the test images of each metric, params (M) and GFLOPs per variant; the
paper's printed value of the same experiment beside each metric (fusion.paper); best of each
column **bold**, second <u>underlined</u>.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from data.io import write_csv_atomic, write_text_atomic
from fusion import paper
from pipelines.ablate.config import AblationConfig, Variant
from pipelines.ablate.jobs import VariantResult
from pipelines.reports import mark_best, render_markdown


def _fmt(value: float, decimals: int = 3) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.{decimals}f}"


def table5_frame(
    variants: list[Variant], results: dict[str, VariantResult], metrics: list[str]
) -> pd.DataFrame:
    """Numeric Table V: one row per variant that produced a result, in config order."""
    paper_rows = {row.exp: row for row in paper.table5_rows()}
    full = paper.table7_efficiency()["S4Fusion"]
    rows = []
    for v in variants:
        r = results.get(v.slug)
        if r is None:
            continue
        row: dict[str, object] = {"exp": v.exp, "variant": v.name, "images": len(r.per_image)}
        values = paper_rows[v.exp].values if v.exp is not None else {}
        for m in metrics:
            column = r.per_image[m].astype(float) if m in r.per_image else pd.Series(dtype=float)
            row[f"{m}_mean"] = float(column.mean()) if column.notna().any() else math.nan
            row[f"{m}_std"] = float(column.std()) if column.notna().sum() > 1 else math.nan
            row[f"{m}_paper"] = values.get(m, math.nan)
        row["params_M"], row["GFLOPs"] = r.cost["params_M"], r.cost["GFLOPs"]
        # the paper gives params/FLOPs of the full model only (Table VII)
        is_full = v.exp is not None and not paper_rows[v.exp].overrides
        row["params_M_paper"] = full.params_m if is_full else math.nan
        row["GFLOPs_paper"] = full.gflops if is_full else math.nan
        row["trained_now"] = r.trained_now
        rows.append(row)
    return pd.DataFrame(rows)


def table5_markdown(frame: pd.DataFrame, metrics: list[str], cost_size: list[int]) -> str:
    """Exp. | Variant | <metric> ours | <metric> paper ... | params | GFLOPs (best per column marked)."""
    columns: dict[str, list[str]] = {}
    for m in metrics:
        ours = [
            f"{_fmt(a)} ± {_fmt(s)}" if math.isfinite(s) else _fmt(a)
            for a, s in zip(frame[f"{m}_mean"], frame[f"{m}_std"])
        ]
        columns[f"{m} ↑"] = mark_best(frame[f"{m}_mean"].tolist(), ours)
        columns[f"{m} paper"] = mark_best(
            frame[f"{m}_paper"].tolist(), [_fmt(p) for p in frame[f"{m}_paper"]]
        )
    h, w = cost_size
    for key, title in (("params_M", "params (M)"), ("GFLOPs", f"GFLOPs {h}x{w}")):
        columns[title] = [
            f"{_fmt(v, 4)}" + (f" (paper {_fmt(p, 2)})" if math.isfinite(p) else "")
            for v, p in zip(frame[key], frame[f"{key}_paper"])
        ]
    exps = [
        "–" if e is None or (isinstance(e, float) and math.isnan(e)) else str(int(e)) for e in frame["exp"]
    ]
    rows = [[exps[i], name] + [columns[c][i] for c in columns] for i, name in enumerate(frame["variant"])]
    return render_markdown(["Exp.", "Variant", *columns], rows, [":---:", ":---"] + ["---:"] * len(columns))


def write_table5(
    variants: list[Variant],
    results: dict[str, VariantResult],
    cfg: AblationConfig,
    out_dir: Path,
    notes: list[str],
) -> dict[str, Path]:
    """``table5.csv``, ``table5.md`` and ``per_image_metrics.csv`` in ``out_dir`` (atomic)."""
    frame = table5_frame(variants, results, cfg.metrics)
    per_image = pd.concat(
        [results[v.slug].per_image for v in variants if v.slug in results], ignore_index=True
    )
    steps = {v.train.max_steps for v in variants}
    lines = [
        f"### Table V: ablations ({cfg.name}), ours beside the paper",
        "",
        table5_markdown(frame, cfg.metrics, cfg.cost_size),
        f"Ours: mean ± std over {int(frame['images'].max()) if len(frame) else 0} test pair(s), every variant "
        f"trained from the same base config and seed ({variants[0].train.seed if variants else '–'}; "
        f"max_steps {sorted(steps, key=str)}); `paper`: Table V of {paper.citation()} (MSRS test set, the "
        "paper's full training). Best **bold**, second <u>underlined</u>, per column; ↑ higher is better.",
        "Params (M): parameters used by the forward pass; GFLOPs: one multiply-add = one FLOP (the paper's "
        "fvcore convention); the paper gives them for the full model only (Table VII).",
    ]
    lines += [f"- {n}" for n in notes]
    return {
        "csv": write_csv_atomic(out_dir / "table5.csv", frame),
        "markdown": write_text_atomic(out_dir / "table5.md", "\n".join(lines) + "\n"),
        "per_image": write_csv_atomic(out_dir / "per_image_metrics.csv", per_image),
    }
