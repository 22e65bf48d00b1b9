"""Tests of faceattr.inference.predictor on awkward inputs: many images in bounded memory, tiny and huge images,
failing detection, OpenCV's BGR arrays."""

from __future__ import annotations

import weakref
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceattr.errors import ImageError
from faceattr.image import PREDICTION_MAX_PIXELS, read_reduced
from faceattr.inference import predictor as predictor_module
from faceattr.inference.detect import Detection, FaceDetector
from faceattr.inference.predictor import Predictor, predict
from faceattr.synthetic.drawing import draw_face

OBAMA_AND_BIDEN = "faces/face_recognition/examples/knn_examples/test/obama_and_biden.jpg"


class CentreDetector(FaceDetector):
    """A stand-in that finds one face in the middle half of every image of at least 20 px, so the network runs."""

    def detect(self, image: np.ndarray) -> list[Detection]:
        height, width = image.shape[:2]
        if min(height, width) < 20:
            return []
        return [Detection((width / 4, height / 4, 3 * width / 4, 3 * height / 4), 1.0, None)]

    def detect_batch(self, images: list[np.ndarray]) -> list[list[Detection]]:
        return [self.detect(image) for image in images]


def face_photo(seed: int, size: tuple[int, int] = (120, 150)) -> np.ndarray:
    """A drawn face, RGB."""
    return np.asarray(draw_face({"Male": seed % 2 == 0}, size=size, rng=np.random.default_rng(seed)).convert("RGB"))


def numbers(results: list) -> list[list[float]]:
    return [[v for face in r.faces for v in (*face.box, *face.probabilities.values(), face.beauty)] for r in results]


@pytest.fixture(scope="module")
def centred(checkpoint: Path) -> Predictor:
    return Predictor(checkpoint, device="cpu", batch_size=3, detector=CentreDetector())


def test_predict_many_holds_at_most_batch_size_decoded_images(centred: Predictor, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    class Decoded(np.ndarray):
        """A decoded image whose lifetime is followed (plain arrays take no weak references)."""

    live: set[int] = set()
    most = 0

    def counting_reader(*args, **kwargs):
        nonlocal most
        array, size = read_reduced(*args, **kwargs)
        tracked = array.view(Decoded)
        live.add(id(tracked))
        weakref.finalize(tracked, live.discard, id(tracked))
        most = max(most, len(live))
        return tracked, size

    paths = []
    for seed in range(8):
        paths.append(tmp_path / f"{seed}.png")
        Image.fromarray(face_photo(seed)).save(paths[-1])
    expected = [centred.predict(path) for path in paths]
    monkeypatch.setattr(predictor_module, "read_reduced", counting_reader)
    results = centred.predict_many(paths)
    assert most == 3  # batch_size, not 8
    assert [len(r.faces) for r in results] == [1] * 8
    # Chunking changes no result: each equals the image predicted alone.
    assert np.allclose(numbers(results), [[v for f in faces for v in (*f.box, *f.probabilities.values(), f.beauty)]
                                          for faces in expected], atol=1e-6)
    assert [r.faces[0].attributes for r in results] == [faces[0].attributes for faces in expected]


def test_images_too_small_for_a_face_have_none_and_keep_the_others(checkpoint: Path) -> None:
    mtcnn = Predictor(checkpoint, device="cpu", batch_size=4)
    inputs = [face_photo(0, (1, 1)), face_photo(1, (12, 12)), face_photo(2, (24, 18)), face_photo(3, (4000, 30)),
              np.full((120, 160, 3), 200, np.uint8)]
    results = mtcnn.predict_many(inputs)
    assert [(r.error, r.faces) for r in results] == [(None, [])] * 5
    assert mtcnn.predict(face_photo(1, (12, 12))) == []


def test_detection_failing_on_one_image_is_its_error_only(checkpoint: Path) -> None:
    class FailsOnSquares(CentreDetector):
        def detect(self, image: np.ndarray) -> list[Detection]:
            if image.shape[0] == image.shape[1]:
                raise RuntimeError("out of memory")
            return super().detect(image)

    failing = Predictor(checkpoint, device="cpu", detector=FailsOnSquares())
    results = failing.predict_many([face_photo(0), face_photo(1, (64, 64)), face_photo(2)])
    assert [r.error for r in results] == [None, "<array>: face detection failed: out of memory", None]
    assert [len(r.faces) for r in results] == [1, 0, 1]


def test_images_over_max_pixels_are_refused_each_naming_file_and_sizes(checkpoint: Path, tmp_path: Path) -> None:
    big, small = tmp_path / "big.png", tmp_path / "small.png"
    Image.fromarray(face_photo(0, (100, 60))).save(big)
    Image.fromarray(face_photo(1, (50, 60))).save(small)
    limited = Predictor(checkpoint, device="cpu", detector=CentreDetector(), max_pixels=5000)
    message = f"{big}: 100x60 image (6,000 pixels) is over the prediction limit (max_pixels) of 5,000 pixels"
    results = limited.predict_many([big, small])
    assert [r.error for r in results] == [message, None] and len(results[1].faces) == 1
    with pytest.raises(ImageError) as caught:
        limited.predict(big)
    assert str(caught.value) == message
    assert Predictor(checkpoint, device="cpu").max_pixels == PREDICTION_MAX_PIXELS


def test_bgr_arrays_give_the_results_of_rgb(centred: Predictor, monkeypatch: pytest.MonkeyPatch) -> None:
    rgb = face_photo(4)
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    expected = centred.predict(rgb)
    assert centred.predict(bgr) != expected  # the channel order matters to the network
    assert centred.predict(bgr, bgr=True) == expected
    # Two faces share one network batch, whose kernels may round differently from a batch of one.
    for result in centred.predict_many([bgr, bgr], bgr=True):
        (face,) = result.faces
        assert face.box == expected[0].box and face.attributes == expected[0].attributes
        assert list(face.probabilities.values()) == pytest.approx(list(expected[0].probabilities.values()), abs=1e-5)
    assert centred.predict_aligned([bgr], bgr=True) == centred.predict_aligned([rgb])
    monkeypatch.setattr(predictor_module, "_cached_predictor", lambda checkpoint, *policy: centred)
    assert predict(bgr, bgr=True) == expected
    assert predict([bgr], bgr=True)[0].faces == expected


@pytest.mark.real_data
def test_opencv_imread_with_bgr_gives_the_faces_of_the_file(shared_data: Path, checkpoint: Path) -> None:
    import cv2

    mtcnn = Predictor(checkpoint, device="cpu")
    path = shared_data / OBAMA_AND_BIDEN
    expected = mtcnn.predict(path)
    faces = mtcnn.predict(cv2.imread(str(path)), bgr=True)
    assert len(faces) == len(expected) == 3
    assert np.allclose([f.box for f in faces], [f.box for f in expected], atol=1e-3)
