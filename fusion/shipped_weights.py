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


def missing_checkpoint_message(path: str | os.PathLike) -> str:
    """Why ``path`` cannot be loaded when it does not exist, and where to get a model instead."""
    return (
        f"S4Fusion checkpoint {path} does not exist; the official weights (model.pkl) are published with "
        "the releases of github.com/zipper112/S4Fusion (s4fuse never downloads them: save the file and "
        "pass its path), or use 'demo' (--checkpoint demo: the small CPU-trained model shipped with s4fuse)"
    )
