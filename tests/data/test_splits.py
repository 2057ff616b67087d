"""Seeded splits: determinism, ratios, consecutive-frame grouping, split files with hashes."""

from __future__ import annotations

import pytest

from data.splits import (
    SplitMismatchError,
    build_fusion_mix,
    load_split,
    paper_fusion_mix,
    split_hash,
    split_stems,
    write_split,
)

M3FD_STEMS = [f"{i:05d}" for i in range(4200)]


def test_split_is_deterministic_and_order_independent():
    a = split_stems(M3FD_STEMS, seed=0)
    b = split_stems(list(reversed(M3FD_STEMS)), seed=0)
    assert a == b
    assert split_stems(M3FD_STEMS, seed=1) != a


def test_split_ratios_partition_exactly():
    split = split_stems(M3FD_STEMS, (0.7, 0.1, 0.2), seed=3)
    assert {k: len(v) for k, v in split.items()} == {"train": 2940, "val": 420, "test": 840}
    everything = split["train"] + split["val"] + split["test"]
    assert sorted(everything) == M3FD_STEMS  # disjoint and complete
    odd = split_stems([str(i) for i in range(11)], (0.7, 0.1, 0.2))
    assert sum(map(len, odd.values())) == 11 and len(odd["train"]) in (7, 8)


def test_group_consecutive_keeps_neighbours_together():
    k = 10
    split = split_stems(M3FD_STEMS, seed=0, group_consecutive=k)
    part_of = {s: p for p, stems in split.items() for s in stems}
    for start in range(0, len(M3FD_STEMS), k):
        assert len({part_of[s] for s in M3FD_STEMS[start : start + k]}) == 1
    # sizes still follow the ratios to within one group
    for part, ratio in zip(("train", "val", "test"), (0.7, 0.1, 0.2)):
        assert abs(len(split[part]) - ratio * len(M3FD_STEMS)) <= k
    assert split == split_stems(M3FD_STEMS, seed=0, group_consecutive=k)


def test_split_input_errors():
    with pytest.raises(ValueError, match="duplicates"):
        split_stems(["a", "a", "b"])
    with pytest.raises(ValueError, match="3 parts"):
        split_stems(["a", "b"], ratios=(0.5, 0.5))


def test_fusion_mix():
    m3fd = split_stems(M3FD_STEMS, seed=0)
    msrs = [f"{i:05d}{'DN'[i % 2]}" for i in range(1083)]
    roadscene = [f"FLIR_{i:05d}" for i in range(221)]
    mix = paper_fusion_mix(msrs, m3fd, roadscene, seed=0)
    assert mix["msrs"] == sorted(msrs) and mix["m3fd"] == m3fd["train"]
    assert len(mix["roadscene"]) == round(0.7 * 221) and set(mix["roadscene"]) <= set(roadscene)
    assert mix == paper_fusion_mix(msrs, m3fd, roadscene, seed=0)
    part = build_fusion_mix({"a": [str(i) for i in range(100)]}, {"a": 0.25}, seed=7)
    assert len(part["a"]) == 25
    with pytest.raises(ValueError, match="fraction"):
        build_fusion_mix({"a": ["x"]}, {"a": 1.5})


def test_write_load_reuse_and_refuse(tmp_path):
    split = split_stems(M3FD_STEMS[:100], seed=0)
    h = write_split(split, tmp_path / "split")
    assert h == split_hash(split) and len(h) == 64
    assert (tmp_path / "split" / "train.txt").read_text().splitlines() == split["train"]
    assert load_split(tmp_path / "split") == split
    mtime = (tmp_path / "split" / "split.sha256").stat().st_mtime_ns
    assert write_split(split, tmp_path / "split") == h  # rerun: reused untouched
    assert (tmp_path / "split" / "split.sha256").stat().st_mtime_ns == mtime
    other = split_stems(M3FD_STEMS[:100], seed=1)
    with pytest.raises(SplitMismatchError, match="already holds a different split"):
        write_split(other, tmp_path / "split")
    assert load_split(tmp_path / "split") == split
    assert write_split(other, tmp_path / "split", overwrite=True) == split_hash(other)
    assert load_split(tmp_path / "split") == other


def test_tampered_or_missing_split_is_detected(tmp_path):
    with pytest.raises(FileNotFoundError, match="no split here"):
        load_split(tmp_path)
    split = split_stems(M3FD_STEMS[:50], seed=0)
    write_split(split, tmp_path)
    with open(tmp_path / "test.txt", "a") as fh:
        fh.write("99999\n")
    with pytest.raises(SplitMismatchError, match="modified"):
        load_split(tmp_path)
