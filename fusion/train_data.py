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
from data.transforms import PairedAugment


class PairedCropDataset(Dataset):
    """(ir, vi_y) float32 tensors (1, S, S) in [0, 1]: ``data.transforms.PairedAugment`` crop + flips.

    Images smaller than the crop are zero-padded (centred) to it by PairedAugment.
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

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        ds, i = self.items[index]
        sample = ds[i]
        item_seed = int(np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(1)[0])
        augment = PairedAugment(self.crop_size, self.hflip, self.vflip, seed=item_seed)
        pair = augment(sample.ir.astype(np.float32) / 255.0, to_gray(sample.vi) / 255.0)
        return torch.from_numpy(np.ascontiguousarray(pair.ir))[None], torch.from_numpy(np.ascontiguousarray(pair.vi))[None]


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
