"""Tests of exported models (faceattr.training.export, tools/export_model.py) and of the default model's loading."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from faceattr import cli, load_model, predict
from faceattr.config import Config
from faceattr.errors import CheckpointError
from faceattr.inference.predictor import Predictor, _cached_predictor
from faceattr.models import deployed
from faceattr.models.deployed import DeployedModel, description_path
from faceattr.models.net import FaceAttrNet
from faceattr.models.weights_io import save_checkpoint, sha256_of
from faceattr.synthetic.drawing import draw_face, random_labels
from faceattr.training import export

#: Calibration that differs per attribute, so that a loader dropping it changes the probabilities.
TEMPERATURES = np.linspace(0.5, 3.0, 40).tolist()
OFFSETS = np.linspace(-1.0, 1.0, 40).tolist()
THRESHOLDS = np.linspace(0.2, 0.8, 40).tolist()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained ResNet-10-T at 64 px with per-attribute thresholds and calibration, and metrics."""
    torch.manual_seed(0)
    config = Config()
    config.data.image_size = 64
    metrics = {"attribute_means": {"balanced_accuracy": 0.5}, "beauty": {"pearson": float("nan"),
                                                                         "roc": {"auc": 0.5, "fpr": [0.0, 1.0]}},
               "beauty_predictions": {"predicted": [3.0], "target": [2.0]}}
    path = tmp_path_factory.mktemp("run") / "best.pt"
    save_checkpoint(DeployedModel.from_training(FaceAttrNet("resnet10t"), THRESHOLDS, config, 7, metrics, TEMPERATURES,
                                                OFFSETS).to_checkpoint(), path)
    return path


@pytest.fixture(scope="module")
def faces() -> list[np.ndarray]:
    """Three drawn faces in CelebA's aligned geometry (178x218)."""
    rng = np.random.default_rng(0)
    return [np.asarray(draw_face(random_labels(rng), rng=rng)) for _ in range(3)]


@pytest.fixture(scope="module")
def exported(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``checkpoint`` exported in float32."""
    weights = tmp_path_factory.mktemp("export") / "model.safetensors"
    export.export_model(checkpoint, weights, "float32")
    return weights


@pytest.fixture(scope="module")
def original(checkpoint: Path) -> Predictor:
    """The checkpoint's predictor, for the exports to be compared with."""
    return Predictor(checkpoint, device="cpu")


def probabilities(predictor: Predictor, faces: list[np.ndarray]) -> np.ndarray:
    return np.array([list(face.probabilities.values()) for face in predictor.predict_aligned(faces)])


def copy_pair(weights: Path, folder: Path) -> Path:
    """A copy of an exported pair in ``folder``, to damage without touching the original."""
    folder.mkdir(exist_ok=True)
    for path in (weights, description_path(weights)):
        (folder / path.name).write_bytes(path.read_bytes())
    return folder / weights.name


def test_description_holds_what_loading_and_users_need(checkpoint: Path, exported: Path) -> None:
    description = json.loads(description_path(exported).read_text())
    assert description["format"] == "faceattr-exported-model/3"
    assert description["sha256"] == sha256_of(exported)
    assert description["decision_sha256"] == deployed.decision_digest(description)
    assert description["crop"] == [0.051, 0.1665, 0.942, 0.894]
    assert (description["image_size"], description["dtype"], description["epoch"]) == (64, "float32", 7)
    assert description["thresholds"] == pytest.approx(THRESHOLDS)
    assert description["temperatures"] == pytest.approx(TEMPERATURES)
    assert description["offsets"] == pytest.approx(OFFSETS)
    assert description["model_args"]["backbone"] == "resnet10t"
    assert description["source_checkpoint"] == checkpoint.name
    assert description["config"]["data"]["image_size"] == 64
    # Per-image lists are left out, and NaN becomes null so the file is strict JSON.
    assert "beauty_predictions" not in description["metrics"]
    assert description["metrics"]["beauty"] == {"pearson": None, "roc": {"auc": 0.5}}


def test_float32_export_predicts_exactly_as_the_checkpoint(original: Predictor, exported: Path,
                                                           faces: list[np.ndarray]) -> None:
    shipped = Predictor(exported, device="cpu")
    assert np.array_equal(probabilities(shipped, faces), probabilities(original, faces))
    assert ([f.attributes for f in shipped.predict_aligned(faces)]
            == [f.attributes for f in original.predict_aligned(faces)])
    assert shipped.checkpoint == exported


def test_a_finer_stem_and_width_survive_export(faces: list[np.ndarray], tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = Config()
    config.data.image_size = 64
    network = FaceAttrNet("resnet10t", stem_stride=2, width=0.5)
    save_checkpoint(DeployedModel.from_training(network, THRESHOLDS, config, 1, {}).to_checkpoint(), tmp_path / "best.pt")
    export.export_model(tmp_path / "best.pt", tmp_path / "model.safetensors", "float32")
    loaded = DeployedModel.load(tmp_path / "model.safetensors")
    assert loaded.model_args | {"stem_stride": 2, "width": 0.5} == loaded.model_args
    assert np.array_equal(probabilities(Predictor(tmp_path / "model.safetensors", device="cpu"), faces),
                          probabilities(Predictor(tmp_path / "best.pt", device="cpu"), faces))


def test_float16_export_is_half_the_size_and_close(checkpoint: Path, exported: Path, faces: list[np.ndarray],
                                                   original: Predictor, tmp_path: Path) -> None:
    half = tmp_path / "half.safetensors"
    export.export_model(checkpoint, half, "float16")
    assert half.stat().st_size < 0.51 * exported.stat().st_size
    difference = np.abs(probabilities(Predictor(half, device="cpu"), faces)
                        - probabilities(original, faces))
    assert 0 < difference.max() < 5e-3  # measured 4e-4: rounded, not broken


def test_tampered_weights_are_refused_naming_both_hashes(exported: Path, tmp_path: Path) -> None:
    weights = copy_pair(exported, tmp_path / "tampered")
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as raised:
        load_model(weights, device="cpu")
    message = str(raised.value)
    assert str(weights) in message and "checksum" in message
    assert sha256_of(exported) in message and sha256_of(weights) in message


def test_a_hand_edited_threshold_is_refused(exported: Path, tmp_path: Path) -> None:
    weights = copy_pair(exported, tmp_path / "edited")
    description = json.loads(description_path(weights).read_text())
    description["thresholds"][0] = 0.9
    description_path(weights).write_text(json.dumps(description))
    with pytest.raises(CheckpointError, match=f"{description_path(weights)}: 'decision_sha256' does not match"):
        load_model(weights, device="cpu")


def test_a_format_1_export_is_still_read_with_celeba_crop(exported: Path, tmp_path: Path,
                                                         faces: list[np.ndarray], original: Predictor) -> None:
    weights = copy_pair(exported, tmp_path / "old")
    description = json.loads(description_path(weights).read_text())
    for key in ("crop", "decision_sha256"):
        del description[key]
    description["format"] = "faceattr-exported-model/1"
    description_path(weights).write_text(json.dumps(description))
    old = Predictor(weights, device="cpu")
    assert old.crop == (0.051, 0.1665, 0.942, 0.894)
    assert np.array_equal(probabilities(old, faces), probabilities(original, faces))


def test_missing_description_or_weights_is_named(exported: Path, tmp_path: Path) -> None:
    weights = copy_pair(exported, tmp_path / "pair")
    weights.unlink()
    with pytest.raises(CheckpointError, match=f"{weights}: weights file not found"):
        load_model(weights, device="cpu")
    alone = copy_pair(exported, tmp_path / "alone")
    export.description_path(alone).unlink()
    with pytest.raises(CheckpointError, match=f"{description_path(alone)}: model description not found"):
        load_model(alone, device="cpu")


def test_export_over_the_size_limit_leaves_nothing(checkpoint: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(export, "MAX_WEIGHTS_BYTES", 1_000_000)
    weights = tmp_path / "big.safetensors"
    with pytest.raises(CheckpointError, match="exceeds the 1 MB limit"):
        export.export_model(checkpoint, weights, "float32")
    assert list(tmp_path.iterdir()) == []


def test_export_over_the_size_limit_leaves_an_existing_pair_untouched(checkpoint: Path, exported: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    weights = copy_pair(exported, tmp_path / "shipped")
    before = {path.name: path.read_bytes() for path in (weights, description_path(weights))}
    monkeypatch.setattr(export, "MAX_WEIGHTS_BYTES", exported.stat().st_size - 1)
    with pytest.raises(CheckpointError, match="exceeds"):
        export.export_model(checkpoint, weights, "float32")
    assert {path.name: path.read_bytes() for path in weights.parent.iterdir()} == before  # no temporary files
    assert DeployedModel.load(weights).thresholds == pytest.approx(THRESHOLDS)


def test_export_replaces_an_existing_pair_leaving_no_temporary_files(checkpoint: Path, exported: Path,
                                                                    tmp_path: Path) -> None:
    weights = copy_pair(exported, tmp_path / "shipped")
    description = export.export_model(checkpoint, weights, "float16")
    assert sorted(path.name for path in weights.parent.iterdir()) == ["model.json", "model.safetensors"]
    assert description["dtype"] == "float16" and DeployedModel.load(weights).description["dtype"] == "float16"


def test_export_tool_refuses_the_package_folder_without_into_package(checkpoint: Path, run_tool) -> None:
    before = sha256_of(deployed.DEFAULT_MODEL)
    result = run_tool("export_model", checkpoint, "--check-count", "1")
    assert result.status == 2 and "--into-package" in result.err
    assert sha256_of(deployed.DEFAULT_MODEL) == before


@pytest.fixture
def no_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Points the default model at a file that does not exist, as before a model is installed."""
    missing = tmp_path / "weights" / "default.safetensors"
    monkeypatch.setattr(deployed, "DEFAULT_MODEL", missing)
    _cached_predictor.cache_clear()
    return missing


def test_without_a_default_model_no_argument_calls_say_how_to_name_one(no_default: Path, capsys) -> None:
    for call in (lambda: predict(np.zeros((8, 8, 3), np.uint8)), load_model, Predictor):
        with pytest.raises(CheckpointError, match=f"no default model is installed.*{no_default}.*--model PATH"):
            call()


def test_cli_without_model_or_default_exits_2_with_the_message(no_default: Path, tmp_path: Path, faces, capsys) -> None:
    image = tmp_path / "face.png"
    draw_face({}).save(image)
    assert cli.main(["predict", str(image), "--aligned"]) == 2
    assert "no default model is installed" in capsys.readouterr().err


@pytest.fixture
def installed(exported: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Installs ``exported`` as the default model (by pointing the default path at it)."""
    monkeypatch.setattr(deployed, "DEFAULT_MODEL", exported)
    _cached_predictor.cache_clear()
    yield exported
    _cached_predictor.cache_clear()


def test_predict_without_model_uses_the_default(installed: Path, original: Predictor, faces: list[np.ndarray]) -> None:
    [face] = predict(faces[0], aligned=True)
    assert face.probabilities == original.predict_aligned(faces[:1])[0].probabilities
    assert _cached_predictor(deployed.DEFAULT_MODEL, None, None).checkpoint == installed


def test_cli_without_model_uses_the_default(installed: Path, original: Predictor, tmp_path: Path, capsys) -> None:
    image = tmp_path / "face.png"
    draw_face({"Smiling": True}).save(image)
    assert cli.main(["predict", str(image), "--aligned", "--json", "--device", "cpu"]) == 0
    [result] = json.loads(capsys.readouterr().out)
    [expected] = original.predict_aligned([image])
    assert result["faces"][0]["probabilities"] == pytest.approx(expected.probabilities, abs=1e-12)
    assert result["faces"][0]["box"] == [0.0, 0.0, 178.0, 218.0]


def test_export_tool_writes_a_loadable_pair(checkpoint: Path, tmp_path: Path, run_tool) -> None:
    result = run_tool("export_model", checkpoint, "--out", tmp_path, "--name", "team", "--check-count", "4")
    assert result.status == 0, result.err
    assert "max probability difference" in result.out and "float16" in result.out
    assert json.loads((tmp_path / "team.json").read_text())["dtype"] == "float16"
    assert DeployedModel.load(tmp_path / "team.safetensors").thresholds == pytest.approx(THRESHOLDS)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["team.json", "team.safetensors"]
