"""Reports of ``fuse_then_detect``: Table VI (Markdown + CSV), bar chart, sample detections, fusion
metrics per method, the verdict line and the one-screen summary."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from data.io import read_image, write_csv_atomic, write_figure_atomic, write_text_atomic
from pipelines.config import PipelineConfig
from pipelines.fuse_then_detect.types import MethodOutcome, PipelineResult, PreparedData
from pipelines.paper_columns import table6_paper_map50
from pipelines.reports import render_markdown, write_summary

SOURCE_KINDS = ("source",)
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
        row = {"method": o.name, "kind": o.kind, "seeds": len(o.seeds), "mAP50": m50, "mAP50_std": s50,
               "mAP50_95": m5095, "mAP50_95_std": s5095}
        for c in class_names:
            row[f"AP50/{c}"], row[f"AP50/{c}_std"] = o.class_ap50(c)
        row["mAP50_coco"] = o.coco_mean()
        row["coco_minus_ultralytics"] = row["mAP50_coco"] - m50
        rows.append(row)
    return pd.DataFrame(rows)


def _best_bold(values: list[float], texts: list[str]) -> list[str]:
    """Bold the highest finite value(s) of a column."""
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return texts
    return [f"**{t}**" if v == max(finite) else t for v, t in zip(values, texts)]


def table6_markdown(df: pd.DataFrame, class_names: list[str]) -> str:
    """Table VI: methods x mAP@50 and per-class AP@50 (best of each column in bold)."""
    multi = int(df["seeds"].max()) > 1
    columns = [("mAP@50", "mAP50"), ("mAP@50:95", "mAP50_95")] + [(f"{c} AP@50", f"AP50/{c}") for c in class_names]
    cells = {}
    for title, key in columns:
        texts = [_fmt(v, s if multi else None) for v, s in zip(df[key], df[f"{key}_std"])]
        cells[title] = _best_bold(list(df[key]), texts)
    cells["COCO mAP@50"] = [_fmt(v) for v in df["mAP50_coco"]]
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
    best_source, best_value = max(sources.items(), key=lambda kv: kv[1])
    losers = [f"{n} {v:.3f}" for n, v in fused.items() if not v > best_value]
    shown = ", ".join(f"{n} {v:.3f}" for n, v in sources.items())
    if not losers:
        return (f"VERDICT: every fused method beats the source-only detectors on mAP@50 "
                f"(fused {min(fused.values()):.3f}-{max(fused.values()):.3f} > {shown})")
    return (f"VERDICT: NOT all fused methods beat the source-only detectors on mAP@50: "
            f"{', '.join(losers)} <= best source {best_source} {best_value:.3f} ({shown})")


def table6_vs_paper(df: pd.DataFrame) -> str:
    """Our mAP@50 beside the paper's Table VI (both in %), for the methods the paper has a row for."""
    paper = table6_paper_map50(list(df["method"]))
    rows = [[name, _fmt(100 * ours, digits=1), _fmt(p, digits=1), "–" if math.isnan(p) else f"{100 * ours - p:+.1f}"]
            for name, ours, p in zip(df["method"], df["mAP50"], paper)]
    return ("### Beside the paper (Table VI, M3FD, mAP@50 in %)\n\n"
            + render_markdown(["Method", "ours", "paper", "ours − paper"], rows, [":---", "---:", "---:", "---:"])
            + "\nThe paper: YOLOv5s fine-tuned 40 epochs on its own (unpublished) 7:1:2 M3FD split; – where the "
              "paper has no row of that name. Compare differences between rows, not absolute values, unless "
              "the dataset, split and detector match the paper's.\n")


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


def bar_chart(df: pd.DataFrame, class_names: list[str], path: Path) -> Path:
    """mAP@50 per method (error bars: std over seeds) and per-class AP@50."""
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4), gridspec_kw={"width_ratios": [1, 2]})
    colors = ["#9e9e9e" if k in SOURCE_KINDS else "#1f77b4" for k in df["kind"]]
    x = np.arange(len(df))
    ax1.bar(x, df["mAP50"], yerr=df["mAP50_std"] if df["seeds"].max() > 1 else None, color=colors, capsize=3)
    best_source = df.loc[df["kind"].isin(SOURCE_KINDS), "mAP50"]
    if len(best_source):
        ax1.axhline(best_source.max(), color="#d62728", ls="--", lw=1, label="best source-only")
        ax1.legend(loc="lower right", fontsize=8)
    for xi, v in zip(x, df["mAP50"]):
        ax1.text(xi, v, f"{v:.3f}", ha="center", va="bottom", fontsize=8)
    ax1.set_xticks(x, df["method"], rotation=30, ha="right")
    ax1.set_ylabel("mAP@50 (test)")
    ax1.set_title("Detection mAP@50 per fusion method")
    width = 0.8 / max(len(df), 1)
    for i, (_, row) in enumerate(df.iterrows()):
        values = [row[f"AP50/{c}"] for c in class_names]
        ax2.bar(np.arange(len(class_names)) + i * width - 0.4 + width / 2, np.nan_to_num(values), width,
                label=row["method"])
    ax2.set_xticks(np.arange(len(class_names)), class_names)
    ax2.set_ylabel("AP@50 (test)")
    ax2.set_title("Per-class AP@50")
    ax2.legend(fontsize=8, ncol=2)
    for ax in (ax1, ax2):
        ax.set_ylim(0, 1.05)
        ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def sample_stems(data: PreparedData, n: int) -> list[str]:
    """``n`` test images spread evenly over the sorted test split (the same for every method)."""
    test = data.split["test"]
    n = min(n, len(test))
    return [test[(i * len(test)) // n] for i in range(n)]


def _draw(ax, image: np.ndarray, gt: tuple[np.ndarray, np.ndarray], predictions, class_names: list[str]) -> None:
    import matplotlib.patches as patches

    cmap = _plt().get_cmap("tab10")
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255)
    for box in gt[0]:
        ax.add_patch(patches.Rectangle((box[0], box[1]), box[2] - box[0], box[3] - box[1], fill=False,
                                       edgecolor="white", lw=0.8, ls="--"))
    for p in predictions:
        if p.score < SCORE_THRESHOLD:
            continue
        x1, y1, x2, y2 = p.box
        color = cmap(p.cls % 10)
        ax.add_patch(patches.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=color, lw=1.2))
        ax.text(x1, y1, f"{class_names[p.cls]} {p.score:.2f}", color="white", fontsize=5,
                bbox={"facecolor": color, "pad": 0.5, "lw": 0}, va="bottom")
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
    fig, axes = plt.subplots(len(outcomes), len(stems), figsize=(2.4 * len(stems), 2.0 * len(outcomes)),
                             squeeze=False)
    for row, o in zip(axes, outcomes):
        _panel_row(row, o, data, stems)
        row[0].set_ylabel(o.name, fontsize=9)
    for ax, stem in zip(axes[0], stems):
        ax.set_title(stem, fontsize=8)
    fig.suptitle(f"Detections on test images (score >= {SCORE_THRESHOLD}; dashed = ground truth)", fontsize=9)
    return _save(fig, path)


def method_samples_png(outcome: MethodOutcome, data: PreparedData, cfg: PipelineConfig, out_dir: Path) -> Path:
    return detections_grid([outcome], data, max(cfg.report.sample_images, 1), out_dir / f"{outcome.name}_samples.png")


# ---- report ---------------------------------------------------------------------------------
def build_report(outcomes: list[MethodOutcome], data: PreparedData, cfg: PipelineConfig, report_dir: Path) -> Path:
    report_dir.mkdir(parents=True, exist_ok=True)
    df = table6_frame(outcomes, data.class_names)
    write_csv_atomic(report_dir / "table6.csv", df.assign(paper_mAP50_pct=table6_paper_map50(list(df["method"]))))
    table = table6_markdown(df, data.class_names)
    write_text_atomic(report_dir / "table6.md", table)
    bar_chart(df, data.class_names, report_dir / "table6_map50.png")
    if cfg.report.sample_images:
        detections_grid(outcomes, data, cfg.report.sample_images, report_dir / "detections.png")
    per_image = pd.concat([o.fusion for o in outcomes], ignore_index=True)
    write_csv_atomic(report_dir / "fusion_metrics_per_image.csv", per_image)
    fm_files = write_summary(per_image, report_dir, stem="fusion_metrics", metrics=list(cfg.report.fusion_metrics))
    fm_table = fm_files["markdown"].read_text(encoding="utf-8")
    d = cfg.detector
    lines = [
        f"# Fuse-then-detect: {cfg.name}", "",
        f"Dataset `{cfg.dataset.name}`, split {', '.join(f'{p} {len(v)}' for p, v in data.split.items())} "
        f"(sha256 {data.split_hash[:12]}). Detector `{d.initialisation}`, imgsz {d.imgsz}, {d.epochs} epochs, "
        f"batch {d.batch}, {d.optimizer} lr0 {d.lr0}, seeds {cfg.seeds} — identical for every method.", "",
        "## Table VI — detection on the test split", "", table,
        "mAP by ultralytics; `COCO mAP@50` recomputes it with pycocotools on the same predictions "
        "(Δ = COCO − ultralytics; the two use different PR interpolation and matching details).", "",
        verdict_line(outcomes), "", table6_vs_paper(df), "![mAP@50](table6_map50.png)", "",
    ]
    if cfg.report.sample_images:
        lines += ["## Sample detections", "", "![detections](detections.png)", ""]
    lines += [f"## Fusion metrics on the test split ({cfg.report.metrics_convention} convention)", "", fm_table]
    write_text_atomic(report_dir / "report.md", "\n".join(lines))
    return report_dir


def summary_text(result: PipelineResult, cfg: PipelineConfig) -> str:
    """The one-screen summary printed at the end of a run."""
    outcomes = result.outcomes
    class_names = list(next(iter(outcomes)).detections[0].ap50_per_class) if outcomes else []
    df = table6_frame(outcomes, class_names)
    multi = len(cfg.seeds) > 1
    header = f"{'method':<14}{'mAP@50':>16}{'mAP@50:95':>11}{'COCO@50':>9}{'Δ':>8}  " + " ".join(
        f"{c[:6]:>6}" for c in class_names)
    lines = ["", "=" * len(header), f"fuse_then_detect '{cfg.name}' — Table VI (test split, {len(cfg.seeds)} seed(s))",
             "=" * len(header), header]
    for _, r in df.iterrows():
        m50 = _fmt(r["mAP50"], r["mAP50_std"] if multi else None)
        lines.append(f"{r['method']:<14}{m50:>16}{r['mAP50_95']:>11.3f}{r['mAP50_coco']:>9.3f}"
                     f"{r['coco_minus_ultralytics']:>+8.4f}  " + " ".join(
                         f"{_fmt(r[f'AP50/{c}'], digits=2):>6}" for c in class_names))
    lines += ["", result.verdict, "",
              f"report : {result.report_dir / 'report.md'}",
              f"mlflow : mlflow ui --backend-store-uri {result.tracking_uri}  (experiment '{result.experiment}')",
              f"time   : {result.timings.get('total', float('nan')) / 60:.1f} min"]
    return "\n".join(lines)
