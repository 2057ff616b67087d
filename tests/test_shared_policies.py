"""The things that exist once: colour policy, precomputed-folder index, content-keyed metric cache,
typed config loading with every problem reported at once."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
import torch

from data.config import ConfigError, build
from data.io import FolderIndexError, index_images_by_stem, write_png_atomic
from fusion.baselines import fuse_baseline
from fusion.inference import fuse_image_arrays
from fusion.model import S4Fusion, S4FusionConfig

TINY = {"size": "tiny"}


def _pair(color: bool):
    rng = np.random.default_rng(0)
    ir = rng.integers(0, 256, (25, 25), dtype=np.uint8)
    if color:
        vi = rng.integers(0, 256, (25, 25, 3), dtype=np.uint8)
    else:
        vi = np.repeat(rng.integers(0, 256, (25, 25, 1), dtype=np.uint8), 3, axis=2)  # gray stored as RGB
    return ir, vi


@pytest.mark.parametrize("color", [False, True])
def test_s4fusion_and_baselines_share_one_colour_policy(color):
    torch.manual_seed(0)
    model = S4Fusion(S4FusionConfig.from_spec(TINY))
    ir, vi = _pair(color)
    outputs = {"s4fusion": fuse_image_arrays(model, ir, vi), "average": fuse_baseline("average", ir, vi)}
    for name, out in outputs.items():
        assert out.dtype == np.uint8 and out.shape == (vi.shape if color else ir.shape), name


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
    from data.config import apply_overrides

    raw = apply_overrides({"items": [{"lr": 1}]}, ["inner.lr=1e-3", "items.0.steps=[1, 2]"])
    cfg = build(_Outer, raw)
    assert cfg.inner.lr == 0.001 and isinstance(cfg.inner.lr, float) and cfg.items[0].steps == [1, 2]
    with pytest.raises(ConfigError) as info:
        build(_Outer, {"inner": {"lr": "fast", "speed": 1}, "items": [{"steps": ["a"]}], "colour": 1})
    text = str(info.value)
    for expected in ("inner.lr: expected float", "inner: unknown key(s) ['speed']", "items.0.steps.0: expected int",
                     "unknown key(s) ['colour']"):
        assert expected in text, text
    assert len(info.value.problems) == 4


def test_metric_cache_is_keyed_by_checkpoint_content_not_path(tmp_path, shared_data):
    """evaluate's cached stage: a retrained model written to the same path is measured again."""
    from data.adapters import open_dataset
    from pipelines.evaluate import Method, evaluate_method

    dataset = open_dataset("tno", shared_data / "samples" / "TNO").subset(["01"])
    ckpt, cache = tmp_path / "s4fusion.pt", tmp_path / "cache"
    values = []
    for seed in (0, 1, 0):
        torch.manual_seed(seed)
        S4Fusion(S4FusionConfig.from_spec(TINY)).save_exported(ckpt)
        frame = evaluate_method(Method("s4fusion", "s4fusion", str(ckpt)), dataset, {"pairs": "tno-01"}, ["01"],
                                "mmif", ("EN", "SF"), cache)
        values.append(float(frame["SF"].iloc[0]))
    assert values[0] != values[1] and values[2] == values[0]
    assert len(list(cache.glob("s4fusion-*.csv"))) == 2  # the third run reused the first one's cache


def test_cli_error_policy_one_line_exit_2_and_bugs_keep_their_traceback(capsys):
    from pipelines.cli import run_cli

    def bad_input():
        raise ConfigError(["a.b: expected int, got 'x'", "c: unknown key(s) ['d']"])

    assert run_cli("cmd", bad_input) == 2
    err = capsys.readouterr().err
    assert err.startswith("cmd: error: 2 problems:") and "a.b: expected int" in err and "Traceback" not in err
    with pytest.raises(ZeroDivisionError):  # a bug is not turned into an input error
        run_cli("cmd", lambda: 1 // 0)
