"""Dataset adapters on small fixtures in each real layout (from the shared samples and synthetic data)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data.adapters import DatasetError, PairedImageDataset, open_dataset
from data.classes import LLVIP_CLASSES, M3FD_CLASSES
from data.io import read_image
from data.synthetic import SyntheticConfig, generate_synthetic_dataset
from data.voc import write_voc
from data.yolo_export import yolo_label_lines


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory) -> Path:
    return generate_synthetic_dataset(
        tmp_path_factory.mktemp("syn"), SyntheticConfig(n_images=8, seed=5), progress=False
    )


def _tno_crops(shared_data: Path, n: int, size: int = 48) -> list[tuple[np.ndarray, np.ndarray]]:
    """Small (IR gray, VIS RGB) crops of the shared TNO pairs, to build other layouts quickly."""
    out = []
    for ir_path in sorted((shared_data / "samples" / "TNO" / "ir").glob("*.png"))[:n]:
        ir = read_image(ir_path, "gray")[:size, :size]
        vi = read_image(shared_data / "samples" / "TNO" / "vi" / ir_path.name, "rgb")[:size, :size]
        out.append((ir, vi))
    return out


def test_m3fd_layout_reads_voc_boxes_by_class_name(synthetic_root):
    scenes = {r["stem"]: r for r in json.loads((synthetic_root / "scenes.json").read_text())}
    for name in ("m3fd", "synthetic"):
        ds = open_dataset(name, synthetic_root)
        assert len(ds) == 8 and ds.stems == [f"{i:05d}" for i in range(8)]
        assert ds.has_boxes and ds.class_names == M3FD_CLASSES
    sample = ds["00003"]
    assert sample.name == "00003" and sample.ir.shape == (128, 160) and sample.vi.shape == (128, 160, 3)
    assert sample.ir.dtype == sample.vi.dtype == np.uint8
    assert sample.boxes.dtype == np.float32 and sample.classes.dtype == np.int64
    expected = scenes["00003"]["objects"]
    np.testing.assert_array_equal(sample.boxes, np.array([o["box"] for o in expected], np.float32))
    assert [M3FD_CLASSES[c] for c in sample.classes] == [o["class"] for o in expected]
    assert sample.ir_path == synthetic_root / "Ir" / "00003.png"
    # positional and stem lookup agree; boxes() does not need the pixels
    np.testing.assert_array_equal(ds[3].ir, sample.ir)
    np.testing.assert_array_equal(ds.boxes("00003")[0], sample.boxes)
    assert "00003" in ds and "99999" not in ds
    with pytest.raises(KeyError, match="99999"):
        ds["99999"]
    sub = ds.subset(["00005", "00001"])
    assert isinstance(sub, PairedImageDataset) and sub.stems == ["00005", "00001"]


def test_m3fd_ir_vi_repack_without_annotations(synthetic_root, tmp_path):
    shutil.copytree(synthetic_root / "Ir", tmp_path / "ir")
    shutil.copytree(synthetic_root / "Vis", tmp_path / "vi")
    ds = open_dataset("m3fd", tmp_path)
    assert len(ds) == 8 and not ds.has_boxes
    assert ds[0].boxes.shape == (0, 4) and ds[0].classes.shape == (0,)


def test_msrs_layout_with_yolo_detection_labels(shared_data, tmp_path):
    root = tmp_path / "MSRS"
    crops = _tno_crops(shared_data, 4)
    names = {"train": ["00001D", "00002N"], "test": ["00001N", "00003D"]}
    for split, stems in names.items():
        for stem, (ir, vi) in zip(stems, crops[:2] if split == "train" else crops[2:]):
            for sub, img in (("ir", ir), ("vi", vi)):
                (root / split / sub).mkdir(parents=True, exist_ok=True)
                Image.fromarray(img).save(root / split / sub / f"{stem}.png")
    labels = root / "detection" / "train" / "labels"
    labels.mkdir(parents=True)
    (labels.parent / "classes.txt").write_text("Person\nCar\n")
    box = np.array([[4.0, 8.0, 20.0, 40.0]])
    (labels / "00001D.txt").write_text("\n".join(yolo_label_lines(box, [1], 48, 48)) + "\n")

    with pytest.raises(DatasetError, match="split='train' or split='test'"):
        open_dataset("msrs", root)
    train = open_dataset("msrs", root, split="train")
    assert train.stems == ["00001D", "00002N"] and train.has_boxes and train.class_names == ("Person", "Car")
    # YOLO labels hold 6 decimals of [0, 1] centres/sizes: corners <= 1e-6 * 48 px = 4.8e-5 px off
    np.testing.assert_allclose(train["00001D"].boxes, box, atol=1e-3)
    assert train["00001D"].classes.tolist() == [1]
    assert train["00002N"].boxes.shape == (0, 4)  # no label file: no objects
    test = open_dataset("msrs", root / "test")  # root pointed at one split folder
    assert test.stems == ["00001N", "00003D"] and not test.has_boxes
    np.testing.assert_array_equal(test["00003D"].ir, crops[3][0])


@pytest.mark.parametrize("repack", [False, True])
def test_roadscene_layouts(shared_data, tmp_path, repack):
    src = shared_data / "samples" / "RoadScene"
    ir_dir, vi_dir = (
        (tmp_path / "ir", tmp_path / "vi")
        if repack
        else (tmp_path / "cropinfrared", tmp_path / "crop_HR_visible")
    )
    shutil.copytree(src / "ir", ir_dir)
    shutil.copytree(src / "vi", vi_dir)
    ds = open_dataset("roadscene", tmp_path)
    assert len(ds) == 10 and all(s.startswith("FLIR_") for s in ds.stems) and not ds.has_boxes
    sample = ds["FLIR_00211"]
    assert sample.ir.ndim == 2 and sample.vi.shape == sample.ir.shape + (3,)


def test_tno_gray_mixed_sizes_and_folder_adapter(shared_data):
    ds = open_dataset("tno", shared_data / "samples" / "TNO")
    assert len(ds) == 25
    sizes = {ds[i].ir.shape for i in range(0, 25, 4)}
    assert len(sizes) > 1
    assert all(ds[i].vi.ndim == 2 for i in range(0, 25, 6))  # gray stored as RGB -> gray
    folder = open_dataset("folder", shared_data / "samples" / "RoadScene")
    assert len(folder) == 10


def test_llvip_layout_with_person_xml(shared_data, tmp_path):
    crops = _tno_crops(shared_data, 3)
    for split, stems in (("train", ["010001", "010002"]), ("test", ["190001"])):
        for stem, (ir, vi) in zip(stems, crops if split == "train" else crops[2:]):
            for sub, img in (("infrared", ir), ("visible", vi)):
                (tmp_path / sub / split).mkdir(parents=True, exist_ok=True)
                Image.fromarray(img).save(tmp_path / sub / split / f"{stem}.jpg", quality=95)
            write_voc(
                tmp_path / "Annotations" / f"{stem}.xml",
                f"{stem}.jpg",
                48,
                48,
                ["person"],
                np.array([[3, 4, 20, 44]]),
            )
    with pytest.raises(DatasetError, match="split"):
        open_dataset("llvip", tmp_path)
    ds = open_dataset("llvip", tmp_path, split="train")
    assert ds.stems == ["010001", "010002"] and ds.class_names == LLVIP_CLASSES
    s = ds["010002"]
    np.testing.assert_array_equal(s.boxes, [[3, 4, 20, 44]])
    assert s.classes.tolist() == [0] and s.ir.shape == (48, 48)


def test_layout_errors_are_clear(tmp_path, synthetic_root):
    with pytest.raises(DatasetError, match="unknown dataset 'kaist'"):
        open_dataset("kaist", tmp_path)
    with pytest.raises(DatasetError, match="does not exist"):
        open_dataset("tno", tmp_path / "nope")
    (tmp_path / "ir").mkdir()
    with pytest.raises(DatasetError, match=r"no visible folder in .*expected one of"):
        open_dataset("tno", tmp_path)
    (tmp_path / "vi").mkdir()
    with pytest.raises(DatasetError, match="no IR/VIS image pairs"):
        open_dataset("tno", tmp_path)


def test_unpaired_files_strict_and_lenient(synthetic_root, tmp_path):
    shutil.copytree(synthetic_root / "Ir", tmp_path / "ir")
    shutil.copytree(synthetic_root / "Vis", tmp_path / "vi")
    (tmp_path / "vi" / "00002.png").unlink()
    with pytest.raises(DatasetError, match=r"IR image without VIS partner: .*00002\.png"):
        open_dataset("folder", tmp_path)
    with pytest.warns(UserWarning, match="00002.png"):
        ds = open_dataset("folder", tmp_path, strict=False)
    assert len(ds) == 7 and "00002" not in ds
