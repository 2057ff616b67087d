"""The paper beside ours: "paper" columns/rows for the reports of Tables I-VII, and parent-run params.

Every value comes from fusion.paper (the paper's printed numbers as cited data); this module only
lines them up with our results. Imports fusion.paper, pipelines.reports and pandas.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from fusion import paper
from pipelines.reports import mark_best, render_markdown

PAPER_SUFFIX = " (paper)"


def _cell(value: float, decimals: int = 3) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.{decimals}f}"


# ---- Tables I-IV (evaluate) -----------------------------------------------------------------------
def fusion_table_vs_paper(summary: pd.DataFrame, dataset: str) -> tuple[pd.DataFrame, str] | None:
    """Our methods' means (``summary``: method + ``<metric>_mean`` columns) then the paper's rows of
    Table I-IV for ``dataset``, on the paper's columns; None when the paper has no table for it."""
    if dataset.lower() not in paper.FUSION_DATASETS:
        return None
    table = paper.table_metrics(dataset)
    columns = paper.paper_data()["fusion_tables"]["columns"]
    rows = [
        {"method": m, "source": "ours", **{c: float(r.get(f"{c}_mean", math.nan)) for c in columns}}
        for m, r in summary.set_index("method", drop=False).iterrows()
    ]
    rows += [{"method": m + PAPER_SUFFIX, "source": "paper", **values} for m, values in table.items()]
    frame = pd.DataFrame(rows, columns=["method", "source", *columns])
    number, name = (
        paper.fusion_table_number(dataset),
        paper.paper_data()["fusion_tables"]["names"][dataset.lower()],
    )
    cells = {c: mark_best(frame[c].tolist(), [_cell(v) for v in frame[c]]) for c in columns}
    body = render_markdown(
        ["method"] + [f"{c} ↑" for c in columns],
        [[m] + [cells[c][i] for c in columns] for i, m in enumerate(frame["method"])],
        [":---"] + ["---:"] * len(columns),
    )
    missing = [c for c in columns if frame.loc[frame["source"] == "ours", c].isna().all()]
    text = (
        f"### Beside the paper: Table {number} ({name}), {paper.citation()}\n\n"
        + body
        + '\nOurs: mean over the evaluated images; paper rows end in "(paper)" (its printed values, '
        "its test set and pipeline). Best **bold**, second <u>underlined</u>, over all rows.\n"
    )
    if missing:
        text += f"- not measured here: {', '.join(missing)} (– in our rows)\n"
    return frame, text


def fusion_table_params(dataset: str) -> dict[str, float | str]:
    """The paper's Table I-IV values for ``dataset`` as MLflow params (``paper.<method>.<metric>``)."""
    if dataset.lower() not in paper.FUSION_DATASETS:
        return {}
    params: dict[str, float | str] = {
        "paper.table": paper.fusion_table_number(dataset),
        "paper.source": paper.citation(),
    }
    for method, values in paper.table_metrics(dataset).items():
        params.update({f"paper.{method}.{metric}": v for metric, v in values.items()})
    return params


# ---- Table V (ablate) -------------------------------------------------------------------------------
def table5_params() -> dict[str, float | str]:
    params: dict[str, float | str] = {"paper.table": "V", "paper.source": paper.citation()}
    for row in paper.table5_rows():
        params.update({f"paper.exp{row.exp}.{metric}": v for metric, v in row.values.items()})
    return params


# ---- Table VI (fuse_then_detect) ----------------------------------------------------------------------
def table6_paper_map50(methods: Sequence[str]) -> list[float]:
    """The paper's mAP@50 (%) for each of ``methods`` (NaN where the paper has no such row)."""
    values = paper.table6_map50()
    return [values.get(m, math.nan) for m in methods]


def table6_params() -> dict[str, float | str]:
    return {
        "paper.table": "VI",
        "paper.source": paper.citation(),
        **{f"paper.mAP50_pct.{m}": v for m, v in paper.table6_map50().items()},
    }


# ---- Table VII (evaluate) -------------------------------------------------------------------------------
def table7_vs_paper(ours: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Our learned methods' params/GFLOPs (``ours``: method, params_used_M, GFLOPs) then every row of
    the paper's Table VII."""
    rows = [
        {
            "method": r["method"],
            "source": "ours",
            "params_M": float(r["params_used_M"]),
            "GFLOPs": float(r["GFLOPs"]),
        }
        for _, r in ours.iterrows()
    ]
    rows += [
        {"method": m + PAPER_SUFFIX, "source": "paper", "params_M": e.params_m, "GFLOPs": e.gflops}
        for m, e in paper.table7_efficiency().items()
    ]
    frame = pd.DataFrame(rows, columns=["method", "source", "params_M", "GFLOPs"])
    cells = {
        c: mark_best(frame[c].tolist(), [_cell(v, 2) for v in frame[c]], direction=-1)
        for c in ("params_M", "GFLOPs")
    }
    body = render_markdown(
        ["method", "params (M) ↓", "GFLOPs ↓"],
        [[m, cells["params_M"][i], cells["GFLOPs"][i]] for i, m in enumerate(frame["method"])],
        [":---", "---:", "---:"],
    )
    text = (
        "### Beside the paper: Table VII (MSRS test set), "
        + paper.citation()
        + "\n\n"
        + body
        + "\nGFLOPs in the paper's (fvcore) convention: one multiply-add = one FLOP. Paper rows end in "
        '"(paper)". Fewest **bold**, second <u>underlined</u>.\n'
    )
    return frame, text


def table7_params() -> dict[str, float]:
    return {
        f"paper.table7.{m}.{k}": v
        for m, e in paper.table7_efficiency().items()
        for k, v in (("GFLOPs", e.gflops), ("params_M", e.params_m))
    }
