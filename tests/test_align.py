"""Alignment onto CelebA's template: the similarity fit, the warp, the one-warp model crop, bad input."""

import math

import numpy as np
import pytest
from PIL import Image

from faceattr.data.transforms import CropResize
from faceattr.errors import AlignmentError
from faceattr.image import crop_box
from faceattr.inference.align import (
    BORDER_MODES,
    CELEBA_CROP,
    CELEBA_SIZE,
    CELEBA_TEMPLATE,
    align_crop,
    align_face,
    crop_outside,
    similarity_transform,
    template,
)
from faceattr.prep import alignment_check


def similarity(angle_degrees: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    """The (2, 3) matrix rotating by ``angle_degrees``, scaling by ``scale``, then shifting."""
    cos, sin = scale * math.cos(math.radians(angle_degrees)), scale * math.sin(math.radians(angle_degrees))
    return np.array([[cos, -sin, shift[0]], [sin, cos, shift[1]]])


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def smooth_image(height: int = 300, width: int = 260) -> np.ndarray:
    """A smooth RGB uint8 image with strong gradients, so interpolation differences stay small."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    channels = [127 + 120 * np.sin(x / 17 + phase) * np.cos(y / 23 - phase) for phase in (0.0, 1.0, 2.0)]
    return np.clip(np.stack(channels, axis=-1), 0, 255).astype(np.uint8)


#: Landmarks of a face tilted by 20 degrees at 1.3x CelebA's scale in a 300x260 photo.
TILTED = apply(similarity(20.0, 1.3, (40.0, -30.0)), CELEBA_TEMPLATE)


def test_similarity_transform_recovers_a_known_rotation_scale_and_translation():
    known = similarity(-35.0, 0.42, (17.5, -8.25))
    src = np.random.default_rng(0).uniform(0, 200, size=(5, 2))
    np.testing.assert_allclose(similarity_transform(src, apply(known, src)), known, atol=1e-9)


def test_similarity_transform_does_not_reflect_mirrored_points():
    src = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 20.0], [7.0, 5.0]])
    mirrored = src * [-1.0, 1.0]
    assert np.linalg.det(similarity_transform(src, mirrored)[:, :2]) > 0


def test_similarity_transform_rejects_points_that_are_all_the_same():
    with pytest.raises(AlignmentError, match="all the same"):
        similarity_transform(np.ones((5, 2)), CELEBA_TEMPLATE)


def test_align_face_puts_each_landmark_on_the_template():
    # Gaussian spots at the landmarks; after alignment each spot's centroid must be on the template.
    y, x = np.mgrid[0:300, 0:260].astype(np.float64)
    spots = sum(np.exp(-((x - px) ** 2 + (y - py) ** 2) / (2 * 2.5**2)) for px, py in TILTED)
    image = np.repeat((255 * spots)[..., None], 3, axis=2).astype(np.uint8)
    aligned = align_face(image, TILTED)[..., 0].astype(np.float64)
    rows, cols = np.mgrid[0:aligned.shape[0], 0:aligned.shape[1]]
    for tx, ty in CELEBA_TEMPLATE:
        window = aligned * ((cols - tx) ** 2 + (rows - ty) ** 2 < 7**2)
        centroid = np.array([(window * cols).sum(), (window * rows).sum()]) / window.sum()
        np.testing.assert_allclose(centroid, [tx, ty], atol=0.3)


def test_align_face_returns_rgb_uint8_of_the_requested_size():
    image = smooth_image()
    assert align_face(image, TILTED).shape == (CELEBA_SIZE[1], CELEBA_SIZE[0], 3)
    half = align_face(image, TILTED, (89, 109))
    assert half.shape == (109, 89, 3) and half.dtype == np.uint8


def test_template_scales_with_the_output_size():
    # Pixel centres scale about the image corner: 0.5 px in, (0.5 * 2) px out.
    np.testing.assert_allclose(template((356, 436)), (CELEBA_TEMPLATE + 0.5) * 2 - 0.5)


def test_align_crop_at_the_crop_size_is_the_crop_of_align_face():
    image = smooth_image()
    left, top, right, bottom = crop_box(CELEBA_SIZE, CELEBA_CROP)
    expected = align_face(image, TILTED)[top:bottom, left:right].astype(int)
    assert np.abs(align_crop(image, TILTED, right - left).astype(int) - expected).max() <= 1


def test_align_crop_matches_the_training_transform_of_align_face():
    image = smooth_image()
    trained = np.asarray(CropResize(64, CELEBA_CROP)(Image.fromarray(align_face(image, TILTED))), dtype=float)
    assert np.abs(align_crop(image, TILTED, 64) - trained).mean() < 1.5


def test_align_crop_averages_fine_detail_instead_of_aliasing():
    # A 1-pixel checkerboard shrunk 8x must come out as flat grey, not a moire of black and white.
    checker = (255 * (np.indices((800, 800)).sum(axis=0) % 2)).astype(np.uint8)
    image = np.repeat(checker[..., None], 3, axis=2)
    crop = align_crop(image, apply(similarity(0.0, 8.0, (50.0, 20.0)), CELEBA_TEMPLATE), 64)
    assert np.abs(crop.astype(float) - 127.5).max() < 10


@pytest.mark.parametrize("shape", [(4, 2), (5, 3), (10,)])
def test_bad_landmarks_shape_raises_naming_the_expected_shape(shape):
    with pytest.raises(ValueError, match=r"landmarks: expected shape \(5, 2\)"):
        align_face(smooth_image(), np.zeros(shape))


@pytest.mark.parametrize("image", [np.zeros((50, 40), np.uint8), np.zeros((50, 40, 3), np.float32)])
def test_bad_image_raises_naming_the_expected_array(image):
    with pytest.raises(AlignmentError, match=r"image: expected (shape \(H, W, 3\)|dtype uint8)"):
        align_face(image, TILTED)


@pytest.mark.real_data
def test_a_celeba_photo_aligned_with_mtcnn_matches_its_official_crop(shared_data):
    # 003410.jpg scores NCC 0.964 with its official crop; it is textured enough that the official
    # crop against itself moved 3 px diagonally scores 0.78 (6 px down: 0.76), so 0.9 catches a
    # misalignment of a few pixels. (Over all 90 full-size photos the median NCC is about 0.9.)
    celeba = shared_data / "celeba"
    photo = alignment_check.read_rgb(celeba / "img_celeba" / "003410.jpg")
    official = alignment_check.read_rgb(celeba / "img_align_celeba" / "003410.jpg")
    landmarks = alignment_check.detect_landmarks(alignment_check.make_detector(), photo)
    left, top, right, bottom = crop_box(CELEBA_SIZE, CELEBA_CROP)
    ours, theirs = (alignment_check.grayscale(image)[top:bottom, left:right]
                    for image in (align_face(photo, landmarks), official))
    assert alignment_check.ncc(ours, theirs) > 0.9


def edge_landmarks(columns_out: float, rows_out: float) -> np.ndarray:
    """CelebA's landmarks in its own 178x218 frame, moved so that the model's crop sticks out of the
    photo's left edge by ``columns_out`` and its top edge by ``rows_out`` of its width and height."""
    left, top, right, bottom = crop_box(CELEBA_SIZE, CELEBA_CROP)
    return template() - [left + columns_out * (right - left), top + rows_out * (bottom - top)]


@pytest.mark.parametrize("columns_out, rows_out, expected", [
    (0.0, 0.0, 0.0), (0.25, 0.0, 0.25), (0.0, 0.5, 0.5), (0.25, 0.5, 1 - 0.75 * 0.5), (-0.05, -0.1, 0.0)])
def test_crop_outside_is_the_share_of_the_model_crop_beyond_the_photo(columns_out: float, rows_out: float,
                                                                       expected: float) -> None:
    assert crop_outside((218, 178, 3), edge_landmarks(columns_out, rows_out), 64) == pytest.approx(expected)


def test_crop_outside_counts_the_pixels_a_constant_border_fills() -> None:
    # A white photo warped with a black border: the black pixels are the ones from outside.
    white = np.full((218, 178, 3), 255, np.uint8)
    landmarks = edge_landmarks(0.3, 0.2)
    black = (align_crop(white, landmarks, 64, border="constant") == 0).all(axis=2).mean()
    assert black == pytest.approx(crop_outside(white.shape, landmarks, 64), abs=2 / 64)
    assert black > 0.4


def test_crop_outside_does_not_depend_on_the_photo_scale() -> None:
    landmarks = edge_landmarks(0.3, 0.2)
    assert crop_outside((109, 89), landmarks / 2, 64) == pytest.approx(crop_outside((218, 178), landmarks, 64),
                                                                        abs=1 / 64)


@pytest.mark.parametrize("border", BORDER_MODES)
def test_each_border_mode_fills_the_outside_as_named(border: str) -> None:
    photo = np.zeros((218, 178, 3), np.uint8)
    photo[:, 26:36] = 200  # a bright band inside the dark edge: mirrored modes copy it outside, others do not
    outside = align_crop(photo, edge_landmarks(0.3, 0.0), 64, border=border)[:, :15]
    assert (outside.max() > 100) == (border in ("reflect", "reflect_101"))


def test_unknown_border_mode_is_an_alignment_error_naming_it() -> None:
    with pytest.raises(AlignmentError, match="border.*'wrap'"):
        align_crop(np.zeros((50, 40, 3), np.uint8), CELEBA_TEMPLATE / 4, 32, border="wrap")
