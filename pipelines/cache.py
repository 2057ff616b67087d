"""Cached stage folders shared by the pipelines (fuse_then_detect, ablate).

A stage writes into a temporary sibling ``<folder>.tmp`` and, when complete, writes ``done.json``
there and renames it into place: a folder with ``done.json`` is complete, anything else is
discarded and redone. Imports data.io only.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from data.io import write_text_atomic

DONE = "done.json"


def read_done(directory: Path) -> dict | None:
    marker = directory / DONE
    return json.loads(marker.read_text(encoding="utf-8")) if marker.is_file() else None


def fresh_tmp(directory: Path) -> Path:
    """Empty temporary sibling of ``directory``; leftovers of an interrupted attempt are discarded."""
    tmp = directory.with_name(directory.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def commit(tmp: Path, directory: Path, info: dict) -> None:
    """Mark ``tmp`` complete and move it into place (the rename makes it visible atomically)."""
    write_text_atomic(tmp / DONE, json.dumps(info, indent=2, default=str) + "\n")
    if directory.exists():
        shutil.rmtree(directory)
    tmp.replace(directory)
