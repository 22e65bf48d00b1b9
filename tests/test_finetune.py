"""Fine-tuning a whole trained model (model.init_from) and training part of it (train.trainable)."""

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from faceattr.config import config_from_dict, load_config
from faceattr.data.readers.csvfile import read_csv
from faceattr.data.readers.scut import read_scut
from faceattr.errors import ConfigError
from faceattr.models.deployed import DeployedModel
from faceattr.models.net import FaceAttrNet
from faceattr.models.weights_io import load_checkpoint, save_checkpoint
from faceattr.synthetic.fixtures import make_scut
from faceattr.synthetic.team_labels import TEAM_COLUMNS, TEAM_SHIFT, write_team_labels
from faceattr.training.finetune import check_compatible, freeze, initialise, load_initial_model
from faceattr.training.parts import build_training

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def initial(tmp_path_factory) -> Path:
    """A ResNet-10-T at 32 px with random weights and a decision unlike any a fit on beauty-only data gives."""
    torch.manual_seed(3)
    config = config_from_dict({"data": {"image_size": 32}, "model": {"backbone": "resnet10t"}})
    rng = np.random.default_rng(3)
    model = DeployedModel.from_training(FaceAttrNet("resnet10t"), rng.uniform(0.2, 0.8, 40).tolist(), config, 5, {},
                                        temperatures=rng.uniform(0.5, 2, 40).tolist(),
                                        offsets=rng.uniform(-1, 1, 40).tolist(),
                                        policy_thresholds={"f1": rng.uniform(0.2, 0.8, 40).tolist()},
                                        default_decision="f1")
    path = tmp_path_factory.mktemp("initial") / "best.pt"
    save_checkpoint(model.to_checkpoint(), path)
    return path


@pytest.fixture(scope="module")
def scut_root(tmp_path_factory) -> Path:
    return make_scut(tmp_path_factory.mktemp("data") / "scut", count=30, size=32, seed=1)


def finetune_config(initial: Path, scut_root: Path, out: Path, *overrides: str):
    values = {"data": {"sources": [{"kind": "scut", "root": str(scut_root), "folds": 3}], "image_size": 32,
                       "batch_size": 8, "workers": 0},
              "model": {"backbone": "resnet10t", "init_from": str(initial)},
              "optim": {"epochs": 2, "lr": 0.01, "warmup_epochs": 0},
              "train": {"output_dir": str(out), "amp": False, "channels_last": False, "max_steps_per_epoch": 3,
                        "trainable": "beauty_head"}}
    return config_from_dict(values, list(overrides))


def test_init_from_loads_every_weight_so_outputs_start_equal(initial, scut_root, tmp_path):
    config = finetune_config(initial, scut_root, tmp_path, "train.trainable=all")
    start = load_initial_model(config)
    parts = build_training(config, np.full(40, 0.5), torch.device("cpu"), 10, start)
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        ours, theirs = parts.model.eval()(images), start.build_network()(images)
    assert torch.equal(ours["attributes"], theirs["attributes"]) and torch.equal(ours["beauty"], theirs["beauty"])


@pytest.mark.parametrize("ema_decay", [0.0, 0.9])
def test_beauty_head_training_leaves_backbone_and_attribute_head_bit_identical(initial, scut_root, tmp_path,
                                                                               ema_decay):
    from faceattr.training.engine import fit

    fit(finetune_config(initial, scut_root, tmp_path / "run", f"train.ema_decay={ema_decay}"))
    before = DeployedModel.load(initial)
    # best.pt holds the deployed weights: the EMA's when there is one.
    for after in (load_checkpoint(tmp_path / "run" / "last.pt")["train"]["model"],
                  DeployedModel.load(tmp_path / "run" / "best.pt").state_dict):
        changed = sorted(key for key, value in before.state_dict.items() if not torch.equal(value, after[key]))
        # BatchNorm running statistics are backbone buffers: unchanged too, as frozen BatchNorm stays in eval mode.
        assert changed == ["beauty_head.fc.bias", "beauty_head.fc.weight"]


def test_a_beauty_only_fine_tune_deploys_the_initial_attribute_decision(initial, scut_root, tmp_path):
    from faceattr.training.engine import fit

    fit(finetune_config(initial, scut_root, tmp_path / "run", "train.trainable=heads", "optim.epochs=1"))
    before, after = DeployedModel.load(initial), DeployedModel.load(tmp_path / "run" / "best.pt")
    assert (after.thresholds, after.temperatures, after.offsets) == (before.thresholds, before.temperatures,
                                                                     before.offsets)
    assert after.policy_thresholds == before.policy_thresholds and after.default_decision == "f1"
    assert after.config["model"]["init_from"] == str(initial)


@pytest.mark.parametrize("trainable, trained", [
    ("all", ["attribute_head", "backbone", "beauty_head"]),
    ("heads", ["attribute_head", "beauty_head"]),
    ("beauty_head", ["beauty_head"]),
])
def test_trainable_freezes_the_other_parts(trainable, trained):
    net = FaceAttrNet("resnet10t")
    frozen = freeze(net, trainable)
    assert sorted({name.split(".")[0] for name, p in net.named_parameters() if p.requires_grad}) == trained
    assert all(not p.requires_grad for part in frozen for p in part.parameters())


@pytest.mark.parametrize("override, message", [
    ("model.backbone=resnet18", "model.backbone: the config says 'resnet18', but model.init_from .* has 'resnet10t'"),
    ("model.beauty_head=distribution", "model.beauty_head: the config says 'distribution'"),
])
def test_a_config_unlike_the_initial_model_is_refused_naming_the_key(initial, scut_root, tmp_path, override, message):
    with pytest.raises(ConfigError, match=message):
        load_initial_model(finetune_config(initial, scut_root, tmp_path, override))


@pytest.mark.parametrize("override", ["data.image_size=64", "model.stem_stride=2"])
def test_another_input_size_or_stem_is_a_warm_start_with_a_warning(initial, scut_root, tmp_path, override, caplog):
    config = finetune_config(initial, scut_root, tmp_path, override)
    assert load_initial_model(config) is not None
    key = override.split("=")[0]
    assert f"{key}: {override.split('=')[1]} warm-starts from" in caplog.text
    net = FaceAttrNet("resnet10t", stem_stride=config.model.stem_stride)
    initialise(net, load_initial_model(config))
    assert net(torch.zeros(1, 3, config.data.image_size, config.data.image_size, dtype=torch.uint8))["attributes"].shape == (1, 40)


def test_init_from_and_backbone_weights_together_are_refused(initial, scut_root, tmp_path):
    with pytest.raises(ConfigError, match="model.weights: .* and model.init_from: .* keep one"):
        finetune_config(initial, scut_root, tmp_path, "model.weights=backbone.safetensors")


def test_trainable_must_be_a_known_part(initial, scut_root, tmp_path):
    with pytest.raises(ConfigError, match="train.trainable: 'backbone' is not one of all, heads, beauty_head"):
        finetune_config(initial, scut_root, tmp_path, "train.trainable=backbone")


def test_the_finetune_config_fits_the_installed_default_model():
    config = load_config(REPO / "configs" / "finetune_beauty.yaml")
    assert (config.model.init_from, config.train.trainable) == ("default", "beauty_head")
    assert [source.kind for source in config.data.sources] == ["csv"]
    check_compatible(DeployedModel.load(), config)


def test_simulated_team_labels_are_a_labels_csv_with_the_validation_fold_and_the_stated_shift(scut_root, tmp_path):
    path = tmp_path / "labels.csv"
    counts = write_team_labels(scut_root, path, train_count=10, noise=0.0, folds=3, fold=0)
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    assert tuple(rows[0]) == TEAM_COLUMNS and counts == {"train": 10, "val": 10}
    records = read_csv(path, images=scut_root / "Images").records
    scut = {r.path.name: r for r in read_scut(scut_root, folds=3, fold=0).records}
    assert {r.path.name for r in records if r.split == "val"} == {n for n, r in scut.items() if r.split == "val"}
    for record in records:
        expected = min(max(scut[record.path.name].beauty + TEAM_SHIFT[record.path.name[:2]], 1.0), 5.0)
        assert record.beauty == pytest.approx(expected, abs=1e-4)


def test_evaluating_the_default_model_needs_an_out_folder(run_tool):
    result = run_tool("eval", "default")
    assert result.status == 2 and "needs --out" in result.err


def test_make_team_labels_tool_writes_once_and_refuses_to_overwrite(scut_root, tmp_path, run_tool):
    out = tmp_path / "team" / "labels.csv"
    result = run_tool("make_team_labels", scut_root, out, "--train-count", 5)
    assert result.status == 0 and "5 training and 6 validation faces" in result.out, result.err
    again = run_tool("make_team_labels", scut_root, out)
    assert again.status == 2 and "labels.csv" in again.err
