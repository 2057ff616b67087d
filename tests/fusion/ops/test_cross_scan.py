"""Cross-scan directions and modality interleaving: exact inverses and the documented orders."""

from __future__ import annotations

import pytest
import torch

from fusion.ops.cross_scan import (
    cross_merge,
    cross_scan,
    cross_unscan,
    interleave_modalities,
    recover_modalities,
)


@pytest.mark.parametrize("h,w", [(1, 1), (2, 3), (5, 6), (7, 4)])
def test_cross_scan_directions_and_inverse(h, w):
    x = torch.arange(2 * 3 * h * w, dtype=torch.float64).view(2, 3, h, w)
    xs = cross_scan(x)
    assert xs.shape == (2, 4, 3, h * w)
    # k0 row-major (h*W + w), k1 column-major (w*H + h), k2/k3 their reverses
    for i in range(h):
        for j in range(w):
            assert torch.equal(xs[:, 0, :, i * w + j], x[:, :, i, j])
            assert torch.equal(xs[:, 1, :, j * h + i], x[:, :, i, j])
    assert torch.equal(xs[:, 2], xs[:, 0].flip(-1))
    assert torch.equal(xs[:, 3], xs[:, 1].flip(-1))
    back = cross_unscan(xs, h, w)
    for k in range(4):
        assert torch.equal(back[:, k], x)
    assert torch.equal(cross_merge(xs, h, w), 4 * x.flatten(2))


def test_cross_merge_is_sum_of_unscans():
    ys = torch.randn(2, 4, 5, 6 * 7, dtype=torch.float64)
    assert torch.allclose(cross_merge(ys, 6, 7), cross_unscan(ys, 6, 7).sum(1).flatten(2), atol=1e-12)


def test_interleave_ir_even_vis_odd_and_inverse():
    ir = torch.arange(6.0).view(1, 2, 3)
    vis = -torch.arange(6.0).view(1, 2, 3) - 100
    seq = interleave_modalities(ir, vis)
    assert seq.shape == (1, 2, 6)
    assert torch.equal(seq[..., 0::2], ir) and torch.equal(seq[..., 1::2], vis)
    assert seq[0, 0].tolist() == [0.0, -100.0, 1.0, -101.0, 2.0, -102.0]
    r_ir, r_vis = recover_modalities(seq)
    assert torch.equal(r_ir, ir) and torch.equal(r_vis, vis)


def test_shape_errors():
    with pytest.raises(ValueError, match="equal shapes"):
        interleave_modalities(torch.zeros(1, 3), torch.zeros(1, 4))
    with pytest.raises(ValueError, match="even length"):
        recover_modalities(torch.zeros(1, 5))
    with pytest.raises(ValueError, match="sequences"):
        cross_unscan(torch.zeros(1, 4, 2, 10), 3, 3)
