"""The kinds s4fuse ships: sources, classical baselines, S4Fusion (a given model file or one trained
in-run by fuse_then_detect) and folders of precomputed fused images.

Every kind follows the project's colour policy (data.color): IR is fused with the VIS luminance Y
and the result recoloured with the VIS Cb/Cr; a source row is the input image as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from data.io import file_sha256, image_size, index_images_by_stem
from fusion.methods.base import Fuser, FusionMethod, MethodError, MethodInputs, PairSet

SOURCE_BASELINES = ("ir", "vi")  # baselines that return an input as it is (evaluate's reference columns)


@dataclass
class SourceMethod(FusionMethod):
    """``source: ir | vi``: a detector on one input as it is (Table VI's reference rows)."""

    name: str
    source: str | None = None
    kind: ClassVar[str] = "source"
    config_keys: ClassVar[tuple[str, ...]] = ("source",)
    is_source: ClassVar[bool] = True

    def identity(self) -> dict[str, Any]:
        return {"kind": self.kind, "source": self.source}

    @property
    def label(self) -> str:
        return f"source {self.source}"

    def problems(self) -> list[str]:
        return [] if self.source in ("ir", "vi") else [f"source must be 'ir' or 'vi', got {self.source!r}"]

    def fuser(self, inputs: MethodInputs, device: str = "cpu") -> Fuser:
        take_ir = self.source == "ir"
        return lambda ir, vi: ir if take_ir else vi


@dataclass
class BaselineMethod(FusionMethod):
    """``baseline: NAME``: a classical method of fusion.baselines.BASELINES."""

    name: str
    baseline: str | None = None
    kind: ClassVar[str] = "baseline"
    config_keys: ClassVar[tuple[str, ...]] = ("baseline",)

    def identity(self) -> dict[str, Any]:
        return {"kind": self.kind, "baseline": self.baseline}

    @property
    def label(self) -> str:
        return f"baseline {self.baseline}"

    @property
    def passes_through(self) -> bool:
        return self.baseline in SOURCE_BASELINES

    def problems(self) -> list[str]:
        from fusion.baselines import BASELINES

        if self.baseline in BASELINES:
            return []
        return [f"unknown baseline {self.baseline!r}; available: {sorted(BASELINES)}"]

    def fuser(self, inputs: MethodInputs, device: str = "cpu") -> Fuser:
        from fusion.baselines import fuse_baseline

        name = self.baseline
        return lambda ir, vi: fuse_baseline(name, ir, vi)


class _S4FusionModel(FusionMethod):
    """What both S4Fusion kinds share: a model file fuses, identified by its sha256."""

    kind: ClassVar[str] = "s4fusion"
    needs_gpu: ClassVar[bool] = True
    learned: ClassVar[bool] = True
    scan_backend: str | None = None

    def content_identity(self, inputs: MethodInputs) -> dict[str, Any]:
        if inputs.checkpoint is None:
            raise ValueError(f"{self.name}: the model file is not known yet (train it first)")
        return {"kind": self.kind, "checkpoint_sha256": file_sha256(inputs.checkpoint)}

    def fuser(self, inputs: MethodInputs, device: str = "cpu") -> Fuser:
        from fusion.inference import fuse_image_arrays, load_model

        if inputs.checkpoint is None:
            raise ValueError(f"{self.name}: the model file is not known yet (train it first)")
        model = load_model(inputs.checkpoint, device=device, scan_backend=self.scan_backend)
        return lambda ir, vi: fuse_image_arrays(model, ir, vi)


@dataclass
class S4FusionCheckpoint(_S4FusionModel):
    """``checkpoint: FILE``: a trained model (official ``model.pkl``, an s4fuse export, ``demo``)."""

    name: str
    checkpoint: str | None = None
    scan_backend: str | None = None  # a command-line override, not part of the identity
    config_keys: ClassVar[tuple[str, ...]] = ("checkpoint",)
    config_help: ClassVar[str] = "'checkpoint' (a trained model file)"

    def identity(self) -> dict[str, Any]:
        return {"kind": self.kind, "checkpoint": self.checkpoint}

    @property
    def label(self) -> str:
        return f"S4Fusion {self.checkpoint}"

    def problems(self) -> list[str]:
        from fusion.shipped_weights import missing_checkpoint_message, resolve_checkpoint

        if self.checkpoint is None or not resolve_checkpoint(self.checkpoint).is_file():
            return [missing_checkpoint_message(str(self.checkpoint))]
        return []

    def fuser(self, inputs: MethodInputs, device: str = "cpu") -> Fuser:
        from fusion.shipped_weights import resolve_checkpoint

        checkpoint = inputs.checkpoint or resolve_checkpoint(str(self.checkpoint))
        return super().fuser(MethodInputs(checkpoint=checkpoint), device)

    def prepare(self, pairs: PairSet | None = None) -> MethodInputs:
        from fusion.inference import load_model
        from fusion.shipped_weights import resolve_checkpoint

        load_model(self.checkpoint)  # a bad file raises fusion.model.CheckpointLoadError (an input error)
        return MethodInputs(checkpoint=resolve_checkpoint(self.checkpoint).resolve())


@dataclass
class S4FusionTrained(_S4FusionModel):
    """``train: CONFIG``: trained by fuse_then_detect on the detection train split (a train_fusion
    YAML path or an inline mapping); ``prepare`` gives its TrainConfig, the run gives the model."""

    name: str
    train: str | dict[str, Any] | None = None
    config_keys: ClassVar[tuple[str, ...]] = ("train",)
    config_help: ClassVar[str] = "'train' (a train_fusion config, path or mapping)"
    trains_in_run: ClassVar[bool] = True

    def identity(self) -> dict[str, Any]:
        return {"kind": self.kind, "train": self.train}

    @property
    def label(self) -> str:
        return "S4Fusion trained in this run"

    def problems(self) -> list[str]:
        from fusion.train import TrainConfig
        from runtime.config_loader import ConfigError, build

        try:
            if isinstance(self.train, str):
                TrainConfig.from_yaml(self.train)
            else:
                build(TrainConfig, self.train, source="", path="train")
        except ConfigError as exc:
            return [f"train: {p}" if isinstance(self.train, str) else p for p in exc.problems]
        return []

    def prepare(self, pairs: PairSet) -> MethodInputs:
        """The train_fusion config, its data set to the pairs' train and val splits."""
        from fusion.train import DataSource, TrainConfig

        if isinstance(self.train, str):
            cfg = TrainConfig.from_yaml(self.train)
        else:
            cfg = TrainConfig.from_dict(self.train, source=f"methods.{self.name}.train")
        if pairs.split is None or pairs.root is None:
            raise MethodError(
                f"method {self.name!r} trains S4Fusion in-run: only fuse_then_detect can run it"
            )
        name, root = pairs.dataset.name, str(pairs.root)
        cfg.data.train = [DataSource(dataset=name, root=root, stems=list(pairs.split["train"]))]
        cfg.data.val = [DataSource(dataset=name, root=root, stems=list(pairs.split["val"]))]
        cfg.tracking.enabled = False  # logged into the method's child run instead
        return MethodInputs(train_config=cfg)


@dataclass
class PrecomputedMethod(FusionMethod):
    """``folder: DIR``: one fused image per dataset pair, named by its stem (another method's outputs)."""

    name: str
    folder: str | None = None
    allow_missing: bool = False  # evaluate --allow-missing: missing images become NaN rows
    kind: ClassVar[str] = "precomputed"
    config_keys: ClassVar[tuple[str, ...]] = ("folder",)

    def identity(self) -> dict[str, Any]:
        return {"kind": self.kind, "folder": self.folder}

    def content_identity(self, inputs: MethodInputs) -> dict[str, Any]:
        files = inputs.files or {}
        return {"kind": self.kind, "files": {stem: file_sha256(p) for stem, p in files.items()}}

    @property
    def label(self) -> str:
        return f"precomputed {self.folder}"

    def problems(self) -> list[str]:
        if not self.folder:
            return ["'folder' (the method's fused images) is required"]
        if not Path(self.folder).expanduser().is_dir():
            return [
                f"folder {self.folder} does not exist; put the method's fused images there, one per "
                "dataset image, named by the dataset's file stems"
            ]
        return []

    def prepare(self, pairs: PairSet) -> MethodInputs:
        """Map stem -> fused image, checking completeness and sizes against the pairs."""
        by_stem = index_images_by_stem(Path(self.folder).expanduser())
        missing = [s for s in pairs.stems if s not in by_stem]
        mis_sized = []
        for stem in (s for s in pairs.stems if s in by_stem):
            expected, got = image_size(pairs.dataset.files(stem).ir), image_size(by_stem[stem])
            if got != expected:
                mis_sized.append(
                    f"{by_stem[stem]} is {got[0]}x{got[1]}, the pair is {expected[0]}x{expected[1]}"
                )
        problems = []
        if missing and not self.allow_missing:
            problems.append(
                f"{len(missing)} image(s) missing (expected <stem>.png/.jpg/... for every dataset image), "
                f"e.g. {missing[:10]} (evaluate: --allow-missing counts them as missing)"
            )
        if mis_sized:
            problems.append(
                f"{len(mis_sized)} image(s) of the wrong size, e.g.\n    " + "\n    ".join(mis_sized[:10])
            )
        if problems:
            raise MethodError(
                f"method {self.name!r} (precomputed, folder {self.folder}):\n  " + "\n  ".join(problems)
            )
        return MethodInputs(files={s: by_stem[s] for s in pairs.stems if s in by_stem}, missing=missing)
