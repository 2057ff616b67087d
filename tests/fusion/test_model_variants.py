"""Config, ablation interactions (Table V), export round trip, input checks, FLOP counting."""

from __future__ import annotations

import pytest
import torch

from fusion import S4Fusion, S4FusionConfig
from fusion.flops import count_model
from fusion.modules.interactions import INTERACTIONS
from fusion.ops.selective_scan import selective_scan_flops as scan_flops

TINY = dict(
    dims=(8, 16, 32), depths=(1, 1, 1), depths_decoder=(1, 1, 1), num_cmsa=1, d_state=4, d_state_fusion=4
)


def _pair(h=25, w=37, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(2, 1, h, w, generator=g), torch.rand(2, 1, h, w, generator=g)


VARIANTS = [(kind, True) for kind in INTERACTIONS] + [("cmsa", False)]


@pytest.mark.parametrize("kind,mark", VARIANTS)
def test_variant_forward_backward(kind, mark):
    torch.manual_seed(0)
    model = S4Fusion(S4FusionConfig(**TINY, interaction=kind, patch_mark=mark))
    ir, vi = _pair()
    out = model(ir, vi)
    assert out.shape == ir.shape and torch.isfinite(out).all()
    out.square().mean().backward()
    unused = set(model.unused_parameter_names())
    no_grad = [n for n, p in model.named_parameters() if n not in unused and p.grad is None]
    assert no_grad == []


def test_ablation_parameter_counts_comparable_to_cmsa():
    counts = {
        kind: S4Fusion(S4FusionConfig(interaction=kind)).num_parameters(used_only=True)
        for kind in INTERACTIONS
    }
    for kind, n in counts.items():
        assert 0.6 <= n / counts["cmsa"] <= 1.5, (kind, n, counts["cmsa"])


def test_patch_mark_changes_output():
    torch.manual_seed(0)
    with_mark = S4Fusion(S4FusionConfig(**TINY))
    without = S4Fusion(S4FusionConfig(**TINY, patch_mark=False))
    without.load_state_dict(with_mark.state_dict())
    ir, vi = _pair()
    with torch.no_grad():
        assert not torch.allclose(with_mark(ir, vi), without(ir, vi))


def test_config_validation():
    with pytest.raises(ValueError, match="unknown interaction"):
        S4Fusion(S4FusionConfig(**TINY, interaction="transformer"))
    with pytest.raises(ValueError, match="patch_mark"):
        S4Fusion(S4FusionConfig(**TINY, interaction="cnn", patch_mark=False))
    with pytest.raises(ValueError, match="double"):
        S4FusionConfig(dims=(8, 12, 32))
    with pytest.raises(ValueError, match=r"S4FusionConfig: unknown key\(s\) \[.dim.\]"):
        S4FusionConfig.from_dict({"dim": 3})
    cfg = S4FusionConfig(**TINY, interaction="cnn")
    assert S4FusionConfig.from_dict(cfg.to_dict()) == cfg


def test_input_size_must_be_12k_plus_1():
    model = S4Fusion(S4FusionConfig(**TINY))
    with pytest.raises(ValueError, match=r"12k\+1"):
        model(torch.zeros(1, 1, 24, 25), torch.zeros(1, 1, 24, 25))


def test_export_round_trip_and_bad_files(tmp_path):
    torch.manual_seed(0)
    model = S4Fusion(S4FusionConfig(**TINY, interaction="vanilla_attention")).eval()
    path = model.save_exported(tmp_path / "m.pt")
    loaded = S4Fusion.load(path).eval()
    assert loaded.cfg == model.cfg
    ir, vi = _pair()
    with torch.no_grad():
        assert torch.equal(loaded(ir, vi), model(ir, vi))
    # a plain native state dict loads with the default (or overridden) config
    torch.save(model.state_dict(), tmp_path / "plain.pt")
    plain = S4Fusion.load(tmp_path / "plain.pt", **{**TINY, "interaction": "vanilla_attention"})
    assert torch.equal(plain.head.conv.weight, model.head.conv.weight)
    (tmp_path / "broken.pt").write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="broken.pt"):
        S4Fusion.load(tmp_path / "broken.pt")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        S4Fusion.load(tmp_path / "missing.pt")


def test_flop_count_is_backend_independent_and_matches_formula():
    model = S4Fusion(S4FusionConfig(**TINY, scan_backend="reference"))
    a = count_model(model, 49, 61)
    model_cpu = S4Fusion(S4FusionConfig(**TINY, scan_backend="cpu"))
    assert count_model(model_cpu, 49, 61).to_dict() == a.to_dict()
    assert (a.padded_height, a.padded_width) == (49, 61)
    # scans: per VSS block one of length L at its level; per CMSA block one of length 2L (levels 1, 2 run)
    h0, w0 = (49 - 4) // 3 + 1, (61 - 4) // 3 + 1
    lengths = [h0 * w0, h0 * w0 // 4, h0 * w0 // 16]
    d = [int(1.5 * c) * 4 for c in TINY["dims"]]
    expected = sum(scan_flops(1, d[i], lengths[i], 4) for i in range(3))  # encoder IR
    expected *= 2  # + encoder VIS
    expected += sum(scan_flops(1, d[i], lengths[i], 4) for i in range(3))  # decoder
    expected += sum(scan_flops(1, d[i], 2 * lengths[i], 4) for i in (1, 2))  # CMSA levels 1, 2
    assert a.scan_flops == expected
    assert a.params_used < a.params_total and a.dense_macs > 0
    official = count_model(model, 49, 61, official_forward=True)
    assert official.scan_flops == a.scan_flops + scan_flops(1, d[0], 2 * lengths[0], 4)
