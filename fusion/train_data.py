"""Training data for S4Fusion: the paired-crop dataset and a resumable distributed sampler.

Every random choice of an item (crop position, flips) is drawn from a generator seeded by
(seed, epoch, index), so a sample's content does not depend on worker processes, on which rank
reads it, or on whether the run was interrupted and resumed.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler

from data.adapters import PairedImageDataset
from data.color import to_gray


class PairedCropDataset(Dataset):
    """(ir, vi_y) float32 tensors (1, S, S) in [0, 1]: random paired crop of size S and flips.

    Images smaller than the crop are zero-padded (bottom/right) to it; the loss then sees the
    padding as part of both sources, which keeps small datasets (e.g. TNO) usable.
    """

    def __init__(self, datasets: Sequence[PairedImageDataset], crop_size: int, hflip: bool = True,
                 vflip: bool = True, seed: int = 0):
        self.items = [(d, i) for d in datasets for i in range(len(d))]
        if not self.items:
            raise ValueError("the training data is empty (no IR/VIS pairs in any configured source)")
        self.crop_size, self.hflip, self.vflip, self.seed = crop_size, hflip, vflip, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.items)

    def name(self, index: int) -> str:
        ds, i = self.items[index]
        return f"{ds.name}/{ds.stems[i]}"

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        ds, i = self.items[index]
        sample = ds[i]
        ir, vi = sample.ir.astype(np.float32), to_gray(sample.vi)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        ir, vi = paired_crop_flip(ir, vi, self.crop_size, rng, self.hflip, self.vflip)
        return (torch.from_numpy(ir / np.float32(255.0))[None], torch.from_numpy(vi / np.float32(255.0))[None])


def paired_crop_flip(ir: np.ndarray, vi: np.ndarray, size: int, rng: np.random.Generator,
                     hflip: bool, vflip: bool) -> tuple[np.ndarray, np.ndarray]:
    """Identical random crop (zero-padded when smaller) and flips of two (H, W) arrays."""
    h, w = ir.shape
    if h < size or w < size:
        pad = ((0, max(0, size - h)), (0, max(0, size - w)))
        ir, vi = np.pad(ir, pad), np.pad(vi, pad)
        h, w = ir.shape
    top, left = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    ir, vi = ir[top:top + size, left:left + size], vi[top:top + size, left:left + size]
    flip_h, flip_v = rng.random() < 0.5, rng.random() < 0.5
    if hflip and flip_h:
        ir, vi = ir[:, ::-1], vi[:, ::-1]
    if vflip and flip_v:
        ir, vi = ir[::-1], vi[::-1]
    return np.ascontiguousarray(ir), np.ascontiguousarray(vi)


class ResumableDistributedSampler(DistributedSampler):
    """DistributedSampler (seeded shuffle per epoch, tail dropped) that can start mid-epoch."""

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, seed: int):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.start = 0

    def set_start(self, start: int) -> None:
        """Skip the first ``start`` indices of this rank's share of the current epoch."""
        self.start = start

    def __iter__(self) -> Iterator[int]:
        return iter(list(super().__iter__())[self.start:])

    def __len__(self) -> int:
        return self.num_samples - self.start
