"""What a person reads: the verdict, bold cells, the terminal table, figures' labels, console noise."""

import logging
import sys

import numpy as np
import pandas as pd
import torch

from detection.yolo import ultralytics_output_to
from fusion.train.val_grid import validation_grid
from pipelines.fuse_then_detect.report import _best_bold, bar_chart, heatmap, verdict_line
from pipelines.reports import summary_markdown, summary_plain, summary_table


class _Outcome:
    def __init__(self, name, kind, value):
        self.name, self.kind, self.value = name, kind, value

    def mean_std(self, attr):
        return self.value, 0.0


def test_all_zero_detectors_give_an_inconclusive_verdict():
    zero = [_Outcome("IR", "source", 0.0), _Outcome("VI", "source", 0.0), _Outcome("Avg", "baseline", 0.0)]
    line = verdict_line(zero)
    assert line.startswith("VERDICT: inconclusive") and "NOT" not in line and "detector.epochs" in line
    # one non-zero score is a real comparison again
    assert verdict_line(zero[:2] + [_Outcome("Avg", "baseline", 0.1)]).startswith("VERDICT: every fused")


def test_only_the_best_cells_are_bold():
    assert _best_bold([0.0, 0.0, 0.0], ["a", "b", "c"]) == ["a", "b", "c"]  # all equal: no best
    assert _best_bold([0.2, 0.5, 0.5, float("nan")], list("abcd")) == ["a", "**b**", "**c**", "d"]


def test_source_rows_are_never_marked_best():
    frame = pd.DataFrame(
        {"method": ["ir", "vi", "gff", "avg"], "Nabf": [0.0, 0.0, 0.2, 0.1], "SF": [9.0, 1.0, 3.0, 2.0]}
    )
    md = summary_markdown(frame, decimals=1, unranked=["ir", "vi"])
    rows = {line.split("|")[1].strip(): line for line in md.splitlines() if line.startswith("| ")}
    assert "**" not in rows["ir"] and "<u>" not in rows["ir"] and "**" not in rows["vi"]
    assert rows["avg"].count("**") == 2 and rows["gff"].count("**") == 2  # avg best Nabf, gff best SF
    assert "ir, vi: sources, not ranked" in md


def test_terminal_table_is_plain_and_compact():
    frame = pd.DataFrame({"method": ["ir", "gff"], "EN": [6.1234, 7.0], "Nabf": [0.0, 0.01]})
    text = summary_plain(summary_table(frame))
    assert "**" not in text and "<u>" not in text and "|" not in text and "±" not in text
    lines = text.splitlines()
    assert lines[0].split() == ["method", "EN", "Nabf"] and lines[1].split() == ["ir", "6.12", "0"]
    assert max(len(line) for line in lines) < 40


def test_ultralytics_output_goes_to_the_log_file_not_the_console(tmp_path, capsys):
    logger = logging.getLogger("ultralytics")
    before = logger.handlers[:]
    with ultralytics_output_to(tmp_path / "ultralytics.log"):
        logger.warning("\x1b[34mlayer table\x1b[0m")
        print("epoch 1/1")
        print("progress", file=sys.stderr)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    assert logger.handlers == before
    text = (tmp_path / "ultralytics.log").read_text()
    assert "layer table" in text and "epoch 1/1" in text and "progress" in text


def test_validation_grid_has_a_header_row_naming_the_columns():
    model = torch.nn.Conv2d(2, 1, 1)  # any module taking (ir, vi) works through fusion.inference.fuse

    class TwoInputs(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = model

        def forward(self, ir, vi):
            return self.conv(torch.cat([ir, vi], 1))

    pair = (np.full((37, 37), 50, np.uint8), np.full((37, 37), 200, np.uint8))
    grid = validation_grid(TwoInputs(), [pair], torch.device("cpu"), height=64)
    header, body = grid[:16], grid[16:]
    assert body.shape[0] == 64 and header.min() < 128 < header.max()  # dark text on white
    for column in range(3):  # each of the three columns has its own label
        assert header[:, column * 64 : (column + 1) * 64].min() < 128


def test_table6_figures_title_and_one_colour_per_method(tmp_path):
    df = pd.DataFrame(
        {
            "method": ["IR", "VI", "Avg"],
            "kind": ["source", "source", "baseline"],
            "seeds": [1] * 3,
            "mAP50": [0.0, 0.0, 0.0],
            "mAP50_std": [0.0] * 3,
            "AP50/Car": [0.0, 0.0, 0.0],
            "AP50/Lamp": [np.nan, 0.0, 0.0],
        }
    )
    path = bar_chart(df, ["Car", "Lamp"], tmp_path / "bar.png", "demo: dataset synthetic")
    assert path.stat().st_size > 5_000
    assert heatmap(df, ["Car", "Lamp"], tmp_path / "heat.png", "demo").stat().st_size > 5_000
    from pipelines.fuse_then_detect.report import method_colors

    assert len(set(method_colors(df))) == 3


def test_cli_logging_keeps_library_info_off_the_console():
    import mlflow  # noqa: F401 - MLflow sets its logger up on import; configure_logging must win afterwards

    from pipelines.cli_common import configure_logging

    configure_logging()
    assert not logging.getLogger("mlflow.store.db.utils").isEnabledFor(logging.INFO)
    assert not logging.getLogger("alembic.runtime.migration").isEnabledFor(logging.INFO)
    assert logging.getLogger("pipelines.fuse_then_detect.stages").isEnabledFor(logging.INFO)


def test_terminal_columns_never_run_together():
    # VIFB-convention magnitudes side by side (evaluate --convention vifb printed "0.6291.13e+03")
    frame = pd.DataFrame(
        {
            "method": ["average", "gff"],
            "Qabf": [0.6291, 0.7],
            "CE": [1130.4, 0.0123],
            "PSNR": [57.98, 61.2],
            "Nabf": [-1.0e-05, 123456.0],
        }
    )
    lines = summary_plain(summary_table(frame)).splitlines()
    assert [line.split() for line in lines] == [
        ["method", "Qabf", "CE", "PSNR", "Nabf"],
        ["average", "0.629", "1.13e+03", "58", "-1e-05"],
        ["gff", "0.7", "0.0123", "61.2", "1.23e+05"],
    ]
    assert len({len(line) for line in lines}) == 1  # right-aligned columns of one width each
