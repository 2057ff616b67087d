"""S4Fusion against the official implementation's test vectors (../shared/data/reference).

Whole-model outputs in float64 and float32 for default and perturbed weights, and every stage in
isolation (reference input -> our module -> reference output), so a failure names the stage.

Tolerances are the bounds README.md and docs/model.md state. Measured on this machine (2026-11-30):
float64 fused <= 8.1e-15, every stage <= 8.9e-15, fold 0, scan <= 4.4e-16; float32 fused <= 4.0e-6.
The bounds leave about 2x for other CPUs / BLAS builds, no more.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from fusion import S4Fusion, S4FusionConfig
from fusion.model import official_to_native
from fusion.ops.selective_scan import selective_scan_fn
from fusion.ops.tolerances import MODEL_FLOAT32_MAX_ABS  # bench.gpu_check holds the CUDA run to it too

CASES = ["s4fusion_case1.pt", "s4fusion_case1_perturbed.pt"]
TOL_FLOAT64 = 2e-14  # whole model, every stage, fold, official model.pkl
TOL_SCAN = 2e-15  # the interleaved selective scan alone


@pytest.fixture(scope="module", params=CASES)
def case(request, shared_data):
    return torch.load(shared_data / "reference" / request.param, weights_only=True)


@pytest.fixture(scope="module")
def model64(case):
    return S4Fusion.from_official_state_dict(case["state_dict"]).double().eval()


def max_abs(a, b) -> float:
    if isinstance(a, (tuple, list)):
        return max(max_abs(x, y) for x, y in zip(a, b, strict=True))
    return (a - b).abs().max().item()


def test_fused_float64(case, model64):
    with torch.no_grad():
        out = model64(case["ir"], case["vi"])
    assert out.shape == case["fused"].shape
    assert max_abs(out, case["fused"]) <= TOL_FLOAT64


def test_fused_float32(case):
    model = S4Fusion.from_official_state_dict(case["state_dict"]).eval()
    with torch.no_grad():
        out = model(case["ir"].float(), case["vi"].float())
    assert out.dtype == torch.float32
    assert max_abs(out.double(), case["fused"]) <= MODEL_FLOAT32_MAX_ABS


STAGES = {
    "patch_embed_ir": lambda m: m.patch_embed_ir,
    "patch_embed_vis": lambda m: m.patch_embed_vis,
    "vss_block_ir_enc0_block0": lambda m: m.encoder_ir[0].blocks[0],
    **{f"encoder_ir_layer{i}": lambda m, i=i: m.encoder_ir[i] for i in range(3)},
    **{f"encoder_vis_layer{i}": lambda m, i=i: m.encoder_vis[i] for i in range(3)},
    # level 0 is not part of our forward pass, but its parameters still compute what the official layer computes
    **{f"fusion_level{i}": lambda m, i=i: m.fusion[i] for i in range(3)},
    "fusion_block_mid_level1_block0": lambda m: m.fusion[1].blocks[0],
    "fusion_block_coarse_level2_block0": lambda m: m.fusion[2].blocks[0],
    **{f"decoder_stage{i}": lambda m, i=i: m.decoder[i] for i in range(3)},
    "final_up": lambda m: m.head.expand,
    "final_conv": lambda m: m.head.conv,
}


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_in_isolation(case, model64, stage):
    entry = case[stage]
    inp = entry["input"]
    with torch.no_grad():
        out = STAGES[stage](model64)(*inp) if isinstance(inp, (tuple, list)) else STAGES[stage](model64)(inp)
    assert max_abs(out, entry["output"]) <= TOL_FLOAT64, stage


def test_fold_sums_overlaps(case, model64):
    entry = case["fold"]
    h, w = case["ir"].shape[-2:]
    out = F.fold(entry["input"], output_size=(h, w), kernel_size=4, stride=3)
    assert max_abs(out, entry["output"]) <= TOL_FLOAT64


def test_bottleneck_is_sum_of_deepest_encoders(case):
    entry = case["decoder_bottleneck"]
    assert max_abs(entry["input"][0] + entry["input"][1], entry["output"]) == 0.0


@pytest.mark.parametrize("backend", ["reference", "cpu", "auto"])
def test_cmsa_scan_call(case, model64, backend):
    """The interleaved scan of the coarsest CMSA block, with our parameters, per backend."""
    block = model64.fusion[2].blocks[0]
    scan = case["fusion_block_coarse_level2_block0_scan"]
    x = scan["input"]
    out = selective_scan_fn(
        x["u"],
        x["delta"],
        -torch.exp(block.A_logs),
        x["B"],
        x["C"],
        block.Ds,
        delta_bias=block.dt_projs_bias.reshape(-1),
        delta_softplus=True,
        backend=backend,
    )
    assert max_abs(out.detach(), scan["output"]) <= TOL_SCAN


def test_level0_fusion_is_not_computed(case, model64):
    calls = []
    handle = model64.fusion[0].register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        model64(case["ir"], case["vi"])
    handle.remove()
    assert calls == []


def test_parameter_counts_match_manifest(shared_data):
    manifest = json.loads((shared_data / "reference" / "s4fusion_state_dict_manifest.json").read_text())
    model = S4Fusion()
    assert model.num_parameters() == manifest["totals"]["num_params"]
    assert model.num_parameters(used_only=True) == manifest["totals"]["num_params_receiving_grad"]
    unused_official = {k for k in manifest["totals"]["unused_keys"]}
    native_unused = set(official_to_native({k: torch.empty(0) for k in unused_official}))
    assert native_unused == set(model.unused_parameter_names())


def test_gradients_reach_exactly_the_used_parameters(shared_data):
    manifest = json.loads((shared_data / "reference" / "s4fusion_state_dict_manifest.json").read_text())
    model = S4Fusion().double()
    x = torch.rand(1, 1, 37, 49, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    model(x, x.flip(-1)).sum().backward()
    got = {n for n, p in model.named_parameters() if p.grad is not None}
    official_used = {e["key"]: e["receives_grad"] for e in manifest["entries"]}
    expected = {
        official_to_native({k: torch.empty(0)}).popitem()[0] for k, used in official_used.items() if used
    }
    assert got == expected


def test_official_wrapper_and_strict_errors(case):
    sd = case["state_dict"]
    wrapped = S4Fusion.from_official_state_dict({"model": sd})
    assert torch.equal(wrapped.head.conv.weight, sd["vmunet.final_conv.weight"])
    broken = dict(sd)
    del broken["vmunet.final_conv.bias"]
    broken["vmunet.extra.weight"] = torch.zeros(1)
    with pytest.raises(KeyError, match=r"missing: \['head.conv.bias'\].*unexpected: \['extra.weight'\]"):
        S4Fusion.from_official_state_dict(broken)
    with pytest.raises(KeyError, match="vmunet"):
        S4Fusion.from_official_state_dict({"final_conv.weight": torch.zeros(1)})
    small = S4FusionConfig(dims=(8, 16, 32))
    with pytest.raises(KeyError, match="shape mismatch"):
        S4Fusion.from_official_state_dict(sd, cfg=small)


def test_load_official_model_pkl_file(case, tmp_path):
    path = tmp_path / "model.pkl"
    torch.save({"model": case["state_dict"]}, path)
    model = S4Fusion.load(path).double().eval()
    with torch.no_grad():
        assert max_abs(model(case["ir"], case["vi"]), case["fused"]) <= TOL_FLOAT64
