"""Training data for S4Fusion: configured sources -> stems, the paired-crop dataset, a resumable
distributed sampler and the loader built from them.

Every random choice of an item (crop position, flips) is drawn from a generator seeded by
(seed, epoch, index), so a sample's content does not depend on worker processes, on which rank
reads it, or on whether the run was interrupted and resumed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from data.adapters import DatasetError, PairedImageDataset, open_dataset
from data.color import to_gray
from data.dataset_check import bad_pairs
from data.splits import build_fusion_mix
from data.transforms import PairedAugment
from fusion.train.config import DataSource, TrainConfig
from fusion.train.distributed import DistContext
from fusion.validation import HeldOutValidation
from runtime.config_loader import ConfigError
from runtime.profiles import config_data_path


class PairedCropDataset(Dataset):
    """(ir, vi_y) float32 tensors (1, S, S) in [0, 1]: ``data.transforms.PairedAugment`` crop + flips.

    Images smaller than the crop are zero-padded (centred) to it by PairedAugment. ``cache_images`` keeps
    each pair's full-size (IR, VIS-Y) float32 arrays after the first read (the same values as a re-read).
    """

    def __init__(
        self,
        datasets: Sequence[PairedImageDataset],
        crop_size: int,
        hflip: bool = True,
        vflip: bool = True,
        seed: int = 0,
        cache_images: bool = False,
    ):
        self.items = [(d, i) for d in datasets for i in range(len(d))]
        if not self.items:
            raise ValueError("the training data is empty (no IR/VIS pairs in any configured source)")
        self.crop_size, self.hflip, self.vflip, self.seed = crop_size, hflip, vflip, seed
        self.epoch = 0
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] | None = {} if cache_images else None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.items)

    def _full_pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        ds, i = self.items[index]
        sample = ds[i]
        pair = sample.ir.astype(np.float32) / 255.0, to_gray(sample.vi) / 255.0
        if self._cache is not None:
            self._cache[index] = pair
        return pair

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        item_seed = int(np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(1)[0])
        augment = PairedAugment(self.crop_size, self.hflip, self.vflip, seed=item_seed)
        pair = augment(*self._full_pair(index))
        return torch.from_numpy(np.ascontiguousarray(pair.ir))[None], torch.from_numpy(
            np.ascontiguousarray(pair.vi)
        )[None]


class ResumableDistributedSampler(DistributedSampler):
    """DistributedSampler (seeded shuffle per epoch, tail dropped) that can start mid-epoch."""

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, seed: int):
        super().__init__(
            dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=True
        )
        self.start = 0

    def set_start(self, start: int) -> None:
        """Skip the first ``start`` indices of this rank's share of the current epoch."""
        self.start = start

    def __iter__(self) -> Iterator[int]:
        return iter(list(super().__iter__())[self.start :])

    def __len__(self) -> int:
        return self.num_samples - self.start


# ---- configured sources -> stems ------------------------------------------------------------------
def _read_stem_file(path: str) -> list[str]:
    p = config_data_path(path)
    if not p.is_file():
        raise ConfigError(f"split_file {p} does not exist")
    return [s.strip() for s in p.read_text(encoding="utf-8").splitlines() if s.strip()]


def _select(ds: PairedImageDataset, src: DataSource) -> list[str]:
    stems = ds.stems
    wanted = _read_stem_file(src.split_file) if src.split_file else src.stems
    if wanted is not None:
        missing = [s for s in wanted if s not in ds]
        if missing:
            where = src.split_file or "stems"
            raise ConfigError(
                f"{where}: {len(missing)} stem(s) not in {src.dataset} at {src.root}: {missing[:10]}"
            )
        stems = list(wanted)
    return stems


def resolve_sources(
    sources: Sequence[DataSource], seed: int
) -> tuple[list[PairedImageDataset], dict[str, list[str]]]:
    """Open each source and apply split_file/stems and the seeded fraction -> (datasets, split)."""
    opened, pools, fractions = [], {}, {}
    for k, src in enumerate(sources):
        ds = open_dataset(src.dataset, config_data_path(src.root), split=src.split)
        key = f"{k}_{src.dataset}"
        opened.append((key, ds))
        pools[key], fractions[key] = _select(ds, src), src.fraction
    chosen = build_fusion_mix(pools, fractions, seed=seed)
    return [ds.subset(chosen[key]) for key, ds in opened], chosen


# ---- the loader -------------------------------------------------------------------------------------
@dataclass
class TrainData:
    """Everything the loop needs about its data; ``steps_per_epoch`` fixes the schedule."""

    train_set: PairedCropDataset
    sampler: ResumableDistributedSampler
    loader: DataLoader
    split: dict[str, list[str]]
    per_rank_batch: int
    steps_per_epoch: int
    total_steps: int
    stop_step: int
    val_pairs: list[tuple[np.ndarray, np.ndarray]]
    held_out: HeldOutValidation  # metrics of the model and reference baselines on data.val


def build_train_data(cfg: TrainConfig, ctx: DistContext) -> TrainData:
    datasets, split = resolve_sources(cfg.data.train, cfg.data.split_seed)
    bad = [p for ds in datasets for p in bad_pairs([ds.files(s) for s in ds.stems], progress=False).values()]
    if bad:  # every training pair is decoded once up front: a corrupt file must not stop a long run midway
        raise DatasetError(
            f"{len(bad)} bad training pair(s), nothing trained (fix them or leave them out of "
            "data.train): " + "; ".join(bad)
        )
    train_set = PairedCropDataset(
        datasets,
        cfg.data.crop_size,
        cfg.data.hflip,
        cfg.data.vflip,
        cfg.seed,
        cache_images=cfg.data.cache_images,
    )
    per_rank_batch = cfg.batch_size // ctx.world_size
    sampler = ResumableDistributedSampler(train_set, ctx.world_size, ctx.rank, cfg.seed)
    steps_per_epoch = sampler.num_samples // per_rank_batch
    if steps_per_epoch == 0:
        raise ConfigError(f"{len(train_set)} training pairs are fewer than one batch of {cfg.batch_size}")
    total_steps = cfg.epochs * steps_per_epoch
    stop_step = min(total_steps, cfg.max_steps) if cfg.max_steps is not None else total_steps
    loader = DataLoader(
        train_set,
        batch_size=per_rank_batch,
        sampler=sampler,
        drop_last=True,
        num_workers=cfg.data.num_workers,
        pin_memory=ctx.device.type == "cuda",
        # own generator: creating an iterator must not consume the global RNG
        generator=torch.Generator().manual_seed(cfg.seed),
    )
    val_pairs = load_val_pairs(cfg) if ctx.is_main else []
    held_out = HeldOutValidation(
        cfg.validation,
        resolve_sources(cfg.data.val, cfg.data.split_seed)[0] if ctx.is_main and cfg.data.val else [],
    )
    return TrainData(
        train_set,
        sampler,
        loader,
        split,
        per_rank_batch,
        steps_per_epoch,
        total_steps,
        stop_step,
        val_pairs,
        held_out,
    )


def load_val_pairs(cfg: TrainConfig) -> list[tuple[np.ndarray, np.ndarray]]:
    """Up to ``data.val_pairs`` held-out (IR, VIS-Y) float32 pairs for the validation grid."""
    pairs: list[tuple[np.ndarray, np.ndarray]] = []
    if not cfg.data.val:
        return pairs
    for ds in resolve_sources(cfg.data.val, cfg.data.split_seed)[0]:
        for i in range(min(len(ds), cfg.data.val_pairs - len(pairs))):
            pairs.append((ds[i].ir.astype(np.float32), to_gray(ds[i].vi)))
    return pairs
