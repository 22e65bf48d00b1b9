"""Face detection: an RGB image in, the faces in it out (box, score, five landmarks).

Two detectors sit behind :class:`FaceDetector`: MTCNN from facenet-pytorch (boxes, scores and
the five landmarks that :mod:`faceattr.inference.align` needs; its weights ship in the wheel, so nothing
is downloaded) and OpenCV's frontal-face Haar cascade (boxes only: a fallback without torch
weights). Large photos are detected on a copy whose longer side is at most ``max_side`` and the
results mapped back, so a 12-megapixel photo costs about what a 1-megapixel one does.
facenet-pytorch and OpenCV are imported on first use, never at import time.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from faceattr.errors import DetectorError
from faceattr.image import check_rgb

logger = logging.getLogger(__name__)

#: The detector kinds :class:`FaceDetector` accepts.
KINDS: tuple[str, ...] = ("mtcnn", "haar")

#: On a downscaled copy, the smallest face looked for never goes below this many pixels of the
#: copy. MTCNN's first network scans 12x12 windows over a pyramid that starts at scale
#: ``12 / smallest face``, so its cost goes with the square of that: on the 1024x768 copy of
#: a 4000x3000 photo, 12 px (a full-size first level) took about 2x the time of 20 px, and on
#: the 1024 px copies of the 40 photos of ../shared/data/faces both found the same 50 faces.
#: 20 px of a 1024 px copy is 2% of the photo's longer side (78 px of a 4000 px photo): raise
#: ``max_side`` to find smaller faces in large photos.
COPY_MIN_FACE = 20

#: OpenCV's cascade file, in the folder ``cv2.data.haarcascades``.
HAAR_CASCADE = "haarcascade_frontalface_default.xml"

#: Raw detections in the pixels of the image the detector saw: boxes ``(N, 4)``, scores
#: ``(N,)`` and landmarks ``(N, 5, 2)`` (``None`` for Haar).
_Raw = tuple[np.ndarray, np.ndarray, np.ndarray | None]


# eq=False: the generated __eq__ would compare landmark arrays with ``==`` and raise; compare
# ``to_dict()`` instead.
@dataclass(frozen=True, eq=False)
class Detection:
    """One face found in an image.

    Attributes:
        box: ``(x1, y1, x2, y2)`` in pixels of the input image.
        score: The detector's confidence, 0-1 (always 1.0 for the Haar detector).
        landmarks: ``(5, 2)`` float32 ``x, y`` in pixels of the input image, in MTCNN's order:
            image-left eye, image-right eye, nose, image-left mouth corner, image-right mouth
            corner; ``None`` for the Haar detector.

    >>> Detection((1.0, 2.0, 3.0, 4.0), 0.5, None).to_dict()
    {'box': [1.0, 2.0, 3.0, 4.0], 'score': 0.5, 'landmarks': None}
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray | None = None

    def to_dict(self) -> dict[str, Any]:
        """The detection as plain lists and floats (JSON-ready)."""
        landmarks = None if self.landmarks is None else self.landmarks.astype(float).tolist()
        return {"box": [float(v) for v in self.box], "score": float(self.score), "landmarks": landmarks}


@dataclass(frozen=True)
class _Plan:
    """The copy a detector runs on and how to map its pixels back to the original's."""

    image: np.ndarray
    scale_x: float  # original pixels per pixel of the copy, horizontally
    scale_y: float
    min_face: int  # smallest face asked for, in pixels of the copy

    @property
    def key(self) -> tuple[tuple[int, ...], int]:
        """Images with equal keys can share one MTCNN batch."""
        return self.image.shape, self.min_face

    @property
    def too_small(self) -> bool:
        """The copy's shorter side is under the smallest face asked for: it cannot hold one.

        MTCNN's pyramid starts at scale ``12 / min_face`` and keeps the levels whose shorter
        side is at least its 12 px window; on such an image it has no level and raises a raw
        ``torch.cat()`` error. The same arithmetic as facenet-pytorch's, so exactly those images.
        """
        return min(self.image.shape[:2]) * (12 / self.min_face) < 12


def _plan(image: np.ndarray, max_side: int, min_face_size: int) -> _Plan:
    """Downscales ``image`` so that its longer side is at most ``max_side`` (INTER_AREA)."""
    height, width = image.shape[:2]
    if max(height, width) <= max_side:
        return _Plan(image, 1.0, 1.0, min_face_size)
    import cv2

    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    min_face = max(COPY_MIN_FACE, round(min_face_size * scale))
    return _Plan(small, width / size[0], height / size[1], min_face)


def _detections(raw: _Raw, plan: _Plan, min_score: float) -> list[Detection]:
    """Maps raw detections back to the original's pixels, keeps ``score >= min_score``, best first."""
    boxes, scores, landmarks = raw
    scale = np.array([plan.scale_x, plan.scale_y], dtype=np.float64)
    found = []
    for i in np.argsort(-scores, kind="stable"):
        if scores[i] < min_score:
            continue
        box = (boxes[i].reshape(2, 2) * scale).ravel()
        points = None if landmarks is None else (landmarks[i] * scale).astype(np.float32)
        found.append(Detection(tuple(float(v) for v in box), float(scores[i]), points))
    return found


#: What an image without faces gives.
_NO_FACES: _Raw = (np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2)))


def _mtcnn_raw(boxes: Any, probs: Any, points: Any) -> _Raw:
    """One image's output of ``MTCNN.detect`` (object arrays, ``None`` for no face) as float arrays."""
    if boxes is None:
        return _NO_FACES
    return (np.asarray(boxes, dtype=np.float64).reshape(-1, 4), np.asarray(probs, dtype=np.float64).ravel(),
            np.asarray(points, dtype=np.float64).reshape(-1, 5, 2))


class FaceDetector:
    """Finds faces in RGB images with MTCNN (boxes, scores, landmarks) or a Haar cascade (boxes).

    The detector is created on first use. Photos whose longer side exceeds ``max_side`` are
    detected on a downscaled copy; boxes and landmarks are returned in the original's pixels.

    Args:
        kind: ``"mtcnn"`` or ``"haar"``.
        device: Torch device for MTCNN (``"cpu"``, ``"cuda"``, ...); unused by Haar.
        min_face_size: Smallest face to look for, in pixels of the input image. On a
            downscaled copy it shrinks with the image, but never below :data:`COPY_MIN_FACE`
            pixels of the copy.
        thresholds: MTCNN's three stage thresholds (P-Net, R-Net, O-Net).
        min_score: Faces scoring below this are dropped.
        max_side: Longest side, in pixels, that the detector sees.

    Raises:
        ValueError: If ``kind`` is not one of :data:`KINDS` or a number is out of range.

    The first :meth:`detect` with ``kind="haar"`` raises :class:`~faceattr.errors.DetectorError`
    where OpenCV has no Haar cascades (OpenCV 5 moved them out of the main package).

    >>> detector = FaceDetector("mtcnn", min_score=0.95)
    >>> detector.detect(np.zeros((64, 64, 3), np.uint8))
    []
    """

    def __init__(self, kind: str = "mtcnn", device: str = "cpu", min_face_size: int = 20,
                 thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7), min_score: float = 0.9,
                 max_side: int = 1024):
        if kind not in KINDS:
            raise ValueError(f"kind: {kind!r} is not one of {', '.join(KINDS)}")
        if min_face_size < 1 or max_side < COPY_MIN_FACE:
            raise ValueError(f"min_face_size ({min_face_size}) must be >= 1 and max_side ({max_side}) "
                             f">= {COPY_MIN_FACE}")
        self.kind = kind
        self.device = device
        self.min_face_size = min_face_size
        self.thresholds = tuple(thresholds)
        self.min_score = min_score
        self.max_side = max_side
        self._model: Any = None

    def __repr__(self) -> str:
        return (f"FaceDetector(kind={self.kind!r}, device={self.device!r}, min_face_size={self.min_face_size}, "
                f"thresholds={self.thresholds}, min_score={self.min_score}, max_side={self.max_side})")

    def needed_side(self, face_pixels: float) -> int:
        """The longer side a photo must keep so that the smallest face this detector finds spans ``face_pixels``.

        A reader may decode a large photo at a reduced size (JPEG draft decoding) down to this
        side without changing what is detected (the copy is never enlarged) or leaving a face
        that is found smaller than ``face_pixels``.

        Args:
            face_pixels: Width in pixels that every face found should keep.

        Returns:
            At least ``max_side``.

        >>> FaceDetector(max_side=1024).needed_side(35.2)
        1803
        """
        return max(self.max_side, math.ceil(face_pixels * self.max_side / COPY_MIN_FACE))

    def detect(self, image: np.ndarray) -> list[Detection]:
        """The faces in one image, best score first.

        Args:
            image: RGB uint8 array ``(H, W, 3)``.

        Returns:
            One :class:`Detection` per face scoring at least ``min_score``; ``[]`` if none,
            also for an image (or its downscaled copy) whose shorter side is under the smallest
            face looked for (a 12x12 icon, a 30x4000 banner).

        Raises:
            ValueError: If ``image`` is not an RGB uint8 ``(H, W, 3)`` array.
        """
        plan = _plan(check_rgb(image), self.max_side, self.min_face_size)
        return _detections(self._run([plan])[0], plan, self.min_score)

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        """The faces in each of several images of any sizes, in input order.

        Images that are the same size after downscaling go through MTCNN as one batch; if
        facenet-pytorch fails on a batch, its images are detected one at a time instead.

        Args:
            images: RGB uint8 arrays ``(H, W, 3)``.

        Returns:
            For each image, what :meth:`detect` returns for it.

        Raises:
            ValueError: If an image is not an RGB uint8 ``(H, W, 3)`` array (the message names it).
        """
        plans = [_plan(check_rgb(image, f"images[{i}]"), self.max_side, self.min_face_size)
                 for i, image in enumerate(images)]
        groups: dict[tuple[tuple[int, ...], int], list[int]] = {}
        for i, plan in enumerate(plans):
            groups.setdefault(plan.key, []).append(i)
        results: list[list[Detection]] = [[] for _ in plans]
        for indices in groups.values():
            group = [plans[i] for i in indices]
            for i, plan, raw in zip(indices, group, self._run(group)):
                results[i] = _detections(raw, plan, self.min_score)
        return results

    def _run(self, plans: list[_Plan]) -> list[_Raw]:
        """Raw detections for plans that share one key (size and smallest face)."""
        if plans[0].too_small:
            return [_NO_FACES] * len(plans)
        if self.kind == "haar":
            return [self._haar(plan) for plan in plans]
        mtcnn = self._load()
        # MTCNN fixes min_face_size at construction; it is read at each detect, so setting it
        # here lets one detector serve every downscaling factor.
        mtcnn.min_face_size = plans[0].min_face
        if len(plans) > 1:
            try:
                boxes, probs, points = mtcnn.detect(np.stack([plan.image for plan in plans]), landmarks=True)
                return [_mtcnn_raw(*item) for item in zip(boxes, probs, points)]
            except ValueError as error:
                # facenet-pytorch builds numpy arrays from ragged per-image results and fails on
                # some mixes of face counts (its issues #206, #224); one image at a time never does.
                logger.warning("MTCNN batch of %d failed (%s); detecting one image at a time", len(plans), error)
        return [_mtcnn_raw(*mtcnn.detect(plan.image, landmarks=True)) for plan in plans]

    def _haar(self, plan: _Plan) -> _Raw:
        """Haar cascade boxes on one plan's image, score 1.0, no landmarks."""
        import cv2

        gray = cv2.cvtColor(plan.image, cv2.COLOR_RGB2GRAY)
        found = self._load().detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5,
                                              minSize=(plan.min_face, plan.min_face))
        boxes = np.asarray(found, dtype=np.float64).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]  # (x, y, w, h) -> (x1, y1, x2, y2)
        return boxes, np.ones(len(boxes)), None

    def _load(self) -> Any:
        """The underlying detector, created on first use."""
        if self._model is not None:
            return self._model
        if self.kind == "mtcnn":
            from facenet_pytorch import MTCNN

            self._model = MTCNN(keep_all=True, device=self.device, min_face_size=self.min_face_size,
                                thresholds=list(self.thresholds))
        else:
            import cv2

            # OpenCV 5 dropped CascadeClassifier and its cascade files from the main package.
            if not hasattr(cv2, "CascadeClassifier"):
                raise DetectorError(f"kind 'haar' needs OpenCV 4's CascadeClassifier and {HAAR_CASCADE}, which "
                                    f"OpenCV {cv2.__version__} lacks: install opencv-python-headless<5 "
                                    "or use kind 'mtcnn'")
            path = cv2.data.haarcascades + HAAR_CASCADE
            cascade = cv2.CascadeClassifier(path)
            if cascade.empty():
                raise DetectorError(f"{path}: cannot load OpenCV's Haar cascade")
            self._model = cascade
        logger.info("created %r", self)
        return self._model
