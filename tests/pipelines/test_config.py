"""fuse_then_detect configuration: shipped profiles, overrides and clear errors for bad configs."""

import copy

import pytest
import yaml

from pipelines.config import EXPERIMENTS_DIR, ConfigError, apply_overrides, load_config, parse_config

BASE = {
    "name": "t",
    "methods": [
        {"name": "IR", "kind": "source", "source": "ir"},
        {"name": "Avg", "kind": "baseline", "baseline": "average"},
    ],
    "detector": {"model": "yolov8n.yaml", "imgsz": 64, "epochs": 1},
}


def cfg_with(**changes):
    raw = copy.deepcopy(BASE)
    raw.update(changes)
    return raw


def test_shipped_demo_and_tiny_profiles_load():
    demo = load_config()  # the default used by `make demo`
    assert demo.name == "fuse_then_detect_demo"
    kinds = {m.name: m.kind for m in demo.methods}
    assert kinds["IR"] == kinds["VI"] == "source" and kinds["S4Fusion"] == "s4fusion"
    assert any(k == "baseline" for k in kinds.values())
    tiny = load_config(EXPERIMENTS_DIR / "fuse_then_detect_tiny.yaml")
    assert tiny.detector.epochs <= demo.detector.epochs and tiny.dataset.synthetic["n_images"] < 100


def test_paper_profile_names_what_is_missing():
    # Real M3FD is not here: the error names the key and how to fix it.
    with pytest.raises(ConfigError, match="dataset.root datasets/M3FD does not exist"):
        load_config("table6_m3fd.yaml")


def test_paper_profile_precomputed_placeholders_are_checked(tmp_path):
    with pytest.raises(ConfigError, match=r"folder datasets/M3FD_fused/\w+ does not exist"):
        load_config("table6_m3fd.yaml", [f"dataset.root={tmp_path}", "detector.weights=null"])


def test_overrides_parse_yaml_values_and_nested_keys():
    raw = apply_overrides(BASE, ["detector.epochs=7", "seeds=[1, 2]", "dataset.synthetic.n_images=50"])
    cfg = parse_config(raw)
    assert cfg.detector.epochs == 7 and cfg.seeds == [1, 2] and cfg.dataset.synthetic == {"n_images": 50}
    assert BASE["detector"]["epochs"] == 1  # the input is not modified
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides(BASE, ["detector.epochs"])


@pytest.mark.parametrize(
    "raw, message",
    [
        (cfg_with(methods=[{"name": "X", "kind": "magic"}]), "unknown method kind 'magic'"),
        (
            cfg_with(methods=[{"name": "X", "kind": "baseline", "baseline": "nope"}]),
            "unknown baseline 'nope'",
        ),
        (cfg_with(methods=[{"name": "X", "kind": "source", "source": "rgb"}]), "source must be 'ir' or 'vi'"),
        (cfg_with(methods=[{"name": "X", "kind": "source", "source": "ir", "folder": "f"}]), "do not apply"),
        (cfg_with(methods=[{"name": "X", "kind": "s4fusion"}]), "exactly one of 'checkpoint'"),
        (
            cfg_with(methods=[{"name": "X", "kind": "s4fusion", "checkpoint": "/no/such.pt"}]),
            "checkpoint /no/such.pt does not exist",
        ),
        (
            cfg_with(methods=[{"name": "X", "kind": "precomputed", "folder": "/no/such/dir"}]),
            "folder /no/such/dir does not exist",
        ),
        (cfg_with(methods=[{"name": "X", "kind": "source", "source": "ir"}] * 2), "duplicate method name"),
        (cfg_with(methods=[{"name": "a/b", "kind": "source", "source": "ir"}]), "method names may use"),
        (cfg_with(methods=[]), "non-empty list"),
        (cfg_with(detector={"model": "yolov8n.yaml", "epoch": 3}), r"unknown key\(s\) \['epoch'\]"),
        (cfg_with(detector={"weights": "/no/such/weights.pt"}), "does not exist"),
        (cfg_with(detector={"model": "yolov8n.pt"}), "model YAML"),
        (cfg_with(colour="red"), r"unknown key\(s\) \['colour'\]"),
        (cfg_with(dataset={"name": "m3fd"}), "dataset.root is required"),
        (cfg_with(dataset={"split_ratios": [0.8, 0.2]}), "split_ratios"),
        (cfg_with(seeds=[]), "seeds"),
    ],
)
def test_bad_configs_fail_with_a_clear_message(raw, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(raw)


def test_detector_weight_named_yolov5s_is_refused(tmp_path):
    weights = tmp_path / "yolov5s.pt"
    weights.write_bytes(b"x")
    with pytest.raises(ConfigError, match="rename the file"):
        parse_config(cfg_with(detector={"weights": str(weights)}))


def test_missing_config_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text(yaml.safe_dump([1, 2]))
    with pytest.raises(ConfigError, match="mapping"):
        load_config(listy)


def test_digest_ignores_where_results_go_but_not_what_they_are():
    a = parse_config(BASE)
    b = parse_config(cfg_with(runs_dir="/elsewhere", tracking={"uri": "http://x"}))
    c = parse_config(apply_overrides(BASE, ["detector.epochs=2"]))
    assert a.digest() == b.digest() != c.digest()


def test_nested_sections_are_validated_on_load_all_at_once():
    raw = cfg_with(
        dataset={"synthetic": {"n_images": 10, "widht": 64}},
        methods=[{"name": "S", "kind": "s4fusion", "train": {"batch_size": "two", "optim": {"lr": 1}}}],
        detector={"model": "yolov8n.yaml", "lr0": "fast"},
    )
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    text = str(info.value)
    for expected in (
        "detector.lr0: expected float",
        "dataset.synthetic: unknown key(s) ['widht']",
        "methods.0.train.batch_size: expected int",
        "methods.0.train.optim: unknown key(s) ['lr']",
    ):
        assert expected in text, text
    assert (
        cfg_with() is not raw
        and parse_config(apply_overrides(BASE, ["detector.lr0=1e-3"])).detector.lr0 == 1e-3
    )


def test_executor_section_and_flags_are_validated_and_set_the_detector_workers():
    with pytest.raises(ConfigError) as err:  # every problem at once, the old detector.workers key included
        parse_config(
            cfg_with(
                detector={**BASE["detector"], "workers": 4}, executor={"kind": "dask", "cpus_per_job": 0}
            )
        )
    message = str(err.value)
    assert "detector.workers was replaced by executor.cpus_per_job" in message
    assert (
        "executor.kind must be one of ['serial', 'ray']" in message
        and "executor.cpus_per_job must be" in message
    )
    cfg = parse_config(cfg_with(executor={"cpus_per_job": 3}))
    assert cfg.executor.kind == "serial" and cfg.detector.workers == 2  # the training process + 2 loaders
    assert "workers" not in cfg.to_dict()["detector"] and parse_config(cfg.to_dict()).digest() == cfg.digest()
    assert parse_config(cfg_with(executor={"cpus_per_job": 3, "kind": "ray"})).digest() == cfg.digest()
    assert parse_config(cfg_with(executor={"cpus_per_job": 2})).digest() != cfg.digest()

    import argparse

    from pipelines.fuse_then_detect import cli

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    for flags, address in (
        (["--ray-address", "auto"], "auto"),
        (["--ray-address", "null"], None),
        (["--ray-address", "10.0.0.1:6379"], "10.0.0.1:6379"),
    ):
        cfg = cli.resolve_args(
            parser.parse_args(["--config", "fuse_then_detect_tiny.yaml", "--executor", "ray", *flags])
        )
        assert (cfg.executor.kind, cfg.executor.address) == ("ray", address)
    with pytest.raises(ConfigError, match="only used with kind: ray"):
        cli.resolve_args(
            parser.parse_args(["--config", "fuse_then_detect_tiny.yaml", "--ray-address", "auto"])
        )
