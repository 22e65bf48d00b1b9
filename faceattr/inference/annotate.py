"""Draws prediction results onto a photo: boxes, landmarks, the top attributes and the beauty score.

Sizes (line width, dot radius, font) scale with the photo, so labels stay readable on a 64-pixel
thumbnail and on a 12-megapixel photo alike. Each label sits on a filled box in the face's colour,
so it reads on any background. OpenCV is imported on first use, never at import time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from faceattr.image import check_rgb
from faceattr.inference.results import ranked_attributes

#: Face colours (RGB), cycled: distinct on photos and from each other.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (0, 200, 255), (255, 120, 0), (80, 220, 60), (230, 40, 200), (255, 220, 0), (120, 90, 255),
)

#: The longer side of the photo, in pixels, at which the font scale is 1 (about 22 px tall text).
REFERENCE_SIDE = 1000

#: The font scale never goes below this (about 9 px text), whatever the photo size.
MIN_FONT_SCALE = 0.4
#: Face width (pixels) whose labels are drawn at font scale 1: small faces in a group photo get
#: small labels, so that neighbours' labels do not cover each other.
FACE_WIDTH_AT_SCALE_1 = 200


def face_labels(face: Any, top: int) -> list[str]:
    """The text drawn for one face: the beauty score, then its ``top`` most probable present attributes.

    Args:
        face: A :class:`faceattr.inference.results.FaceResult` (or anything with ``beauty``,
            ``attributes`` and ``probabilities``).
        top: How many present attributes to show, most probable first; 0 shows none.

    Returns:
        One string per line.

    >>> from types import SimpleNamespace
    >>> face = SimpleNamespace(beauty=3.14, attributes=("Male", "Smiling"),
    ...                        probabilities={"Male": 0.8, "Smiling": 0.95})
    >>> face_labels(face, top=1)
    ['beauty 3.14', 'Smiling']
    """
    return [f"beauty {face.beauty:.2f}", *ranked_attributes(face)[:max(0, top)]]


def annotate(image: np.ndarray, faces: Sequence[Any], top: int = 3, ids: Sequence[int] | None = None) -> np.ndarray:
    """Draws each face's box, landmarks, beauty score and ``top`` present attributes on a copy of ``image``.

    Args:
        image: RGB uint8 ``(H, W, 3)``, the photo the faces were found in.
        faces: :class:`faceattr.inference.results.FaceResult` objects: ``box`` ``(x1, y1, x2, y2)`` and
            ``landmarks`` (``(5, 2)`` x, y or None) in pixels of ``image``.
        top: Present attributes shown per face, most probable first.
        ids: A number per face (a video's track ids): it heads the face's labels as ``#id`` and
            picks its colour, so a tracked face keeps its colour from frame to frame. Without
            ids, faces are coloured by their place in ``faces``.

    Returns:
        A new RGB uint8 array of the same shape; ``image`` is left untouched.

    Raises:
        ValueError: ``image`` is not an RGB uint8 array.

    >>> from types import SimpleNamespace
    >>> face = SimpleNamespace(box=(10, 10, 50, 60), score=0.99, landmarks=None, beauty=3.0,
    ...                        attributes=("Smiling",), probabilities={"Smiling": 0.9})
    >>> photo = np.zeros((100, 100, 3), np.uint8)
    >>> bool(annotate(photo, [face]).any()), bool(photo.any())
    (True, False)
    """
    import cv2

    check_rgb(image)
    if ids is not None and len(ids) != len(faces):
        raise ValueError(f"ids: {len(ids)} for {len(faces)} faces")
    canvas = np.ascontiguousarray(image.copy())
    height, width = canvas.shape[:2]
    photo_scale = max(MIN_FONT_SCALE, max(height, width) / REFERENCE_SIDE)
    for index, face in enumerate(faces):
        colour = PALETTE[(index if ids is None else ids[index]) % len(PALETTE)]
        x1, y1, x2, y2 = (round(float(v)) for v in face.box)
        font_scale = min(photo_scale, max(MIN_FONT_SCALE, (x2 - x1) / FACE_WIDTH_AT_SCALE_1))
        thickness = max(1, round(2 * font_scale))
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness, cv2.LINE_AA)
        if face.landmarks is not None:
            for x, y in np.asarray(face.landmarks, dtype=np.float64).reshape(-1, 2):
                cv2.circle(canvas, (round(x), round(y)), thickness + 1, colour, -1, cv2.LINE_AA)
        lines = face_labels(face, top) if ids is None else [f"#{ids[index]}", *face_labels(face, top)]
        _draw_labels(canvas, lines, (x1, y1, x2, y2), colour, font_scale, thickness)
    return canvas


def _draw_labels(canvas: np.ndarray, lines: list[str], box: tuple[int, int, int, int],
                 colour: tuple[int, int, int], font_scale: float, thickness: int) -> None:
    """Stacks ``lines`` on filled boxes below the face box, or above it when they would leave the photo."""
    import cv2

    font = cv2.FONT_HERSHEY_SIMPLEX
    sizes = [cv2.getTextSize(line, font, font_scale, thickness) for line in lines]
    line_height = max(h + base for (_, h), base in sizes) + 2 * thickness
    block = line_height * len(lines)
    height, width = canvas.shape[:2]
    x1, y1, _, y2 = box
    top = y2 + thickness if y2 + thickness + block <= height else y1 - thickness - block
    # Clamped so that a face at the photo's edge still gets its labels inside the photo.
    top = min(max(0, top), max(0, height - block))
    # Black text on the bright palette colours keeps contrast whatever the photo is.
    for row, (line, ((text_width, text_height), _)) in enumerate(zip(lines, sizes)):
        left = min(max(0, x1), max(0, width - text_width - 2 * thickness))
        upper = top + row * line_height
        cv2.rectangle(canvas, (left, upper), (left + text_width + 2 * thickness, upper + line_height),
                      colour, -1)
        cv2.putText(canvas, line, (left + thickness, upper + thickness + text_height), font, font_scale,
                    (0, 0, 0), thickness, cv2.LINE_AA)
