"""Training checkpoints: atomic, content-hashed, refused when tampered with; RNG state; resume checks."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from data.io import write_atomic
from runtime.config_loader import flatten
from runtime.errors import InputError

CHECKPOINT_FORMAT = "s4fuse-train-checkpoint"
CHECKPOINT_VERSION = 1
# Keys that may change between a run and its resume (they do not change the trajectory).
RESUMABLE_KEYS = (
    "max_steps",
    "ckpt_every",
    "log_every",
    "val_every",
    "data.num_workers",
    "tracking",
    "validation",
)


class CheckpointError(InputError, RuntimeError):
    """A training checkpoint is unreadable, incomplete, tampered with or incompatible."""


def _digest(obj: Any, h: hashlib._Hash) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, Mapping):
        h.update(b"{")
        for k in sorted(obj, key=repr):
            h.update(repr(k).encode())
            _digest(obj[k], h)
        h.update(b"}")
    elif isinstance(obj, (list, tuple)):
        h.update(b"[")
        for v in obj:
            _digest(v, h)
        h.update(b"]")
    else:
        h.update(repr(obj).encode())


def content_hash(state: Mapping) -> str:
    h = hashlib.sha256()
    _digest(state, h)
    return h.hexdigest()


def save_checkpoint(path: Path, state: dict) -> None:
    """Atomic write (data.io.write_atomic) of ``state`` plus its content hash."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "sha256": content_hash(state),
        "state": state,
    }
    write_atomic(path, lambda f: torch.save(payload, f))


def load_checkpoint(path: Path) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`; anything else is refused."""
    fix = f"delete {path} to start over, or restore a good copy"
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means the same to the user; chained below
        raise CheckpointError(f"checkpoint {path} is unreadable (truncated or corrupted: {e}); {fix}") from e
    if not isinstance(obj, dict) or obj.get("format") != CHECKPOINT_FORMAT or "state" not in obj:
        raise CheckpointError(f"{path} is not an s4fuse training checkpoint; {fix}")
    if obj.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint version {obj.get('version')} is not supported "
            f"(expected {CHECKPOINT_VERSION})"
        )
    if content_hash(obj["state"]) != obj.get("sha256"):
        raise CheckpointError(f"checkpoint {path} is corrupted (content hash mismatch); {fix}")
    missing = [
        k
        for k in ("step", "epoch", "batch_in_epoch", "config", "model", "optimizer", "scheduler", "rng")
        if k not in obj["state"]
    ]
    if missing:
        raise CheckpointError(f"checkpoint {path} is incomplete (missing {missing}); {fix}")
    return obj["state"]


def rng_state() -> dict:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": random.getstate(),
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def config_differences(old: Mapping, new: Mapping) -> list[str]:
    """Dotted keys whose values differ, except those a resume may change (RESUMABLE_KEYS)."""
    flat_old, flat_new = flatten(old), flatten(new)
    keys = sorted(set(flat_old) | set(flat_new))
    return [
        k
        for k in keys
        if flat_old.get(k) != flat_new.get(k)
        and not any(k == r or k.startswith(r + ".") for r in RESUMABLE_KEYS)
    ]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
