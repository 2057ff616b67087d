"""The assembled S4Fusion network, its config, and official-checkpoint loading.

Structure (paper Fig. 2, details as in the official code): two overlap patch embeddings and
two VSS encoders (IR, VIS) of 3 stages; at each stage input a fusion layer of K interaction
blocks (CMSA by default) fuses the IR/VIS skips; a VSS decoder starts from the sum of the
deepest encoder outputs and adds the fused skips of levels 2 and 1; a fold head returns a
one-channel image. The level-0 fusion layer exists in the official checkpoint but its output
is never used there: we keep its parameters for compatibility and do not compute it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from data.io import write_atomic
from fusion.modules.cmsa import FusionLayer
from fusion.modules.interactions import build_interaction
from fusion.modules.patch import FoldHead, OverlapPatchEmbed
from fusion.modules.ss2d import VSSLayer
from fusion.shipped_weights import missing_checkpoint_message, resolve_checkpoint
from runtime.config_loader import build
from runtime.errors import InputError

EXPORT_FORMAT = "s4fuse"


class CheckpointLoadError(InputError, ValueError):
    """A model file is unreadable or of an unknown kind (the message names it)."""


class ModelFileNotFoundError(CheckpointLoadError, FileNotFoundError):
    """A model file does not exist."""


# Named model sizes, the one definition the YAMLs refer to (``model: {size: demo}``): ``paper`` is
# the published model; ``demo`` trains in minutes on a 2-core CPU; ``tiny`` is for tests.
MODEL_SIZES: dict[str, dict] = {
    "paper": {},
    "demo": {
        "dims": [16, 32, 64],
        "depths": [1, 1, 1],
        "depths_decoder": [1, 1, 1],
        "num_cmsa": 1,
        "d_state": 8,
        "d_state_fusion": 8,
    },
    "tiny": {
        "dims": [8, 16, 32],
        "depths": [1, 1, 1],
        "depths_decoder": [1, 1, 1],
        "num_cmsa": 1,
        "d_state": 4,
        "d_state_fusion": 4,
    },
}


@dataclass
class S4FusionConfig:
    """Defaults are the paper's model (2.03M used parameters at these sizes)."""

    dims: tuple[int, ...] = (48, 96, 192)
    depths: tuple[int, ...] = (1, 2, 1)
    depths_decoder: tuple[int, ...] = (1, 2, 1)
    num_cmsa: int = 3  # K interaction blocks per level
    d_state: int = 12  # VSS blocks
    d_state_fusion: int = 18  # CMSA blocks
    expand: float = 1.5
    patch_size: int = 4
    patch_stride: int = 3
    fold_chans: int = 12
    interaction: str = "cmsa"
    patch_mark: bool = True
    scan_backend: str = "auto"

    def __post_init__(self) -> None:
        self.dims, self.depths, self.depths_decoder = (
            tuple(self.dims),
            tuple(self.depths),
            tuple(self.depths_decoder),
        )
        if not len(self.dims) == len(self.depths) == len(self.depths_decoder):
            raise ValueError(f"dims, depths and depths_decoder need equal lengths, got {self}")
        if any(d2 != 2 * d1 for d1, d2 in zip(self.dims, self.dims[1:])):
            raise ValueError(f"each stage must double the width (patch merging), got dims={self.dims}")

    @property
    def size_multiple(self) -> int:
        """Valid sizes are ``size_multiple * k + 1`` (patch stride x 2 per downsampling)."""
        return self.patch_stride * 2 ** (len(self.dims) - 1)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: Mapping) -> S4FusionConfig:
        """Typed construction by the shared loader: unknown keys and bad values are all reported."""
        return build(cls, dict(d), "S4FusionConfig")

    @classmethod
    def from_spec(cls, spec: str | Mapping) -> S4FusionConfig:
        """A size name of :data:`MODEL_SIZES`, or a mapping of fields, optionally with ``size: NAME``
        as the base the other fields override."""
        d = {"size": spec} if isinstance(spec, str) else dict(spec)
        size = d.pop("size", "paper")
        if size not in MODEL_SIZES:
            raise ValueError(f"unknown model size {size!r}; named sizes: {sorted(MODEL_SIZES)}")
        return cls.from_dict({**MODEL_SIZES[size], **d})


class S4Fusion(nn.Module):
    """``S4Fusion(cfg)(ir, vi)``: (B,1,H,W) IR and VIS-Y in [0,1], H and W = 12k+1 -> (B,1,H,W).

    The output is raw (no activation or clamp), as in the official model; use
    :func:`fusion.inference.fuse` for arbitrary sizes and clamping to [0, 1].
    """

    def __init__(self, cfg: S4FusionConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or S4FusionConfig()
        dims, n = cfg.dims, len(cfg.dims)
        vss = dict(d_state=cfg.d_state, expand=cfg.expand, scan_backend=cfg.scan_backend)
        self.patch_embed_ir = OverlapPatchEmbed(1, dims[0], cfg.patch_size, cfg.patch_stride)
        self.patch_embed_vis = OverlapPatchEmbed(1, dims[0], cfg.patch_size, cfg.patch_stride)
        self.encoder_ir = nn.ModuleList(
            VSSLayer(dims[i], cfg.depths[i], downsample=i < n - 1, **vss) for i in range(n)
        )
        self.encoder_vis = nn.ModuleList(
            VSSLayer(dims[i], cfg.depths[i], downsample=i < n - 1, **vss) for i in range(n)
        )
        # fusion[i] fuses the inputs of encoder stage i (dims[i]); fusion[0] is kept, never computed.
        self.fusion = nn.ModuleList(
            FusionLayer(
                [
                    build_interaction(
                        cfg.interaction,
                        dims[i],
                        cfg.d_state_fusion,
                        cfg.expand,
                        cfg.scan_backend,
                        cfg.patch_mark,
                    )
                    for _ in range(cfg.num_cmsa)
                ]
            )
            for i in range(n)
        )
        # decoder stage j works at dims[n-1-j]; stages j>0 first upsample from dims[n-j].
        self.decoder = nn.ModuleList(
            VSSLayer(dims[n - 1 - j], cfg.depths_decoder[j], upsample_from=dims[n - j] if j else None, **vss)
            for j in range(n)
        )
        self.head = FoldHead(dims[0], cfg.fold_chans, cfg.patch_size, cfg.patch_stride)
        self.apply(_init_weights)

    def check_input_size(self, height: int, width: int) -> None:
        m = self.cfg.size_multiple
        if (height - 1) % m or (width - 1) % m or height < m + 1 or width < m + 1:
            raise ValueError(
                f"S4Fusion needs H and W of the form {m}k+1 (k>=1), got {height}x{width}; "
                "use fusion.inference.fuse to pad arbitrary sizes"
            )

    def forward(self, ir: Tensor, vi: Tensor) -> Tensor:
        self.check_input_size(ir.shape[-2], ir.shape[-1])
        x_ir, x_vis = self.patch_embed_ir(ir), self.patch_embed_vis(vi)
        skips = []
        for enc_ir, enc_vis in zip(self.encoder_ir, self.encoder_vis):
            skips.append((x_ir, x_vis))
            x_ir, x_vis = enc_ir(x_ir), enc_vis(x_vis)
        h = self.decoder[0](x_ir + x_vis)
        n = len(self.decoder)
        for j in range(1, n):
            level = n - j
            h = self.decoder[j](h + self.fusion[level](*skips[level]))
        return self.head(h)

    # ---- parameters -------------------------------------------------------------------
    def unused_parameter_names(self) -> list[str]:
        """Parameters that never influence the output: the level-0 fusion layer, the head's norm,
        and the Patch Mark projections when ``patch_mark`` is off."""
        return [
            name
            for name, _ in self.named_parameters()
            if name.startswith(("fusion.0.", "head.norm."))
            or (not self.cfg.patch_mark and name.endswith(".mark_proj"))
        ]

    def num_parameters(self, used_only: bool = False) -> int:
        skip = set(self.unused_parameter_names()) if used_only else set()
        return sum(p.numel() for name, p in self.named_parameters() if name not in skip)

    # ---- checkpoints ------------------------------------------------------------------
    @classmethod
    def from_official_state_dict(
        cls, sd: Mapping[str, Tensor], strict: bool = True, cfg: S4FusionConfig | None = None
    ) -> S4Fusion:
        """Build from an official checkpoint (keys ``vmunet.*``; the ``{'model': sd}`` wrapper of
        the released ``model.pkl`` is accepted). Every key must map; mismatches are named."""
        model = cls(cfg or S4FusionConfig())
        native = official_to_native(sd)
        expected = model.state_dict()
        missing = sorted(set(expected) - set(native))
        unexpected = sorted(set(native) - set(expected))
        wrong_shape = sorted(k for k in set(native) & set(expected) if native[k].shape != expected[k].shape)
        if strict and (missing or unexpected or wrong_shape):
            problems = [
                f"{label}: {names[:12]}" + (f" (+{len(names) - 12} more)" if len(names) > 12 else "")
                for label, names in (
                    ("missing", missing),
                    ("unexpected", unexpected),
                    ("shape mismatch", wrong_shape),
                )
                if names
            ]
            raise KeyError(
                "official checkpoint does not match S4Fusion("
                + repr(model.cfg)
                + "): "
                + "; ".join(problems)
                + " (names shown in this package's convention; see fusion.model._OFFICIAL_TO_NATIVE)"
            )
        model.load_state_dict({k: v for k, v in native.items() if k not in wrong_shape}, strict=strict)
        return model

    def save_exported(self, path: str | Path, dtype: torch.dtype | None = None) -> Path:
        """Write ``{"format", "config", "state_dict"}`` atomically; loads with weights_only=True.
        ``dtype`` (e.g. float16, half the file) stores the floating-point tensors rounded to it;
        :meth:`load` copies them back into the float32 model."""
        state = {
            k: v.to(dtype) if dtype is not None and v.is_floating_point() else v
            for k, v in self.state_dict().items()
        }
        payload = {"format": EXPORT_FORMAT, "config": self.cfg.to_dict(), "state_dict": state}
        return write_atomic(path, lambda fh: torch.save(payload, fh))

    @classmethod
    def load(cls, path: str | Path, map_location: str | torch.device = "cpu", **cfg_overrides) -> S4Fusion:
        """Load an exported s4fuse model, a plain native state dict (default config), an official
        checkpoint (``model.pkl`` or a ``vmunet.*`` state dict) or ``"demo"`` (fusion.shipped_weights)."""
        path = resolve_checkpoint(path)
        if not path.is_file():
            raise ModelFileNotFoundError(missing_checkpoint_message(path))
        try:
            obj = torch.load(path, map_location=map_location, weights_only=True)
        except Exception as exc:  # corrupted, truncated or not a torch file
            raise CheckpointLoadError(
                f"cannot read S4Fusion checkpoint {path}: {_load_problem(exc)}"
            ) from exc
        if isinstance(obj, Mapping) and obj.get("format") == EXPORT_FORMAT:
            cfg = S4FusionConfig.from_dict({**obj["config"], **cfg_overrides})
            return _load_weights(cls(cfg), obj["state_dict"], path)
        cfg = S4FusionConfig(**cfg_overrides)
        if isinstance(obj, Mapping) and any(k.startswith("vmunet.") for k in _unwrap(obj)):
            return cls.from_official_state_dict(obj, cfg=cfg)
        if isinstance(obj, Mapping) and all(isinstance(v, Tensor) for v in obj.values()):
            return _load_weights(cls(cfg), obj, path)
        raise CheckpointLoadError(
            f"{path} is neither an s4fuse export, a native state dict nor an official S4Fusion checkpoint"
        )


def _load_problem(exc: Exception) -> str:
    """One line for a failed ``torch.load``. Its weights-only refusal is a page that advises
    ``weights_only=False``, wrong for a file that is simply corrupt; the unpickler's own reason is
    its last line that is not advice."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    if lines and lines[0].startswith("Weights only load failed"):
        reasons = [ln for ln in lines[1:] if not ln.startswith(("Check the documentation", "Please file"))]
        return (
            "corrupt, or not a file of tensors (torch.load with weights_only=True refused it"
            + (f": {reasons[-1]}" if reasons else "")
            + ")"
        )
    return lines[0] if lines else type(exc).__name__


def _load_weights(model: S4Fusion, state_dict: Mapping, path: Path) -> S4Fusion:
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as exc:  # missing/unexpected keys or shapes: the file is not this model
        raise CheckpointLoadError(
            f"{path}: weights do not fit the model ({str(exc).splitlines()[0]}); is it "
            f"an S4Fusion checkpoint of this config?"
        ) from exc
    return model


def _init_weights(module: nn.Module) -> None:
    """The official (VMamba) initialisation: Linear weights truncated-normal std 0.02 with zero
    bias, LayerNorm (1, 0). Convolutions and the scan parameters keep their own initialisation.
    Small residual branches make the untrained network close to identity, which trains faster."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


# ---- official checkpoint key mapping --------------------------------------------------------
# (official pattern, native replacement), applied in order to each key after removing "vmunet."
_OFFICIAL_TO_NATIVE: list[tuple[str, str]] = [
    (r"^patch_embed_x\.", "patch_embed_ir."),
    (r"^patch_embed_y\.", "patch_embed_vis."),
    (r"^layers_x\.", "encoder_ir."),
    (r"^layers_y\.", "encoder_vis."),
    (r"^layers_up\.", "decoder."),
    (r"\.ln_1\.", ".norm."),
    (r"\.self_attention\.", ".ss2d."),
    (r"^fusion_layers\.(\d+)\.layers\.", r"fusion.\1.blocks."),
    (r"^(fusion\.\d+\.blocks\.\d+)\.x_proj_weight$", r"\1.x_proj_weight_ir"),
    (r"^(fusion\.\d+\.blocks\.\d+)\.y_proj_weight$", r"\1.x_proj_weight_vis"),
    (r"^final_up\.expand\.", "head.expand."),
    (r"^final_up\.norm\.", "head.norm."),
    (r"^final_conv\.", "head.conv."),
]


def _unwrap(sd: Mapping) -> Mapping:
    return sd["model"] if "model" in sd and isinstance(sd["model"], Mapping) else sd


def official_key_to_native(key: str) -> str:
    if not key.startswith("vmunet."):
        raise KeyError(f"official S4Fusion keys start with 'vmunet.', got {key!r}")
    key = key[len("vmunet.") :]
    for pattern, repl in _OFFICIAL_TO_NATIVE:
        key = re.sub(pattern, repl, key)
    return key


def official_to_native(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename an official state dict to this package's names (tensors are not copied)."""
    sd = _unwrap(sd)
    bad = [k for k in sd if not k.startswith("vmunet.")]
    if bad:
        raise KeyError(
            f"not an official S4Fusion state dict: keys without the 'vmunet.' prefix: {bad[:10]}"
            + (f" (+{len(bad) - 10} more)" if len(bad) > 10 else "")
        )
    return {official_key_to_native(k): v for k, v in sd.items()}
