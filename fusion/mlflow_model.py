"""A trained S4Fusion as an MLflow model: a pyfunc that takes an IR/VIS pair and returns the fused image.

``mlflow.pyfunc.load_model("runs:/<run id>/s4fusion").predict({"ir": ir, "vi": vi})`` fuses with the
one colour policy of :mod:`fusion.inference`: ``ir`` and ``vi`` uint8 (H, W), (H, W, 1) or (H, W, 3) --
what the ``fuse`` command reads from files (an RGB IR image is used by its luminance); the result is
uint8 (H, W, C) like ``vi`` (C = 1 for gray). The model's only artifact is the exported
``s4fusion.pt`` (unchanged; still loadable by ``S4Fusion.load``). Imports data/ and mlflow.

The signature declares the output only: an input schema fixes the number of dimensions, so it
would refuse a (H, W) or a (H, W, 3) IR image, and MLflow's refusal prints the whole input. The
input is checked by :func:`model_input_pair` instead, whose errors name shapes and dtypes only.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
from pathlib import Path

import mlflow
import numpy as np

from runtime.tracking import RunHandle

MODEL_NAME = "s4fusion"


class S4FusionPyfunc(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper around :func:`fusion.inference.fuse_image_arrays`."""

    # The input is checked by model_input_pair (module docstring); MLflow's type-hint validation is
    # for list/pydantic inputs and would warn at import that ``predict`` has no type hints.
    _skip_type_hint_validation = True

    def load_context(self, context) -> None:
        from fusion.inference import load_model

        self.model = load_model(context.artifacts["checkpoint"])

    def predict(self, context, model_input, params=None) -> np.ndarray:
        from fusion.inference import fuse_image_arrays

        fused = fuse_image_arrays(self.model, *model_input_pair(model_input))
        return fused[..., None] if fused.ndim == 2 else fused


IMAGE_SHAPES = "uint8 (H, W), (H, W, 1) or (H, W, 3)"


def model_input_pair(model_input) -> tuple[np.ndarray, np.ndarray]:
    """``(ir, vi)`` of a pyfunc input ``{"ir": ..., "vi": ...}``, one-channel images as (H, W); a
    ValueError naming the key, shape and dtype (never the values) for anything else."""
    if not isinstance(model_input, dict) or not {"ir", "vi"} <= set(model_input):
        got = sorted(model_input) if isinstance(model_input, dict) else type(model_input).__name__
        raise ValueError(
            f"S4Fusion model input: a dict {{'ir': ..., 'vi': ...}} of {IMAGE_SHAPES} arrays, got {got}"
        )
    images = []
    for key in ("ir", "vi"):
        image = np.asarray(model_input[key])
        if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3))):
            raise ValueError(
                f"S4Fusion model input {key!r}: expected {IMAGE_SHAPES}, got {image.dtype} {image.shape}"
            )
        images.append(image[..., 0] if image.ndim == 3 and image.shape[2] == 1 else image)
    if images[0].shape[:2] != images[1].shape[:2]:
        raise ValueError(
            f"S4Fusion model input: 'ir' {images[0].shape[:2]} and 'vi' {images[1].shape[:2]} sizes differ"
        )
    return images[0], images[1]


def input_example(height: int = 25, width: int = 25) -> dict[str, np.ndarray]:
    """A small deterministic IR/VIS pair (gray VIS as one channel): the logged model's input example."""
    rng = np.random.default_rng(0)
    return {
        "ir": rng.integers(0, 256, (height, width), dtype=np.uint8),
        "vi": rng.integers(0, 256, (height, width, 1), dtype=np.uint8),
    }


def signature():
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    # outputs only: an input schema would refuse inputs the model accepts (module docstring)
    return ModelSignature(outputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, -1, -1))]))


def log_training_split(run: RunHandle, split: dict[str, list[str]], split_dir: str | os.PathLike) -> None:
    """The pairs a training run trained on, as its dataset input (digest = split hash, sizes per part)."""
    from data.splits import split_hash

    digest = split_hash(split)
    run.log_dataset_input(
        f"fusion_split@{digest[:12]}",
        digest,
        str(split_dir),
        {**{part: len(stems) for part, stems in split.items()}, "split_sha256": digest},
        "s4fusion training",
    )


def log_s4fusion_model(run: RunHandle, checkpoint: str | os.PathLike, name: str = MODEL_NAME) -> str:
    """Log ``checkpoint`` (an exported S4Fusion) into ``run`` as the pyfunc ``name``; returns its model URI.

    Only the run's own :class:`mlflow.MlflowClient` is used, never MLflow's global tracking URI or the
    environment: the logged model is created in the run's experiment and recorded as the run's output,
    the pyfunc is saved to a temporary folder, and that folder is uploaded as the model's artifacts.
    """
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus
    from mlflow.models import Model

    client = run.tracker.client
    model = client.create_logged_model(run.tracker.experiment_id, name=name, source_run_id=run.run_id)
    client.log_outputs(run.run_id, models=[LoggedModelOutput(model.model_id, step=0)])
    with tempfile.TemporaryDirectory() as tmp, _quiet_mlflow():
        requirements = Path(tmp) / "requirements.txt"  # not inferred: that would import and probe packages
        requirements.write_text("mlflow\ntorch\nnumpy\ns4fuse\n", encoding="utf-8")
        local = Path(tmp) / name
        mlflow.pyfunc.save_model(
            path=str(local),
            mlflow_model=Model(
                artifact_path=model.artifact_location,
                model_uuid=model.model_id,
                run_id=run.run_id,
                model_id=model.model_id,
            ),
            python_model=S4FusionPyfunc(),
            artifacts={"checkpoint": str(Path(checkpoint).resolve())},
            signature=signature(),
            input_example=input_example(),
            pip_requirements=str(requirements),
        )
        client.log_model_artifacts(model.model_id, str(local))
    client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
    return f"runs:/{run.run_id}/{name}"


def load_logged_model(model_uri: str, tracking_uri: str):
    """The pyfunc logged as ``runs:/<run id>/<name>`` (what :func:`log_s4fusion_model` returns) in the
    store at ``tracking_uri``, found through an explicit client: MLflow's own ``runs:/`` resolution
    reads the global tracking URI, which s4fuse never sets."""
    from mlflow import MlflowClient

    run_id, _, name = model_uri.removeprefix("runs:/").partition("/")
    client = MlflowClient(tracking_uri)
    experiment_id = client.get_run(run_id).info.experiment_id
    found = [
        m
        for m in client.search_logged_models([experiment_id])
        if m.source_run_id == run_id and m.name == name
    ]
    if not found:
        raise FileNotFoundError(f"no logged model {name!r} of run {run_id} in {tracking_uri}")
    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=found[-1].artifact_location, dst_path=tmp, tracking_uri=tracking_uri
        )
        return mlflow.pyfunc.load_model(local)


@contextlib.contextmanager
def _quiet_mlflow():
    """MLflow's INFO lines (input-example validation) and progress bars (copying the checkpoint into the
    model) stay off the console; what was held back is printed if the block fails."""
    logger = logging.getLogger("mlflow")
    level = logger.level
    logger.setLevel(logging.ERROR)  # also its WARNING on cloudpickle: the class is ours, pickled by reference
    held_back = io.StringIO()
    try:
        with contextlib.redirect_stderr(held_back):  # tqdm bars write to sys.stderr
            yield
    except BaseException:
        sys.stderr.write(held_back.getvalue())
        raise
    finally:
        logger.setLevel(level)
