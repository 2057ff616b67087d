"""check_data: every error case names the offending file; the CLI exits non-zero; nothing is modified."""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data.dataset_check import check_dataset
from data.synthetic import SyntheticConfig, generate_synthetic_dataset
from pipelines.run import main as run_main


@pytest.fixture(scope="module")
def clean_root(tmp_path_factory) -> Path:
    return generate_synthetic_dataset(
        tmp_path_factory.mktemp("clean"), SyntheticConfig(n_images=6, seed=1), progress=False
    )


@pytest.fixture
def root(clean_root, tmp_path) -> Path:
    dst = tmp_path / "ds"
    shutil.copytree(clean_root, dst)
    return dst


def _edit_xml(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"fixture assumption: {old!r} in {path}"
    path.write_text(text.replace(old, new, 1))


def _first_tag_value(path: Path, tag: str) -> str:
    text = path.read_text()
    return text.split(f"<{tag}>", 1)[1].split(f"</{tag}>", 1)[0]


def test_clean_dataset_passes_with_summary(clean_root, capsys):
    report = check_dataset("m3fd", clean_root, progress=False)
    assert report.ok, report.errors
    assert report.n_pairs == 6 and dict(report.sizes) == {(160, 128): 6}
    assert sum(report.boxes_per_class.values()) > 0
    assert run_main(["check_data", "--dataset", "synthetic", "--root", str(clean_root)]) == 0
    out = capsys.readouterr().out
    assert "pairs: 6" in out and "160x128 (6)" in out and "People" in out and "OK" in out


def _break_ir_without_vis(root: Path) -> str:
    (root / "Vis" / "00001.png").unlink()
    return r"Ir/00001\.png: IR image without a VIS image"


def _break_vis_without_ir(root: Path) -> str:
    (root / "Ir" / "00004.png").unlink()
    return r"Vis/00004\.png: VIS image without an IR image"


def _break_size_mismatch(root: Path) -> str:
    Image.fromarray(np.zeros((80, 100, 3), np.uint8)).save(root / "Vis" / "00002.png")
    return r"Vis/00002\.png: size 100x80 differs from its IR image .*Ir/00002\.png \(160x128\)"


def _break_corrupt_image(root: Path) -> str:
    (root / "Ir" / "00003.png").write_bytes(b"\x89PNG garbage")
    return r"Ir/00003\.png: unreadable or corrupt image"


def _break_truncated_image(root: Path) -> str:
    data = (root / "Vis" / "00005.png").read_bytes()
    (root / "Vis" / "00005.png").write_bytes(data[: len(data) // 3])
    return r"Vis/00005\.png: unreadable or corrupt image"


def _break_truncated_xml(root: Path) -> str:
    path = root / "Annotation" / "00000.xml"
    path.write_text(path.read_text()[:120])
    return r"Annotation/00000\.xml: malformed or truncated XML"


def _break_malformed_xml(root: Path) -> str:
    path = root / "Annotation" / "00001.xml"
    _edit_xml(path, "<xmin>", "<xmin>abc")
    return r"Annotation/00001\.xml: object #0 .*<xmin> is not a number"


def _break_missing_annotation(root: Path) -> str:
    (root / "Annotation" / "00002.xml").unlink()
    return r"Annotation/00002\.xml: annotation file does not exist"


def _break_unknown_class(root: Path) -> str:
    path = root / "Annotation" / "00003.xml"
    _edit_xml(path, f"<name>{_first_tag_value(path, 'name')}</name>", "<name>Pedestrian</name>")
    return r"Annotation/00003\.xml: unknown class name 'Pedestrian'"


def _break_box_outside(root: Path) -> str:
    path = root / "Annotation" / "00004.xml"
    _edit_xml(path, f"<xmax>{_first_tag_value(path, 'xmax')}</xmax>", "<xmax>500</xmax>")
    return r"Annotation/00004\.xml: object #0 .* lies outside the 160x128 image"


def _break_degenerate_box(root: Path) -> str:
    path = root / "Annotation" / "00005.xml"
    _edit_xml(
        path,
        f"<ymax>{_first_tag_value(path, 'ymax')}</ymax>",
        f"<ymax>{_first_tag_value(path, 'ymin')}</ymax>",
    )
    return r"Annotation/00005\.xml: object #0 .* is degenerate"


def _break_empty_folders(root: Path) -> str:
    for sub in ("Ir", "Vis"):
        shutil.rmtree(root / sub)
        (root / sub).mkdir()
    return r"Ir: empty infrared folder"


BREAKERS: list[Callable[[Path], str]] = [
    _break_ir_without_vis,
    _break_vis_without_ir,
    _break_size_mismatch,
    _break_corrupt_image,
    _break_truncated_image,
    _break_truncated_xml,
    _break_malformed_xml,
    _break_missing_annotation,
    _break_unknown_class,
    _break_box_outside,
    _break_degenerate_box,
    _break_empty_folders,
]


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("breaker", BREAKERS, ids=lambda f: f.__name__.removeprefix("_break_"))
def test_each_error_is_reported_by_file_and_cli_fails(root, breaker, capsys):
    pattern = breaker(root)
    before = _tree_digest(root)
    report = check_dataset("m3fd", root, progress=False)
    assert not report.ok
    assert any(re.search(pattern, e) for e in report.errors), report.errors
    assert run_main(["check_data", "--dataset", "m3fd", "--root", str(root)]) == 2
    out = capsys.readouterr().out
    assert "FAILED" in out and re.search(pattern, out)
    assert _tree_digest(root) == before  # nothing modified


def test_missing_layout_is_an_error_not_a_crash(tmp_path, capsys):
    assert run_main(["check_data", "--dataset", "m3fd", "--root", str(tmp_path)]) == 2
    assert "no infrared folder" in capsys.readouterr().out


def test_only_the_broken_pairs_are_reported(root):
    _break_unknown_class(root)
    _break_degenerate_box(root)
    report = check_dataset("m3fd", root, progress=False)
    assert len(report.errors) == 2
    assert report.n_pairs == 6
