"""S4Fusion loss terms on hand-made inputs with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pytorch_msssim.ssim import _fspecial_gauss_1d

from fusion.losses import (
    SSIM_SIGMA,
    SSIM_WINDOW,
    LossConfig,
    PerceptionConfig,
    PerceptionNet,
    S4FusionLoss,
    dssim,
    dssim_map,
    feature_gradient_energy,
    local_source_weights,
    prediction_entropy,
    resolve_resnet50_weights,
    sobel_magnitude,
    source_weights,
)

C1 = 0.01**2  # SSIM constants for data range 1
C2 = 0.03**2


@pytest.fixture(scope="module")
def perception() -> PerceptionNet:
    with pytest.warns(UserWarning, match="UNTRAINED ResNet50"):
        return PerceptionNet("random")


def border_map(h: int, w: int) -> torch.Tensor:
    """S of a constant image of value 1 with zero padding: 6 at corners, 4 on edges, 0 inside."""
    m = torch.zeros(h, w, dtype=torch.float64)
    m[0, :] = m[-1, :] = m[:, 0] = m[:, -1] = 4.0
    m[0, 0] = m[0, -1] = m[-1, 0] = m[-1, -1] = 6.0
    return m


def test_sobel_of_constant_image_is_the_zero_padding_border():
    x = torch.full((1, 1, 5, 7), 0.5, dtype=torch.float64)
    assert torch.equal(sobel_magnitude(x)[0, 0], 0.5 * border_map(5, 7))


def test_sobel_of_ramps():
    ramp = torch.arange(6, dtype=torch.float64).repeat(6, 1)[None, None]  # x[i, j] = j
    s = sobel_magnitude(ramp)[0, 0, 1:-1, 1:-1]
    assert torch.equal(s, torch.full_like(s, 8.0))  # |gx| = 2 * (1 + 2 + 1), gy = 0
    s = sobel_magnitude(ramp.transpose(-1, -2))[0, 0, 1:-1, 1:-1]
    assert torch.equal(s, torch.full_like(s, 8.0))


def test_sobel_is_per_channel():
    x = torch.zeros(2, 3, 4, 4, dtype=torch.float64)
    x[1, 2] = 1.0
    s = sobel_magnitude(x)
    assert s[1, 2].equal(border_map(4, 4)) and s[0].abs().sum() == 0 and s[1, :2].abs().sum() == 0


def test_source_weights_softmax_with_temperature():
    c = 5.0
    w = source_weights(
        torch.tensor([2.0, 1.0 + c * math.log(3.0)], dtype=torch.float64),
        torch.tensor([2.0, 1.0], dtype=torch.float64),
        temperature=c,
    )
    # float64: a 2-way softmax is within a few u64; assert_close's float64 default (rtol 1e-7) has room
    torch.testing.assert_close(w, torch.tensor([[0.5, 0.5], [0.75, 0.25]], dtype=torch.float64))


def test_feature_gradient_energy_known_maps():
    # stage 1: constant 2 on 3x3 -> mean S^2 = 4 * (4*36 + 4*16) / 9; stage 2: 1x1 maps -> S = 0
    f1 = torch.full((1, 2, 3, 3), 2.0, dtype=torch.float64)
    f2 = torch.ones(1, 5, 1, 1, dtype=torch.float64)
    expected = (4.0 * 208.0 / 9.0 + 0.0) / 2
    torch.testing.assert_close(
        feature_gradient_energy([f1, f2]), torch.tensor([expected], dtype=torch.float64)
    )


# A float32 sum of n positive terms is within (n - 1) u of its value whatever the summation order, i.e.
# on any CPU (Higham's gamma_n); log_softmax and exp add a few u: the float32 entropy's bound.
def _float32_sum_bound(n: int) -> float:
    return (n + 4) * 2.0**-24


def test_entropy_uniform_two_class_and_one_hot():
    # the formula, in float64 (1000 terms: <= 1e-13 relative)
    uniform, two = torch.zeros(3, 1000, dtype=torch.float64), torch.full((1, 1000), -1e4, dtype=torch.float64)
    two[0, :2] = 0.0
    assert prediction_entropy(uniform).item() == pytest.approx(math.log(1000.0), rel=1e-12)
    assert prediction_entropy(two).item() == pytest.approx(math.log(2.0), rel=1e-12)
    # float32 (what the loss uses) within the rounding bound, 6e-5 (measured: torch 1.2e-7, a plain
    # sequential float32 sum of the same terms 8.0e-6)
    assert prediction_entropy(uniform.float()).item() == pytest.approx(
        math.log(1000.0), rel=_float32_sum_bound(1000)
    )
    assert prediction_entropy(two.float()).item() == pytest.approx(
        math.log(2.0), rel=_float32_sum_bound(1000)
    )
    one_hot = torch.zeros(2, 1000)
    one_hot[:, 7] = 100.0
    # the other 999 classes have p = e^-100 (a float32 subnormal, or 0 under flush-to-zero): < 1e-38 in all
    assert prediction_entropy(one_hot).item() < 1e-30


def _constant_pair_dssim(a: float, b: float, window_mass: float = 1.0) -> float:
    """Closed-form DSSIM of constant images a and b under a window of total mass m = sum of its weights:
    mu = m a, sigma^2 = m a^2 - (m a)^2, sigma_ab = m ab - m^2 ab; with m = 1 the contrast term is 1."""
    m = window_mass
    luminance = (2 * m * a * m * b + C1) / ((m * a) ** 2 + (m * b) ** 2 + C1)
    contrast = (2 * (m - m * m) * a * b + C2) / ((m - m * m) * (a * a + b * b) + C2)
    return (1 - luminance * contrast) / 2


def _float32_dssim_bound(a: float, b: float, taps: int) -> float:
    """Bound on |DSSIM in float32 - DSSIM in float64| for constant images a, b, when each Gaussian-filtered
    statistic is a float32 sum over `taps` products (Higham's gamma_n: error <= taps * u * value, whatever
    the summation order, i.e. on any CPU's conv kernel) and mu^2 doubles mu's error: the errors of
    sigma_a^2, sigma_b^2 and 2 sigma_ab add up to <= (3 taps + 1) u (a + b)^2. The contrast term moves
    by that over C2 (its numerator and denominator are ~C2), DSSIM by luminance / 2 <= 1/2 times it."""
    return 0.5 * (3 * taps + 1) * 2.0**-24 * (a + b) ** 2 / C2


SEPARABLE_TAPS = 2 * SSIM_WINDOW  # pytorch_msssim (dssim): two 1-D passes of 11 taps
FULL_WINDOW_TAPS = SSIM_WINDOW**2  # torchmetrics (dssim_map): one 11 x 11 convolution


def test_dssim_identity_and_constant_images():
    x = torch.rand(2, 1, 23, 23, generator=torch.Generator().manual_seed(0))
    # Exact by construction: sigma_xx, sigma_xy and mu^2 come from the same operations on identical
    # operands (x * x == x.pow(2) bitwise), so the SSIM map is exactly 1 on any CPU; 1e-6 is slack.
    assert dssim(x, x).abs().max() < 1e-6
    a, b = 0.8, 0.2
    # The formula check runs in float64. pytorch_msssim builds its Gaussian window in float32, so the
    # 2-D window's mass is m = (sum g)^2 = 1 - 6.1e-8, not 1; E[x^2] - mu^2 cancels to (m - m^2) a^2 and
    # the contrast term moves by ~ (a - b)^2 (1 - m) / C2 = 2.5e-5: the closed form takes m into account.
    mass = float(_fspecial_gauss_1d(SSIM_WINDOW, SSIM_SIGMA).double().sum()) ** 2
    d64 = dssim(
        torch.full((1, 1, 16, 16), a, dtype=torch.float64), torch.full((1, 1, 16, 16), b, dtype=torch.float64)
    )
    # float64 rounding: each of sigma^2, sigma_ab carries <= ~70 u64 (a + b)^2 ~ 1e-14, over C2 -> rel ~ 1e-11
    assert d64.item() == pytest.approx(_constant_pair_dssim(a, b, mass), rel=1e-9)
    assert _constant_pair_dssim(a, b, mass) == pytest.approx(_constant_pair_dssim(a, b), rel=3e-5)  # 2.2e-5
    # float32 (what training uses) within the rounding bound, 2.2e-3 here. Measured |d32 - d64|: Intel
    # 5.7e-6, the AMD report 2.3e-5, 32 emulated summation orders of the window taps (explicit float32
    # sums in random orders) at most 4.1e-5: the float32 value is CPU-dependent at the 1e-4 level.
    d32 = dssim(torch.full((1, 1, 16, 16), a), torch.full((1, 1, 16, 16), b))
    assert abs(d32.item() - d64.item()) <= _float32_dssim_bound(a, b, SEPARABLE_TAPS), (
        d32.item(),
        d64.item(),
    )


def test_equal_sources_get_equal_weights_and_known_terms(perception):
    # IR = VIS = a (constant), F = b (constant): omega = 0.5 each, every term has a closed form.
    a, b, h = 0.8, 0.2, 25
    ir = torch.full((1, 1, h, h), a)
    fused = torch.full((1, 1, h, h), b)
    loss = S4FusionLoss(LossConfig(), perception)
    total, terms = loss(ir, ir.clone(), fused)
    # softmax of two equal energies is exp(0) / (1 + 1) = 0.5 exactly
    assert terms["omega_ir"].item() == pytest.approx(0.5, abs=1e-6)
    # float32 |a - b| is within 1 u of 0.6, and a mean of 625 equal terms within 1e-5 in any summation
    # order (torch's cascade sum: ~10 u; a plain sequential float32 sum: measured 6.1e-6)
    assert terms["l1"].item() == pytest.approx(abs(a - b), rel=1e-5)
    # the loss computes SSIM in float32: the closed form (float64 window mass) within the rounding bound
    d64 = _constant_pair_dssim(a, b, float(_fspecial_gauss_1d(SSIM_WINDOW, SSIM_SIGMA).double().sum()) ** 2)
    assert abs(terms["ssim"].item() - d64) <= _float32_dssim_bound(a, b, SEPARABLE_TAPS)
    # Sobel of a constant: integer multiples of a (a few u per pixel), then the same mean as l1
    assert terms["grad"].item() == pytest.approx(abs(a - b) * border_map(h, h).mean().item(), rel=1e-5)
    # four positive float32 scalars weighted and added: <= 4 u relative
    expected = 15 * (terms["l1"] + terms["ssim"] + terms["grad"]) + terms["per"]
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)


def test_fused_equal_to_a_source(perception):
    g = torch.Generator().manual_seed(1)
    ir = torch.rand(2, 1, 25, 25, generator=g)
    vi = torch.rand(2, 1, 25, 25, generator=g) * 0.5
    _, terms = S4FusionLoss(LossConfig(), perception)(ir, vi, ir)
    w_vi = (
        1.0
        - source_weights(
            *feature_gradient_energy(perception.stage_features(torch.cat([ir, vi]))).chunk(2), temperature=5.0
        )[:, 0]
    )
    # The same float32 operations as the loss, but for w_vi = 1 - omega_ir (the loss uses omega_vi: <= 1 u
    # apart) and the loss's added exact 0 of the IR term: <= ~3 u relative. abs: with random ResNet50
    # features w_vi can be ~1e-9, below float32 resolution of the sum
    assert terms["l1"].item() == pytest.approx(
        (w_vi * (vi - ir).abs().mean(dim=(1, 2, 3))).mean().item(), rel=1e-5, abs=1e-7
    )
    assert terms["ssim"].item() == pytest.approx((w_vi * dssim(vi, ir)).mean().item(), rel=1e-5, abs=1e-7)


PIXEL_OMEGA = LossConfig(
    omega_features="image", omega_scope="pixel", temperature=0.25, perception=PerceptionConfig(enabled=False)
)


def test_pixel_omega_with_equal_sources_gives_the_closed_form():
    # IR = VIS = a (constant), F = b (constant): omega(x) = 0.5 everywhere and the terms keep their closed form.
    a, b, h = 0.8, 0.2, 25
    ir, fused = torch.full((1, 1, h, h), a), torch.full((1, 1, h, h), b)
    _, terms = S4FusionLoss(PIXEL_OMEGA)(ir, ir.clone(), fused)
    assert terms["omega_ir"].item() == pytest.approx(0.5, abs=1e-6)  # equal energies: exactly 0.5
    assert terms["l1"].item() == pytest.approx(abs(a - b), rel=1e-5)  # as in the per-sample test above
    # The formula in float64: torchmetrics builds its window in the input's dtype, so the closed form with
    # mass 1 holds (measured rel 1.6e-13). The loss's float32 value within the rounding bound (1.2e-2;
    # measured rel 6.6e-5 on Intel).
    d64 = dssim_map(ir.double(), fused.double()).mean().item()
    assert d64 == pytest.approx(_constant_pair_dssim(a, b), rel=1e-9)
    assert abs(terms["ssim"].item() - d64) <= _float32_dssim_bound(a, b, FULL_WINDOW_TAPS)


def test_dssim_map_averages_to_dssim_away_from_the_border():
    g = torch.Generator().manual_seed(5)
    x, y = (torch.rand(2, 1, 40, 40, generator=g, dtype=torch.float64) for _ in range(2))
    interior = dssim_map(x, y)[..., 5:-5, 5:-5].mean(dim=(1, 2, 3))  # the valid windows of the 11x11 SSIM
    # float64, so only the windows differ: pytorch_msssim's is float32 (mass 1 - 6.1e-8), torchmetrics'
    # float64; on these images that moves DSSIM by 9.7e-8 (measured; float32 inputs: 1.2e-7)
    assert torch.allclose(interior, dssim(x, y), rtol=0, atol=1e-6)


def _half_textured_pair() -> tuple[torch.Tensor, torch.Tensor]:
    """IR textured in the left half and flat in the right; VIS the other way round."""
    g = torch.Generator().manual_seed(6)
    ir, vi = torch.full((1, 1, 48, 96), 0.5), torch.full((1, 1, 48, 96), 0.5)
    ir[..., :48] = torch.rand(1, 1, 48, 48, generator=g)
    vi[..., 48:] = torch.rand(1, 1, 48, 48, generator=g)
    return ir, vi


def test_pixel_omega_follows_the_locally_textured_source():
    ir, vi = _half_textured_pair()
    w_ir = local_source_weights(ir, vi, temperature=0.25)[0, 0]
    assert w_ir[8:-8, 8:40].min() > 0.99 and w_ir[8:-8, 56:-8].max() < 0.01
    # one weight per sample cannot tell the halves apart: the same texture energy on both sides
    sample = source_weights(*feature_gradient_energy([torch.cat([ir, vi])]).chunk(2), temperature=0.25)
    assert sample[0, 0].item() == pytest.approx(0.5, abs=0.05)


def test_pixel_omega_prefers_the_region_wise_choice_over_the_average():
    """With omega per pixel, the image that takes each half from its textured source has lower L1/SSIM
    terms than averaging; with omega per sample the two are about equal: averaging is not penalised."""
    ir, vi = _half_textured_pair()
    chosen = torch.cat([ir[..., :48], vi[..., 48:]], dim=-1)
    average = (ir + vi) / 2
    sample_cfg = LossConfig(
        omega_features="image", temperature=0.25, perception=PerceptionConfig(enabled=False)
    )
    for cfg in (PIXEL_OMEGA, sample_cfg):
        loss = S4FusionLoss(cfg)
        _, t_chosen = loss(ir, vi, chosen)
        _, t_average = loss(ir, vi, average)
        pixel_terms = {k: (t_chosen[k].item(), t_average[k].item()) for k in ("l1", "ssim")}
        if cfg is PIXEL_OMEGA:
            assert all(c < 0.5 * a for c, a in pixel_terms.values()), pixel_terms
        else:
            # not rounding: omega_ir's distance from 0.5 (measured rel 2.5e-4)
            assert t_chosen["l1"].item() == pytest.approx(t_average["l1"].item(), rel=1e-3), pixel_terms


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"omega_scope": "region"}, "loss.omega_scope must be 'sample' or 'pixel'"),
        ({"omega_scope": "pixel"}, "set loss.omega_features=image"),
    ],
)
def test_omega_scope_is_checked(changes, message):
    with pytest.raises(ValueError, match=message):
        LossConfig(**changes)


def test_gradient_term_zero_when_fused_has_the_stronger_source_gradient(perception):
    ir = torch.rand(1, 1, 25, 25, generator=torch.Generator().manual_seed(4))
    _, terms = S4FusionLoss(LossConfig(perception=PerceptionConfig(enabled=False)), perception)(
        ir, torch.zeros_like(ir), ir
    )
    assert terms["grad"].item() == 0.0


def test_without_perception_term_drops_it(perception):
    g = torch.Generator().manual_seed(2)
    ir, vi, f = (torch.rand(1, 1, 25, 25, generator=g) for _ in range(3))
    cfg = LossConfig(w_l1=1.0, w_ssim=2.0, w_grad=3.0, perception=PerceptionConfig(enabled=False))
    total, terms = S4FusionLoss(cfg, perception)(ir, vi, f)
    assert "per" not in terms
    # three positive float32 scalars weighted and added, in the loss's order or ours: <= 3 u apart
    assert total.item() == pytest.approx(
        (terms["l1"] + 2 * terms["ssim"] + 3 * terms["grad"]).item(), rel=1e-6
    )


def test_gradient_reaches_the_fused_image_only(perception):
    g = torch.Generator().manual_seed(3)
    ir = torch.rand(1, 1, 25, 25, generator=g).requires_grad_()
    vi = torch.rand(1, 1, 25, 25, generator=g)
    f = torch.rand(1, 1, 25, 25, generator=g).requires_grad_()
    perception.train()  # frozen: stays in eval mode
    assert not perception.training and not any(p.requires_grad for p in perception.parameters())
    total, _ = S4FusionLoss(LossConfig(), perception)(ir, vi, f)
    total.backward()
    assert f.grad is not None and f.grad.abs().sum() > 0
    # omega and the targets carry no gradient; IR only enters through |IR - F|, SSIM and Sobel targets
    assert all(p.grad is None for p in perception.parameters())


def test_missing_imagenet_weights_error_names_file_and_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"resnet50-0676ba61\.pth.*" + str(tmp_path / "checkpoints")):
        resolve_resnet50_weights("imagenet")
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        resolve_resnet50_weights(str(tmp_path / "nope.pth"))
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "resnet50-0676ba61.pth").touch()
    assert resolve_resnet50_weights("imagenet") == tmp_path / "checkpoints" / "resnet50-0676ba61.pth"


def test_weights_loaded_from_explicit_path(tmp_path, perception):
    path = tmp_path / "r50.pth"
    sd = {k: v + 0.5 if v.is_floating_point() else v for k, v in perception.net.state_dict().items()}
    torch.save(sd, path)
    net = PerceptionNet(str(path))
    assert net.source == str(path) and torch.equal(net.net.fc.weight, sd["fc.weight"])
    torch.save({"not": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="not a torchvision ResNet50"):
        PerceptionNet(str(path))


# ---- the loss on real pairs (issue 10: is the loss or the training the problem?) ---------------
def _real_pairs(shared_data):
    from data.adapters import open_dataset
    from data.color import to_gray

    chosen = [("tno", "TNO", ["21", "24", "25"]), ("roadscene", "RoadScene", ["FLIR_04688", "FLIR_04722"])]
    for name, folder, stems in chosen:
        for sample in open_dataset(name, shared_data / "samples" / folder).subset(stems):
            ir = sample.ir.astype(np.float32) / 255.0
            yield ir, to_gray(sample.vi) / 255.0


def test_demo_loss_ranks_edge_preserving_fusions_below_averaging(shared_data):
    """The demo loss (w/o L_per, image omega) is lower for classical edge-preserving fusions than for
    plain averaging on real pairs: a model that averages is under-trained, not well trained on a bad loss."""
    from fusion.baselines import BASELINES

    loss_fn = S4FusionLoss(LossConfig(omega_features="image", perception=PerceptionConfig(enabled=False)))
    totals: dict[str, float] = {}
    for ir, vi in _real_pairs(shared_data):
        t_ir, t_vi = torch.from_numpy(ir)[None, None], torch.from_numpy(vi)[None, None]
        for method in ("average", "max", "laplacian", "gff"):
            fused = torch.from_numpy(BASELINES[method](ir, vi))[None, None]
            totals[method] = totals.get(method, 0.0) + float(loss_fn(t_ir, t_vi, fused)[0])
    assert totals["gff"] < totals["laplacian"] < totals["average"] and totals["max"] < totals["average"], (
        totals
    )


def test_image_omega_needs_a_temperature_on_the_scale_of_image_sobel_energy(shared_data):
    """Sobel energies of [0, 1] images are O(0.1): c = 5 pins omega at 0.5, c = 0.25 lets it respond
    (on these 5 pairs |omega_ir - 0.5| reaches 0.010 and 0.196)."""
    spreads = {}
    for c in (5.0, 0.25):
        omegas = []
        for ir, vi in _real_pairs(shared_data):
            energy = feature_gradient_energy([torch.from_numpy(np.stack([ir, vi]))[:, None]])
            omegas.append(float(source_weights(energy[:1], energy[1:], c)[0, 0]))
        spreads[c] = max(abs(w - 0.5) for w in omegas)
    assert spreads[5.0] < 0.03 and spreads[0.25] > 0.15, spreads
