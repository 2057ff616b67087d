"""The ``python`` method kind and the registry: a callable fuses by ``module:function``, its identity
follows its module's source, bad targets and bad outputs are refused with the method and the fix."""

from __future__ import annotations

import importlib.metadata
import sys

import numpy as np
import pytest

from fusion.methods import (
    METHOD_KINDS,
    MethodError,
    MethodInputs,
    PythonMethod,
    check_fused,
    config_problems,
    make_fuser,
    method_from_config,
    method_from_spec,
)
from fusion.methods.python_kind import module_identity

IR = np.array([[10, 200], [30, 40]], np.uint8)
VI_GRAY = np.array([[100, 20], [30, 250]], np.uint8)
VI_RGB = np.stack([VI_GRAY, VI_GRAY // 2, VI_GRAY], axis=-1)


def test_a_plain_function_fuses_gray_and_color_by_module_colon_function():
    fuse = make_fuser("plugins.my_fusion:brightest")
    assert np.array_equal(fuse(IR, VI_GRAY), np.maximum(IR, VI_GRAY))
    fused = fuse(IR, VI_RGB)  # VIS reaches the callable as given (RGB), its colour comes back
    assert fused.shape == (2, 2, 3) and fused.dtype == np.uint8
    assert np.array_equal(fused[0, 0], VI_RGB[0, 0]) and np.array_equal(fused[0, 1], [200, 200, 200])


def test_a_class_with_setup_is_instantiated_and_set_up_on_the_device():
    from plugins.my_fusion import Blend

    method = method_from_spec("plugins.my_fusion:Blend")
    fuse = method.fuser(MethodInputs(), device="cuda:3")
    assert Blend.device == "cuda:3"
    assert np.array_equal(fuse(IR, VI_GRAY), np.rint((IR.astype(float) + VI_GRAY) / 2).astype(np.uint8))


def test_identity_is_target_and_module_source_hash_and_follows_an_edit(tmp_path, monkeypatch):
    module = tmp_path / "edited_fusion.py"
    module.write_text("def fuse(ir, vi):\n    return ir\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    first = PythonMethod("Mine", "edited_fusion:fuse").identity()
    assert first["kind"] == "python" and first["target"] == "edited_fusion:fuse"
    assert len(first["source_sha256"]) == 64
    assert PythonMethod("Other name", "edited_fusion:fuse").identity() == first  # the name is not identity
    module.write_text("def fuse(ir, vi):\n    return vi\n")
    assert PythonMethod("Mine", "edited_fusion:fuse").identity() != first  # edited: not the cached images


def test_only_the_targets_own_module_is_hashed(tmp_path, monkeypatch):
    """docs/pipeline.md: an edit in a module the target imports is not seen (a documented limit)."""
    (tmp_path / "helper_for_fusion.py").write_text("SCALE = 1\n")
    (tmp_path / "uses_helper.py").write_text(
        "import helper_for_fusion\n\n\ndef fuse(ir, vi):\n    return ir\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    first = PythonMethod("M", "uses_helper:fuse").identity()
    (tmp_path / "helper_for_fusion.py").write_text("SCALE = 2\n")
    assert PythonMethod("M", "uses_helper:fuse").identity() == first


def test_without_a_source_file_the_installed_version_is_the_identity(monkeypatch):
    import inspect

    import numpy

    monkeypatch.setattr(inspect, "getsourcefile", lambda module: None)
    assert module_identity("numpy") == {"version": f"numpy=={numpy.__version__}"}


@pytest.mark.parametrize(
    ("target", "says"),
    [
        ("no_such_module_xyz:fuse", "module 'no_such_module_xyz' does not import"),
        ("plugins.my_fusion:missing", "has no attribute 'missing'"),
        ("plugins.my_fusion:NOT_CALLABLE", "is a int, not callable"),
        ("not_an_entry_point_name", "neither 'package.module:function' nor an installed"),
    ],
)
def test_a_bad_target_is_refused_naming_it(target, says):
    with pytest.raises(MethodError, match=says) as err:
        PythonMethod("Bad", target).prepare()
    assert target in str(err.value) and "\n" not in str(err.value)
    assert config_problems("python", {"target": target}) == [str(err.value)]


@pytest.mark.parametrize("target", ["plugins.my_fusion:float_output", "plugins.my_fusion:half_size"])
def test_a_wrong_shape_or_dtype_is_refused_naming_method_and_image(target):
    fuse = make_fuser(target)
    with pytest.raises(
        MethodError, match=r"method 'Mine' returned .* for image '07'.*uint8 array of shape \(2, 2\)"
    ):
        check_fused("Mine", "07", IR, fuse(IR, VI_GRAY))


def test_check_fused_accepts_gray_and_rgb_of_the_pair_size_only():
    assert check_fused("m", "a", IR, IR) is IR
    assert check_fused("m", "a", IR, VI_RGB) is VI_RGB
    for bad in (VI_RGB[..., :2], np.zeros((2, 2, 4), np.uint8), [[1, 2], [3, 4]], None):
        with pytest.raises(MethodError, match="method 'm'"):
            check_fused("m", "a", IR, bad)


def test_entry_points_add_methods_by_name(tmp_path, monkeypatch):
    """An installed package's ``s4fuse.methods`` entry point: a dist-info folder on sys.path is
    exactly what pip leaves behind."""
    dist = tmp_path / "my_fusion_pkg-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-fusion-pkg\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[s4fuse.methods]\nbrightest = plugins.my_fusion:brightest\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "brightest" in {ep.name for ep in importlib.metadata.entry_points(group="s4fuse.methods")}
    method = method_from_spec("brightest")
    assert method.name == "brightest"  # an entry point is named by its entry-point name
    assert method.identity()["target"] == "plugins.my_fusion:brightest"
    assert np.array_equal(method.fuser(MethodInputs())(IR, VI_GRAY), np.maximum(IR, VI_GRAY))
    in_yaml = method_from_config("Mine", "python", {"target": "brightest"})
    assert in_yaml.identity() == method.identity()


def test_registry_is_the_one_place_kinds_are_named():
    assert set(METHOD_KINDS) == {"source", "baseline", "s4fusion", "precomputed", "python"}
    assert config_problems("nope", {}) == [
        "unknown method kind 'nope'; expected one of ['source', 'baseline', 's4fusion', 'precomputed', 'python']"
    ]
    assert config_problems("python", {"target": "plugins.my_fusion:brightest", "folder": "x"}) == [
        "key(s) ['folder'] do not apply to kind 'python' (allowed: ['target'])"
    ]
    assert config_problems("s4fusion", {}) == [
        "give exactly one of 'checkpoint' (a trained model file) or 'train' (a train_fusion config, "
        "path or mapping)"
    ]
    assert method_from_config("G", "baseline", {"baseline": "gff"}).label == "baseline gff"
    # docs/pipeline.md "Method kinds": only S4Fusion wants a GPU
    gpu = {k: [c.needs_gpu for c in classes] for k, classes in METHOD_KINDS.items()}
    assert gpu == {
        "source": [False],
        "baseline": [False],
        "s4fusion": [True, True],
        "precomputed": [False],
        "python": [False],
    }
    spec = method_from_spec("Named=plugins.my_fusion:brightest")
    assert (spec.name, spec.kind, spec.needs_gpu) == ("Named", "python", False)
    assert "plugins.my_fusion" in sys.modules


def test_the_registry_imports_without_torch():
    """fusion/__init__.py: ``methods`` imports torch only when a model fuses (configs load fast)."""
    import subprocess

    from helpers import REPO_ROOT

    code = "import sys, fusion.methods, pipelines.config; assert 'torch' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT).returncode == 0
