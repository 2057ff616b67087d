"""Report helpers shared by the pipelines: paper-style tables (Markdown + CSV) and image grids (PNG).

Tables take a DataFrame of per-image rows (one row per method x image, one column per metric) and
print ``mean ± std`` per method with ↑/↓ from the metric's direction, the best value in bold and
the second best underlined, like Tables I-IV of fusion papers. Every file is written atomically.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from data.io import write_csv_atomic, write_figure_atomic, write_text_atomic
from fusion.metrics import METRIC_DIRECTIONS, summarize


def _format_number(value: float, decimals: int) -> str:
    return "nan" if not math.isfinite(value) else f"{value:.{decimals}f}"


def _ranks(values: Sequence[float], direction: int) -> list[int | None]:
    """0 for the best, 1 for the second best, None otherwise (NaN never ranks; ties share a rank)."""
    finite = sorted({v for v in values if math.isfinite(v)}, reverse=direction > 0)
    order = {v: i for i, v in enumerate(finite[:2])}
    return [order.get(v) if math.isfinite(v) else None for v in values]


def mark_best(values: Sequence[float], texts: Sequence[str], direction: int = 1) -> list[str]:
    """``texts`` with the best value's cell in **bold** and the second best <u>underlined</u>."""
    return [
        f"**{t}**" if r == 0 else f"<u>{t}</u>" if r == 1 else t
        for t, r in zip(texts, _ranks([float(v) for v in values], direction))
    ]


def summary_table(
    per_image: pd.DataFrame,
    metrics: Sequence[str] | None = None,
    group_by: str = "method",
    directions: Mapping[str, int] | None = None,
) -> pd.DataFrame:
    """Numeric summary: one row per ``group_by`` value (first-appearance order), columns
    ``<metric>_mean/_std/_n/_dropped`` for every metric column present in ``per_image``."""
    directions = {**METRIC_DIRECTIONS, **(directions or {})}
    metrics = [
        m for m in (metrics or [c for c in per_image.columns if c in directions]) if m in per_image.columns
    ]
    return summarize(per_image, group_by=group_by, metrics=metrics)


def summary_markdown(
    per_image: pd.DataFrame,
    metrics: Sequence[str] | None = None,
    group_by: str = "method",
    directions: Mapping[str, int] | None = None,
    decimals: int = 3,
    title: str | None = None,
    unranked: Sequence[str] = (),
) -> str:
    """Markdown table ``group | metric ↑/↓ ...`` with ``mean ± std`` cells, best **bold**, second <u>underlined</u>.

    Groups in ``unranked`` (the source images IR/VI: references, not competitors) are never marked.
    """
    directions = {**METRIC_DIRECTIONS, **(directions or {})}
    summary = summary_table(per_image, metrics, group_by, directions)
    metrics = [c[: -len("_mean")] for c in summary.columns if c.endswith("_mean")]
    header = [group_by] + [f"{m} {'↑' if directions.get(m, 1) > 0 else '↓'}" for m in metrics]
    cells = [[str(v)] for v in summary[group_by]]
    ranked = [str(v) not in set(unranked) for v in summary[group_by]]
    notes = []
    for m in metrics:
        means = summary[f"{m}_mean"].astype(float).tolist()
        ranks = _ranks([v if r else math.nan for v, r in zip(means, ranked)], directions.get(m, 1))
        for row, mean, sd, rank, dropped in zip(
            cells, means, summary[f"{m}_std"], ranks, summary[f"{m}_dropped"]
        ):
            text = f"{_format_number(mean, decimals)} ± {_format_number(float(sd), decimals)}"
            text = f"**{text}**" if rank == 0 else f"<u>{text}</u>" if rank == 1 else text
            if dropped:
                text += f" ({dropped} n/a)"
            row.append(text)
        total_dropped = int(summary[f"{m}_dropped"].sum())
        if total_dropped:
            notes.append(f"{m}: {total_dropped} value(s) undefined (NaN) or missing, left out of the means")
    lines = [f"### {title}", ""] if title else []
    lines += [render_markdown(header, cells, ["---"] + [":---:"] * len(metrics)).rstrip("\n")]
    lines += [
        "",
        "mean ± std over images; ↑ higher is better, ↓ lower is better; best in **bold**, "
        "second <u>underlined</u>" + (f" ({', '.join(unranked)}: sources, not ranked)." if unranked else "."),
    ]
    lines += [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def write_summary(
    per_image: pd.DataFrame,
    out_dir: str | os.PathLike,
    stem: str = "summary",
    metrics: Sequence[str] | None = None,
    group_by: str = "method",
    directions: Mapping[str, int] | None = None,
    decimals: int = 3,
    title: str | None = None,
    unranked: Sequence[str] = (),
) -> dict[str, Path]:
    """Write ``<stem>.md`` (formatted table) and ``<stem>.csv`` (numeric mean/std/n/dropped) into ``out_dir``."""
    out_dir = Path(out_dir)
    markdown = summary_markdown(per_image, metrics, group_by, directions, decimals, title, unranked)
    table = summary_table(per_image, metrics, group_by, directions)
    return {
        "markdown": write_text_atomic(out_dir / f"{stem}.md", markdown),
        "csv": write_csv_atomic(out_dir / f"{stem}.csv", table),
    }


def summary_plain(summary: pd.DataFrame, group_by: str = "method", digits: int = 3) -> str:
    """A compact plain-text table for the terminal: one row per group, the metric means only."""
    metrics = [c[: -len("_mean")] for c in summary.columns if c.endswith("_mean")]
    columns = [[str(v) for v in summary[group_by]]] + [
        [f"{float(v):.{digits}g}" for v in summary[f"{m}_mean"]] for m in metrics
    ]
    header = [group_by, *metrics]
    # each column as wide as its widest cell (e.g. VIFB's 1.13e+03), two spaces between columns
    widths = [max(len(h), *(len(v) for v in col)) for h, col in zip(header, columns)]
    lines = [header[0].ljust(widths[0]) + "".join(f"  {h:>{w}}" for h, w in zip(header[1:], widths[1:]))]
    for i in range(len(summary)):
        lines.append(
            columns[0][i].ljust(widths[0])
            + "".join(f"  {col[i]:>{w}}" for col, w in zip(columns[1:], widths[1:]))
        )
    return "\n".join(lines)


def render_markdown(
    header: Sequence[str], rows: Sequence[Sequence[object]], rules: Sequence[str] | None = None
) -> str:
    """The one Markdown table renderer: a header, alignment rules (default ``---``) and rows."""
    rules = list(rules) if rules is not None else ["---"] * len(header)
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "|".join(rules) + "|"]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def markdown_table(frame: pd.DataFrame) -> str:
    """A plain Markdown rendering of a small DataFrame (no index)."""
    return render_markdown(list(frame.columns), list(frame.itertuples(index=False)))


def comparison_grid(
    rows: Mapping[str, Mapping[str, np.ndarray]],
    path: str | os.PathLike,
    cell_width: float = 2.4,
    title: str | None = None,
) -> Path:
    """Save a grid PNG: one row per image (``rows`` key), one column per label (sources, methods...).

    Every row must name the same columns; images are uint8 (H, W) gray or (H, W, 3) RGB.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        raise ValueError("comparison_grid: no rows to draw")
    columns = list(next(iter(rows.values())))
    for name, row in rows.items():
        if list(row) != columns:
            raise ValueError(f"comparison_grid: row {name!r} has columns {list(row)}, expected {columns}")
    aspect = max(img.shape[0] / img.shape[1] for row in rows.values() for img in row.values())
    fig, axes = plt.subplots(
        len(rows),
        len(columns),
        squeeze=False,
        figsize=(cell_width * len(columns), cell_width * aspect * len(rows) + 0.6),
    )
    for r, (name, row) in enumerate(rows.items()):
        for c, (label, img) in enumerate(row.items()):
            ax = axes[r][c]
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(label, fontsize=9)
            if c == 0:
                ax.set_ylabel(name, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    try:
        return write_figure_atomic(path, fig, dpi=110)
    finally:
        plt.close(fig)
