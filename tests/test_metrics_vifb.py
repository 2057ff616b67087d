"""convention="vifb" reproduces VIFB's own stored per-image values (../shared/data/vifb/vifb_metrics.csv)
to the printed precision (5 significant digits)."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from fusion.metrics import compute_metrics, load_image
from fusion.metrics.vifb import METRICS, VIFB_NAMES


@pytest.fixture(scope="module")
def vifb(shared_data):
    root = shared_data / "vifb"
    table = pd.read_csv(root / "vifb_metrics.csv")
    table["key"] = table["metric"].map(VIFB_NAMES)
    assert table["key"].notna().all(), "unknown VIFB metric name in the CSV"
    return root, table


def _matches(value: float, printed: float) -> bool:
    # the CSV holds MATLAB's 5-significant-digit print of each value
    return math.isfinite(value) and float(f"{value:.5g}") == printed


def _check(root, table, methods, images, metrics) -> list[str]:
    failures = []
    for method in methods:
        for image in images:
            ir = load_image(root / "input" / "IR" / f"{image}.jpg")
            vi = load_image(root / "input" / "VI" / f"{image}.jpg")
            fused = load_image(root / "fused" / f"{image}_{method}.jpg")
            ours = compute_metrics(ir, vi, fused, convention="vifb", metrics=metrics)
            expected = table[(table.method == method) & (table.image == image) & table.key.isin(metrics)]
            assert len(expected) == len(metrics)
            for row in expected.itertuples():
                if not _matches(ours[row.key], row.value):
                    failures.append(f"{method}/{image}/{row.key}: ours {ours[row.key]!r}, VIFB {row.value}")
    return failures


def test_vifb_table_shape(vifb):
    _, table = vifb
    assert table.groupby(["method", "image"]).size().eq(13).all()
    assert table.method.nunique() == 12 and table.image.nunique() == 21
    assert set(table.key) == set(METRICS)


def test_vifb_all_metrics_few_images(vifb):
    root, table = vifb
    # three sizes (460x630, 276x768, 240x320); the slow test covers every method and image
    failures = _check(root, table, ["GFF", "MSVD"], ["carLight", "carShadow", "walking"], METRICS)
    assert not failures, "\n".join(failures)


def test_vifb_cheap_metrics_full_grid(vifb):
    root, table = vifb
    cheap = ("EN", "SD", "SF", "AG", "CE", "PSNR", "RMSE")
    failures = _check(root, table, sorted(table.method.unique()), sorted(table.image.unique())[:7], cheap)
    assert not failures, "\n".join(failures)


@pytest.mark.slow
def test_vifb_full_grid(vifb):
    root, table = vifb
    failures = _check(root, table, sorted(table.method.unique()), sorted(table.image.unique()), METRICS)
    assert not failures, f"{len(failures)} mismatches:\n" + "\n".join(failures[:50])
