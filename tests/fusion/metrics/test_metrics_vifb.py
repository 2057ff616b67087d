"""convention="vifb" reproduces VIFB's own stored per-image values (../shared/data/vifb/vifb_metrics.csv)
to the printed precision (5 significant digits).

../shared/data/vifb/unexplained/ holds two more methods (YDTR, SwinFusion) whose stored values we do
not reproduce; the tests at the end record why (the stored values were not computed from these JPEGs,
docs/metrics.md "VIFB's YDTR and SwinFusion values") without pretending either way."""

from __future__ import annotations

import math
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pandas as pd
import pytest
from PIL import Image, JpegImagePlugin

from fusion.metrics import compute_metrics, load_image
from fusion.metrics.vifb import METRICS, VIFB_NAMES


def _table(path):
    table = pd.read_csv(path)
    table["key"] = table["metric"].map(VIFB_NAMES)
    assert table["key"].notna().all(), f"unknown VIFB metric name in {path}"
    return table


@pytest.fixture(scope="module")
def vifb(shared_data):
    root = shared_data / "vifb"
    return root, _table(root / "vifb_metrics.csv")


@pytest.fixture(scope="module")
def unexplained(shared_data):
    root = shared_data / "vifb"
    return root, _table(root / "unexplained" / "vifb_metrics.csv")


def _matches(value: float, printed: float) -> bool:
    # the CSV holds MATLAB's 5-significant-digit print of each value
    return math.isfinite(value) and float(f"{value:.5g}") == printed


def _check(root, table, methods, images, metrics, fused_dir: str = "fused") -> list[str]:
    failures = []
    for method in methods:
        for image in images:
            ir = load_image(root / "input" / "IR" / f"{image}.jpg")
            vi = load_image(root / "input" / "VI" / f"{image}.jpg")
            fused = load_image(root / fused_dir / f"{image}_{method}.jpg")
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
    methods, images = sorted(table.method.unique()), sorted(table.image.unique())
    # one method per task on every core (the metrics are single-threaded numpy): ~6 min -> ~3 on 2 cores
    with ProcessPoolExecutor(
        max_workers=min(len(methods), os.cpu_count() or 1), mp_context=multiprocessing.get_context("spawn")
    ) as pool:
        per_method = pool.map(_check, *zip(*((root, table, [m], images, METRICS) for m in methods)))
        failures = [f for method_failures in per_method for f in method_failures]
    assert not failures, f"{len(failures)} mismatches:\n" + "\n".join(failures[:50])


# ---------------------------------------------------------------- YDTR and SwinFusion (unexplained/)
UNEXPLAINED = ["SwinFusion", "YDTR"]


def _jpeg_format(path) -> tuple:
    with Image.open(path) as im:
        tables = tuple(tuple(t) for _, t in sorted(im.quantization.items()))
        return im.mode, JpegImagePlugin.get_sampling(im), im.info.get("progressive", 0), tables


def test_unexplained_jpegs_take_the_reproduced_decoding_path(vifb):
    """Same JPEG format as every reproduced method (RGB baseline, 4:2:0, IJG quality-75 tables), so the
    decoder path our values and VIFB's imread take is one already validated on 252 reproduced images."""
    root, _ = vifb
    reproduced = {_jpeg_format(p) for p in (root / "fused").glob("*.jpg")}
    unexplained = {
        _jpeg_format(p) for m in UNEXPLAINED for p in (root / "unexplained" / "fused").glob(f"*_{m}.jpg")
    }
    assert len(reproduced) == 1 and unexplained == reproduced


def test_unexplained_fused_only_metrics_do_not_come_from_these_files(unexplained):
    """EN and SD read the fused image alone (VIFB: per channel, no source, no branch on the method), yet
    VIFB's stored values match these files on 2 and 1 of 42 images, off by up to 0.13% / 0.17%. Measured
    offsets, asserted as such; the evidence that the stored side is the odd one is in docs/metrics.md."""
    root, table = unexplained
    rel = {"EN": [], "SD": []}
    for (method, image), rows in table[table.key.isin(list(rel))].groupby(["method", "image"]):
        ours = compute_metrics(
            root / "input" / "IR" / f"{image}.jpg",
            root / "input" / "VI" / f"{image}.jpg",
            root / "unexplained" / "fused" / f"{image}_{method}.jpg",
            convention="vifb",
            metrics=tuple(rel),
        )
        for row in rows.itertuples():
            rel[row.key].append(
                0.0 if _matches(ours[row.key], row.value) else abs(ours[row.key] / row.value - 1)
            )
    assert {k: len(v) for k, v in rel.items()} == {"EN": 42, "SD": 42}
    assert {k: int(np.sum(np.array(v) == 0.0)) for k, v in rel.items()} == {"EN": 2, "SD": 1}
    assert max(rel["EN"]) < 1.3e-3 and max(rel["SD"]) < 1.7e-3


class StoredValuesNotReproduced(AssertionError):
    """Our values differ from VIFB's stored ones: the one failure the xfail below expects."""


@pytest.mark.xfail(
    strict=True,
    raises=StoredValuesNotReproduced,
    reason="VIFB's stored YDTR/SwinFusion values were not computed from the JPEGs "
    "VIFB publishes (see docs/metrics.md); strict: a pass means that finding is wrong; "
    "any other exception (a crash, a missing file, a table row missing) fails the test",
)
def test_unexplained_methods_reproduce_stored_values(unexplained):
    root, table = unexplained
    failures = _check(
        root, table, UNEXPLAINED, ["manwithbag", "walking"], METRICS, fused_dir="unexplained/fused"
    )
    if failures:
        raise StoredValuesNotReproduced(f"{len(failures)} mismatches:\n" + "\n".join(failures))
