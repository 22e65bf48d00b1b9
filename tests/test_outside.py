"""Faces whose crop falls outside the photo: the share reported per face, the border the predictor fills it with, the CLI note."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from faceattr import FaceResult, ImageResult, Predictor
from faceattr.cli import format_result
from faceattr.geometry import CELEBA_CROP, CELEBA_SIZE
from faceattr.image import crop_box
from faceattr.inference import align
from faceattr.inference.detect import Detection, FaceDetector
from faceattr.inference.results import OUTSIDE_NOTE
from faceattr.prep.alignment_check import measure_borders
from faceattr.synthetic.fixtures import make_celeba

#: CelebA's landmarks moved so that the model's crop sticks out of the photo's left edge by a
#: quarter of its width and out of its top edge by half its height: 62.5% of it lies outside.
LEFT, TOP, RIGHT, BOTTOM = crop_box(CELEBA_SIZE, CELEBA_CROP)
AT_THE_CORNER = align.template() - [LEFT + 0.25 * (RIGHT - LEFT), TOP + 0.5 * (BOTTOM - TOP)]


class LandmarkDetector(FaceDetector):
    """A detector stand-in that reports one face with fixed landmarks."""

    def __init__(self, landmarks: np.ndarray):
        super().__init__()
        self.landmarks = landmarks

    def detect(self, image: np.ndarray) -> list[Detection]:
        return [Detection((0.0, 0.0, 50.0, 50.0), 1.0, self.landmarks)]

    def detect_batch(self, images: list[np.ndarray]) -> list[list[Detection]]:
        return [self.detect(image) for image in images]


@pytest.fixture(scope="module")
def corner_predictor(checkpoint: Path) -> Predictor:
    return Predictor(checkpoint, device="cpu", detector=LandmarkDetector(AT_THE_CORNER))


def photo() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (218, 178, 3), dtype=np.uint8)


def test_a_face_at_the_photo_corner_reports_the_share_of_its_crop_outside(corner_predictor: Predictor) -> None:
    face, = corner_predictor.predict(photo())
    assert face.outside == pytest.approx(0.625)
    assert corner_predictor.predict_many([photo()])[0].faces[0].outside == pytest.approx(0.625)
    assert face.to_dict()["outside"] == face.outside


def test_aligned_inputs_have_nothing_outside(corner_predictor: Predictor) -> None:
    assert corner_predictor.predict_aligned([photo()])[0].outside == 0.0


def test_the_predictor_fills_the_outside_with_the_default_border(corner_predictor: Predictor,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    used = []
    warp = cv2.warpAffine
    monkeypatch.setattr(cv2, "warpAffine", lambda *args, **kwargs: used.append(kwargs["borderMode"]) or warp(*args, **kwargs))
    corner_predictor.predict(photo())
    assert used == [getattr(cv2, f"BORDER_{align.DEFAULT_BORDER.upper()}")]
    assert align.DEFAULT_BORDER in align.BORDER_MODES


def test_face_result_built_without_outside_has_nothing_outside() -> None:
    assert FaceResult((0.0, 0.0, 9.0, 9.0), 0.99, None, {"Male": 0.9}, ("Male",), 3.0).outside == 0.0


@pytest.mark.parametrize("outside, note", [(0.35, "  (crop 35% outside the photo)"), (OUTSIDE_NOTE, ""), (0.0, "")])
def test_the_cli_notes_faces_whose_crop_is_largely_outside(outside: float, note: str) -> None:
    face = FaceResult((0.0, 0.0, 9.0, 9.0), 0.99, None, {"Male": 0.9}, ("Male",), 3.0, outside=outside)
    line, = format_result(ImageResult("a.jpg", [face]))
    assert line == f"a.jpg  face 1  box (0,0,9,9)  beauty 3.00  Male 0.90{note}"


class CelebaFrameDetector(FaceDetector):
    """A detector stand-in for centred cuts of CelebA-framed images: CelebA's landmarks, moved with the cut."""

    def detect(self, image: np.ndarray) -> list[Detection]:
        cut = (np.array(CELEBA_SIZE) - [image.shape[1], image.shape[0]]) / 2
        return [Detection((0.0, 0.0, 50.0, 50.0), 1.0, align.template() - np.round(cut))]


def test_measure_borders_scores_every_mode_on_tight_cuts(checkpoint: Path, tmp_path: Path) -> None:
    root = make_celeba(tmp_path, identities=12, images_per_identity=2, seed=3)
    predictor = Predictor(checkpoint, device="cpu", detector=CelebaFrameDetector(), decision="balanced")
    summary = measure_borders(predictor, root, keeps=(1.0, 0.6))
    assert summary["found"] == summary["images"] > 0
    whole, tight = summary["rows"][1.0], summary["rows"][0.6]
    assert set(whole) == {*align.BORDER_MODES, "predictor"}
    # Nothing is outside an untouched image, so every mode sees the same pixels.
    assert summary["outside"][1.0] == 0.0 and len({whole[mode] for mode in align.BORDER_MODES}) == 1
    assert summary["outside"][0.6] > 0.3 and all(0.0 <= score <= 1.0 for score in tight.values())


def test_measure_borders_wants_the_balanced_policy(checkpoint: Path, tmp_path: Path) -> None:
    predictor = Predictor(checkpoint, device="cpu", detector=CelebaFrameDetector(), decision="probability")
    with pytest.raises(ValueError, match="decision='balanced'"):
        measure_borders(predictor, tmp_path)
