"""Tests of faceattr.models.deployed: one validated model object, its crop, and what a model file may hold."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from faceattr.config import Config, SourceConfig
from faceattr.data.transforms import eval_transform
from faceattr.errors import CheckpointError
from faceattr.geometry import CELEBA_CROP
from faceattr.inference.align import CELEBA_TEMPLATE
from faceattr.inference.detect import Detection
from faceattr.inference.predictor import Predictor
from faceattr.models.deployed import (
    DeployedModel,
    decision_digest,
    description_path,
    training_crop,
)
from faceattr.models.net import FaceAttrNet
from faceattr.models.weights_io import save_checkpoint
from faceattr.synthetic.drawing import draw_face, random_labels
from faceattr.training.export import export_model

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

#: A crop far from CelebA's usual one: the upper-left part of the aligned frame.
OTHER_CROP = (0.0, 0.0, 0.6, 0.5)


def _config(crop: list[float] | None = None) -> Config:
    config = Config()
    config.data.image_size = 32
    if crop is not None:
        config.data.sources = [SourceConfig(kind="scut"), SourceConfig(kind="celeba", crop=crop)]
    return config


@pytest.fixture(scope="module")
def model() -> DeployedModel:
    """An untrained ResNet-10-T at 32 px deployed with :data:`OTHER_CROP`."""
    torch.manual_seed(0)
    return DeployedModel.from_training(FaceAttrNet("resnet10t"), [0.5] * 40, _config(list(OTHER_CROP)), 1, {})


@pytest.fixture(scope="module")
def exported(model: DeployedModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("export")
    save_checkpoint(model.to_checkpoint(), folder / "best.pt")
    export_model(folder / "best.pt", folder / "model.safetensors", "float32")
    return folder / "model.safetensors"


def test_the_crop_comes_from_the_configs_celeba_sources() -> None:
    assert training_crop(_config([0.1, 0.2, 0.9, 0.8])) == (0.1, 0.2, 0.9, 0.8)
    no_celeba = Config()
    no_celeba.data.sources = [SourceConfig(kind="csv", root="pack.csv"), SourceConfig(kind="scut")]
    assert training_crop(no_celeba) == CELEBA_CROP  # packs are cut as CelebA's beforehand
    whole = Config()
    whole.data.sources = [SourceConfig(kind="celeba")]
    assert training_crop(whole) == (0.0, 0.0, 1.0, 1.0)  # no crop: the whole aligned frame


def test_checkpoint_roundtrip_keeps_every_field(model: DeployedModel, tmp_path: Path) -> None:
    save_checkpoint(model.to_checkpoint(), tmp_path / "best.pt")
    loaded = DeployedModel.load(tmp_path / "best.pt")
    assert loaded.source == tmp_path / "best.pt"
    assert (loaded.crop, loaded.image_size, loaded.epoch) == (OTHER_CROP, 32, 1)
    assert loaded.decision_fields() == model.decision_fields()
    assert all(torch.equal(loaded.state_dict[key], value) for key, value in model.state_dict.items())


def test_export_carries_the_crop(model: DeployedModel, exported: Path) -> None:
    description = json.loads(description_path(exported).read_text())
    assert description["crop"] == list(OTHER_CROP)
    assert DeployedModel.load(exported).crop == OTHER_CROP


def test_a_checkpoint_from_before_crops_gets_celebas(model: DeployedModel) -> None:
    state = model.to_checkpoint()
    del state["crop"]
    assert DeployedModel.from_checkpoint(state).crop == CELEBA_CROP


@pytest.mark.parametrize("source", ["checkpoint", "export"])
def test_the_predictor_cuts_the_models_crop(model: DeployedModel, exported: Path, tmp_path: Path,
                                            source: str) -> None:
    path = exported
    if source == "checkpoint":
        path = tmp_path / "best.pt"
        save_checkpoint(model.to_checkpoint(), path)
    predictor = Predictor(path, device="cpu")
    assert predictor.crop == OTHER_CROP
    rng = np.random.default_rng(0)
    face = np.asarray(draw_face(random_labels(rng), rng=rng))
    network = model.build_network()
    with torch.no_grad():
        logits = {crop: network(eval_transform(32, crop)(Image.fromarray(face))[None])["attributes"][0]
                  for crop in (OTHER_CROP, CELEBA_CROP)}
    [result] = predictor.predict_aligned([face])
    probabilities = torch.tensor(list(result.probabilities.values()), dtype=torch.float32)
    assert torch.allclose(probabilities, torch.sigmoid(logits[OTHER_CROP]), atol=1e-6)
    assert not torch.allclose(probabilities, torch.sigmoid(logits[CELEBA_CROP]), atol=1e-3)
    # A detected face is warped onto the same crop: the face at the template's place gives the aligned answer.
    detection = Detection((0.0, 0.0, 178.0, 218.0), 1.0, CELEBA_TEMPLATE)
    [[detected]] = predictor.classify([face], [[detection]])
    assert np.allclose(list(detected.probabilities.values()), probabilities.numpy(), atol=0.05)


def _description_with(exported: Path, folder: Path, digest: bool = True, **changes: Any) -> Path:
    """A copy of the exported pair whose description has ``changes`` (its digest recomputed if ``digest``)."""
    folder.mkdir()
    weights = folder / exported.name
    weights.write_bytes(exported.read_bytes())
    description = json.loads(description_path(exported).read_text())
    description.update(changes)
    if digest:
        description["decision_sha256"] = decision_digest(description)
    description_path(weights).write_text(json.dumps(description))
    return weights


@pytest.mark.parametrize(("changes", "key"), [
    ({"thresholds": [0.0] * 40}, "thresholds"),
    ({"thresholds": [0.5] * 39 + [1.0]}, "thresholds"),
    ({"thresholds": [0.5] * 39}, "thresholds"),
    ({"temperatures": [1.0] * 39 + [0.0]}, "temperatures"),
    ({"offsets": [-50.0] * 40}, "offsets"),
    ({"image_size": 100_000}, "image_size"),
    ({"image_size": 8}, "image_size"),
    ({"image_size": 64.5}, "image_size"),
    ({"crop": [0.5, 0.0, 0.4, 1.0]}, "crop"),
    ({"crop": [0.0, 0.0, 1.0, 1.5]}, "crop"),
    ({"crop": [0.0, 0.0, 1.0]}, "crop"),
    ({"attributes": ["Smiling"] * 40}, "attributes"),
    ({"model_args": {"beauty_head": "regression"}}, "model_args"),
])
def test_impossible_values_are_refused_naming_the_file_and_key(exported: Path, tmp_path: Path,
                                                               changes: dict[str, Any], key: str) -> None:
    weights = _description_with(exported, tmp_path / "bad", **changes)
    with pytest.raises(CheckpointError, match=f"^{description_path(weights)}: '{key}': expected"):
        DeployedModel.load(weights)


@pytest.mark.parametrize("key", ["thresholds", "temperatures", "offsets"])
def test_nan_is_refused(exported: Path, tmp_path: Path, key: str) -> None:
    values = json.loads(description_path(exported).read_text())[key]
    values[3] = float("nan")
    # The digest cannot cover NaN (strict JSON): the value is named, not reported as a mismatch.
    weights = _description_with(exported, tmp_path / "nan", digest=False, **{key: values})
    with pytest.raises(CheckpointError, match=f"'{key}': expected 40 finite numbers.*Bags_Under_Eyes is nan"):
        DeployedModel.load(weights)


def test_a_checkpoint_with_impossible_values_is_refused_too(model: DeployedModel, tmp_path: Path) -> None:
    save_checkpoint({**model.to_checkpoint(), "thresholds": [0.0] * 40}, tmp_path / "best.pt")
    with pytest.raises(CheckpointError, match=f"{tmp_path / 'best.pt'}: 'thresholds'.*5_o_Clock_Shadow is 0.0"):
        Predictor(tmp_path / "best.pt", device="cpu")


def test_training_thresholds_on_the_bounds_are_kept_just_inside() -> None:
    thresholds = [0.0, 1.0000000000000002] + [0.5] * 38  # what the tuner gives for a degenerate attribute
    model = DeployedModel.from_training(FaceAttrNet("resnet10t"), thresholds, _config(), 1, {})
    assert 0.0 < model.thresholds[0] < 1e-300 and 1.0 - 1e-15 < model.thresholds[1] < 1.0


def _celeba_crops(value: Any) -> list[list[float]]:
    """The ``crop`` of every celeba source anywhere in a parsed YAML document."""
    if isinstance(value, dict):
        own = [value["crop"]] if value.get("kind") == "celeba" and value.get("crop") is not None else []
        return own + [crop for item in value.values() for crop in _celeba_crops(item)]
    if isinstance(value, list):
        return [crop for item in value for crop in _celeba_crops(item)]
    return []


def test_every_configs_celeba_crop_is_the_default_models() -> None:
    crops = [(path.name, crop) for path in sorted(CONFIGS.glob("*.yaml"))
             for crop in _celeba_crops(yaml.safe_load(path.read_text()))]
    assert len(crops) >= 5  # base_shared_data, default_cpu and demo hold them
    assert [(name, tuple(crop)) for name, crop in crops] == [(name, CELEBA_CROP) for name, _ in crops]
    assert DeployedModel.load().crop == CELEBA_CROP
