"""Tests of faceattr.inference.detect: MTCNN on real photos, downscaling of large photos, batches, Haar."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from faceattr.errors import DetectorError
from faceattr.inference.detect import Detection, FaceDetector

MULTIFACE = "faces/facenet-pytorch/data/multiface.jpg"
TWO_PEOPLE = "faces/face_recognition/examples/two_people.jpg"
OBAMA_AND_BIDEN = "faces/face_recognition/examples/knn_examples/test/obama_and_biden.jpg"
OBAMA_480P = "faces/face_recognition/examples/obama-480p.jpg"

#: Faces in each photo, counted by eye: the six Friends; Obama and Biden side by side; Biden,
#: Obama and the girl looking down at the bottom right (the woman at the right edge shows no face).
TRUE_COUNTS = {MULTIFACE: 6, TWO_PEOPLE: 2, OBAMA_AND_BIDEN: 3}

HAS_HAAR = hasattr(cv2, "CascadeClassifier")


def load(root: Path, name: str) -> np.ndarray:
    """An RGB uint8 array of a shared photo."""
    return np.asarray(Image.open(root / name).convert("RGB"))


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    """One MTCNN detector for the module (its networks load once)."""
    return FaceDetector()


@pytest.fixture(scope="module")
def cache() -> dict[str, list[Detection]]:
    """Detections of each shared photo, computed once per module."""
    return {}


def found(detector: FaceDetector, cache: dict[str, list[Detection]], root: Path, name: str) -> list[Detection]:
    """``detector.detect`` of a shared photo, run once per module."""
    if name not in cache:
        cache[name] = detector.detect(load(root, name))
    return cache[name]


def test_to_dict_gives_plain_lists_and_floats() -> None:
    points = np.arange(10, dtype=np.float32).reshape(5, 2)
    data = Detection((1.0, 2.0, 30.0, 40.0), np.float32(0.5), points).to_dict()
    assert data == {"box": [1.0, 2.0, 30.0, 40.0], "score": 0.5, "landmarks": points.tolist()}
    assert type(data["score"]) is float and type(data["landmarks"][0][0]) is float


def test_unknown_kind_lists_the_kinds() -> None:
    with pytest.raises(ValueError, match="'dlib' is not one of mtcnn, haar"):
        FaceDetector("dlib")


@pytest.mark.parametrize(("image", "expected"), [
    (np.zeros((8, 8, 3), np.float32), "expected dtype uint8"),
    (np.zeros((8, 8), np.uint8), r"expected shape \(H, W, 3\)"),
    (np.zeros((8, 8, 4), np.uint8), r"expected shape \(H, W, 3\)"),
    ([[0, 0, 0]], "expected an RGB uint8 numpy array"),
])
def test_bad_input_says_what_was_expected(detector: FaceDetector, image: object, expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        detector.detect(image)  # type: ignore[arg-type]


def test_batch_error_names_the_bad_image(detector: FaceDetector) -> None:
    with pytest.raises(ValueError, match=r"images\[1\]: expected dtype uint8"):
        detector.detect_batch([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.int64)])


def test_blank_image_has_no_faces(detector: FaceDetector) -> None:
    assert detector.detect(np.full((240, 320, 3), 128, np.uint8)) == []


def photo_like(height: int, width: int) -> np.ndarray:
    """A drawn face resized to ``width`` x ``height``: a photo shrunk, not a flat colour."""
    from faceattr.synthetic.drawing import draw_face

    return np.asarray(draw_face({"Male": True}, size=(width, height)).convert("RGB"))


#: Images whose shorter side, or whose downscaled copy's, is under the 20 px smallest face: MTCNN
#: has no pyramid level for them (it raised ``torch.cat(): expected a non-empty list``).
TOO_SMALL = {"1x1": (1, 1), "12x12": (12, 12), "photo 24x18": (18, 24), "19 px": (19, 400),
             "30x4000 banner": (30, 4000), "4000x30 banner": (4000, 30)}


@pytest.mark.parametrize("kind", ["mtcnn", pytest.param("haar", marks=pytest.mark.skipif(
    not HAS_HAAR, reason="no Haar cascades"))])
@pytest.mark.parametrize("name", sorted(TOO_SMALL))
def test_image_too_small_for_a_face_has_none(detector: FaceDetector, kind: str, name: str) -> None:
    image = photo_like(*TOO_SMALL[name])
    assert (detector if kind == "mtcnn" else FaceDetector("haar")).detect(image) == []


def test_batch_with_too_small_images_keeps_every_result(detector: FaceDetector) -> None:
    images = [photo_like(*TOO_SMALL["12x12"]), photo_like(40, 40), photo_like(*TOO_SMALL["30x4000 banner"]),
              photo_like(12, 12), np.full((240, 320, 3), 128, np.uint8)]
    assert detector.detect_batch(images) == [[] for _ in images]


def test_smallest_image_mtcnn_can_scan_is_still_detected(monkeypatch: pytest.MonkeyPatch) -> None:
    """The limit is MTCNN's own: at min_face_size 10 a 12x12 image has a pyramid level and is scanned."""
    from facenet_pytorch import MTCNN

    seen = []
    original = MTCNN.detect
    monkeypatch.setattr(MTCNN, "detect", lambda self, image, landmarks=False: (
        seen.append(image.shape), original(self, image, landmarks=landmarks))[1])
    assert FaceDetector(min_face_size=10).detect(photo_like(12, 12)) == []
    assert FaceDetector(min_face_size=20).detect(photo_like(20, 20)) == []
    assert FaceDetector(min_face_size=20).detect(photo_like(19, 20)) == []
    assert seen == [(12, 12, 3), (20, 20, 3)]


def test_large_image_is_detected_on_a_copy_at_most_max_side(monkeypatch: pytest.MonkeyPatch) -> None:
    from facenet_pytorch import MTCNN

    seen = []
    original = MTCNN.detect

    def spy(self: MTCNN, image: np.ndarray, landmarks: bool = False) -> tuple:
        seen.append((image.shape, self.min_face_size))
        return original(self, image, landmarks=landmarks)

    monkeypatch.setattr(MTCNN, "detect", spy)
    image = np.full((1500, 2000, 3), 90, np.uint8)
    for min_face_size in (20, 200):
        assert FaceDetector(min_face_size=min_face_size, max_side=400).detect(image) == []
    # 2000 -> 400 px is a factor 5: a 200 px face becomes 40 px; 20 px would be 4, floored at 20.
    assert seen == [((300, 400, 3), 20), ((300, 400, 3), 40)]


def test_needed_side_keeps_the_smallest_face_found_at_the_width_asked() -> None:
    detector = FaceDetector(max_side=1000)
    # The smallest face found is 20 px of a 1000 px copy (2% of the longer side): 40 px needs 2000 px.
    assert detector.needed_side(40) == 2000
    assert detector.needed_side(1) == 1000  # never below what the detector looks at


@pytest.mark.real_data
@pytest.mark.parametrize("name", sorted(TRUE_COUNTS))
def test_finds_every_face(shared_data: Path, detector: FaceDetector, cache: dict, name: str) -> None:
    assert len(found(detector, cache, shared_data, name)) == TRUE_COUNTS[name]


@pytest.mark.real_data
def test_faces_come_best_first_above_min_score(shared_data: Path, detector: FaceDetector, cache: dict) -> None:
    scores = [face.score for face in found(detector, cache, shared_data, MULTIFACE)]
    assert scores == sorted(scores, reverse=True) and min(scores) >= detector.min_score


@pytest.mark.real_data
def test_landmarks_lie_inside_their_box_eyes_above_mouth(shared_data: Path, detector: FaceDetector,
                                                         cache: dict) -> None:
    faces = [face for name in TRUE_COUNTS for face in found(detector, cache, shared_data, name)]
    assert len(faces) == sum(TRUE_COUNTS.values())
    for face in faces:
        x1, y1, x2, y2 = face.box
        points = face.landmarks
        assert points.shape == (5, 2) and points.dtype == np.float32
        assert ((points[:, 0] > x1) & (points[:, 0] < x2) & (points[:, 1] > y1) & (points[:, 1] < y2)).all()
        left_eye, right_eye, _, mouth_left, mouth_right = points
        assert max(left_eye[1], right_eye[1]) < min(mouth_left[1], mouth_right[1])
        assert left_eye[0] < right_eye[0] and mouth_left[0] < mouth_right[0]


@pytest.mark.real_data
def test_upscaled_photo_gives_the_same_boxes_scaled(shared_data: Path, detector: FaceDetector,
                                                    cache: dict) -> None:
    image = load(shared_data, TWO_PEOPLE)
    height, width = image.shape[:2]
    big = cv2.resize(image, (4 * width, 4 * height), interpolation=cv2.INTER_CUBIC)  # 4096 x 2404
    expected = np.array([face.box for face in found(detector, cache, shared_data, TWO_PEOPLE)]) * 4
    boxes = np.array([face.box for face in detector.detect(big)])
    assert boxes.shape == expected.shape
    order = np.argsort(boxes[:, 0]), np.argsort(expected[:, 0])  # same faces, any score order
    sizes = (expected[:, 2:] - expected[:, :2])[order[1]]
    error = np.abs(boxes[order[0]] - expected[order[1]]) / np.tile(sizes, 2)
    assert error.max() < 0.05


@pytest.mark.real_data
def test_batch_of_mixed_sizes_equals_one_at_a_time(shared_data: Path, detector: FaceDetector, cache: dict) -> None:
    two_people = load(shared_data, TWO_PEOPLE)
    # The blank frame has two_people's size, so MTCNN batches a frame with faces and one without.
    images = [two_people, load(shared_data, OBAMA_480P), np.full_like(two_people, 200), two_people]
    batch = detector.detect_batch(images)
    assert [len(faces) for faces in batch] == [2, 1, 0, 2]
    one_by_one = [found(detector, cache, shared_data, TWO_PEOPLE), detector.detect(images[1]), [],
                  found(detector, cache, shared_data, TWO_PEOPLE)]
    for faces, expected in zip(batch, one_by_one):
        for face, other in zip(faces, expected):
            np.testing.assert_allclose(face.box, other.box, atol=0.5)
            np.testing.assert_allclose(face.landmarks, other.landmarks, atol=0.5)
            assert face.score == pytest.approx(other.score, abs=1e-4)


@pytest.mark.real_data
@pytest.mark.skipif(not HAS_HAAR, reason=f"OpenCV {cv2.__version__} has no Haar cascades")
def test_haar_finds_the_face_boxes_only(shared_data: Path) -> None:
    faces = FaceDetector("haar").detect(load(shared_data, OBAMA_480P))
    assert len(faces) == 1 and faces[0].landmarks is None and faces[0].score == 1.0
    x1, y1, x2, y2 = faces[0].box
    assert x1 < 445 < x2 and y1 < 124 < y2  # the box holds the nose, which MTCNN puts at about (445, 124)


def test_haar_without_cascades_says_how_to_get_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(cv2, "CascadeClassifier", raising=False)  # as in OpenCV 5
    with pytest.raises(DetectorError, match="opencv-python-headless<5"):
        FaceDetector("haar").detect(np.zeros((32, 32, 3), np.uint8))
