"""Fixtures of the fuse_then_detect tests: tiny inputs (synthetic data, a precomputed folder, a tiny
S4Fusion checkpoint), one SQLite MLflow store per module and the stub detector patched in."""

import pytest
import torch
from stub_pipeline import SYNTH, TINY_MODEL, StubDetector

import pipelines.fuse_then_detect.stages as stages
from data.adapters import open_dataset
from data.io import write_png_atomic
from data.synthetic import SyntheticConfig, generate_synthetic_dataset
from fusion import S4Fusion, S4FusionConfig
from fusion.baselines import fuse_baseline


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Synthetic data, a precomputed method folder and a tiny S4Fusion checkpoint (module-wide)."""
    tmp = tmp_path_factory.mktemp("ftd_inputs")
    root = generate_synthetic_dataset(tmp / "synthetic", SyntheticConfig(**SYNTH), progress=False)
    pre = tmp / "precomputed"
    for sample in open_dataset("synthetic", root):
        write_png_atomic(pre / f"{sample.name}.png", fuse_baseline("max", sample.ir, sample.vi))
    torch.manual_seed(0)
    ckpt = S4Fusion(S4FusionConfig(**TINY_MODEL)).save_exported(tmp / "s4fusion_tiny.pt")
    return {"root": root, "precomputed": pre, "checkpoint": ckpt, "tmp": tmp}


@pytest.fixture(scope="module")
def mlflow_db(tmp_path_factory):
    # One SQLite store for the module (creating one runs migrations for seconds); experiments differ per test.
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture
def stub(monkeypatch):
    detector = StubDetector()
    monkeypatch.setattr(stages, "train_and_evaluate", detector)
    return detector
