"""The YAML config: defaults, overrides, base files, and errors that name the key."""

import subprocess
import sys
from pathlib import Path

import pytest

from faceattr.config import (
    BACKBONE_NAMES,
    SOURCE_KINDS,
    Config,
    config_from_dict,
    load_config,
    save_config,
)
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


def test_overrides_leave_the_given_dict_unchanged():
    values = {"data": {"sources": [{"kind": "scut", "root": "a"}]}}
    config_from_dict(values, ["data.sources.0.root=b"])
    assert values == {"data": {"sources": [{"kind": "scut", "root": "a"}]}}


def test_integers_are_accepted_where_numbers_are_expected():
    assert config_from_dict({"optim": {"lr": 1}}).optim.lr == 1.0


@pytest.mark.parametrize("values, overrides, message", [
    ({"optim": {"learning_rate": 0.1}}, [], "unknown key 'optim.learning_rate'"),
    ({"optimiser": {}}, [], "unknown key 'optimiser'"),
    ({"optim": {"lr": "fast"}}, [], "optim.lr: expected a number"),
    ({"train": {"amp": "yes"}}, [], "train.amp: expected true or false"),
    ({"data": {"batch_size": 0}}, [], "data.batch_size: must be > 0, got 0"),
    ({"loss": {"attributes": "hinge"}}, [], "loss.attributes: 'hinge' is not one of"),
    ({"loss": {"beauty": "huber"}}, [], "loss.beauty: 'huber' is not one of"),
    ({"model": {"beauty_head": "ordinal"}}, [], "model.beauty_head: 'ordinal' is not one of regression, distribution"),
    ({"data": {"on_bad_sample": "ignore"}}, [], "data.on_bad_sample: 'ignore' is not one of error, skip"),
    ({"loss": {"focal_alpha": "half"}}, [], "loss.focal_alpha: 'half' is not 'auto'"),
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


#: A config with one source, so that the ``data.sources.0`` overrides below have an item to reach.
ONE_SOURCE = {"data": {"sources": [{"kind": "csv", "root": "team.csv"}]}}


@pytest.mark.parametrize("override, message", [
    ("data.sources.0.weight=-0.5", "data.sources[0].weight: must be >= 0, got -0.5"),
    ("data.sources.0.folds=1", "data.sources[0].folds: must be >= 2, got 1"),
    ("data.sources.0.val_fraction=1.5", "data.sources[0].val_fraction: must be in [0, 1], got 1.5"),
    ("data.workers=-1", "data.workers: must be >= 0, got -1"),
    ("data.epoch_size=-1", "data.epoch_size: must be >= 0, got -1"),
    ("data.max_val_samples=-1", "data.max_val_samples: must be >= 0, got -1"),
    ("model.beauty_bins=1", "model.beauty_bins: must be >= 2, got 1"),
    ("model.drop_rate=1", "model.drop_rate: must be in [0, 1), got 1.0"),
    ("model.width=0", "model.width: must be > 0, got 0.0"),
    ("model.drop_path_rate=1", "model.drop_path_rate: must be in [0, 1), got 1.0"),
    ("model.stem_stride=3", "model.stem_stride: 3 is not one of 4, 2, 1"),
    ("data.random_erasing=1.5", "data.random_erasing: must be in [0, 1], got 1.5"),
    ("loss.beauty_ranking=-1", "loss.beauty_ranking: must be >= 0, got -1.0"),
    ("loss.ohem_ratio=0", "loss.ohem_ratio: must be in (0, 1], got 0.0"),
    ("loss.focal_gamma=-1", "loss.focal_gamma: must be >= 0, got -1.0"),
    ("loss.focal_alpha=1.5", "loss.focal_alpha: must be in [0, 1], got 1.5"),
    ("loss.label_smoothing=1", "loss.label_smoothing: must be in [0, 1), got 1.0"),
    ("loss.beauty_weight=-0.1", "loss.beauty_weight: must be >= 0, got -0.1"),
    ("loss.adaptive_momentum=1", "loss.adaptive_momentum: must be in [0, 1), got 1.0"),
    ("loss.adaptive_power=-1", "loss.adaptive_power: must be >= 0, got -1.0"),
    ("optim.lr=-0.001", "optim.lr: must be >= 0, got -0.001"),
    ("optim.lr=.nan", "optim.lr: must be >= 0, got nan"),
    ("optim.weight_decay=-0.05", "optim.weight_decay: must be >= 0, got -0.05"),
    ("optim.warmup_epochs=-1", "optim.warmup_epochs: must be >= 0, got -1.0"),
    ("optim.grad_clip=-1", "optim.grad_clip: must be >= 0, got -1.0"),
    ("optim.epochs=0", "optim.epochs: must be > 0, got 0"),
    ("train.ema_decay=1", "train.ema_decay: must be in [0, 1), got 1.0"),
    ("train.early_stopping=-1", "train.early_stopping: must be >= 0, got -1"),
    ("train.max_steps_per_epoch=-1", "train.max_steps_per_epoch: must be >= 0, got -1"),
    ("train.log_every=0", "train.log_every: must be >= 1, got 0"),
    ("train.seed=-1", "train.seed: must be >= 0, got -1"),
])
def test_out_of_range_numbers_name_the_key(override, message):
    with pytest.raises(ConfigError) as error:
        config_from_dict(ONE_SOURCE, [override])
    assert message in str(error.value)


@pytest.mark.parametrize("override", ["model.stem_stride=2", "model.width=0.5"])
def test_stem_and_width_are_refused_for_a_backbone_that_is_not_a_resnet(override):
    with pytest.raises(ConfigError, match=r"model\.(stem_stride|width): applies to the ResNet backbones .* "
                                          r"not to model\.backbone 'mobilenetv3_large'"):
        config_from_dict(ONE_SOURCE, ["model.backbone=mobilenetv3_large", override])


def test_range_bounds_that_are_allowed_load():
    overrides = ["data.sources.0.weight=0", "data.sources.0.folds=2", "data.sources.0.fold=1",
                 "data.sources.0.val_fraction=1", "data.workers=0", "model.beauty_bins=2", "loss.ohem_ratio=1",
                 "loss.focal_alpha=0", "loss.label_smoothing=0", "loss.adaptive_momentum=0", "optim.lr=0",
                 "train.ema_decay=0", "train.log_every=1", "train.seed=0"]
    config = config_from_dict(ONE_SOURCE, overrides)
    assert config.data.sources[0].val_fraction == 1.0 and config.loss.ohem_ratio == 1.0
    assert config.loss.focal_alpha == 0.0 and config.train.log_every == 1


def test_every_source_is_range_checked_under_its_own_index():
    sources = [{"kind": "celeba", "root": "a"}, {"kind": "scut", "root": "b", "weight": -1}]
    with pytest.raises(ConfigError, match=r"data\.sources\[1\]\.weight: must be >= 0"):
        config_from_dict({"data": {"sources": sources}})


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


def test_path_settings_expand_environment_variables_and_home(monkeypatch):
    monkeypatch.setenv("FACEATTR_TEST_DATA", "/data")
    monkeypatch.setenv("HOME", "/home/ann")
    config = config_from_dict({"data": {"sources": [{"kind": "celeba", "root": "$FACEATTR_TEST_DATA/celeba",
                                                     "images": "${FACEATTR_TEST_DATA}/aligned"}],
                                        "holdout_groups": "~/held.txt"},
                               "train": {"output_dir": "~/runs/x"}})
    source = config.data.sources[0]
    assert (source.root, source.images) == ("/data/celeba", "/data/aligned")
    assert (config.data.holdout_groups, config.train.output_dir) == ("/home/ann/held.txt", "/home/ann/runs/x")


def test_an_unknown_backbone_is_refused_when_the_config_is_read(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("model:\n  backbone: resnet19\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    message = str(error.value)
    assert message.startswith(f"{path}: model.backbone: 'resnet19' is not one of ")
    assert "resnet18" in message and "gc_resnet101" in message


def test_checking_a_config_imports_neither_torch_nor_timm():
    code = ("import sys; from faceattr.config import config_from_dict; "
            "config_from_dict({'model': {'backbone': 'gc_resnet101'}}); "
            "print(sorted(m for m in ('torch', 'timm') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"


def test_each_name_the_config_accepts_has_a_builder():
    from faceattr.data.sources import LAYOUTS, READERS
    from faceattr.models import BACKBONES

    assert tuple(BACKBONES) == BACKBONE_NAMES
    assert tuple(READERS) == tuple(LAYOUTS) == SOURCE_KINDS
