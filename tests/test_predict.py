"""Tests of faceattr.inference.predictor: input reading, the Predictor on real photos, batching, errors."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import untrained_checkpoint
from PIL import Image

from faceattr import ATTRIBUTES, FaceResult, ImageResult, Predictor, load_model, predict
from faceattr.config import Config
from faceattr.data.transforms import eval_transform
from faceattr.errors import CheckpointError, ConfigError, ImageError
from faceattr.evaluation.decision import decide
from faceattr.geometry import CELEBA_CROP
from faceattr.image import read_image, read_reduced
from faceattr.inference.detect import Detection, FaceDetector
from faceattr.inference.predictor import _cached_predictor
from faceattr.models import deployed
from faceattr.models.deployed import DeployedModel
from faceattr.models.net import FaceAttrNet
from faceattr.models.weights_io import save_checkpoint
from faceattr.synthetic.drawing import draw_face, random_labels

TWO_PEOPLE = "faces/face_recognition/examples/two_people.jpg"

#: Thresholds that make the first ten attributes always on and the next ten always off.
THRESHOLDS = [0.0] * 10 + [1.01] * 10 + [0.5] * 20


def listed(probabilities: dict[str, float], thresholds: list[float]) -> tuple[str, ...]:
    """The present list the balanced policy gives: at the thresholds, no exclusive pair both, most probable first."""
    row = np.array([probabilities[name] for name in ATTRIBUTES])
    present = decide(row[None], np.clip(thresholds, 1e-300, np.nextafter(1.0, 0.0)))[0]
    return tuple(sorted((ATTRIBUTES[i] for i in np.flatnonzero(present)), key=lambda name: -probabilities[name]))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained ResNet-10-T at 64 px with :data:`THRESHOLDS`."""
    return untrained_checkpoint(tmp_path_factory.mktemp("model") / "best.pt", THRESHOLDS)


@pytest.fixture(scope="module")
def predictor(checkpoint: Path) -> Predictor:
    """One predictor (and MTCNN) for the module."""
    return Predictor(checkpoint, device="cpu")


class BoxDetector(FaceDetector):
    """A detector stand-in that reports fixed boxes without landmarks, as the Haar cascade does."""

    def __init__(self, boxes: list[tuple[float, float, float, float]]):
        super().__init__()
        self.boxes = boxes

    def detect(self, image: np.ndarray) -> list[Detection]:
        return [Detection(box, 1.0, None) for box in self.boxes]

    def detect_batch(self, images: list[np.ndarray]) -> list[list[Detection]]:
        return [self.detect(image) for image in images]


def noise(height: int = 80, width: int = 100, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def numbers(faces: list[FaceResult]) -> np.ndarray:
    """Each face's box, score, probabilities and beauty as one row of floats."""
    return np.array([[*f.box, f.score, *f.probabilities.values(), f.beauty] for f in faces])


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


@pytest.mark.real_data
def test_two_people_gives_two_faces_within_ranges(shared_data: Path, predictor: Predictor) -> None:
    faces = predictor.predict(shared_data / TWO_PEOPLE)
    assert len(faces) == 2
    for face in faces:
        assert list(face.probabilities) == list(ATTRIBUTES)
        assert all(0.0 <= p <= 1.0 for p in face.probabilities.values())
        assert 1.0 <= face.beauty <= 5.0
        assert face.landmarks is not None and len(face.landmarks) == 5
        assert face.attributes == listed(face.probabilities, THRESHOLDS)
        # Always on, except the less probable of an exclusive pair (Bald with Bangs, Black_Hair with Blond_Hair...).
        assert {"Arched_Eyebrows", "Big_Nose"} <= set(face.attributes)
        assert not set(ATTRIBUTES[10:20]) & set(face.attributes)
        assert not set(ATTRIBUTES[10:20]) & set(face.attributes)


@pytest.mark.real_data
def test_exif_rotated_copy_gives_the_same_faces(shared_data: Path, predictor: Predictor, tmp_path: Path) -> None:
    upright = Image.open(shared_data / TWO_PEOPLE).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation 6: the stored pixels must be turned 90 degrees clockwise
    rotated = tmp_path / "rotated.jpg"
    upright.transpose(Image.Transpose.ROTATE_90).save(rotated, quality=95, exif=exif)
    original = predictor.predict(upright)
    turned = predictor.predict(rotated)
    assert len(turned) == len(original) == 2
    for a, b in zip(sorted(original, key=lambda f: f.box[0]), sorted(turned, key=lambda f: f.box[0])):
        size = a.box[2] - a.box[0]
        assert np.allclose(a.box, b.box, atol=0.05 * size)


@pytest.fixture(scope="module")
def small_side(checkpoint: Path) -> Predictor:
    """A predictor whose detector sees at most 512 px: JPEGs over 902 px are decoded reduced."""
    return Predictor(checkpoint, device="cpu", detector=FaceDetector(max_side=512))


def upscaled_jpeg(shared_data: Path, path: Path, orientation: int = 1) -> Path:
    """two_people.jpg at twice its size (2048x1202) as a JPEG, stored turned for EXIF ``orientation`` 6."""
    photo = Image.open(shared_data / TWO_PEOPLE).convert("RGB").resize((2048, 1202), Image.Resampling.BICUBIC)
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored = photo.transpose(Image.Transpose.ROTATE_90) if orientation == 6 else photo
    stored.save(path, quality=95, exif=exif)
    return path


def assert_same_faces(faces: list[FaceResult], expected: list[FaceResult], tolerance: float) -> None:
    """Same number of faces, boxes and landmarks within ``tolerance`` of each face's width."""
    assert len(faces) == len(expected) == 2
    for face, other in zip(sorted(faces, key=lambda f: f.box[0]), sorted(expected, key=lambda f: f.box[0])):
        size = other.box[2] - other.box[0]
        assert np.allclose(face.box, other.box, atol=tolerance * size)
        assert np.allclose(face.landmarks, other.landmarks, atol=tolerance * size)


@pytest.mark.real_data
def test_reduced_jpeg_gives_the_faces_of_the_full_decode_in_its_pixels(shared_data: Path, small_side: Predictor,
                                                                      tmp_path: Path) -> None:
    path = upscaled_jpeg(shared_data, tmp_path / "big.jpg")
    assert read_reduced(path, small_side.decode_side)[0].shape == (601, 1024, 3)  # decoded at 1/2
    [result] = small_side.predict_many([path])
    assert (result.width, result.height) == (2048, 1202)
    full = small_side.predict(read_image(path))
    # 2% of a 280 px face: 6 px of the photo, 1.4 px of the 512 px copy the detector sees (measured:
    # boxes within 1.3 px, landmarks 4.5 px; the copy's pixels differ by the decoder's resampling).
    assert_same_faces(result.faces, full, 0.02)
    assert_same_faces(small_side.predict(path), full, 0.02)


@pytest.mark.real_data
def test_reduced_jpeg_is_turned_upright_after_reduction(shared_data: Path, small_side: Predictor,
                                                        tmp_path: Path) -> None:
    upright = small_side.predict(read_image(upscaled_jpeg(shared_data, tmp_path / "upright.jpg")))
    [turned] = small_side.predict_many([upscaled_jpeg(shared_data, tmp_path / "turned.jpg", orientation=6)])
    assert (turned.width, turned.height) == (2048, 1202)
    assert_same_faces(turned.faces, upright, 0.03)


def test_read_reduced_decodes_large_jpegs_at_a_fraction_keeping_min_side() -> None:
    # Smooth ramps: a wrong turn or scale would move every pixel.
    x, y = np.meshgrid(np.linspace(0, 255, 2400), np.linspace(0, 255, 1600))
    pixels = np.stack([x, y, 255 - x], axis=2).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encoded(Image.fromarray(pixels).transpose(Image.Transpose.ROTATE_90), "JPEG", quality=95, exif=exif)
    half, size = read_reduced(data, 1000)  # 1/4 would give 600 px: 1/2 is the most that keeps 1000
    assert half.shape == (800, 1200, 3) and size == (2400, 1600)
    assert np.abs(half.astype(int) - pixels[::2, ::2]).mean() < 3
    assert read_reduced(data, 1200)[0].shape == (800, 1200, 3)
    assert read_reduced(data, 1201)[0].shape == (1600, 2400, 3)  # 1/2 is too small: full size
    assert read_reduced(encoded(Image.fromarray(pixels), "PNG"), 1000)[0].shape == (1600, 2400, 3)


@pytest.mark.real_data
def test_every_input_type_gives_the_result_of_the_path(shared_data: Path, predictor: Predictor) -> None:
    path = shared_data / TWO_PEOPLE
    data = path.read_bytes()
    inputs = [str(path), path, data, Image.open(io.BytesIO(data)), np.asarray(Image.open(path).convert("RGB"))]
    results = predictor.predict_many(inputs)
    assert [r.source for r in results] == [str(path), str(path), "<bytes>", "<PIL image>", "<array>"]
    expected = results[0].faces
    assert len(expected) == 2
    for result in results[1:]:
        assert (result.width, result.height, result.error) == (1024, 601, None)
        assert np.allclose(numbers(result.faces), numbers(expected), atol=1e-4)
        assert [f.attributes for f in result.faces] == [f.attributes for f in expected]


@pytest.mark.real_data
def test_predict_many_keeps_the_others_when_one_input_is_bad(shared_data: Path, predictor: Predictor) -> None:
    results = predictor.predict_many([np.zeros((60, 60, 3), np.uint8), b"not an image", shared_data / TWO_PEOPLE])
    assert [r.error is None for r in results] == [True, False, True]
    assert "<bytes>" in results[1].error and results[1].faces == []
    assert len(results[0].faces) == 0 and len(results[2].faces) == 2
    json.dumps([r.to_dict() for r in results])


def test_blank_image_has_no_faces(predictor: Predictor) -> None:
    assert predictor.predict(np.full((120, 160, 3), 200, np.uint8)) == []


def test_faces_without_landmarks_are_classified_from_their_box(checkpoint: Path) -> None:
    boxes = [(10.0, 10.0, 60.0, 60.0), (30.0, 5.0, 90.0, 70.0), (0.0, 0.0, 40.0, 40.0)]
    one = Predictor(checkpoint, device="cpu", batch_size=1, detector=BoxDetector(boxes))
    many = Predictor(checkpoint, device="cpu", batch_size=32, detector=BoxDetector(boxes))
    images = [noise(seed=1), noise(seed=2)]
    by_one, by_many = one.predict_many(images), many.predict_many(images)
    assert [len(r.faces) for r in by_one] == [3, 3]
    assert all(face.landmarks is None for r in by_one for face in r.faces)
    # Batches of one face and one batch of six give the same numbers.
    assert np.allclose(numbers([f for r in by_one for f in r.faces]), numbers([f for r in by_many for f in r.faces]),
                       atol=1e-5)
    # Different crops get different outputs: the results are not all one face's.
    assert by_one[0].faces[0].probabilities != by_one[0].faces[1].probabilities


@pytest.mark.parametrize("name, content", [
    ("empty.jpg", b""),
    ("notes.jpg", b"these are not the pixels you are looking for\n"),
    ("truncated.jpg", encoded(Image.fromarray(noise()), "JPEG")[:600]),
])
def test_unreadable_files_raise_image_error_naming_them(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImageError, match=name):
        read_image(path)


def test_bad_bytes_and_arrays_raise_image_error_naming_them() -> None:
    with pytest.raises(ImageError, match="<bytes>"):
        read_image(b"")
    with pytest.raises(ImageError, match="<array>"):
        read_image(np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(ImageError, match="<array>"):
        read_image(np.zeros((4, 4, 3), np.float32))


def test_format_comes_from_content_not_extension(tmp_path: Path) -> None:
    pixels = noise()
    path = tmp_path / "really_a.png.jpg"
    path.write_bytes(encoded(Image.fromarray(pixels), "PNG"))
    assert np.array_equal(read_image(path), pixels)


@pytest.mark.parametrize("image, pixel", [
    (Image.new("L", (6, 4), 90), (90, 90, 90)),
    (Image.new("RGBA", (6, 4), (10, 20, 30, 0)), (255, 255, 255)),
    (Image.new("I;16", (6, 4), 65535), (255, 255, 255)),
    (Image.new("P", (6, 4), 0), (0, 0, 0)),
    (Image.new("CMYK", (6, 4), (0, 0, 0, 0)), (255, 255, 255)),
])
def test_any_mode_becomes_rgb_uint8(image: Image.Image, pixel: tuple[int, int, int]) -> None:
    for source in (image, encoded(image, "TIFF")):
        array = read_image(source)
        assert array.shape == (4, 6, 3) and array.dtype == np.uint8
        assert tuple(array[0, 0]) == pixel


def test_exif_orientation_is_applied_to_bytes() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    stored = Image.fromarray(noise(40, 70))
    upright = read_image(encoded(stored, "PNG", exif=exif))
    assert np.array_equal(upright, np.asarray(stored.transpose(Image.Transpose.ROTATE_270)))


def test_grayscale_and_bgr_view_arrays_are_accepted() -> None:
    gray = read_image(np.arange(12, dtype=np.uint8).reshape(3, 4))
    assert gray.shape == (3, 4, 3) and np.array_equal(gray[..., 0], gray[..., 2])
    bgr = noise(5, 5)
    rgb = read_image(bgr[..., ::-1])
    assert rgb.flags.c_contiguous and np.array_equal(rgb[..., 0], bgr[..., 2])


def test_decompression_bomb_is_an_image_error(monkeypatch: pytest.MonkeyPatch) -> None:
    data = encoded(Image.new("RGB", (64, 64)), "PNG")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 64 * 64 // 3)  # 3x over: PIL's error
    with pytest.raises(ImageError, match="<bytes>"):
        read_image(data)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 64 * 64 - 1)  # just over: only PIL's warning
    with pytest.raises(ImageError, match="<bytes>"):
        read_image(data)


def test_predict_without_model_or_default_asks_for_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deployed, "DEFAULT_MODEL", tmp_path / "default.safetensors")
    with pytest.raises(CheckpointError, match="no default model.*model=PATH"):
        predict(np.zeros((8, 8, 3), np.uint8))


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained ResNet-10-T at 64 px with temperatures from 0.5 to 3, offsets from -1 to 1 and thresholds 0.5."""
    torch.manual_seed(0)
    config = Config()
    config.data.image_size = 64
    path = tmp_path_factory.mktemp("calibrated") / "best.pt"
    save_checkpoint(DeployedModel.from_training(FaceAttrNet("resnet10t"), [0.5] * 40, config, 1, {},
                                                np.linspace(0.5, 3.0, 40).tolist(),
                                                np.linspace(-1.0, 1.0, 40).tolist()).to_checkpoint(), path)
    return path


def aligned_faces(count: int) -> list[np.ndarray]:
    """Drawn faces in CelebA's aligned geometry (178x218)."""
    rng = np.random.default_rng(3)
    return [np.asarray(draw_face(random_labels(rng), rng=rng)) for _ in range(count)]


def test_aligned_faces_get_the_evaluation_transform_and_the_calibration(calibrated: Path) -> None:
    faces = aligned_faces(3)
    results = Predictor(calibrated, device="cpu", batch_size=2).predict_aligned(faces)
    stored = DeployedModel.load(calibrated)
    model = stored.build_network()
    batch = torch.stack([eval_transform(64, CELEBA_CROP)(Image.fromarray(face)) for face in faces])
    with torch.no_grad():
        logits = model(batch)["attributes"]
    expected = torch.sigmoid(logits / torch.tensor(stored.temperatures) + torch.tensor(stored.offsets)).numpy()
    assert np.allclose([list(r.probabilities.values()) for r in results], expected, atol=1e-6)
    assert all(r.box == (0.0, 0.0, 178.0, 218.0) and r.landmarks is None and r.score == 1.0 for r in results)
    assert [r.attributes for r in results] == [listed(dict(zip(ATTRIBUTES, row)), [0.5] * 40) for row in expected]


def test_aligned_predict_many_matches_predict_aligned_and_keeps_errors(calibrated: Path) -> None:
    predictor = Predictor(calibrated, device="cpu")
    face = aligned_faces(1)[0]
    results = predictor.predict_many([face, b"not an image", Image.fromarray(face)], aligned=True)
    assert [r.error is None for r in results] == [True, False, True]
    [expected] = predictor.predict_aligned([face])
    # One batch of two faces against a batch of one: equal up to float rounding.
    assert np.allclose(numbers(results[0].faces + results[2].faces), numbers([expected, expected]), atol=1e-6)
    assert [f.box for f in results[0].faces + results[2].faces] == [expected.box] * 2
    assert results[1].faces == []


def test_checkpoint_without_calibration_still_loads_uncalibrated(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = Config()
    config.data.image_size = 64
    state = DeployedModel.from_training(FaceAttrNet("resnet10t"), [0.5] * 40, config, 1, {}).to_checkpoint()
    del state["temperatures"], state["offsets"], state["crop"]  # as written before calibration existed
    save_checkpoint(state, tmp_path / "old.pt")
    predictor = Predictor(tmp_path / "old.pt", device="cpu")
    assert predictor.temperatures.tolist() == [1.0] * 40 and predictor.offsets.tolist() == [0.0] * 40
    assert predictor.crop == CELEBA_CROP


def test_predict_loads_each_checkpoint_once(checkpoint: Path) -> None:
    _cached_predictor.cache_clear()
    blank = np.zeros((40, 40, 3), np.uint8)
    assert predict(blank, model=checkpoint) == []
    results = predict([blank, blank], model=str(checkpoint))
    assert all(isinstance(r, ImageResult) and r.faces == [] for r in results)
    assert _cached_predictor.cache_info().misses == 1
    _cached_predictor.cache_clear()


def test_an_unknown_backend_is_a_config_error_naming_backend(checkpoint: Path) -> None:
    with pytest.raises(ConfigError, match="backend: expected one of torch, onnx, got 'tensorrt'"):
        Predictor(checkpoint, device="cpu", backend="tensorrt")


def test_checkpoint_without_thresholds_is_refused(tmp_path: Path) -> None:
    net = FaceAttrNet("resnet10t")
    path = tmp_path / "bad.pt"
    save_checkpoint({"model_args": net.model_args, "model": net.state_dict(), "config": {"data": {"image_size": 64}}},
                    path)
    with pytest.raises(CheckpointError, match="thresholds"):
        load_model(path, device="cpu")


def test_face_result_to_dict_is_json() -> None:
    face = FaceResult((1.0, 2.0, 3.0, 4.0), 0.9, ((1.0, 2.0),) * 5, {"Smiling": 0.7}, ("Smiling",), 2.5)
    assert json.loads(json.dumps(face.to_dict()))["landmarks"][0] == [1.0, 2.0]


def test_import_faceattr_does_not_import_torch() -> None:
    code = "import sys, faceattr; assert 'torch' not in sys.modules; faceattr.Predictor; assert 'torch' in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
