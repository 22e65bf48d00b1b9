"""The YAML config: defaults, overrides, base files, and errors that name the key."""

from pathlib import Path

import pytest

from faceattr.config import Config, config_from_dict, load_config, save_config
from faceattr.errors import ConfigError

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_shipped_config_is_valid(path):
    config = load_config(path)
    if path.stem != "base_shared_data":
        assert config.model.backbone and config.train.output_dir != Config().train.output_dir


def test_gc_resnet101_config_inherits_the_real_data_sources():
    config = load_config(CONFIGS[0].parent / "gc_resnet101.yaml")
    assert config.model.backbone == "gc_resnet101"
    assert [s.kind for s in config.data.sources] == ["celeba", "celeba", "celebahq", "scut"]
    assert config.train.ema_decay == 0.999  # from the base file
    assert config.optim.epochs == 40  # from the experiment file


def test_overrides_reach_nested_keys_and_list_items():
    config = config_from_dict({"data": {"sources": [{"kind": "scut", "root": "a"}]}},
                              ["optim.lr=0.01", "data.sources.0.fold=2", "train.amp=false", "model.weights=none"])
    assert config.optim.lr == 0.01
    assert config.data.sources[0].fold == 2
    assert config.train.amp is False
    assert config.model.weights is None


def test_integers_are_accepted_where_numbers_are_expected():
    assert config_from_dict({"optim": {"lr": 1}}).optim.lr == 1.0


@pytest.mark.parametrize("values, overrides, message", [
    ({"optim": {"learning_rate": 0.1}}, [], "unknown key 'optim.learning_rate'"),
    ({"optimiser": {}}, [], "unknown key 'optimiser'"),
    ({"optim": {"lr": "fast"}}, [], "optim.lr: expected a number"),
    ({"train": {"amp": "yes"}}, [], "train.amp: expected true or false"),
    ({"data": {"batch_size": 0}}, [], "data.batch_size: must be positive"),
    ({"loss": {"attributes": "hinge"}}, [], "loss.attributes: 'hinge' is not one of"),
    ({"data": {"sources": [{"kind": "imagenet"}]}}, [], "data.sources[0].kind"),
    ({"data": {"sources": [{"kind": "scut", "fold": 5}]}}, [], "data.sources[0].fold"),
    ({"data": {"sources": [{"kind": "celeba", "crop": [0.5, 0, 0.2, 1]}]}}, [], "data.sources[0].crop"),
    ({"loss": {"beauty": "emd"}}, [], "needs model.beauty_head: distribution"),
    ({}, ["optim.lr"], "expected key=value"),
    ({}, ["optim.nope=1"], "unknown key 'optim.nope'"),
    ({}, ["data.sources.3.root=x"], "has no item 3"),
])
def test_bad_values_name_the_key(values, overrides, message):
    with pytest.raises(ConfigError) as error:
        config_from_dict(values, overrides)
    assert message in str(error.value)


def test_load_config_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("optim:\n  lr: [1, 2]\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: optim\.lr"):
        load_config(path)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "broken.yaml").write_text("optim: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "broken.yaml")


def test_base_chains_are_refused(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\noptim:\n  lr: 0.1\n")
    (tmp_path / "b.yaml").write_text("base: c.yaml\n")
    with pytest.raises(ConfigError, match="one level only"):
        load_config(tmp_path / "a.yaml")


def test_saved_config_loads_back_identically(tmp_path):
    config = config_from_dict({"data": {"sources": [{"kind": "celeba", "root": "x", "crop": [0, 0.1, 1, 0.9]}]}},
                              ["loss.focal_alpha=0.25"])
    save_config(config, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == config
