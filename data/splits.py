"""Deterministic seeded splits, written once as text lists of stems with a content hash.

No paper released its M3FD split, so ours is fixed by (stems, ratios, seed, grouping) and stored in
the run directory: ``<part>.txt`` (one stem per line) per part plus ``split.sha256``. Reruns load it
back; a different split in the same directory is refused unless ``overwrite=True``.

M3FD's frames come from video-like sequences: neighbouring frames are near-duplicates, so a random
frame-level split leaks test content into training. ``group_consecutive=k`` keeps each run of k
consecutive stems (in sorted order) inside one part.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from data.io import write_text_atomic
from runtime.errors import InputError

Split = dict[str, list[str]]
SPLIT_PARTS: tuple[str, ...] = ("train", "val", "test")
HASH_FILE = "split.sha256"


class SplitMismatchError(InputError, RuntimeError):
    """An existing split directory holds a different split than the one requested."""


def _part_sizes(n: int, ratios: Sequence[float]) -> list[int]:
    """Largest-remainder apportionment of n items to the ratios (sum exactly n)."""
    r = np.asarray(ratios, np.float64)
    if r.ndim != 1 or (r < 0).any() or r.sum() <= 0:
        raise ValueError(f"ratios must be non-negative with a positive sum, got {tuple(ratios)}")
    exact = n * r / r.sum()
    sizes = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - sizes), kind="stable")[: n - sizes.sum()]:
        sizes[i] += 1
    return sizes.tolist()


def split_stems(
    stems: Sequence[str],
    ratios: Sequence[float] = (0.7, 0.1, 0.2),
    seed: int = 0,
    group_consecutive: int | None = None,
    parts: Sequence[str] = SPLIT_PARTS,
) -> Split:
    """Split ``stems`` into ``parts`` (train/val/test) with the given ratios, deterministically.

    The result depends only on the SET of stems (they are sorted first), the ratios, the seed and
    the grouping. With ``group_consecutive=k`` whole groups of k consecutive stems are assigned, so
    part sizes match the ratios to within one group. Each part's list is sorted.
    """
    if len(ratios) != len(parts):
        raise ValueError(f"{len(ratios)} ratios for {len(parts)} parts {tuple(parts)}")
    ordered = sorted(set(stems))
    if len(ordered) != len(stems):
        raise ValueError("stems contain duplicates")
    k = 1 if group_consecutive is None else int(group_consecutive)
    if k < 1:
        raise ValueError(f"group_consecutive must be >= 1, got {group_consecutive}")
    groups = [ordered[i : i + k] for i in range(0, len(ordered), k)]
    order = np.random.default_rng(seed).permutation(len(groups))
    targets = np.cumsum(_part_sizes(len(ordered), ratios))
    out: Split = {p: [] for p in parts}
    taken, part = 0, 0
    for gi in order:
        # Move on to the next part once this one has reached its share (rounded to whole groups).
        while part < len(parts) - 1 and taken + len(groups[gi]) / 2 > targets[part]:
            part += 1
        out[parts[part]].extend(groups[gi])
        taken += len(groups[gi])
    return {p: sorted(v) for p, v in out.items()}


def build_fusion_mix(
    sources: Mapping[str, Sequence[str]], fractions: Mapping[str, float], seed: int = 0
) -> Split:
    """Fusion-training mix: for each source dataset, a seeded random ``fractions[source]`` of its stems.

    The paper's mix is MSRS train (fraction 1.0) + 70% of M3FD + 70% of RoadScene. For M3FD, pass
    the *train* part of the detection split with fraction 1.0 so fusion training never sees the
    detection val/test images (see :func:`paper_fusion_mix`).
    """
    out: Split = {}
    for i, (source, stems) in enumerate(sorted(sources.items())):
        fraction = float(fractions.get(source, 1.0))
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"fraction for {source!r} must be in [0, 1], got {fraction}")
        if fraction == 1.0:
            out[source] = sorted(stems)
        else:
            out[source] = split_stems(stems, (fraction, 1.0 - fraction), seed=seed + i, parts=("in", "out"))[
                "in"
            ]
    return out


def paper_fusion_mix(
    msrs_train: Sequence[str],
    m3fd_split: Mapping[str, Sequence[str]],
    roadscene: Sequence[str],
    seed: int = 0,
) -> Split:
    """MSRS train + M3FD detection-train (its 70%) + a seeded 70% of RoadScene."""
    return build_fusion_mix(
        {"msrs": msrs_train, "m3fd": m3fd_split["train"], "roadscene": roadscene},
        {"msrs": 1.0, "m3fd": 1.0, "roadscene": 0.7},
        seed=seed,
    )


def split_hash(split: Mapping[str, Sequence[str]]) -> str:
    """sha256 over the part names and their stems (order of parts irrelevant)."""
    h = hashlib.sha256()
    for part in sorted(split):
        h.update(f"[{part}]\n".encode())
        for stem in split[part]:
            h.update(f"{stem}\n".encode())
    return h.hexdigest()


def _check_part_name(part: str) -> None:
    if not part or "/" in part or os.sep in part or part.startswith("."):
        raise ValueError(f"invalid split part name {part!r}")


def load_split(directory: str | os.PathLike) -> Split:
    """Read a split written by :func:`write_split`, verifying its content hash."""
    directory = Path(directory)
    hash_file = directory / HASH_FILE
    if not hash_file.is_file():
        raise FileNotFoundError(f"{directory}: no split here ({HASH_FILE} missing)")
    lines = hash_file.read_text(encoding="utf-8").split()
    expected, parts = lines[0], lines[1:]
    split: Split = {}
    for part in parts:
        f = directory / f"{part}.txt"
        if not f.is_file():
            raise FileNotFoundError(f"{f}: split part listed in {hash_file} is missing")
        split[part] = [s.strip() for s in f.read_text(encoding="utf-8").splitlines() if s.strip()]
    actual = split_hash(split)
    if actual != expected:
        raise SplitMismatchError(
            f"{directory}: split files were modified (hash {actual[:12]} != recorded "
            f"{expected[:12]}); restore them or rewrite with overwrite=True"
        )
    return split


def write_split(
    split: Mapping[str, Sequence[str]], directory: str | os.PathLike, overwrite: bool = False
) -> str:
    """Write ``split`` to ``directory`` and return its hash; an identical existing split is reused.

    A different split already there raises SplitMismatchError (your results would silently stop
    being comparable) unless ``overwrite=True``.
    """
    directory = Path(directory)
    split = {p: list(v) for p, v in split.items()}
    for part in split:
        _check_part_name(part)
    new_hash = split_hash(split)
    if (directory / HASH_FILE).exists() and not overwrite:
        try:
            old = load_split(directory)
        except (SplitMismatchError, FileNotFoundError) as exc:
            raise SplitMismatchError(f"{exc}\n(pass overwrite=True to replace it)") from None
        old_hash = split_hash(old)
        if old_hash == new_hash:
            return new_hash
        raise SplitMismatchError(
            f"{directory} already holds a different split (hash {old_hash[:12]}, parts "
            f"{ {p: len(v) for p, v in old.items()} }) than the requested one (hash {new_hash[:12]}, parts "
            f"{ {p: len(v) for p, v in split.items()} }); use another directory or overwrite=True"
        )
    for part, stems in split.items():
        write_text_atomic(directory / f"{part}.txt", "".join(f"{s}\n" for s in stems))
    # The hash file is written last: its presence marks a complete split.
    write_text_atomic(directory / HASH_FILE, "\n".join([new_hash, *split]) + "\n")
    return new_hash
