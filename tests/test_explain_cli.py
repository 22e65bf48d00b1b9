"""Grad-CAM per face of a photo (faceattr.explain.maps), faceattr.explain(...) and ``faceattr explain``.

The maps are checked on examples/astronaut.jpg (one smiling face) with the installed default model.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

import faceattr
from faceattr.cli import EXIT_OK, EXIT_UNREADABLE, EXIT_USAGE, main
from faceattr.errors import ConfigError
from faceattr.explain.gradcam import region_share
from faceattr.explain.maps import FaceExplanation, explain_photo, overlay, torch_module
from faceattr.inference.predictor import Predictor, load_model

ASTRONAUT = Path(__file__).resolve().parents[1] / "examples" / "astronaut.jpg"
PHOTO_SIZE = (512, 512)  # astronaut.jpg's (height, width)


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return load_model(device="cpu", backend="torch")


@pytest.fixture(scope="module")
def astronaut(predictor: Predictor) -> FaceExplanation:
    faces = explain_photo(predictor, ASTRONAUT, ["Smiling", "Bangs", "Eyeglasses", "beauty"])
    assert len(faces) == 1
    return faces[0]


def _crop_landmarks(face: FaceExplanation) -> np.ndarray:
    """The face's 5 landmarks moved into crop pixels by the explanation's own warp."""
    points = np.array(face.face.landmarks)
    return points @ face.matrix[:, :2].T + face.matrix[:, 2]


def _box_around(points: np.ndarray, margin: float) -> tuple[float, float, float, float]:
    """The box around ``points`` grown by ``margin`` pixels each side."""
    return (points[:, 0].min() - margin, points[:, 1].min() - margin,
            points[:, 0].max() + margin, points[:, 1].max() + margin)


def test_maps_cover_the_crop_and_the_photo_in_0_1(astronaut: FaceExplanation, predictor: Predictor) -> None:
    side = predictor.image_size
    assert astronaut.crop.shape == (side, side, 3) and astronaut.crop.dtype == np.uint8
    assert astronaut.targets == ["Smiling", "Bangs", "Eyeglasses", "beauty"]
    for target in astronaut.targets:
        crop_map, photo_map = astronaut.crop_maps[target], astronaut.photo_maps[target]
        assert crop_map.shape == (side, side) and photo_map.shape == PHOTO_SIZE
        for values in (crop_map, photo_map):
            assert values.dtype == np.float32 and values.min() >= 0.0 and values.max() <= 1.0
    # A present attribute's evidence is somewhere: its map reaches 1; an absent one may be all 0.
    assert astronaut.crop_maps["Smiling"].max() == pytest.approx(1.0)


def test_the_crop_is_the_warp_of_the_photo_by_its_matrix(astronaut: FaceExplanation) -> None:
    landmarks = _crop_landmarks(astronaut)
    # Eyes above the mouth, left eye left of the right one, all inside the crop.
    assert landmarks[0, 0] < landmarks[1, 0] and landmarks[:2, 1].max() < landmarks[3:, 1].min()
    assert (landmarks > 0).all() and (landmarks < astronaut.crop.shape[0]).all()


def test_photo_maps_are_zero_far_from_the_face(astronaut: FaceExplanation) -> None:
    x1, y1, x2, y2 = astronaut.face.box
    for target in astronaut.targets:
        photo_map = astronaut.photo_maps[target]
        for corner in (photo_map[:64, :64], photo_map[:64, -64:], photo_map[-64:, :64], photo_map[-64:, -64:]):
            assert corner.max() == 0.0
        assert photo_map[400:, :].max() == 0.0  # the suit, far below the face (box bottom ~173)
    # The map's mass sits around the face box.
    smiling = astronaut.photo_maps["Smiling"]
    grown = (x1 - (x2 - x1), y1 - (y2 - y1), x2 + (x2 - x1), y2 + (y2 - y1))
    assert region_share(smiling, grown) == pytest.approx(1.0)


def test_smiling_looks_at_the_mouth_more_than_bangs_does(astronaut: FaceExplanation) -> None:
    # Measured on the default model (layer3, a 4x4 grid at 64 px): Smiling 0.307 of its mass in the mouth box,
    # Bangs 0.0; Smiling's eyes box 0.275. Eyeglasses (p = 0.01) looks at the eyes: 0.134 there, 0.066 at the mouth.
    margin = 0.1 * astronaut.crop.shape[0]
    landmarks = _crop_landmarks(astronaut)
    mouth, eyes = _box_around(landmarks[3:], margin), _box_around(landmarks[:2], margin)
    smiling_mouth = region_share(astronaut.crop_maps["Smiling"], mouth)
    assert smiling_mouth > 1.5 * region_share(astronaut.crop_maps["Bangs"], mouth)
    assert smiling_mouth > region_share(astronaut.crop_maps["Smiling"], eyes)
    eyeglasses = astronaut.crop_maps["Eyeglasses"]
    assert region_share(eyeglasses, eyes) > 1.5 * region_share(eyeglasses, mouth)


def test_default_targets_are_top_present_attributes_and_beauty(predictor: Predictor) -> None:
    (face,) = explain_photo(predictor, ASTRONAUT)
    assert face.targets == [*face.face.attributes[:3], "beauty"]


def test_unknown_targets_and_the_onnx_backend_are_refused(predictor: Predictor) -> None:
    with pytest.raises(ConfigError, match="unknown attribute 'Smilng'.*Smiling"):
        explain_photo(predictor, ASTRONAUT, ["Smilng"])
    with pytest.raises(ConfigError, match="torch backend"):
        torch_module(SimpleNamespace(backend="onnx", model=object()))


def test_no_face_gives_no_explanation(predictor: Predictor) -> None:
    assert explain_photo(predictor, np.full((200, 200, 3), 128, np.uint8), ["Smiling"]) == []


def test_public_explain_function() -> None:
    (face,) = faceattr.explain(str(ASTRONAUT), attribute="Smiling", beauty=True)
    assert face.targets == ["Smiling", "beauty"] and face.photo_maps["beauty"].shape == PHOTO_SIZE
    with pytest.raises(ConfigError, match="Smilng"):
        faceattr.explain(str(ASTRONAUT), attribute="Smilng")


def test_overlay_tints_only_where_the_map_is_positive() -> None:
    image = np.full((8, 8, 3), 100, np.uint8)
    cam = np.zeros((8, 8), np.float32)
    cam[2:4, 2:4] = 1.0
    blended = overlay(image, cam)
    assert blended.dtype == np.uint8 and blended.shape == image.shape
    assert (blended[cam == 0] == 100).all() and (blended[2:4, 2:4] != 100).any()
    # A faint value tints in proportion: a tenth of the map is at most a tenth of the colour (JET's 232 blue).
    faint = overlay(np.zeros((1, 1, 3), np.uint8), np.full((1, 1), 0.1, np.float32), opacity=1.0)
    assert 0 < int(faint.max()) <= round(0.1 * 255)
    with pytest.raises(ConfigError, match="does not match"):
        overlay(image, np.zeros((4, 4)))


@pytest.fixture
def loaded(predictor: Predictor, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI reuses the module's predictor: loading the model and MTCNN again per run costs seconds."""
    monkeypatch.setattr("faceattr.cli.load_predictor", lambda *args, **kwargs: predictor)


def test_cli_writes_the_pngs_and_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                      loaded: None) -> None:
    out = tmp_path / "maps"
    arguments = ["explain", str(ASTRONAUT), "--attribute", "Smiling", "--beauty", "--out", str(out), "--device", "cpu"]
    assert main(arguments) == EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    names = sorted(path.name for path in out.iterdir())
    assert names == ["astronaut_face1_Smiling_crop.png", "astronaut_face1_Smiling_photo.png",
                     "astronaut_face1_beauty_crop.png", "astronaut_face1_beauty_photo.png"]
    assert len(lines) == 2 and "face 1  Smiling" in lines[0] and "Smiling_photo.png" in lines[0]
    with Image.open(out / "astronaut_face1_Smiling_photo.png") as photo:
        assert photo.size == PHOTO_SIZE[::-1] and photo.mode == "RGB"
    before = (out / "astronaut_face1_Smiling_crop.png").read_bytes()
    (out / "astronaut_face1_beauty_photo.png").write_bytes(b"mine")
    assert main(arguments) == EXIT_UNREADABLE
    stderr = capsys.readouterr().err
    assert "astronaut_face1_Smiling_crop.png exists; not overwritten" in stderr
    assert (out / "astronaut_face1_Smiling_crop.png").read_bytes() == before
    assert (out / "astronaut_face1_beauty_photo.png").read_bytes() == b"mine"


def test_cli_unknown_attribute_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["explain", str(ASTRONAUT), "--attribute", "Smilng", "--out", str(tmp_path)]) == EXIT_USAGE
    stderr = capsys.readouterr().err
    assert "unknown attribute 'Smilng'" in stderr and "Smiling" in stderr and "Wearing_Hat" in stderr
    assert list(tmp_path.iterdir()) == []


def test_cli_says_no_face(tmp_path: Path, capsys: pytest.CaptureFixture, loaded: None) -> None:
    blank = tmp_path / "blank.png"
    Image.new("RGB", (200, 200), (128, 128, 128)).save(blank)
    assert main(["explain", str(blank), "--out", str(tmp_path / "maps"), "--device", "cpu"]) == EXIT_OK
    assert capsys.readouterr().out.strip().endswith("blank.png  no face")
    assert list((tmp_path / "maps").iterdir()) == []


def test_cli_refuses_an_output_folder_holding_an_input(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    photo = tmp_path / "astronaut.jpg"
    photo.write_bytes(ASTRONAUT.read_bytes())
    assert main(["explain", str(photo), "--out", str(tmp_path)]) == EXIT_USAGE
    assert "is or holds an input" in capsys.readouterr().err


def test_cli_layer_is_passed_through_and_a_bad_one_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                                     loaded: None) -> None:
    crops = []
    for layer in ("-1", "backbone.layer3"):
        out = tmp_path / f"maps{layer}"
        arguments = ["explain", str(ASTRONAUT), "--attribute", "Smiling", "--layer", layer, "--out", str(out)]
        assert main(arguments) == EXIT_OK
        crops.append((out / "astronaut_face1_Smiling_crop.png").read_bytes())
    assert crops[0] != crops[1]  # layer3's 4x4 map is not layer4's 2x2 one
    assert main(["explain", str(ASTRONAUT), "--layer", "backbone.layer9", "--out", str(tmp_path / "bad")]) == EXIT_USAGE
    stderr = capsys.readouterr().err
    assert "'backbone.layer9' is not a module" in stderr and "backbone.layer3" in stderr
    assert not (tmp_path / "bad").exists()


def test_explain_photo_at_a_chosen_layer(predictor: Predictor, astronaut: FaceExplanation) -> None:
    (face,) = explain_photo(predictor, ASTRONAUT, ["Smiling"], layer="backbone.layer4")
    assert face.crop_maps["Smiling"].shape == astronaut.crop_maps["Smiling"].shape
    assert not np.allclose(face.crop_maps["Smiling"], astronaut.crop_maps["Smiling"])  # the default is layer3
    with pytest.raises(ConfigError, match="'layer9' is not a module"):
        explain_photo(predictor, ASTRONAUT, ["Smiling"], layer="layer9")
