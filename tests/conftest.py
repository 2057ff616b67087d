"""Fixtures every test folder shares: the same random state per module and test, the read-only
``../shared/data`` beside the checkout (CI has it there too) and two TNO pairs. Plain helpers are in
helpers.py (``from helpers import ...``): importing from a conftest is ambiguous once folders have their own."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported; see fusion/__init__.py

import pytest
from helpers import SHARED_DATA


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


@pytest.fixture()
def small_tno(shared_data, tmp_path):
    """TNO pairs 01 and 02 (gray IR and VIS) copied into ``ir/`` and ``vi/``."""
    root = tmp_path / "tno"
    for sub in ("ir", "vi"):
        (root / sub).mkdir(parents=True)
        for stem in ("01", "02"):
            shutil.copy(shared_data / "samples" / "TNO" / sub / f"{stem}.png", root / sub / f"{stem}.png")
    return root
