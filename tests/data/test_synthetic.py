"""Synthetic IR/VIS data: determinism, idempotence, layout, object sizes, and that fusion matters."""

from __future__ import annotations

import hashlib
import json
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from data.classes import M3FD_CLASSES
from data.color import to_gray
from data.synthetic import SyntheticConfig, generate_synthetic_dataset, render_pair
from data.synthetic_preview import save_example_grid


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    cfg = SyntheticConfig(n_images=5, seed=11)
    a = _digest(generate_synthetic_dataset(tmp_path / "a", cfg, progress=False))
    b = _digest(generate_synthetic_dataset(tmp_path / "b", cfg, progress=False))
    assert a == b
    c = _digest(
        generate_synthetic_dataset(tmp_path / "c", SyntheticConfig(n_images=5, seed=12), progress=False)
    )
    assert a["Ir/00000.png"] != c["Ir/00000.png"]
    # pair i does not depend on how many pairs are generated
    ir, vi, _ = render_pair(SyntheticConfig(n_images=500, seed=11), 3)
    ir5, vi5, _ = render_pair(cfg, 3)
    assert np.array_equal(ir, ir5) and np.array_equal(vi, vi5)


def test_m3fd_layout_names_and_classes(tmp_path):
    root = generate_synthetic_dataset(
        tmp_path, SyntheticConfig(n_images=4, width=192, height=96), progress=False
    )
    for sub, ext in (("Ir", ".png"), ("Vis", ".png"), ("Annotation", ".xml")):
        assert sorted(p.name for p in (root / sub).iterdir()) == [f"{i:05d}{ext}" for i in range(4)]
    xml = ET.parse(root / "Annotation" / "00000.xml").getroot()
    assert xml.findtext("filename") == "00000.png"
    assert (xml.findtext("size/width"), xml.findtext("size/height")) == ("192", "96")
    names = {
        o.findtext("name")
        for p in (root / "Annotation").iterdir()
        for o in ET.parse(p).getroot().iter("object")
    }
    assert names and names <= set(M3FD_CLASSES)
    meta = json.loads((root / "synthetic.json").read_text())
    assert meta["config"]["width"] == 192 and meta["classes"] == list(M3FD_CLASSES)


def test_idempotent_resume_and_config_guard(tmp_path):
    cfg = SyntheticConfig(n_images=3)
    generate_synthetic_dataset(tmp_path, cfg, progress=False)
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    generate_synthetic_dataset(tmp_path, cfg, progress=False)  # complete: nothing rewritten
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()} == before
    digest = _digest(tmp_path)
    (tmp_path / "Vis" / "00001.png").unlink()  # interrupted / damaged: regenerated identically
    generate_synthetic_dataset(tmp_path, cfg, progress=False)
    assert _digest(tmp_path) == digest
    with pytest.raises(FileExistsError, match="different config"):
        generate_synthetic_dataset(tmp_path, SyntheticConfig(n_images=2, seed=4), progress=False)
    generate_synthetic_dataset(tmp_path, SyntheticConfig(n_images=2, seed=4), overwrite=True, progress=False)
    assert sorted(p.name for p in (tmp_path / "Ir").iterdir()) == ["00000.png", "00001.png"]


def _contrast(img: np.ndarray, box, ring: int = 3) -> float:
    """Mean absolute difference between the box pixels and the median of a ring around the box."""
    x0, y0, x1, y1 = box
    h, w = img.shape
    ox0, oy0, ox1, oy1 = max(x0 - ring, 0), max(y0 - ring, 0), min(x1 + ring, w), min(y1 + ring, h)
    outer = img[oy0:oy1, ox0:ox1].astype(np.float64)
    mask = np.ones(outer.shape, bool)
    mask[y0 - oy0 : y1 - oy0, x0 - ox0 : x1 - ox0] = False
    return float(np.mean(np.abs(img[y0:y1, x0:x1] - np.median(outer[mask]))))


@pytest.fixture(scope="module")
def contrasts() -> dict[str, np.ndarray]:
    """(IR contrast, VIS-Y contrast) per object group over 150 generated pairs."""
    cfg = SyntheticConfig(n_images=150, seed=0)
    groups: dict[str, list] = defaultdict(list)
    min_side = np.inf
    for i in range(cfg.n_images):
        ir, vi, rec = render_pair(cfg, i)
        y = to_gray(vi)
        dark = rec["condition"] == "night" or rec["fog"] > 0
        for o in rec["objects"]:
            box = o["box"]
            min_side = min(min_side, box[2] - box[0], box[3] - box[1])
            pair = (_contrast(ir.astype(np.float32), box), _contrast(y, box))
            if o["class"] == "People":
                groups["people_dark" if dark else "people_day"].append(pair)
            elif o["class"] == "Lamp":
                groups["lamp"].append(pair)
            elif not o["warm"]:
                groups["cold_vehicle"].append(pair)
    out = {k: np.asarray(v) for k, v in groups.items()}
    out["min_side"] = np.asarray(min_side)
    return out


def test_objects_are_not_tiny(contrasts):
    assert contrasts["min_side"] >= 10


def test_fusion_matters_people_at_night_or_fog_are_ir_only(contrasts):
    ir, vis = np.median(contrasts["people_dark"], axis=0)
    # VIS noise alone gives a few gray levels of "contrast"; IR shows them clearly
    assert len(contrasts["people_dark"]) >= 20
    assert ir > 40 and vis < 8 and ir > 6 * vis
    day_ir, day_vis = np.median(contrasts["people_day"], axis=0)
    assert day_vis > 3 * vis  # by day VIS sees them too


@pytest.mark.parametrize("group", ["lamp", "cold_vehicle"])
def test_fusion_matters_lamps_and_cold_vehicles_are_vis_only(contrasts, group):
    ir, vis = np.median(contrasts[group], axis=0)
    assert len(contrasts[group]) >= 10
    assert ir < 8 and vis > 15 and vis > 3 * ir


def test_example_grid(tmp_path):
    root = generate_synthetic_dataset(tmp_path / "ds", SyntheticConfig(n_images=40), progress=False)
    out = save_example_grid(root, tmp_path / "grid.png")
    assert out.is_file() and out.stat().st_size > 10_000
