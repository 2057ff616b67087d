"""Parameter and FLOP counts for Table VII.

Dense operations are counted by ``torch.utils.flop_counter.FlopCounterMode`` (which counts a
multiply-add as 2 FLOPs); selective scans are counted analytically (9·B·L·D·N + B·D·L, the
formula VMamba/S4Fusion use) through :func:`fusion.modules.scan.count_scan_flops`, which does not
run any backend, so the count is the same whichever backend would run. Papers in this line
(VMamba, S4Fusion) use fvcore, which counts one multiply-add as ONE FLOP; we report both the
``paper convention`` (dense MACs + scan FLOPs) and 2·MAC FLOPs. The paper's own Table VII values
are data in fusion.paper (``table7_efficiency()``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from fusion.inference import padding_for
from fusion.model import S4Fusion
from fusion.modules.scan import count_scan_flops


@dataclass
class ModelCost:
    height: int
    width: int
    padded_height: int
    padded_width: int
    params_total: int
    params_used: int
    dense_macs: int
    scan_flops: int

    @property
    def flops_paper_convention(self) -> int:
        """fvcore-style: dense multiply-adds counted once, plus the scan formula."""
        return self.dense_macs + self.scan_flops

    @property
    def flops_2mac(self) -> int:
        return 2 * self.dense_macs + self.scan_flops

    def to_dict(self) -> dict:
        return {
            **asdict(self),
            "flops_paper_convention": self.flops_paper_convention,
            "flops_2mac": self.flops_2mac,
        }


@torch.no_grad()
def count_model(
    model: nn.Module, height: int = 480, width: int = 640, official_forward: bool = False
) -> ModelCost:
    """Count parameters and FLOPs of one forward pass on a (1,1,height,width) pair (padded like
    :func:`fusion.inference.fuse`). ``official_forward=True`` adds the level-0 fusion layer that
    the official code computes and discards (our forward skips it)."""
    multiple = model.cfg.size_multiple if isinstance(model, S4Fusion) else 12
    ph, pw = height + sum(padding_for(height, multiple)), width + sum(padding_for(width, multiple))
    param = next(model.parameters())
    x = torch.zeros(1, 1, ph, pw, dtype=param.dtype, device=param.device)
    counter = FlopCounterMode(display=False)
    with count_scan_flops() as scans, counter:
        model(x, x)
        if official_forward and isinstance(model, S4Fusion):
            level0 = model.patch_embed_ir(x)
            model.fusion[0](level0, level0)
    total = sum(p.numel() for p in model.parameters())
    used = model.num_parameters(used_only=True) if isinstance(model, S4Fusion) else total
    return ModelCost(height, width, ph, pw, total, used, counter.get_total_flops() // 2, sum(scans))
