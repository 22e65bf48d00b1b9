"""Warps a face onto CelebA's aligned-crop template from its 5 landmarks (pure, no I/O).

The models are trained on CelebA's official aligned crops (178x218), cut to the square
:data:`CELEBA_CROP` and resized. A face in any other photo is made to look exactly like such
a crop by the least-squares similarity transform (rotation, uniform scale, translation) that
takes its 5 landmarks (MTCNN order: image-left eye, image-right eye, nose, mouth image-left
corner, mouth image-right corner) onto :data:`CELEBA_TEMPLATE`, the median position of the
same landmarks in CelebA's own crops (fitted on eyes and mouth: see :data:`FIT_POINTS`).

Coordinates are in pixels with pixel ``i`` centred at ``i`` (OpenCV's convention); resizing
maps ``x`` to ``(x + 0.5) * scale - 0.5``.

>>> image = np.zeros((120, 100, 3), np.uint8)
>>> align_face(image, CELEBA_TEMPLATE * 0.5).shape
(218, 178, 3)
>>> align_crop(image, CELEBA_TEMPLATE * 0.5, 64).shape
(64, 64, 3)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from faceattr.errors import AlignmentError

# Defined in a base module so that models and data use them without importing inference.
from faceattr.geometry import CELEBA_CROP, CELEBA_SIZE
from faceattr.image import check_rgb, crop_box

#: The 5 landmarks of CelebA's aligned crops, in 178x218 crop pixels (x, y), MTCNN order.
#: Median of facenet-pytorch MTCNN's landmarks on the first 500 images of img_align_celeba (a face
#: found in all), measured with ``python tools/measure_alignment.py ../shared/data/celeba --derive``.
CELEBA_TEMPLATE: np.ndarray = np.array([
    [70.12, 112.37],
    [109.18, 112.37],
    [89.22, 136.94],
    [72.46, 153.41],
    [106.38, 153.22],
])

#: The landmarks the transform is fitted to: eyes and mouth corners, not the nose. In
#: CelebA's crops the nose tip moves with head yaw (MTCNN spread 6.1 px in x vs 1.6-3.3 px for
#: the others) while the eye and mouth centres stay put (about 1 px), so fitting the nose
#: pulls faces away from CelebA's framing: on the 90 img_celeba photos with a full-size
#: official crop, 4 points give mean NCC 0.871 and median landmark error 2.22 px, 5 points
#: 0.851 and 2.65 px (tools/measure_alignment.py).
FIT_POINTS: tuple[int, ...] = (0, 1, 3, 4)

#: How a warp fills the part of the aligned frame that lies outside the photo, as OpenCV's
#: ``cv2.BORDER_<NAME>`` modes: black, the edge pixel repeated, or the photo mirrored
#: (``reflect`` repeats the edge pixel, ``reflect_101`` does not).
BORDER_MODES: tuple[str, ...] = ("constant", "replicate", "reflect", "reflect_101")

#: The border mode alignment uses unless told otherwise. Chosen by mean balanced accuracy of the
#: default model on CelebA validation faces cut tight so that their crop needs pixels from
#: outside the photo (``python tools/measure_borders.py``; docs/MODEL_CARD.md, "Faces at the
#: edge of the photo").
DEFAULT_BORDER = "replicate"

def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The least-squares similarity transform taking points ``src`` onto ``dst`` (Umeyama).

    Closed form (Umeyama 1991, without reflection): deterministic and exact when the
    points are related by a similarity, unlike a robust estimator that may drop points.

    Args:
        src: ``(N, 2)`` points ``(x, y)``, N >= 2, not all equal.
        dst: ``(N, 2)`` points they should map onto.

    Returns:
        The ``(2, 3)`` float64 matrix ``M`` with ``dst ~ M @ [x, y, 1]``, for ``cv2.warpAffine``.

    Raises:
        AlignmentError: If the shapes differ, are not ``(N, 2)`` with N >= 2, hold non-finite
            values, or ``src`` is a single repeated point.

    >>> square = np.array([[0, 0], [1, 0], [0, 1]])
    >>> similarity_transform(square, 2 * square + 5).round(6).tolist()
    [[2.0, 0.0, 5.0], [0.0, 2.0, 5.0]]
    """
    src, dst = _points(src, "src", None), _points(dst, "dst", len(src))
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_centred, dst_centred = src - src_mean, dst - dst_mean
    src_variance = (src_centred**2).sum() / len(src)
    if src_variance < 1e-12:
        raise AlignmentError("src: the points are all the same; no transform fits them")
    u, sigma, vt = np.linalg.svd(dst_centred.T @ src_centred / len(src))
    # Forbid a reflection: a mirrored face is not the same face.
    sign = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rotation = u @ sign @ vt
    scale = np.trace(np.diag(sigma) @ sign) / src_variance
    translation = dst_mean - scale * rotation @ src_mean
    return np.hstack([scale * rotation, translation[:, None]])


def template(size: tuple[int, int] = CELEBA_SIZE) -> np.ndarray:
    """:data:`CELEBA_TEMPLATE` for an aligned crop of ``size`` ``(width, height)`` pixels.

    >>> template((89, 109))[0].tolist()
    [34.81, 55.935]
    """
    scale = np.array(size, dtype=np.float64) / np.array(CELEBA_SIZE)
    return (CELEBA_TEMPLATE + 0.5) * scale - 0.5


def align_face(image: np.ndarray, landmarks: np.ndarray, size: tuple[int, int] = CELEBA_SIZE,
               border: str = DEFAULT_BORDER) -> np.ndarray:
    """Warps the face with ``landmarks`` onto CelebA's template, like an official aligned crop.

    The transform is fitted on the eyes and mouth corners (:data:`FIT_POINTS`). The
    training crop fractions (:data:`CELEBA_CROP`) apply to the result unchanged.

    Args:
        image: ``(H, W, 3)`` uint8 RGB image.
        landmarks: ``(5, 2)`` landmarks ``(x, y)`` in ``image`` pixels, MTCNN order.
        size: ``(width, height)`` of the result; the template is scaled to it.
        border: How pixels from outside ``image`` are filled, one of :data:`BORDER_MODES`.

    Returns:
        The ``(height, width, 3)`` uint8 RGB aligned crop.

    Raises:
        AlignmentError: If ``image`` is not ``(H, W, 3)`` uint8, ``landmarks`` not ``(5, 2)``,
            or ``border`` not one of :data:`BORDER_MODES`.

    >>> align_face(np.zeros((50, 40, 3), np.uint8), CELEBA_TEMPLATE / 4, (89, 109)).shape
    (109, 89, 3)
    """
    return _warp(image, _fit(landmarks, template(size)), size, border)


def align_crop(image: np.ndarray, landmarks: np.ndarray, image_size: int,
               crop: Sequence[float] = CELEBA_CROP, border: str = DEFAULT_BORDER) -> np.ndarray:
    """The model's square input: ``crop`` of :func:`align_face`'s result at ``image_size`` px.

    One warp does both (the crop and resize are composed into the transform), so the
    result is sharper and faster than cutting and resizing :func:`align_face`'s output, and
    matches it within interpolation error. The crop box is rounded to whole pixels of the
    178x218 frame exactly as the training transform rounds it.

    Args:
        image: ``(H, W, 3)`` uint8 RGB image.
        landmarks: ``(5, 2)`` landmarks ``(x, y)`` in ``image`` pixels, MTCNN order.
        image_size: Side of the square result in pixels.
        crop: Fractions ``[left, top, right, bottom]`` of the aligned crop, as in a source's
            ``crop`` config key.
        border: How pixels from outside ``image`` are filled, one of :data:`BORDER_MODES`.

    Returns:
        The ``(image_size, image_size, 3)`` uint8 RGB model input.

    Raises:
        AlignmentError: If ``image`` or ``landmarks`` has the wrong shape or type, or
            ``border`` is not one of :data:`BORDER_MODES`.
        ConfigError: If ``crop`` is not four ordered fractions.

    >>> align_crop(np.zeros((50, 40, 3), np.uint8), CELEBA_TEMPLATE / 4, 32).shape
    (32, 32, 3)
    """
    return _warp(image, crop_matrix(landmarks, image_size, crop), (image_size, image_size), border)


def crop_outside(image_shape: Sequence[int], landmarks: np.ndarray, image_size: int,
                 crop: Sequence[float] = CELEBA_CROP) -> float:
    """The share of :func:`align_crop`'s result that lies outside the photo (0 to 1).

    Those pixels are made up by the border mode, not seen: a face cut off by the photo's edge
    gives a large share. Each output pixel counts as outside when its centre maps to a point
    beyond the photo's outer pixel edges.

    Args:
        image_shape: The photo's ``(H, W, ...)`` shape, at any scale ``landmarks`` are in.
        landmarks: ``(5, 2)`` landmarks ``(x, y)`` in the photo's pixels, MTCNN order.
        image_size: Side of the model's square input in pixels.
        crop: The crop fractions, as for :func:`align_crop`.

    Returns:
        The fraction of the ``image_size`` x ``image_size`` output pixels from outside.

    Raises:
        AlignmentError: If ``landmarks`` is not ``(5, 2)`` finite points.

    >>> crop_outside((218, 178), template(), 64)
    0.0
    >>> crop_outside((218, 89), template(), 64)  # the right half of CelebA's frame is missing
    0.5
    """
    matrix = np.vstack([crop_matrix(landmarks, image_size, crop), [0.0, 0.0, 1.0]])
    centres = np.mgrid[0:image_size, 0:image_size].reshape(2, -1)[::-1].astype(np.float64)  # x, y
    source = np.linalg.solve(matrix, np.vstack([centres, np.ones(centres.shape[1])]))[:2]
    height, width = image_shape[0], image_shape[1]
    inside = ((source[0] >= -0.5) & (source[0] <= width - 0.5)
              & (source[1] >= -0.5) & (source[1] <= height - 0.5))
    return float(1.0 - inside.mean())


def crop_matrix(landmarks: np.ndarray, image_size: int, crop: Sequence[float] = CELEBA_CROP) -> np.ndarray:
    """The ``(2, 3)`` warp from photo pixels to the model's ``image_size`` square cut by ``crop``.

    The warp :func:`align_crop` applies (before any anti-alias shrink); its inverse puts a map
    over the model's input back onto the photo (:func:`faceattr.explain.gradcam.warp_to_photo`).

    Args:
        landmarks: ``(5, 2)`` landmarks ``(x, y)`` in the photo's pixels, MTCNN order.
        image_size: Side of the model's square input in pixels.
        crop: The crop fractions, as for :func:`align_crop`.

    Returns:
        The ``(2, 3)`` float64 matrix, photo pixels -> input pixels, for ``cv2.warpAffine``.

    Raises:
        AlignmentError: If ``landmarks`` is not ``(5, 2)`` finite points.
        ConfigError: If ``crop`` is not four ordered fractions.

    >>> crop_matrix(template(), 64).shape
    (2, 3)
    """
    left, top, right, bottom = crop_box(CELEBA_SIZE, crop)
    scale_x, scale_y = image_size / (right - left), image_size / (bottom - top)
    # Aligned-frame pixels -> output pixels: cut the box, then resize it (pixel-centre convention).
    cut_and_resize = np.array([[scale_x, 0.0, (0.5 - left) * scale_x - 0.5],
                               [0.0, scale_y, (0.5 - top) * scale_y - 0.5],
                               [0.0, 0.0, 1.0]])
    return (cut_and_resize @ np.vstack([_fit(landmarks, CELEBA_TEMPLATE), [0.0, 0.0, 1.0]]))[:2]


def _points(points: np.ndarray, name: str, count: int | None) -> np.ndarray:
    """``points`` as a finite ``(N, 2)`` float64 array, N >= 2 (or ``count``), or AlignmentError."""
    array = np.asarray(points, dtype=np.float64)
    expected = "(N, 2) with N >= 2" if count is None else f"({count}, 2)"
    if array.ndim != 2 or array.shape[1] != 2 or len(array) < 2 or count not in (None, len(array)):
        raise AlignmentError(f"{name}: expected points of shape {expected}, got {array.shape}")
    if not np.isfinite(array).all():
        raise AlignmentError(f"{name}: the points must be finite, got {array.tolist()}")
    return array


def _fit(landmarks: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The ``(2, 3)`` similarity taking ``(5, 2)`` ``landmarks`` onto ``target`` at :data:`FIT_POINTS`."""
    if np.shape(landmarks) != (5, 2):
        raise AlignmentError(f"landmarks: expected shape (5, 2) (x, y of eyes, nose, mouth corners), "
                             f"got {np.shape(landmarks)}")
    points = list(FIT_POINTS)
    return similarity_transform(_points(landmarks, "landmarks", 5)[points], target[points])


def _warp(image: np.ndarray, matrix: np.ndarray, size: tuple[int, int], border: str) -> np.ndarray:
    """``image`` warped by the ``(2, 3)`` ``matrix`` into ``size`` ``(width, height)`` pixels.

    What lies outside ``image`` is filled by ``border``, one of :data:`BORDER_MODES`.

    Bilinear warping samples only 4 source pixels per output pixel, so a face shrunk by more
    than 2x would alias (moire on hair, jagged edges): the image is first shrunk by the whole
    factor that leaves a scale of at least 0.5, averaging blocks of pixels, as PIL's
    ``reducing_gap`` does in the training transform.
    """
    import cv2

    check_rgb(image, "image", AlignmentError)
    if border not in BORDER_MODES:
        raise AlignmentError(f"border: expected one of {', '.join(BORDER_MODES)}, got {border!r}")
    factor = min(int(1.0 / np.sqrt(abs(np.linalg.det(matrix[:, :2])))), *image.shape[:2])
    if factor > 1:
        height, width = image.shape[0] // factor, image.shape[1] // factor
        image = cv2.resize(image[: height * factor, : width * factor], (width, height),
                           interpolation=cv2.INTER_AREA)
        # Shrunk pixel x covers original pixels f*x .. f*x + f - 1, centred at f*x + (f - 1) / 2.
        offset = (factor - 1) / 2
        matrix = matrix @ np.array([[factor, 0.0, offset], [0.0, factor, offset], [0.0, 0.0, 1.0]])
    return cv2.warpAffine(image, matrix, size, flags=cv2.INTER_LINEAR,
                          borderMode=getattr(cv2, f"BORDER_{border.upper()}"))
