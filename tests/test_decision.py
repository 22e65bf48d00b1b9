"""Tests of the decision policies: fitting, the exclusive pairs, the measurement, and where models carry them."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import untrained_checkpoint

from faceattr.attributes import ATTRIBUTES
from faceattr.config import Config
from faceattr.errors import CheckpointError, ConfigError
from faceattr.evaluation.decision import (
    celeba_split_labels,
    decide,
    exclusive_pairs,
    fit_policies,
    measure_policies,
    policy_thresholds,
)
from faceattr.evaluation.exclusive_pairs import EXCLUSIVE_PAIRS
from faceattr.inference.predictor import Predictor
from faceattr.models.deployed import DeployedModel, description_path
from faceattr.models.net import FaceAttrNet
from faceattr.models.weights_io import save_checkpoint
from faceattr.synthetic.fixtures import make_celeba
from faceattr.training.export import export_model, refit_decisions

INDEX = {name: i for i, name in enumerate(ATTRIBUTES)}


def _scores(seed: int = 0, faces: int = 600) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels with rare attributes, and probabilities that rank them well but sit low (as for Bald)."""
    rng = np.random.default_rng(seed)
    rates = np.linspace(0.02, 0.5, 40)
    labels = (rng.random((faces, 40)) < rates).astype(np.float32)
    probs = np.clip(0.5 * rates + 0.45 * labels + rng.normal(0, 0.2, (faces, 40)), 0.001, 0.999)
    return probs, labels, np.ones((faces, 40), bool)


def test_f1_lists_fewer_false_attributes_than_balanced_on_rare_ones() -> None:
    rows = {(r["policy"], r["cut"], r["pairs_applied"]): r for r in measure_policies(*_scores(), cuts=(0.5,))}
    balanced, f1 = rows[("balanced", None, False)], rows[("f1", None, True)]
    assert f1["precision"] > balanced["precision"] + 0.02
    assert f1["listed_per_face"] < balanced["listed_per_face"]
    assert balanced["true_per_face"] == pytest.approx(f1["true_per_face"])


def test_measurement_is_cross_fitted_not_in_sample() -> None:
    probs, labels, mask = _scores(faces=200)
    # Random labels: thresholds fitted in sample would look better than chance, cross-fitted ones cannot.
    random_labels = (np.random.default_rng(1).random(labels.shape) < 0.3).astype(np.float32)
    row = next(r for r in measure_policies(probs, random_labels, mask) if r["policy"] == "f1")
    assert row["precision"] == pytest.approx(0.3, abs=0.05)


def test_fitted_policies_differ_where_the_attribute_is_rare() -> None:
    fitted = fit_policies(*_scores())
    assert set(fitted) == {"balanced", "f1"}
    assert fitted["f1"][0] > fitted["balanced"][0]  # the rarest attribute: balanced sits near its base rate


def test_policy_thresholds_refuse_what_the_model_lacks_and_bad_cuts() -> None:
    assert policy_thresholds("probability", {}).tolist() == [0.5] * 40
    with pytest.raises(ConfigError, match="no 'f1' thresholds"):
        policy_thresholds("f1", {"balanced": [0.5] * 40})
    with pytest.raises(ConfigError, match="not one of"):
        policy_thresholds("strict", {})
    with pytest.raises(ConfigError, match=r"in \(0, 1\)"):
        policy_thresholds("probability", {}, 1.5)
    with pytest.raises(ConfigError, match="probability policy only"):
        policy_thresholds("f1", {"f1": [0.5] * 40}, 0.3)


def test_of_an_exclusive_pair_only_the_more_probable_is_listed() -> None:
    probs = np.full((2, 40), 0.1)
    probs[0, [INDEX["Bald"], INDEX["Black_Hair"], INDEX["Gray_Hair"]]] = [0.6, 0.9, 0.7]
    probs[1, [INDEX["No_Beard"], INDEX["Goatee"], INDEX["Mustache"]]] = [0.55, 0.8, 0.52]
    present = decide(probs, np.full(40, 0.5))
    listed = [{ATTRIBUTES[i] for i in np.flatnonzero(row)} for row in present]
    assert listed[0] == {"Black_Hair", "Gray_Hair"} or listed[0] == {"Black_Hair"}
    assert "Bald" not in listed[0]
    assert "Goatee" in listed[1] and "No_Beard" not in listed[1]
    # Without pairs the raw decisions stand (what evaluation scores).
    assert decide(probs, np.full(40, 0.5), pairs=()).sum() == 6


def test_shipped_pairs_hold_the_issues_contradictions() -> None:
    pairs = {frozenset(pair) for pair in EXCLUSIVE_PAIRS}
    for pair in [("Bald", "Black_Hair"), ("No_Beard", "Goatee"), ("No_Beard", "Mustache"),
                 ("Straight_Hair", "Wavy_Hair"), ("Black_Hair", "Blond_Hair")]:
        assert frozenset(pair) in pairs
    assert frozenset(("Bald", "Gray_Hair")) not in pairs  # bald men are often grey: the data says so
    assert frozenset(("Male", "Young")) not in pairs


def test_exclusive_pairs_come_from_co_occurrence() -> None:
    labels = np.zeros((1000, 3))
    labels[:100, 0] = 1            # A on 100 faces
    labels[100:300, 1] = 1         # B on 200 faces, never with A
    labels[:50, 2] = 1             # C with A on 50 faces
    assert [(a, b) for a, b, *_ in exclusive_pairs(labels, 0.03, ("A", "B", "C"))] == [("A", "B"), ("B", "C")]


def test_pairs_are_derived_from_the_training_partition_only(tmp_path: Path) -> None:
    root = make_celeba(tmp_path, identities=4, images_per_identity=3)
    partitions = [line.split()[1] for line in (root / "list_eval_partition.txt").read_text().split("\n") if line.strip()]
    assert len(celeba_split_labels(root, "train")) == partitions.count("0")
    assert celeba_split_labels(root, "train").shape[1] == 40


@pytest.fixture(scope="module")
def fitted_model(tmp_path_factory: pytest.TempPathFactory) -> DeployedModel:
    torch.manual_seed(0)
    config = Config()
    config.data.image_size = 32
    return DeployedModel.from_training(FaceAttrNet("resnet10t"), [0.2] * 40, config, 1, {}, None, None,
                                       {"f1": [0.6] * 40}, "f1")


def test_policies_survive_checkpoint_and_export(fitted_model: DeployedModel, tmp_path: Path) -> None:
    save_checkpoint(fitted_model.to_checkpoint(), tmp_path / "best.pt")
    export_model(tmp_path / "best.pt", tmp_path / "m.safetensors", "float32")
    for loaded in (DeployedModel.load(tmp_path / "best.pt"), DeployedModel.load(tmp_path / "m.safetensors")):
        assert loaded.default_decision == "f1"
        assert loaded.policy_thresholds["f1"] == (0.6,) * 40
        assert loaded.thresholds == (0.2,) * 40


def test_edited_policy_thresholds_break_the_decision_digest(fitted_model: DeployedModel, tmp_path: Path) -> None:
    save_checkpoint(fitted_model.to_checkpoint(), tmp_path / "best.pt")
    export_model(tmp_path / "best.pt", tmp_path / "m.safetensors", "float32")
    described = description_path(tmp_path / "m.safetensors")
    for key, value in [("default_decision", "balanced"), ("policy_thresholds", {"f1": [0.5] * 40})]:
        description = json.loads(described.read_text())
        description[key] = value
        described.write_text(json.dumps(description))
        with pytest.raises(CheckpointError, match="decision_sha256"):
            DeployedModel.load(tmp_path / "m.safetensors")


@pytest.mark.parametrize("change, key", [
    ({"default_decision": "strict"}, "default_decision"),
    ({"policy_thresholds": {"f1": [0.0] * 40}}, "policy_thresholds.f1"),
    ({"policy_thresholds": {"f1": [float("nan")] * 40}}, "policy_thresholds.f1"),
    ({"policy_thresholds": {"f2": [0.5] * 40}}, "policy_thresholds"),
    ({"policy_thresholds": {}, "default_decision": "f1"}, "default_decision"),
])
def test_impossible_policies_are_refused_naming_the_key(fitted_model: DeployedModel, change: dict, key: str) -> None:
    with pytest.raises(CheckpointError, match=f"'{key}'"):
        dataclasses.replace(fitted_model, **change)


def test_a_model_from_before_policies_offers_balanced_and_probability(tmp_path: Path) -> None:
    state = torch.load(untrained_checkpoint(tmp_path / "old.pt"), weights_only=True)
    del state["policy_thresholds"], state["default_decision"]
    save_checkpoint(state, tmp_path / "old.pt")
    assert Predictor(tmp_path / "old.pt", device="cpu").decision == "balanced"
    assert Predictor(tmp_path / "old.pt", device="cpu", threshold=0.7).decision == "probability"
    with pytest.raises(ConfigError, match="no 'f1' thresholds"):
        Predictor(tmp_path / "old.pt", device="cpu", decision="f1")


def test_predictor_lists_by_the_chosen_policy_most_probable_first(fitted_model: DeployedModel, tmp_path: Path) -> None:
    save_checkpoint(fitted_model.to_checkpoint(), tmp_path / "best.pt")
    image = np.random.default_rng(0).integers(0, 255, (218, 178, 3), dtype=np.uint8)
    faces = {policy: Predictor(tmp_path / "best.pt", device="cpu", decision=policy).predict_aligned([image])[0]
             for policy in (None, "balanced", "f1")}
    cut = Predictor(tmp_path / "best.pt", device="cpu", threshold=0.45).predict_aligned([image])[0]
    probabilities = faces["f1"].probabilities
    assert faces[None].decision == "f1" and faces[None].attributes == faces["f1"].attributes
    for face, threshold in [(faces["balanced"], 0.2), (faces["f1"], 0.6), (cut, 0.45)]:
        raw = {name for name, p in probabilities.items() if p >= threshold}
        assert set(face.attributes) <= raw
        assert [probabilities[n] for n in face.attributes] == sorted((probabilities[n] for n in face.attributes),
                                                                     reverse=True)
        assert face.to_dict()["present"] == {name: name in face.attributes for name in ATTRIBUTES}
    assert cut.decision == "probability"


def test_refit_keeps_weights_calibration_and_balanced_thresholds(fitted_model: DeployedModel, tmp_path: Path) -> None:
    save_checkpoint(fitted_model.to_checkpoint(), tmp_path / "best.pt")
    export_model(tmp_path / "best.pt", tmp_path / "m.safetensors", "float16")
    before = DeployedModel.load(tmp_path / "m.safetensors")
    after = refit_decisions(tmp_path / "m.safetensors", *_scores(), "probability")
    assert after.default_decision == "probability"
    assert after.policy_thresholds["f1"] != before.policy_thresholds["f1"]
    assert (after.thresholds, after.temperatures, after.offsets) == (before.thresholds, before.temperatures,
                                                                    before.offsets)
    assert all(torch.equal(after.state_dict[k], before.state_dict[k]) for k in before.state_dict)
    assert after.description["dtype"] == "float16"
