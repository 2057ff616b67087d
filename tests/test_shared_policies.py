"""The things that exist once: colour policy, precomputed-folder index, content-keyed metric cache,
typed config loading with every problem reported at once."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
import torch

from data.color import rgb_to_ycbcr
from data.io import FolderIndexError, index_images_by_stem, write_png_atomic
from fusion.baselines import fuse_baseline
from fusion.inference import fuse, fuse_image_arrays
from fusion.model import S4Fusion, S4FusionConfig
from runtime.config_loader import ConfigError, build

TINY = {"size": "tiny"}


def _pair(color: bool):
    """IR and VIS in 60-195; the colour VIS is a gray image with per-channel offsets of at most 12 levels,
    so an average-fused pixel never clips at 0 or 255 (clipping would change its chroma)."""
    rng = np.random.default_rng(0)
    ir = rng.integers(60, 196, (25, 25), dtype=np.uint8)
    gray = rng.integers(60, 196, (25, 25, 1), dtype=np.int16)
    offsets = rng.integers(-12, 13, (25, 25, 3), dtype=np.int16) if color else 0
    return ir, np.repeat(gray, 3, axis=2).__add__(offsets).astype(np.uint8)  # gray: stored as RGB


def _s4fusion_y(model: S4Fusion, ir: np.ndarray, y: np.ndarray) -> np.ndarray:
    """S4Fusion's fused luminance (0-255, float) for IR and a float VIS Y, the policy's middle step."""
    as_tensor = lambda a: torch.from_numpy(np.asarray(a, np.float32) / 255.0)[None, None]  # noqa: E731
    with torch.no_grad():
        return fuse(model.eval(), as_tensor(ir), as_tensor(y))[0, 0].double().numpy() * 255.0


@pytest.mark.parametrize("color", [False, True])
def test_s4fusion_and_baselines_share_one_colour_policy(color):
    """Fuse IR with the VIS luminance Y, then put the VIS chroma back (colour VIS) or return gray
    (gray VIS, also one stored as 3 equal channels): checked on the outputs themselves."""
    torch.manual_seed(0)
    model = S4Fusion(S4FusionConfig.from_spec(TINY))
    ir, vi = _pair(color)
    vi_y, vi_cb, vi_cr = (c.astype(np.float64) for c in rgb_to_ycbcr(vi))
    expected_y = {"s4fusion": _s4fusion_y(model, ir, vi_y), "average": (ir + vi_y) / 2}
    outputs = {"s4fusion": fuse_image_arrays(model, ir, vi), "average": fuse_baseline("average", ir, vi)}
    for name, out in outputs.items():
        assert out.dtype == np.uint8 and out.shape == (vi.shape if color else ir.shape), name
        # rounding to uint8 moves a gray value, and Y, Cb, Cr of an RGB pixel, by at most 0.5 (each row's
        # |coefficients| sums to 1); 1e-3 covers the float32 planes
        if not color:  # the rounded fused Y, nothing else
            assert np.abs(out - expected_y[name]).max() <= 0.5 + 1e-3, name
            continue
        # the untrained S4Fusion gives dark pixels, where a channel clips at 0: those pixels are left out
        unclipped = (out > 0).all(axis=-1) & (out < 255).all(axis=-1)
        assert unclipped.mean() > 0.5, (name, unclipped.mean())
        y, cb, cr = (c.astype(np.float64)[unclipped] for c in rgb_to_ycbcr(out))
        assert np.abs(y - expected_y[name][unclipped]).max() <= 0.5 + 1e-3, name
        assert np.abs(cb - vi_cb[unclipped]).max() <= 0.5 + 1e-3, name
        assert np.abs(cr - vi_cr[unclipped]).max() <= 0.5 + 1e-3, name
    assert not color or np.abs(vi_cb - 128).max() > 5, (
        "the colour pair must carry chroma for the check to mean anything"
    )


def test_named_model_sizes_are_defined_once_and_overridable():
    assert S4FusionConfig.from_spec("paper") == S4FusionConfig()
    tiny = S4FusionConfig.from_spec({"size": "tiny", "interaction": "add"})
    assert tiny.dims == (8, 16, 32) and tiny.interaction == "add"
    with pytest.raises(ValueError, match="unknown model size 'huge'"):
        S4FusionConfig.from_spec("huge")


def test_precomputed_folder_index_rejects_duplicate_stems(tmp_path):
    img = np.zeros((4, 4), np.uint8)
    write_png_atomic(tmp_path / "a.png", img)
    write_png_atomic(tmp_path / "b.png", img)
    assert sorted(index_images_by_stem(tmp_path)) == ["a", "b"]
    (tmp_path / "a.jpg").write_bytes((tmp_path / "a.png").read_bytes())
    with pytest.raises(FolderIndexError, match=r"a\.jpg and a\.png|a\.png and a\.jpg"):
        index_images_by_stem(tmp_path)


@dataclass
class _Inner:
    lr: float = 0.1
    steps: list[int] = field(default_factory=list)


@dataclass
class _Outer:
    name: str = "x"
    inner: _Inner = field(default_factory=_Inner)
    items: list[_Inner] = field(default_factory=list)


def test_config_loader_coerces_and_reports_every_problem_with_its_path():
    from runtime.config_loader import apply_overrides

    raw = apply_overrides({"items": [{"lr": 1}]}, ["inner.lr=1e-3", "items.0.steps=[1, 2]"])
    cfg = build(_Outer, raw)
    assert cfg.inner.lr == 0.001 and isinstance(cfg.inner.lr, float) and cfg.items[0].steps == [1, 2]
    with pytest.raises(ConfigError) as info:
        build(_Outer, {"inner": {"lr": "fast", "speed": 1}, "items": [{"steps": ["a"]}], "colour": 1})
    text = str(info.value)
    for expected in (
        "inner.lr: expected float",
        "inner: unknown key(s) ['speed']",
        "items.0.steps.0: expected int",
        "unknown key(s) ['colour']",
    ):
        assert expected in text, text
    assert len(info.value.problems) == 4


def test_metric_cache_is_keyed_by_checkpoint_content_not_path(tmp_path, shared_data):
    """evaluate's cached stage: a retrained model written to the same path is measured again."""
    from data.adapters import open_dataset
    from fusion.methods import MethodInputs, method_from_spec
    from pipelines.evaluate import EvaluatedMethod, evaluate_method

    dataset = open_dataset("tno", shared_data / "samples" / "TNO").subset(["01"])
    ckpt, cache = tmp_path / "s4fusion.pt", tmp_path / "cache"
    values = []
    for seed in (0, 1, 0):
        torch.manual_seed(seed)
        S4Fusion(S4FusionConfig.from_spec(TINY)).save_exported(ckpt)
        frame = evaluate_method(
            EvaluatedMethod(method_from_spec("s4fusion", str(ckpt)), MethodInputs(checkpoint=ckpt)),
            dataset,
            {"pairs": "tno-01"},
            ["01"],
            "mmif",
            ("EN", "SF"),
            cache,
        )
        values.append(float(frame["SF"].iloc[0]))
    assert values[0] != values[1] and values[2] == values[0]
    assert len(list(cache.glob("s4fusion-*.csv"))) == 2  # the third run reused the first one's cache


def test_cli_error_policy_one_line_exit_2_and_bugs_keep_their_traceback(capsys):
    from pipelines.cli_common import run_cli

    def bad_input():
        raise ConfigError(["a.b: expected int, got 'x'", "c: unknown key(s) ['d']"])

    assert run_cli("cmd", bad_input) == 2
    err = capsys.readouterr().err
    assert err.startswith("cmd: error: 2 problems:") and "a.b: expected int" in err and "Traceback" not in err
    with pytest.raises(ZeroDivisionError):  # a bug is not turned into an input error
        run_cli("cmd", lambda: 1 // 0)
