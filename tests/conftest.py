"""Shared fixtures: the read-only ``../shared/data`` beside the checkout (CI has it there too)."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported; see fusion/__init__.py

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("S4FUSE_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def _seed_everything() -> None:
    import random

    import numpy as np
    import torch

    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


# pytest-xdist hands modules to its workers as they free up, so the modules that ran before one in
# the same process differ from run to run: each module (before its fixtures) and each test start
# from the same random state, so no result depends on the order.
@pytest.fixture(scope="module", autouse=True)
def _same_random_state_per_module() -> None:
    _seed_everything()


@pytest.fixture(autouse=True)
def _same_random_state_per_test() -> None:
    _seed_everything()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "README.md").is_file():
        pytest.fail(
            f"shared test data not found at {SHARED_DATA}: it must sit beside the checkout "
            "(../shared/data) or be named by S4FUSE_SHARED_DATA"
        )
    return SHARED_DATA


def search_runs(uri: str, experiment: str):
    """mlflow.search_runs against ``uri`` (it reads the global tracking URI), restoring it after."""
    import mlflow

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        return mlflow.search_runs(experiment_names=[experiment])
    finally:
        mlflow.set_tracking_uri(previous)
