"""Reports of ``fuse_then_detect``: Table VI (Markdown + CSV), bar chart, sample detections, fusion
metrics per method, the verdict line and the one-screen summary."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from data.io import read_image, write_csv_atomic, write_figure_atomic, write_text_atomic
from fusion.methods import LEARNED_KINDS, SOURCE_KINDS  # kinds whose rows are references / models
from pipelines.config import PipelineConfig
from pipelines.fuse_then_detect import mlflow_view
from pipelines.fuse_then_detect.types import MethodOutcome, PipelineResult, PreparedData, RunContext
from pipelines.paper_columns import table6_paper_map50
from pipelines.reports import render_markdown, write_summary
from pipelines.statistics import BootstrapDifference, match_detections, paired_bootstrap

SCORE_THRESHOLD = 0.25  # detections drawn in the sample images (mAP itself uses every score)


def _fmt(mean: float, std: float | None = None, digits: int = 3) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    text = f"{mean:.{digits}f}"
    return f"{text} ± {std:.{digits}f}" if std is not None else text


def table6_frame(outcomes: list[MethodOutcome], class_names: list[str]) -> pd.DataFrame:
    """One row per method: mAP@50 (mean, std over seeds), mAP@50-95, per-class AP@50, COCO check."""
    rows = []
    for o in outcomes:
        m50, s50 = o.mean_std("map50")
        m5095, s5095 = o.mean_std("map50_95")
        row = {
            "method": o.name,
            "kind": o.kind,
            "seeds": len(o.seeds),
            "mAP50": m50,
            "mAP50_std": s50,
            "mAP50_95": m5095,
            "mAP50_95_std": s5095,
        }
        for c in class_names:
            row[f"AP50/{c}"], row[f"AP50/{c}_std"] = o.class_ap50(c)
        row["mAP50_coco"], row["mAP50_coco_std"] = o.coco_mean_std()
        row["coco_minus_ultralytics"] = row["mAP50_coco"] - m50
        rows.append(row)
    return pd.DataFrame(rows)


def _best_bold(values: list[float], texts: list[str]) -> list[str]:
    """Bold the highest finite value(s) of a column; nothing when every value is the same (no best)."""
    finite = [v for v in values if not math.isnan(v)]
    if not finite or min(finite) == max(finite):
        return texts
    return [f"**{t}**" if v == max(finite) else t for v, t in zip(values, texts)]


def table6_markdown(df: pd.DataFrame, class_names: list[str]) -> str:
    """Table VI: methods x mAP@50 and per-class AP@50 (best of each column in bold)."""
    multi = int(df["seeds"].max()) > 1
    columns = [("mAP@50", "mAP50"), ("mAP@50:95", "mAP50_95")] + [
        (f"{c} AP@50", f"AP50/{c}") for c in class_names
    ]
    cells = {}
    for title, key in columns:
        texts = [_fmt(v, s if multi else None) for v, s in zip(df[key], df[f"{key}_std"])]
        cells[title] = _best_bold(list(df[key]), texts)
    cells["COCO mAP@50"] = [
        _fmt(v, s if multi else None) for v, s in zip(df["mAP50_coco"], df["mAP50_coco_std"])
    ]
    cells["Δ COCO−UL"] = [f"{v:+.4f}" for v in df["coco_minus_ultralytics"]]
    header = ["Method"] + list(cells)
    rows = [[name] + [cells[t][i] for t in cells] for i, name in enumerate(df["method"])]
    return render_markdown(header, rows, [":---"] + ["---:"] * (len(header) - 1))


def verdict_line(outcomes: list[MethodOutcome]) -> str:
    """Do the fused rows beat IR-only and VI-only? Computed from mean mAP@50, stated plainly."""
    sources = {o.name: o.mean_std("map50")[0] for o in outcomes if o.kind in SOURCE_KINDS}
    fused = {o.name: o.mean_std("map50")[0] for o in outcomes if o.kind not in SOURCE_KINDS}
    if not sources or not fused:
        return "VERDICT: n/a (needs both source rows (IR/VI) and fused rows to compare)"
    if max([*sources.values(), *fused.values()]) == 0:
        return (
            "VERDICT: inconclusive: every detector scored mAP@50 0.000 (under-trained; train longer, "
            "e.g. --set detector.epochs=20, or use more data)"
        )
    best_source, best_value = max(sources.items(), key=lambda kv: kv[1])
    losers = [f"{n} {v:.3f}" for n, v in fused.items() if not v > best_value]
    shown = ", ".join(f"{n} {v:.3f}" for n, v in sources.items())
    if not losers:
        return (
            f"VERDICT: every fused method beats the source-only detectors on mAP@50 "
            f"(fused {min(fused.values()):.3f}-{max(fused.values()):.3f} > {shown})"
        )
    return (
        f"VERDICT: NOT all fused methods beat the source-only detectors on mAP@50: "
        f"{', '.join(losers)} <= best source {best_source} {best_value:.3f} ({shown})"
    )


# ---- paired bootstrap vs the best source-only row ----------------------------------------------
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0


def bootstrap_differences(
    outcomes: list[MethodOutcome], class_names: list[str], max_dets: int
) -> tuple[str | None, dict[str, BootstrapDifference]]:
    """Per fused method: paired bootstrap 95% interval of its mAP@50 (pycocotools-exact, mean
    over seeds) minus the best source-only row's, over test images; (best source, {method: diff})."""
    from detection.coco_eval import ground_truth_from_yolo

    sources = [o for o in outcomes if o.kind in SOURCE_KINDS]
    if not sources or len(sources) == len(outcomes):
        return None, {}
    best = max(sources, key=lambda o: o.mean_std("map50")[0])

    def matched(o: MethodOutcome):
        gt = ground_truth_from_yolo(o.data_yaml.parent, "test")
        return [match_detections(gt, r.predictions, len(class_names), max_dets) for r in o.detections]

    reference = matched(best)
    return best.name, {
        o.name: paired_bootstrap(matched(o), reference, BOOTSTRAP_RESAMPLES, 0.95, BOOTSTRAP_SEED)
        for o in outcomes
        if o.kind not in SOURCE_KINDS
    }


def bootstrap_section(run: RunContext, outcomes: list[MethodOutcome], report_dir: Path) -> list[str]:
    """The report's bootstrap table (also ``bootstrap.csv``); empty without source and fused rows."""
    cfg, data = run.cfg, run.data
    best, diffs = bootstrap_differences(outcomes, data.class_names, cfg.detector.max_det)
    if best is None:
        return []
    frame = pd.DataFrame(
        [
            {
                "method": n,
                "vs": best,
                "diff_map50": d.difference,
                "low": d.low,
                "high": d.high,
                "excludes_0": d.significant,
            }
            for n, d in diffs.items()
        ]
    )
    write_csv_atomic(report_dir / "bootstrap.csv", frame)
    rows = [
        [n, f"{d.difference:+.3f}", f"[{d.low:+.3f}, {d.high:+.3f}]", "*" if d.significant else ""]
        for n, d in diffs.items()
    ]
    table = render_markdown(
        ["Method", f"Δ mAP@50 vs {best}", "95% interval", "excludes 0"],
        rows,
        [":---", "---:", "---:", ":---:"],
    )
    return [
        f"## Fused methods vs the best source-only row ({best})",
        "",
        table,
        f"Paired bootstrap over test images ({BOOTSTRAP_RESAMPLES} resamples, seed {BOOTSTRAP_SEED}) of the "
        f"pycocotools-exact mAP@50 difference, each method's mAP being the mean over its {len(cfg.seeds)} "
        "seed(s); `*`: the interval excludes 0. How to read it: docs/pipeline.md.",
        "",
    ]


def table6_vs_paper(df: pd.DataFrame) -> str:
    """Our mAP@50 beside the paper's Table VI (both in %), for the methods the paper has a row for."""
    paper = table6_paper_map50(list(df["method"]))
    rows = [
        [
            name,
            _fmt(100 * ours, digits=1),
            _fmt(p, digits=1),
            "–" if math.isnan(p) else f"{100 * ours - p:+.1f}",
        ]
        for name, ours, p in zip(df["method"], df["mAP50"], paper)
    ]
    return (
        "### Beside the paper (Table VI, M3FD, mAP@50 in %)\n\n"
        + render_markdown(["Method", "ours", "paper", "ours − paper"], rows, [":---", "---:", "---:", "---:"])
        + "\nThe paper: YOLOv5s fine-tuned 40 epochs on its own (unpublished) 7:1:2 M3FD split; – where the "
        "paper has no row of that name. Compare differences between rows, not absolute values, unless "
        "the dataset, split and detector match the paper's.\n"
    )


# ---- figures --------------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    try:
        return write_figure_atomic(path, fig, dpi=110, bbox_inches="tight")
    finally:
        _plt().close(fig)


def method_colors(df: pd.DataFrame) -> list:
    """One colour per method, the same in every panel (sources gray shades, fused methods tab10)."""
    plt = _plt()
    grays, palette = iter(["#7f7f7f", "#bdbdbd", "#525252", "#d9d9d9"]), iter(plt.get_cmap("tab10").colors)
    return [next(grays) if k in SOURCE_KINDS else next(palette) for k in df["kind"]]


def bar_chart(df: pd.DataFrame, class_names: list[str], path: Path, title: str = "") -> Path:
    """mAP@50 per method (error bars: std over seeds) and per-class AP@50, one colour per method;
    the legend sits below the panels (never over bars); value labels only in the left panel."""
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.6), gridspec_kw={"width_ratios": [1, 2]})
    colors = method_colors(df)
    x = np.arange(len(df))
    ax1.bar(x, df["mAP50"], yerr=df["mAP50_std"] if df["seeds"].max() > 1 else None, color=colors, capsize=3)
    best_source = df.loc[df["kind"].isin(SOURCE_KINDS), "mAP50"]
    if len(best_source):
        ax1.axhline(best_source.max(), color="black", ls="--", lw=1)
    for xi, v in zip(x, df["mAP50"]):  # one label per bar, inside the axes, rotated so neighbours never touch
        ax1.text(xi, min(v, 0.9) + 0.02, f"{v:.3f}", ha="center", va="bottom", fontsize=8, rotation=90)
    ax1.set_xticks(x, df["method"], rotation=30, ha="right")
    ax1.set_ylabel("mAP@50 (test)")
    ax1.set_title("mAP@50 per method (dashed: best source-only)", fontsize=10)
    width = 0.8 / max(len(df), 1)
    for i, (_, row) in enumerate(df.iterrows()):
        values = [row[f"AP50/{c}"] for c in class_names]
        ax2.bar(
            np.arange(len(class_names)) + i * width - 0.4 + width / 2,
            np.nan_to_num(values),
            width,
            color=colors[i],
            label=row["method"],
        )
    ax2.set_xticks(np.arange(len(class_names)), class_names)
    ax2.set_ylabel("AP@50 (test)")
    ax2.set_title("Per-class AP@50", fontsize=10)
    for ax in (ax1, ax2):
        ax.set_ylim(0, 1.1)
        ax.grid(axis="y", alpha=0.3)
    fig.legend(*ax2.get_legend_handles_labels(), loc="lower center", ncol=len(df), fontsize=9, frameon=False)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return _save(fig, path)


def heatmap(df: pd.DataFrame, class_names: list[str], path: Path, title: str = "") -> Path:
    """Per-class AP@50 as a methods x classes heat map with the values written in ('–': class absent)."""
    plt = _plt()
    columns = ["mAP50"] + [f"AP50/{c}" for c in class_names]
    values = df[columns].to_numpy(dtype=float)
    fig, ax = plt.subplots(figsize=(1.0 + 0.9 * len(columns), 0.8 + 0.45 * len(df)))
    image = ax.imshow(np.ma.masked_invalid(values), cmap="viridis", vmin=0, vmax=1, aspect="auto")
    for (r, c), v in np.ndenumerate(values):
        ax.text(
            c,
            r,
            "–" if np.isnan(v) else f"{v:.2f}",
            ha="center",
            va="center",
            fontsize=8,
            color="black" if not np.isnan(v) and v > 0.6 else "white",
        )
    ax.set_xticks(np.arange(len(columns)), ["mAP@50"] + class_names, rotation=30, ha="right")
    ax.set_yticks(np.arange(len(df)), df["method"])
    fig.colorbar(image, ax=ax, label="AP@50 (test)")
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


def sample_stems(data: PreparedData, n: int) -> list[str]:
    """``n`` test images spread evenly over the sorted test split (the same for every method)."""
    test = data.split["test"]
    n = min(n, len(test))
    return [test[(i * len(test)) // n] for i in range(n)]


def _draw(
    ax, image: np.ndarray, gt: tuple[np.ndarray, np.ndarray], predictions, class_names: list[str]
) -> None:
    import matplotlib.patches as patches

    cmap = _plt().get_cmap("tab10")
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255)
    for box, cls in zip(*gt):
        ax.add_patch(
            patches.Rectangle(
                (box[0], box[1]),
                box[2] - box[0],
                box[3] - box[1],
                fill=False,
                edgecolor="white",
                lw=0.8,
                ls="--",
            )
        )
        ax.text(box[0], box[3], class_names[int(cls)], color="white", fontsize=4.5, va="top")
    shown = [p for p in predictions if p.score >= SCORE_THRESHOLD]
    for p in shown:
        x1, y1, x2, y2 = p.box
        color = cmap(p.cls % 10)
        ax.add_patch(patches.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=color, lw=1.2))
        ax.text(
            x1,
            y1,
            f"{class_names[p.cls]} {p.score:.2f}",
            color="white",
            fontsize=5,
            bbox={"facecolor": color, "pad": 0.5, "lw": 0},
            va="bottom",
        )
    if not shown:
        ax.text(
            0.5,
            0.04,
            f"no detections (score >= {SCORE_THRESHOLD})",
            transform=ax.transAxes,
            ha="center",
            va="bottom",
            fontsize=6,
            color="black",
            bbox={"facecolor": "#ffeb3b", "pad": 1, "lw": 0},
        )
    ax.set_xticks([])
    ax.set_yticks([])


def _panel_row(axes, outcome: MethodOutcome, data: PreparedData, stems: list[str]) -> None:
    from detection.coco_eval import ground_truth_from_yolo

    root = outcome.data_yaml.parent
    gt = ground_truth_from_yolo(root, "test")
    names = {Path(n).stem: n for n in gt}
    predictions = outcome.detections[0].predictions
    for ax, stem in zip(axes, stems):
        name = names[stem]
        image = read_image(root / "images" / "test" / name, "unchanged")
        _draw(ax, image, gt[name], [p for p in predictions if p.image == name], data.class_names)


def detections_grid(outcomes: list[MethodOutcome], data: PreparedData, n: int, path: Path) -> Path:
    """Rows: methods; columns: the same test images; boxes: detections (score >= 0.25, seed 0)
    in class colors, ground truth dashed white."""
    plt = _plt()
    stems = sample_stems(data, n)
    fig, axes = plt.subplots(
        len(outcomes), len(stems), figsize=(2.4 * len(stems), 2.0 * len(outcomes)), squeeze=False
    )
    for row, o in zip(axes, outcomes):
        _panel_row(row, o, data, stems)
        row[0].set_ylabel(o.name, fontsize=9)
    for ax, stem in zip(axes[0], stems):
        ax.set_title(stem, fontsize=8)
    fig.suptitle(
        f"Detections on test images (score >= {SCORE_THRESHOLD}, seed {outcomes[0].seeds[0]}; "
        "dashed white = ground truth with its class)",
        fontsize=9,
    )
    return _save(fig, path)


def method_samples_png(run: RunContext, outcome: MethodOutcome, out_dir: Path) -> Path:
    return detections_grid(
        [outcome], run.data, max(run.cfg.report.sample_images, 1), out_dir / f"{outcome.name}_samples.png"
    )


# ---- report ---------------------------------------------------------------------------------
def build_report(
    run: RunContext,
    outcomes: list[MethodOutcome],
    report_dir: Path,
    failures: list[str] | tuple[str, ...] = (),
) -> Path:
    """The report of the methods in ``outcomes``; ``failures`` (failed jobs) get their own section."""
    cfg, data = run.cfg, run.data
    report_dir.mkdir(parents=True, exist_ok=True)
    df = table6_frame(outcomes, data.class_names)
    write_csv_atomic(
        report_dir / "table6.csv", df.assign(paper_mAP50_pct=table6_paper_map50(list(df["method"])))
    )
    table = table6_markdown(df, data.class_names)
    write_text_atomic(report_dir / "table6.md", table)
    title = (
        f"{cfg.name}: dataset {cfg.dataset.name}, test split ({len(data.split['test'])} images), "
        f"{len(cfg.seeds)} seed(s)"
    )
    bar_chart(df, data.class_names, report_dir / "table6_map50.png", title)
    heatmap(df, data.class_names, report_dir / "table6_heatmap.png", f"Per-class AP@50: {title}")
    if cfg.report.sample_images:
        detections_grid(outcomes, data, cfg.report.sample_images, report_dir / "detections.png")
    per_image = pd.concat([o.fusion for o in outcomes], ignore_index=True)
    write_csv_atomic(report_dir / "fusion_metrics_per_image.csv", per_image)
    fm_files = write_summary(
        per_image,
        report_dir,
        stem="fusion_metrics",
        metrics=list(cfg.report.fusion_metrics),
        unranked=[o.name for o in outcomes if o.kind in SOURCE_KINDS],
    )
    fm_table = fm_files["markdown"].read_text(encoding="utf-8")
    d = cfg.detector
    lines = [
        f"# Fuse-then-detect: {cfg.name}",
        "",
        f"Dataset `{cfg.dataset.name}`, split {', '.join(f'{p} {len(v)}' for p, v in data.split.items())} "
        f"(sha256 {data.split_hash[:12]}). Detector `{d.initialisation}`, imgsz {d.imgsz}, {d.epochs} epochs, "
        f"batch {d.batch}, {d.optimizer} lr0 {d.lr0}, seeds {cfg.seeds} — identical for every method.",
        "",
        "## Table VI — detection on the test split",
        "",
        table,
        "mAP by ultralytics; `COCO mAP@50` recomputes it with pycocotools on the same predictions "
        "(Δ = COCO − ultralytics; the two use different PR interpolation and matching details).",
        "",
        verdict_line(outcomes),
        "",
        table6_vs_paper(df),
        "![mAP@50](table6_map50.png)",
        "",
        "![AP@50 per class](table6_heatmap.png)",
        "",
    ]
    lines += bootstrap_section(run, outcomes, report_dir)
    if failures:
        lines += [
            "## Failed jobs",
            "",
            "These methods are missing from the tables above:",
            "",
            *[f"- {f}" for f in failures],
            "",
        ]
    if cfg.report.sample_images:
        lines += ["## Sample detections", "", "![detections](detections.png)", ""]
    lines += [
        f"## Fusion metrics on the test split ({cfg.report.metrics_convention} convention)",
        "",
        fm_table,
    ]
    write_text_atomic(report_dir / "report.md", "\n".join(lines))
    return report_dir


def summary_text(result: PipelineResult, cfg: PipelineConfig) -> str:
    """The one-screen summary printed at the end of a run."""
    outcomes = result.outcomes
    class_names = list(next(iter(outcomes)).detections[0].ap50_per_class) if outcomes else []
    df = table6_frame(outcomes, class_names)
    multi = len(cfg.seeds) > 1
    header = f"{'method':<14}{'mAP@50':>16}{'mAP@50:95':>16}{'COCO@50':>16}{'Δ':>8}  " + " ".join(
        f"{c[:11]:>11}" for c in class_names
    )
    lines = [
        "",
        "=" * len(header),
        f"fuse_then_detect '{cfg.name}' — Table VI (test split, {len(cfg.seeds)} seed(s))",
        "=" * len(header),
        header,
    ]
    for _, r in df.iterrows():
        m50 = _fmt(r["mAP50"], r["mAP50_std"] if multi else None)
        m5095 = _fmt(r["mAP50_95"], r["mAP50_95_std"] if multi else None)
        coco = _fmt(r["mAP50_coco"], r["mAP50_coco_std"] if multi else None)
        lines.append(
            f"{r['method']:<14}{m50:>16}{m5095:>16}{coco:>16}"
            f"{r['coco_minus_ultralytics']:>+8.4f}  "
            + " ".join(
                f"{_fmt(r[f'AP50/{c}'], r[f'AP50/{c}_std'] if multi else None, digits=2):>11}"
                for c in class_names
            )
        )
    lines += [
        "",
        result.verdict,
        "",
        f"report : {result.report_dir / 'report.md'}",
        f"mlflow : mlflow ui --backend-store-uri {result.tracking_uri}  (experiment '{result.experiment}')",
        f"         then open {mlflow_view.ui_link(result.tracking_uri, result.parent_run_id)}",
        f"         (Table VI as a table: {mlflow_view.table_link(result.tracking_uri, result.parent_run_id)})",
    ]
    # each S4Fusion's pyfunc sits on its method's child run, not on the parent
    lines += [
        f"model  : {o.name}: mlflow.pyfunc.load_model('runs:/{o.run_id}/{mlflow_view.MODEL_NAME}') "
        "(tracking URI as above)"
        for o in outcomes
        if o.kind in LEARNED_KINDS and o.run_id
    ]
    lines.append(f"time   : {result.timings.get('total', float('nan')) / 60:.1f} min")
    return "\n".join(lines)
