"""S4Fusion training loss (paper Sec. III-D): perception entropy + source-weighted L1, SSIM and gradient terms.

    total = w_per * L_per + w_l1 * L_L1 + w_ssim * L_SSIM + w_grad * L_grad

- ``L_per``: entropy of softmax(ResNet50(F)) over the 1000 ImageNet classes, batch mean. The
  one-channel fused image F in [0, 1] enters ResNet50 repeated to 3 channels and normalised with
  the ImageNet mean/std (exactly what a gray photograph looks like to an ImageNet model).
- ``omega``: U2Fusion-style adaptive source weights. The same frozen ResNet50 sees IR and VIS-Y;
  for each of its 4 stage outputs f, g = mean over (C, h, w) of S(f)^2 with S the Sobel magnitude
  below; g is averaged over the stages giving W_ir, W_vi per sample and
  [omega_ir, omega_vi] = softmax([W_ir / c, W_vi / c]). No gradient flows through omega.
  ``omega_features: image`` computes W from the source images themselves (one "stage") instead:
  an offline/CPU-demo fallback for when no ImageNet ResNet50 is available — an untrained
  ResNet50's features give arbitrary weights (measured: omega_ir ~ 0.03 on the synthetic data).
  ``omega_scope: pixel`` (a documented deviation; the paper's omega is one pair of weights per
  sample) makes omega a map: W_s(x) = G * S(s)^2, the Sobel energy of each source image smoothed by
  the SSIM window G, and omega(x) = softmax([W_ir(x) / c, W_vi(x) / c]). The L1 and DSSIM terms
  are then weighted pixel by pixel (DSSIM from the full-size SSIM map, reflect-padded at the
  border), so the source with more texture in one region cannot take the whole crop.
- ``L_SSIM`` = mean_b(omega_ir * DSSIM(IR, F)) + mean_b(omega_vi * DSSIM(VIS, F)),
  DSSIM = (1 - SSIM) / 2, SSIM with an 11x11 Gaussian window (sigma 1.5, pytorch_msssim).
- ``L_L1`` = the same omega-weighted form with mean |IR - F| and mean |VIS - F|.
  With ``omega_scope: pixel`` both are means over pixels of omega_ir(x) * term_IR(x) + omega_vi(x) * term_VIS(x).
- ``L_grad`` = mean |max(S(VIS), S(IR)) - S(F)|, S = |gx| + |gy| with the 3x3 Sobel kernels and
  zero padding.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from pytorch_msssim import ssim
from torchmetrics.functional.image import structural_similarity_index_measure
from torchvision.transforms.functional import gaussian_blur

log = logging.getLogger(__name__)

# Sobel kernels of the paper (cross-correlation, as F.conv2d applies them).
SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
SOBEL_Y = torch.tensor([[1.0, 2.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -2.0, -1.0]])
SSIM_WINDOW, SSIM_SIGMA = 11, 1.5
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# torchvision's ImageNet ResNet50 checkpoints, preferred first: IMAGENET1K_V1 is what
# `resnet50(pretrained=True)` (the API of the official code's era) returns.
RESNET50_FILES = ("resnet50-0676ba61.pth", "resnet50-11ad3fa6.pth")
RESNET50_URL = "https://download.pytorch.org/models/resnet50-0676ba61.pth"


@dataclass
class PerceptionConfig:
    """The frozen ResNet50 used by L_per and by the source weights omega."""

    enabled: bool = True  # False = "w/o L_per" (Table V Exp. 7); omega still uses ResNet50
    weight: float = 1.0
    # "imagenet": torchvision's ImageNet weights from the torch hub cache; a path: that file;
    # "random": untrained network, ONLY for tests and the CPU demo (logged loudly).
    weights: str = "imagenet"


@dataclass
class LossConfig:
    w_l1: float = 15.0
    w_ssim: float = 15.0
    w_grad: float = 15.0
    # Softmax temperature c of omega. The paper does not state it. With ImageNet ResNet50 stage
    # features, W = mean S(f)^2 is O(1-10) and IR/VIS differ by a few units, so c = 1 would
    # saturate omega to 0/1 and U2Fusion's c ~ 3e3 (tuned for VGG features of 0-255 images)
    # would pin it at 0.5/0.5; c = 5 keeps omega responsive. The trainer logs omega_ir so users
    # can check it is neither stuck at 0.5 nor saturated on their data.
    temperature: float = 5.0
    # "resnet50": omega from the ResNet50 stage features (the paper); "image": from the source
    # images' own gradient energy (no ResNet50 needed; for runs without ImageNet weights).
    omega_features: str = "resnet50"
    # "sample": one [omega_ir, omega_vi] per sample (the paper); "pixel": an omega map from the
    # source images' local Sobel energy (implies image features; docs/training.md finding 8).
    omega_scope: str = "sample"
    perception: PerceptionConfig = field(default_factory=PerceptionConfig)

    def __post_init__(self) -> None:
        problems = []
        if self.omega_features not in ("resnet50", "image"):
            problems.append(f"loss.omega_features must be 'resnet50' or 'image', got {self.omega_features!r}")
        if self.omega_scope not in ("sample", "pixel"):
            problems.append(f"loss.omega_scope must be 'sample' or 'pixel', got {self.omega_scope!r}")
        elif self.omega_scope == "pixel" and self.omega_features != "image":
            problems.append(
                "loss.omega_scope=pixel weighs pixels by the source images' own Sobel energy: "
                "set loss.omega_features=image"
            )
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def needs_resnet50(self) -> bool:
        return self.perception.enabled or self.omega_features == "resnet50"


def sobel_magnitude(x: torch.Tensor) -> torch.Tensor:
    """S(x) = |gx| + |gy| per channel of (B, C, H, W), zero padding; same shape as x."""
    b, c, h, w = x.shape
    kernels = torch.stack([SOBEL_X, SOBEL_Y]).to(device=x.device, dtype=x.dtype).unsqueeze(1)  # (2,1,3,3)
    grads = F.conv2d(x.reshape(b * c, 1, h, w), kernels, padding=1)
    return grads.abs().sum(dim=1).reshape(b, c, h, w)


def source_weights(w_ir: torch.Tensor, w_vi: torch.Tensor, temperature: float) -> torch.Tensor:
    """[omega_ir, omega_vi] = softmax([W_ir / c, W_vi / c]) per sample -> (B, 2)."""
    return torch.softmax(torch.stack([w_ir, w_vi], dim=1) / temperature, dim=1)


def feature_gradient_energy(features: list[torch.Tensor]) -> torch.Tensor:
    """Average over stages of mean_{C,h,w} S(f)^2 -> (B,)."""
    return torch.stack([sobel_magnitude(f).square().mean(dim=(1, 2, 3)) for f in features]).mean(dim=0)


def local_gradient_energy(x: torch.Tensor) -> torch.Tensor:
    """G * S(x)^2: Sobel energy smoothed by the SSIM window (reflect padding); same shape as x."""
    return gaussian_blur(sobel_magnitude(x).square(), [SSIM_WINDOW, SSIM_WINDOW], [SSIM_SIGMA, SSIM_SIGMA])


def local_source_weights(ir: torch.Tensor, vi: torch.Tensor, temperature: float) -> torch.Tensor:
    """omega(x) = softmax([G * S(IR)^2, G * S(VIS)^2] / c) per pixel of (B,1,H,W) sources -> (B, 2, H, W)."""
    return torch.softmax(
        torch.cat([local_gradient_energy(ir), local_gradient_energy(vi)], dim=1) / temperature, dim=1
    )


def prediction_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of softmax(logits) over the last dim, batch mean; at least float32 (bf16 logits
    are promoted), float64 logits stay float64."""
    log_p = torch.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)
    return -(log_p.exp() * log_p).sum(dim=-1).mean()


def dssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(1 - SSIM) / 2 per sample, images in [0, 1], 11x11 Gaussian window sigma 1.5 -> (B,)."""
    return (
        1.0 - ssim(x, y, data_range=1.0, size_average=False, win_size=SSIM_WINDOW, win_sigma=SSIM_SIGMA)
    ) / 2.0


def dssim_map(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(1 - SSIM) / 2 per pixel, same window, reflect-padded to the full size of x -> (B, C, H, W)."""
    _, ssim_full = structural_similarity_index_measure(
        x,
        y,
        gaussian_kernel=True,
        sigma=SSIM_SIGMA,
        kernel_size=SSIM_WINDOW,
        data_range=1.0,
        reduction="none",
        return_full_image=True,
    )
    return (1.0 - ssim_full) / 2.0


def resolve_resnet50_weights(weights: str) -> Path | None:
    """The checkpoint file for ``weights`` ("imagenet" or a path); None for "random"."""
    if weights == "random":
        return None
    if weights != "imagenet":
        path = Path(weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"ResNet50 weights file {path} (perception.weights) does not exist")
        return path
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    for name in RESNET50_FILES:
        if (folder / name).is_file():
            return folder / name
    found = sorted(folder.glob("resnet50-*.pth"))
    if found:
        return found[0]
    raise FileNotFoundError(
        f"ImageNet ResNet50 weights not found: expected {RESNET50_FILES[0]} (or {RESNET50_FILES[1]}) in "
        f"{folder}. The S4Fusion loss needs them (perception entropy and source weights). On a machine "
        f"with internet run `python -c \"import torchvision; torchvision.models.resnet50(weights='IMAGENET1K_V1')\"` "
        f"or download {RESNET50_URL}, then copy the file into {folder} (or set TORCH_HOME), or set "
        f"loss.perception.weights to the file's path."
    )


class PerceptionNet(nn.Module):
    """Frozen ResNet50 in eval mode: 4 stage outputs and the 1000-class logits of a (B,1,H,W) image in [0,1]."""

    def __init__(self, weights: str = "imagenet"):
        super().__init__()
        path = resolve_resnet50_weights(weights)
        self.net = torchvision.models.resnet50(weights=None)
        if path is None:
            warnings.warn(
                "perception.weights=random: the S4Fusion loss uses an UNTRAINED ResNet50 "
                "(tests/demo only; L_per and omega are not the paper's)",
                stacklevel=2,
            )
            log.warning("perception.weights=random: untrained ResNet50 in the loss (tests/demo only)")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
            try:
                self.net.load_state_dict(state.get("state_dict", state))
            except RuntimeError as e:
                raise ValueError(f"{path} is not a torchvision ResNet50 state dict: {e}") from e
        self.source = "random" if path is None else str(path)
        self.net.requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.eval()

    def train(self, mode: bool = True) -> PerceptionNet:
        return super().train(False)  # always eval: frozen BatchNorm statistics

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        x = (x.expand(-1, 3, -1, -1) - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        n = self.net
        return n.maxpool(n.relu(n.bn1(n.conv1(x))))

    def stage_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        n, feats = self.net, []
        x = self._stem(x)
        for stage in (n.layer1, n.layer2, n.layer3, n.layer4):
            x = stage(x)
            feats.append(x)
        return feats

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        n = self.net
        return n.fc(torch.flatten(n.avgpool(self.stage_features(x)[-1]), 1))


class S4FusionLoss(nn.Module):
    """Callable as ``loss(ir, vi, fused) -> (total, terms)``; ``terms`` holds detached scalars.

    ``terms``: ``per`` (entropy, nats), ``l1``, ``ssim``, ``grad`` (unweighted) and ``omega_ir``
    (batch mean of the IR source weight). ``total`` applies the configured weights.
    """

    def __init__(self, cfg: LossConfig, perception_net: PerceptionNet | None = None):
        super().__init__()
        self.cfg = cfg
        if perception_net is None and cfg.needs_resnet50:
            perception_net = PerceptionNet(cfg.perception.weights)
        self.perception = perception_net  # None when neither L_per nor omega uses ResNet50

    def forward(
        self, ir: torch.Tensor, vi: torch.Tensor, fused: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cfg = self.cfg
        omega = self._source_weights(ir, vi)
        terms: dict[str, torch.Tensor] = {}
        if cfg.perception.enabled:
            terms["per"] = prediction_entropy(self.perception.logits(fused))
        # Pixel terms in float32 even under bf16 autocast: SSIM statistics need the precision.
        with torch.autocast(device_type=fused.device.type, enabled=False):
            ir, vi, fused = ir.float(), vi.float(), fused.float()
            terms["l1"], terms["ssim"] = self._weighted_source_terms(ir, vi, fused, omega)
            target = torch.maximum(sobel_magnitude(vi), sobel_magnitude(ir))
            terms["grad"] = (target - sobel_magnitude(fused)).abs().mean()
        total = cfg.w_l1 * terms["l1"] + cfg.w_ssim * terms["ssim"] + cfg.w_grad * terms["grad"]
        if cfg.perception.enabled:
            total = total + cfg.perception.weight * terms["per"]
        report = {k: v.detach() for k, v in terms.items()}
        report["omega_ir"] = omega[:, 0].mean()
        return total, report

    @torch.no_grad()
    def _source_weights(self, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
        """omega as (B, 2) (scope sample) or (B, 2, H, W) (scope pixel); no gradient."""
        cfg = self.cfg
        if cfg.omega_scope == "pixel":
            return local_source_weights(ir.float(), vi.float(), cfg.temperature)
        sources = torch.cat([ir, vi])
        features = self.perception.stage_features(sources) if cfg.omega_features == "resnet50" else [sources]
        energy = feature_gradient_energy(features).float()
        return source_weights(*energy.chunk(2), temperature=cfg.temperature)

    def _weighted_source_terms(
        self, ir: torch.Tensor, vi: torch.Tensor, fused: torch.Tensor, omega: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(L_L1, L_SSIM) weighted by omega per sample or per pixel."""
        if self.cfg.omega_scope == "pixel":
            w_ir, w_vi = omega[:, 0:1], omega[:, 1:2]
            l1 = w_ir * (ir - fused).abs() + w_vi * (vi - fused).abs()
            structure = w_ir * dssim_map(ir, fused) + w_vi * dssim_map(vi, fused)
            return l1.mean(dim=(1, 2, 3)).mean(), structure.mean(dim=(1, 2, 3)).mean()
        # per sample: the paper's reduction order, so its numbers stay bit-identical
        w_ir, w_vi = omega[:, 0], omega[:, 1]
        l1 = (w_ir * (ir - fused).abs().mean(dim=(1, 2, 3))).mean() + (
            w_vi * (vi - fused).abs().mean(dim=(1, 2, 3))
        ).mean()
        structure = (w_ir * dssim(ir, fused)).mean() + (w_vi * dssim(vi, fused)).mean()
        return l1, structure
