"""Inference: padding to 12k+1 and cropping back, color policy, files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from data.color import rgb_to_ycbcr
from data.io import read_image
from fusion import S4Fusion, S4FusionConfig
from fusion.inference import fuse, fuse_files, fuse_image_arrays, padding_for
from fusion.methods import MethodError, make_fuser

TINY = dict(
    dims=(8, 16, 32), depths=(1, 1, 1), depths_decoder=(1, 1, 1), num_cmsa=1, d_state=4, d_state_fusion=4
)


@pytest.mark.parametrize(
    "size,expected", [(13, (0, 0)), (12, (0, 1)), (14, (5, 6)), (301, (0, 0)), (496, (4, 5)), (1, (6, 6))]
)
def test_padding_for(size, expected):
    before, after = padding_for(size)
    assert (before, after) == expected
    assert (size + before + after - 1) % 12 == 0


class Probe(torch.nn.Module):
    """Records the padded input and returns the IR channel, so cropping is checkable exactly."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.seen = None

    def forward(self, ir, vi):
        self.seen = ir
        return ir + 0 * vi + self.weight


def test_fuse_pads_zero_centered_and_crops_back():
    probe = Probe()
    ir = torch.rand(1, 1, 301, 496)
    out = fuse(probe, ir, torch.rand_like(ir))
    assert probe.seen.shape[-2:] == (301, 505)
    assert torch.equal(probe.seen, F.pad(ir, (4, 5, 0, 0)))
    assert torch.equal(out, ir)


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return S4Fusion(S4FusionConfig(**TINY)).eval()


def test_roadscene_odd_sizes_color_round_trip(shared_data, tiny_model, tmp_path):
    ir_dir, vi_dir = (
        shared_data / "samples" / "RoadScene" / "ir",
        shared_data / "samples" / "RoadScene" / "vi",
    )
    name = "FLIR_00211.jpg"
    ir, vi = read_image(ir_dir / name, "gray"), read_image(vi_dir / name, "unchanged")
    assert (
        vi.ndim == 3 and (ir.shape[1] - 1) % 12 and ir.shape[:2] == vi.shape[:2]
    )  # 301x496: width needs padding
    fused = fuse_image_arrays(tiny_model, ir, vi)
    assert fused.shape == vi.shape and fused.dtype == np.uint8
    # chroma comes from VIS: Cb/Cr of the output equal VIS Cb/Cr up to 8-bit rounding
    _, cb, cr = rgb_to_ycbcr(vi)
    _, fcb, fcr = rgb_to_ycbcr(fused)
    inside = (fused.min(-1) > 5) & (fused.max(-1) < 250)  # away from clipping
    assert np.abs(fcb - cb)[inside].max() <= 2.0 and np.abs(fcr - cr)[inside].max() <= 2.0
    out = fuse_files(tiny_model, ir_dir / name, vi_dir / name, tmp_path / "f.png")
    assert np.array_equal(np.asarray(Image.open(out)), fused)


def test_gray_in_gray_out_and_size_mismatch(tiny_model):
    ir = np.full((30, 41), 100, np.uint8)
    out = fuse_image_arrays(tiny_model, ir, ir.copy())
    assert out.shape == (30, 41) and out.dtype == np.uint8
    with pytest.raises(ValueError, match="sizes differ"):
        fuse_image_arrays(tiny_model, ir, np.zeros((31, 41), np.uint8))


def test_make_fuser_dispatch_and_errors(tiny_model, tmp_path):
    ir, vi = np.full((20, 30), 200, np.uint8), np.full((20, 30), 100, np.uint8)
    assert np.array_equal(make_fuser("average")(ir, vi), np.full((20, 30), 150, np.uint8))
    path = tiny_model.save_exported(tmp_path / "m.pt")
    assert np.array_equal(make_fuser("s4fusion", path)(ir, vi), fuse_image_arrays(tiny_model, ir, vi))
    with pytest.raises(MethodError, match="needs --checkpoint"):
        make_fuser("s4fusion")
    with pytest.raises(MethodError, match="method 'nope': not a baseline"):
        make_fuser("nope")
