"""The validation image grid: IR | VIS-Y | fused for a few held-out pairs, saved each ``val_every`` steps,
under a header row naming the columns."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import nn

from fusion.inference import fuse


def _gray_u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


@torch.no_grad()
def validation_grid(
    model: nn.Module, pairs: Sequence[tuple[np.ndarray, np.ndarray]], device: torch.device, height: int = 192
) -> np.ndarray:
    """uint8 image, one row per pair: IR | VIS-Y | fused, each resized to ``height`` rows."""
    was_training = model.training
    model.eval()
    rows = []
    for ir, vi_y in pairs:
        t_ir = torch.from_numpy(ir / np.float32(255.0))[None, None].to(device)
        t_vi = torch.from_numpy(vi_y / np.float32(255.0))[None, None].to(device)
        fused = fuse(model, t_ir, t_vi)[0, 0].float().cpu().numpy() * 255.0
        width = max(1, round(ir.shape[1] * height / ir.shape[0]))
        tiles = [
            np.asarray(Image.fromarray(_gray_u8(a)).resize((width, height), Image.BILINEAR))
            for a in (ir, vi_y, fused)
        ]
        rows.append(np.concatenate(tiles, axis=1))
    model.train(was_training)
    width = max(r.shape[1] for r in rows)
    body = np.concatenate([np.pad(r, ((0, 0), (0, width - r.shape[1]))) for r in rows], axis=0)
    return np.concatenate([_header(width, rows[0].shape[1] // 3), body], axis=0)


COLUMNS = ("IR", "VIS (Y)", "fused")


def _header(width: int, tile_width: int, height: int = 16) -> np.ndarray:
    """A white strip with the column names, each centred over its tile."""
    header = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(header)
    for i, name in enumerate(COLUMNS):
        text_width = draw.textlength(name)
        draw.text((i * tile_width + (tile_width - text_width) / 2, 2), name, fill=0)
    return np.asarray(header)
