"""Paired augmentation for fusion training: identical geometry for IR and VIS (and boxes).

Random crop (229 x 229 = 12k+1 by default, the S4Fusion patch size) and horizontal / vertical
flips, via albumentations with the VIS image as an ``additional_targets`` image so both receive
exactly the same parameters. Images smaller than the crop are first zero-padded (black, centred)
up to the crop size -- the same zero padding S4Fusion applies at inference -- so every output has
the crop size. Boxes (xyxy pixels) follow the geometry; boxes cut by the crop are clipped to it
and boxes left without area are dropped together with their class ids.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no version check over the network
import albumentations as A  # noqa: E402


class AugmentedPair(NamedTuple):
    ir: np.ndarray
    vi: np.ndarray
    boxes: np.ndarray  # float32 (n, 4) xyxy
    classes: np.ndarray  # int64 (n,)


class PairedAugment:
    """``PairedAugment(crop_size=229, hflip=True, vflip=True, seed=None)(ir, vi, boxes, classes)``.

    ``seed`` makes the sequence of random draws reproducible; ``crop_size=None`` disables cropping.
    """

    def __init__(
        self, crop_size: int | None = 229, hflip: bool = True, vflip: bool = True, seed: int | None = None
    ):
        steps: list[A.BasicTransform] = []
        if crop_size is not None:
            steps.append(A.RandomCrop(crop_size, crop_size, pad_if_needed=True, border_mode=0, fill=0))
        if hflip:
            steps.append(A.HorizontalFlip(p=0.5))
        if vflip:
            steps.append(A.VerticalFlip(p=0.5))
        self.crop_size = crop_size
        self._compose = A.Compose(
            steps,
            additional_targets={"vi": "image"},
            strict=True,
            bbox_params=A.BboxParams(format="pascal_voc", label_fields=["classes"], clip=True, min_area=0.0),
        )
        if seed is not None:
            # Not Compose(seed=...): albumentations 2.x gives every child transform the SAME seed, so
            # the horizontal and vertical flips would always fire together. Derive one seed per step.
            for step, step_seed in zip(steps, np.random.SeedSequence(seed).generate_state(len(steps))):
                step.set_random_seed(int(step_seed))

    def __call__(
        self,
        ir: np.ndarray,
        vi: np.ndarray,
        boxes: np.ndarray | None = None,
        classes: np.ndarray | None = None,
    ) -> AugmentedPair:
        if ir.shape[:2] != vi.shape[:2]:
            raise ValueError(f"IR {ir.shape} and VIS {vi.shape} must have the same height and width")
        boxes = (
            np.zeros((0, 4), np.float32) if boxes is None else np.asarray(boxes, np.float32).reshape(-1, 4)
        )
        classes = (
            np.zeros(len(boxes), np.int64) if classes is None else np.asarray(classes, np.int64).reshape(-1)
        )
        if len(classes) != len(boxes):
            raise ValueError(f"{len(boxes)} boxes but {len(classes)} class ids")
        out = self._compose(image=ir, vi=vi, bboxes=boxes, classes=classes)
        return AugmentedPair(
            out["image"],
            out["vi"],
            np.asarray(out["bboxes"], np.float32).reshape(-1, 4),
            np.asarray(out["classes"], np.int64).reshape(-1),
        )
