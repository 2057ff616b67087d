"""Plain helpers the tests import (``from helpers import REPO_ROOT``; pytest puts tests/ on sys.path,
see ``pythonpath`` in pyproject.toml): where the checkout and ../shared/data are, and MLflow search."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("S4FUSE_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def search_runs(uri: str, experiment: str):
    """mlflow.search_runs against ``uri`` (it reads the global tracking URI), restoring it after."""
    import mlflow

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        return mlflow.search_runs(experiment_names=[experiment])
    finally:
        mlflow.set_tracking_uri(previous)
