"""Where the shipped YAML profiles (``experiments/``) are, in a checkout and in an installed package,
and what the relative data paths written in a config are relative to (the repository root).

On the runtime floor because every command resolves profile names: training (fusion/) and the
pipelines. The profiles are package data of the resource package ``experiments``; a checkout
without an install falls back to the repository folder.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from runtime.config_loader import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[1]
_REPO_EXPERIMENTS = REPO_ROOT / "experiments"


def experiments_dir() -> Path:
    """The folder holding the shipped ``*.yaml`` profiles."""
    try:
        folder = Path(str(resources.files("experiments")))
    except (ModuleNotFoundError, TypeError):
        folder = _REPO_EXPERIMENTS
    return folder if folder.is_dir() else _REPO_EXPERIMENTS


def resolve_experiment(path: str | os.PathLike) -> Path:
    """``path`` if it exists, else a bare file name (``table6_m3fd.yaml``) looked up in :func:`experiments_dir`."""
    path = Path(path)
    if path.is_file():
        return path
    candidate = experiments_dir() / path.name
    if path.parent == Path(".") and candidate.is_file():
        return candidate
    raise ConfigError(f"config file {path} does not exist (shipped profiles live in {experiments_dir()})")


def config_data_path(path: str | os.PathLike) -> Path:
    """A data path written in a config (a dataset root, a split file): relative to the repository root,
    whatever the current directory (the shipped profiles name ``../shared/data/...`` that way);
    ``~`` and absolute paths as given. Command-line paths (``--root``) stay relative to the current
    directory, as in any shell command."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else REPO_ROOT / path
