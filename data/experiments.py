"""Where the shipped YAML profiles (``experiments/``) are, in a checkout and in an installed package.

Bottom floor (data/) because every command resolves profile names: training (fusion/) and the
pipelines. The profiles are package data of the resource package ``experiments``; a checkout
without an install falls back to the repository folder.
"""
from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from data.config import ConfigError

_REPO_EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


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
