"""Named checkpoints shipped with the package; torch-free, so configs can check a name without torch.

``"demo"``: the CPU-trained small model (its model card: ``fusion/weights/s4fusion_demo.md``).
"""
from __future__ import annotations

import os
from pathlib import Path

CHECKPOINT_ALIASES: dict[str, Path] = {"demo": Path(__file__).with_name("weights") / "s4fusion_demo.pt"}


def resolve_checkpoint(checkpoint: str | os.PathLike) -> Path:
    """The file of ``checkpoint``: a name of :data:`CHECKPOINT_ALIASES` (``"demo"``) or a path."""
    return CHECKPOINT_ALIASES.get(str(checkpoint), Path(checkpoint).expanduser())
