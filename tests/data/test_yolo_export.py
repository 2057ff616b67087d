"""YOLO export: labels round-trip to boxes, one tree per method, data YAML with absolute paths."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from data.adapters import open_dataset
from data.classes import M3FD_CLASSES
from data.io import read_image
from data.splits import split_stems
from data.synthetic import SyntheticConfig, generate_synthetic_dataset
from data.voc import AnnotationError
from data.yolo_export import export_yolo, read_yolo_labels, yolo_label_lines


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = generate_synthetic_dataset(
        tmp_path_factory.mktemp("syn"), SyntheticConfig(n_images=10, seed=2), progress=False
    )
    return open_dataset("synthetic", root)


def test_round_trip_from_files_and_arrays(dataset, tmp_path):
    split = split_stems(dataset.stems, seed=0)
    # method "ir": image files (linked/copied); method "avg": fused arrays written as PNG
    yaml_ir = export_yolo(
        tmp_path / "ir", split, lambda s: dataset.files(s).ir, dataset.boxes, M3FD_CLASSES, progress=False
    )
    avg = {
        s: ((dataset[s].ir.astype(np.uint16) + dataset[s].vi.mean(-1).astype(np.uint16)) // 2).astype(
            np.uint8
        )
        for s in dataset.stems
    }
    yaml_avg = export_yolo(
        tmp_path / "avg", split, avg.__getitem__, dataset.boxes, M3FD_CLASSES, progress=False
    )
    for out in (tmp_path / "ir", tmp_path / "avg"):
        for part, stems in split.items():
            assert sorted(p.stem for p in (out / "images" / part).iterdir()) == stems
            for stem in stems:
                boxes, classes = read_yolo_labels(out / "labels" / part / f"{stem}.txt", 160, 128)
                exp_boxes, exp_classes = dataset.boxes(stem)
                # 6 decimals of [0, 1] centres/sizes: corners <= 1e-6 * 160 px = 1.6e-4 px off
                np.testing.assert_allclose(boxes, exp_boxes, atol=1e-3)
                np.testing.assert_array_equal(classes, exp_classes)
    stem = split["test"][0]
    np.testing.assert_array_equal(read_image(tmp_path / "avg" / "images" / "test" / f"{stem}.png"), avg[stem])
    np.testing.assert_array_equal(
        read_image(tmp_path / "ir" / "images" / "test" / f"{stem}.png"), dataset[stem].ir
    )
    for path, root in ((yaml_ir, tmp_path / "ir"), (yaml_avg, tmp_path / "avg")):
        cfg = yaml.safe_load(path.read_text())
        assert "download" not in cfg
        assert cfg["path"] == str(root.resolve()) and cfg["train"] == str(root.resolve() / "images" / "train")
        assert cfg["names"] == dict(enumerate(M3FD_CLASSES)) and cfg["nc"] == 6


def test_reexport_removes_stale_files_and_caches(dataset, tmp_path):
    split = split_stems(dataset.stems, seed=0)
    image_for = lambda s: dataset.files(s).vi  # noqa: E731
    export_yolo(tmp_path, split, image_for, dataset.boxes, M3FD_CLASSES, progress=False)
    (tmp_path / "labels" / "train.cache").write_text("stale")
    smaller = {k: v[:1] for k, v in split.items()}
    export_yolo(tmp_path, smaller, image_for, dataset.boxes, M3FD_CLASSES, progress=False)
    for part, stems in smaller.items():
        assert [p.stem for p in (tmp_path / "images" / part).iterdir()] == stems
        assert [p.stem for p in (tmp_path / "labels" / part).iterdir()] == stems
    assert not (tmp_path / "labels" / "train.cache").exists()


def test_label_lines_clip_and_drop():
    lines = yolo_label_lines(
        np.array([[-5, 10, 50, 60], [100, 100, 100, 120], [190, 0, 250, 20]]), [2, 0, 1], 200, 100
    )
    assert lines == ["2 0.125000 0.350000 0.250000 0.500000", "1 0.975000 0.100000 0.050000 0.200000"]


def test_malformed_label_file_names_file_and_line(tmp_path):
    (tmp_path / "x.txt").write_text("0 0.5 0.5 0.1 0.1\n3 0.5 oops 0.1 0.1\n")
    with pytest.raises(AnnotationError, match=r"x\.txt:2: malformed YOLO label line"):
        read_yolo_labels(tmp_path / "x.txt", 10, 10)
