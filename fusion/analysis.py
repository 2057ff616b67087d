"""The paper's interpretation section measured on a model: Table VIII (delta per CMSA level) and
Fig. 13 (entropy of ResNet50's decision layer over fused images).

Table VIII: every CMSA block (:class:`fusion.modules.cmsa.CrossSS2D`) passes the interleaved delta
of its scan (IR at even, VIS at odd positions; before ``delta_bias`` and softplus) through its
``delta_tap`` identity; a forward hook there reduces it per image to four means: IR and VIS
positions, raw (the paper's signed values) and as the scan uses them, softplus(delta + delta_bias).
Means run over the 4 scan directions, the channels and the positions. The official forward also
computes the level-0 fusion layer (and discards its output); we run it the same way for the
analysis, so the paper's three layers are fusion levels 0, 1 and 2.

Fig. 13: per-image entropy (nats) of softmax(ResNet50(F)) on the fused Y channel, with the
frozen network and weights rule of the training loss (:class:`fusion.losses.PerceptionNet`).

Imports fusion.model/inference/losses/modules and data; nothing from pipelines.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from data.adapters import PairedImageDataset
from data.color import to_gray
from fusion.inference import fuse
from fusion.losses import PerceptionNet, prediction_entropy
from fusion.model import S4Fusion
from fusion.modules.cmsa import CrossSS2D
from fusion.ops.cross_scan import recover_modalities

DELTA_COLUMNS = ("delta_ir", "delta_vis", "delta_ir_softplus", "delta_vis_softplus")


def delta_means(delta: Tensor, delta_bias: Tensor) -> Tensor:
    """Interleaved delta (B, 4, D, 2L) and the block's bias (4, D) -> (B, 4) per-image means in the
    order of :data:`DELTA_COLUMNS` (IR = even positions, VIS = odd, as interleaved)."""
    ir, vis = recover_modalities(delta)
    bias = delta_bias.to(delta).view(1, *delta_bias.shape, 1)
    parts = (ir, vis, F.softplus(ir + bias), F.softplus(vis + bias))
    return torch.stack([p.mean(dim=(1, 2, 3)) for p in parts], dim=1)


def cmsa_blocks(model: S4Fusion) -> dict[tuple[int, int], CrossSS2D]:
    """``{(level, block): CrossSS2D}`` over all fusion levels (empty for non-CMSA variants)."""
    return {
        (level, index): block
        for level, layer in enumerate(model.fusion)
        for index, block in enumerate(layer.blocks)
        if isinstance(block, CrossSS2D)
    }


class DeltaRecorder:
    """``with DeltaRecorder(model) as rec:`` records :func:`delta_means` of every CMSA block's
    forward pass in ``rec.records[(level, block)]`` (a list of (B, 4) tensors, one per call)."""

    def __init__(self, model: S4Fusion):
        self.blocks = cmsa_blocks(model)
        self.records: dict[tuple[int, int], list[Tensor]] = defaultdict(list)
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def __enter__(self) -> DeltaRecorder:
        for key, block in self.blocks.items():
            self._handles.append(block.delta_tap.register_forward_hook(self._hook(key, block)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _hook(self, key: tuple[int, int], block: CrossSS2D):
        def record(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            self.records[key].append(delta_means(output.detach(), block.dt_projs_bias.detach()))

        return record


@contextlib.contextmanager
def _outputs_of(*modules: nn.Module) -> Iterator[list[Tensor]]:
    """Collect the output of each module's next forward call, in the order given."""
    outputs: list[Tensor | None] = [None] * len(modules)

    def keep(index: int):
        def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            outputs[index] = output

        return hook

    handles = [m.register_forward_hook(keep(i)) for i, m in enumerate(modules)]
    try:
        yield outputs  # type: ignore[misc]
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def fuse_and_record_deltas(
    model: S4Fusion, ir: Tensor, vi: Tensor
) -> tuple[Tensor, dict[tuple[int, int], Tensor]]:
    """Fuse (B,1,H,W) IR/VIS in [0,1] (padded like inference) and return the clamped fused image
    and ``{(level, block): (B, 4) delta means}`` for every CMSA block, level 0 included."""
    with DeltaRecorder(model) as recorder, _outputs_of(model.patch_embed_ir, model.patch_embed_vis) as level0:
        fused = fuse(model, ir, vi)
        # The official forward runs the level-0 fusion layer on the patch embeddings and discards
        # the result; ours skips it, so run it here: it is the paper's Table VIII layer 1.
        model.fusion[0](*level0)
    return fused, {key: torch.cat(calls) for key, calls in recorder.records.items()}


@torch.no_grad()
def image_entropies(perception: PerceptionNet, images: Tensor) -> Tensor:
    """Entropy (nats) of softmax(ResNet50 logits) per image of a (B,1,H,W) batch in [0,1] -> (B,)."""
    logits = perception.logits(images.to(perception.mean.device, torch.float32))
    return torch.stack([prediction_entropy(row[None]) for row in logits])


@dataclass
class CheckpointAnalysis:
    """Per-image results of one model: ``deltas`` (image, level, block, DELTA_COLUMNS) and
    ``entropies`` (image, entropy)."""

    deltas: pd.DataFrame
    entropies: pd.DataFrame


def _pair_tensors(sample, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """IR (gray) and VIS-Y as (1,1,H,W) tensors in [0,1], the color policy of inference."""

    def tensor(img: np.ndarray) -> Tensor:
        return torch.from_numpy(to_gray(img) / np.float32(255.0))[None, None].to(dtype)

    return tensor(sample.ir), tensor(sample.vi)


def analyze_model(
    model: S4Fusion,
    dataset: PairedImageDataset,
    stems: Sequence[str],
    perception: PerceptionNet,
    desc: str = "analyze",
) -> CheckpointAnalysis:
    """Table VIII deltas and Fig. 13 entropies of ``model`` over ``stems`` of ``dataset``, one image at a time."""
    model.eval()
    dtype = next(model.parameters()).dtype
    delta_rows, entropy_rows = [], []
    for stem in tqdm(stems, desc=desc, unit="img"):
        ir, vi = _pair_tensors(dataset[stem], dtype)
        fused, deltas = fuse_and_record_deltas(model, ir, vi)
        for (level, block), means in sorted(deltas.items()):
            delta_rows.append(
                {"image": stem, "level": level, "block": block, **dict(zip(DELTA_COLUMNS, means[0].tolist()))}
            )
        entropy_rows.append({"image": stem, "entropy": float(image_entropies(perception, fused)[0])})
    return CheckpointAnalysis(
        pd.DataFrame(delta_rows, columns=["image", "level", "block", *DELTA_COLUMNS]),
        pd.DataFrame(entropy_rows, columns=["image", "entropy"]),
    )


def table8_means(deltas: pd.DataFrame) -> pd.DataFrame:
    """Per-image block rows -> one row per level: means over images and blocks, ``layer`` = level + 1
    (the paper's numbering), ``in_forward`` = whether the level's output reaches the fused image."""
    table = deltas.groupby("level", sort=True)[list(DELTA_COLUMNS)].mean().reset_index()
    table.insert(0, "layer", table["level"] + 1)
    table.insert(2, "in_forward", table["level"] > 0)
    table["images"] = deltas.groupby("level", sort=True)["image"].nunique().to_numpy()
    return table
