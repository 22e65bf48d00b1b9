"""Faces across video frames: tracks with stable ids, smoothed attributes, detection reused while faces stay still.

Two pieces, used together by :class:`VideoPredictor` (and ``tools/webcam_demo.py``):

* :class:`FaceTracker` matches each frame's faces to the tracks of earlier frames by box overlap
  (IoU, greedy, best pair first), so a face keeps its id; it smooths each track's attribute
  probabilities and beauty score with an exponential moving average, and turns an attribute on at
  its threshold but off only below ``threshold - hysteresis``, so labels do not flicker.
* :class:`VideoPredictor` runs the face detector only when needed and otherwise reuses the last
  detections (boxes and landmarks) and only classifies the faces (:meth:`Predictor.classify`).

The detection rule of :class:`VideoPredictor`: the detector runs on a frame when

1. no frame has been detected yet, or the frame size changed;
2. ``detect_every`` frames have passed since the last detection (a new face entering a still
   scene is found within that many frames);
3. the frame moved since the last detection: :func:`motion` between the two frames' grayscale
   thumbnails (1/:data:`THUMBNAIL_FACTOR` scale) exceeds ``motion_threshold`` (gray levels,
   0-255). The measure is the largest of the mean absolute difference over the whole thumbnail
   and over each face box, so a small face moving in a still scene counts as much as a pan.

Frames are compared with the frame of the *last detection*, not the previous frame, so a slow
drift adds up until it triggers a detection.

>>> tracker = FaceTracker(thresholds=[0.5] * 40, smoothing=0.5)
>>> tracker.max_missed
5
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from faceattr.attributes import ATTRIBUTES
from faceattr.image import check_rgb, read_image
from faceattr.inference.detect import Detection
from faceattr.inference.results import FaceResult

logger = logging.getLogger(__name__)

#: Frames are compared on grayscale thumbnails this many times smaller on each side.
THUMBNAIL_FACTOR = 8

_Box = tuple[float, float, float, float]


class _Classifier(Protocol):
    """What :class:`VideoPredictor` needs of a :class:`~faceattr.inference.predictor.Predictor`."""

    thresholds: np.ndarray
    detector: Any

    def classify(self, arrays: Sequence[np.ndarray], detections: Sequence[Sequence[Detection]]
                 ) -> list[list[FaceResult]]: ...


@dataclass(frozen=True)
class TrackedFace:
    """A face of the current frame, with the id of its track and its smoothed results.

    Attributes:
        track_id: The track's id, from 1, kept while the face is matched frame to frame.
        face: The face with its probabilities, beauty and attributes smoothed over the track
            (box, score and landmarks are this frame's).

    >>> TrackedFace(3, FaceResult((0.0, 0.0, 9.0, 9.0), 1.0, None, {}, (), 3.0)).track_id
    3
    """

    track_id: int
    face: FaceResult


def iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """The intersection over union of every box of ``boxes_a`` with every box of ``boxes_b``.

    Args:
        boxes_a: ``(N, 4)`` boxes ``(x1, y1, x2, y2)``.
        boxes_b: ``(M, 4)`` boxes.

    Returns:
        ``(N, M)`` IoU values in 0-1 (0 for empty boxes).

    >>> iou(np.array([[0, 0, 10, 10]]), np.array([[5, 0, 15, 10], [20, 20, 30, 30]])).round(3).tolist()
    [[0.333, 0.0]]
    """
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 1, 4)
    b = np.asarray(boxes_b, dtype=np.float64).reshape(1, -1, 4)
    width = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    height = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = width * height
    area_a = np.clip(a[..., 2] - a[..., 0], 0, None) * np.clip(a[..., 3] - a[..., 1], 0, None)
    area_b = np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)
    union = area_a + area_b - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def match(overlaps: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """Greedy one-to-one matching: the pair of highest overlap first, then the best of the rest.

    Args:
        overlaps: ``(N, M)`` scores (IoU) of N tracks against M faces.
        threshold: Pairs below this never match.

    Returns:
        ``(row, column)`` pairs, best first.

    >>> match(np.array([[0.9, 0.5], [0.8, 0.1]]), 0.3)
    [(0, 0)]
    """
    pairs = []
    taken_rows: set[int] = set()
    taken_columns: set[int] = set()
    for flat in np.argsort(-overlaps, axis=None, kind="stable"):
        row, column = divmod(int(flat), overlaps.shape[1])
        if overlaps[row, column] < threshold:
            break
        if row not in taken_rows and column not in taken_columns:
            pairs.append((row, column))
            taken_rows.add(row)
            taken_columns.add(column)
    return pairs


@dataclass
class _Track:
    """One face followed across frames: its smoothed numbers and which attributes are on."""

    track_id: int
    box: _Box
    probabilities: np.ndarray
    beauty: float
    present: np.ndarray
    missed: int = 0


class FaceTracker:
    """Follows faces from frame to frame and smooths their attributes and beauty.

    Each call of :meth:`update` matches the frame's faces to the live tracks by IoU (greedy, best
    pair first, at least ``iou_threshold``); an unmatched face starts a new track with the next id.
    A matched track's values move towards the frame's: ``smoothed = smoothing * smoothed +
    (1 - smoothing) * new``. An attribute turns on when its smoothed probability reaches the
    threshold and off only when it falls below ``threshold - hysteresis``. A track left unmatched
    for more than ``max_missed`` consecutive frames is dropped: a face that comes back after
    that gets a new id.

    Args:
        thresholds: The 40 decision thresholds, in :data:`faceattr.ATTRIBUTES` order
            (``Predictor.thresholds``).
        smoothing: Weight of the past, 0-1 (0: no smoothing, each frame's values as they are).
        iou_threshold: Smallest box overlap that continues a track.
        max_missed: Frames a track survives without a match.
        hysteresis: How far below its threshold a present attribute must fall to turn off.

    Raises:
        ValueError: A value is out of range or ``thresholds`` does not have 40 numbers.

    >>> face = FaceResult((0.0, 0.0, 10.0, 10.0), 1.0, None, dict.fromkeys(ATTRIBUTES, 0.8), (), 3.0)
    >>> tracker = FaceTracker([0.5] * 40)
    >>> [t.track_id for t in tracker.update([face])], [t.track_id for t in tracker.update([face])]
    ([1], [1])
    """

    def __init__(self, thresholds: Sequence[float] | np.ndarray, smoothing: float = 0.6, iou_threshold: float = 0.3,
                 max_missed: int = 5, hysteresis: float = 0.05):
        self.thresholds = np.asarray(thresholds, dtype=np.float64)
        if self.thresholds.shape != (len(ATTRIBUTES),):
            raise ValueError(f"thresholds: expected {len(ATTRIBUTES)} numbers, got shape {self.thresholds.shape}")
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"smoothing: must be in [0, 1), got {smoothing}")
        if not 0.0 < iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold: must be in (0, 1], got {iou_threshold}")
        if max_missed < 0 or hysteresis < 0:
            raise ValueError(f"max_missed ({max_missed}) and hysteresis ({hysteresis}) must be >= 0")
        self.smoothing = smoothing
        self.iou_threshold = iou_threshold
        self.max_missed = max_missed
        self.hysteresis = hysteresis
        self._tracks: list[_Track] = []
        self._next_id = 1

    def __repr__(self) -> str:
        return (f"FaceTracker(smoothing={self.smoothing}, iou_threshold={self.iou_threshold}, "
                f"max_missed={self.max_missed}, hysteresis={self.hysteresis})")

    @property
    def track_ids(self) -> list[int]:
        """The ids of the live tracks (matched recently enough), oldest first."""
        return [track.track_id for track in self._tracks]

    def update(self, faces: Sequence[FaceResult]) -> list[TrackedFace]:
        """Matches one frame's faces to the tracks and returns them smoothed.

        Args:
            faces: The frame's faces (from :meth:`Predictor.classify`); their probabilities
                must name the 40 attributes.

        Returns:
            One :class:`TrackedFace` per face, in the order of ``faces``.
        """
        boxes = np.array([face.box for face in faces], dtype=np.float64).reshape(-1, 4)
        track_boxes = np.array([track.box for track in self._tracks], dtype=np.float64).reshape(-1, 4)
        pairs = match(iou(track_boxes, boxes), self.iou_threshold)
        track_of = {column: self._tracks[row] for row, column in pairs}
        matched = {id(track) for track in track_of.values()}
        for track in self._tracks:
            if id(track) not in matched:
                track.missed += 1
        self._tracks = [track for track in self._tracks if track.missed <= self.max_missed]
        results = []
        for column, face in enumerate(faces):
            probabilities = np.array([face.probabilities[name] for name in ATTRIBUTES], dtype=np.float64)
            track = track_of.get(column)
            if track is None:
                track = _Track(self._next_id, face.box, probabilities, face.beauty,
                               np.zeros(len(ATTRIBUTES), dtype=bool))
                self._next_id += 1
                self._tracks.append(track)
            else:
                keep = self.smoothing
                track.probabilities = keep * track.probabilities + (1.0 - keep) * probabilities
                track.beauty = keep * track.beauty + (1.0 - keep) * face.beauty
                track.box, track.missed = face.box, 0
            # On at the threshold; once on, off only below threshold - hysteresis.
            track.present = np.where(track.present, track.probabilities >= self.thresholds - self.hysteresis,
                                     track.probabilities >= self.thresholds)
            smoothed = dataclasses.replace(
                face, probabilities={name: float(p) for name, p in zip(ATTRIBUTES, track.probabilities)},
                # Most probable first, as every FaceResult lists them (a stable sort: ties keep ATTRIBUTES order).
                attributes=tuple(ATTRIBUTES[c] for c in sorted(np.flatnonzero(track.present),
                                                                key=lambda c: -track.probabilities[c])),
                beauty=float(track.beauty))
            results.append(TrackedFace(track.track_id, smoothed))
        return results


def thumbnail(frame: np.ndarray) -> np.ndarray:
    """The grayscale thumbnail frames are compared on: 1/:data:`THUMBNAIL_FACTOR` per side, int16.

    >>> thumbnail(np.zeros((480, 640, 3), np.uint8)).shape
    (60, 80)
    """
    import cv2

    height, width = frame.shape[:2]
    size = (max(1, width // THUMBNAIL_FACTOR), max(1, height // THUMBNAIL_FACTOR))
    # Area averaging first, then gray: cheaper than the other way round, and it averages out sensor noise.
    small = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.int16)


def motion(reference: np.ndarray, current: np.ndarray, boxes: Sequence[_Box] = ()) -> float:
    """How much a frame changed: the largest mean absolute difference over the whole thumbnail and over each box.

    Args:
        reference: :func:`thumbnail` of the earlier frame.
        current: :func:`thumbnail` of this frame.
        boxes: Face boxes ``(x1, y1, x2, y2)`` in pixels of the full-size frame.

    Returns:
        Gray levels (0-255); ``inf`` when the thumbnails differ in size.

    >>> still = np.zeros((60, 80), np.int16)
    >>> motion(still, still), motion(still, still + 10)
    (0.0, 10.0)
    """
    if reference.shape != current.shape:
        return float("inf")
    difference = np.abs(current - reference)
    changes = [float(difference.mean())]
    height, width = difference.shape
    for x1, y1, x2, y2 in boxes:
        # Outward rounding: a face smaller than one thumbnail pixel still covers one.
        left, top = max(0, int(x1 // THUMBNAIL_FACTOR)), max(0, int(y1 // THUMBNAIL_FACTOR))
        right, bottom = min(width, int(-(-x2 // THUMBNAIL_FACTOR))), min(height, int(-(-y2 // THUMBNAIL_FACTOR)))
        if right > left and bottom > top:
            changes.append(float(difference[top:bottom, left:right].mean()))
    return max(changes)


class VideoPredictor:
    """Predicts the faces of consecutive video frames, detecting only when needed, with tracked smoothed results.

    See the module docstring for when the detector runs. On other frames the last detections
    (boxes and landmarks) are reused and only classified, which on a CPU is several times cheaper.

    Args:
        predictor: A :class:`~faceattr.inference.predictor.Predictor` (its ``detector``, ``classify`` and
            ``thresholds`` are used).
        detect_every: The detector runs at least every this many frames (1: every frame).
        motion_threshold: :func:`motion` (gray levels) above which the detector runs again.
        tracker: The tracker; by default ``FaceTracker(predictor.thresholds)``.

    Raises:
        ValueError: ``detect_every`` < 1 or ``motion_threshold`` < 0.

    >>> video = VideoPredictor(load_model("best.pt"), detect_every=10)  # doctest: +SKIP
    >>> faces = video.process(rgb_frame)  # doctest: +SKIP
    """

    def __init__(self, predictor: _Classifier, detect_every: int = 10, motion_threshold: float = 12.0,
                 tracker: FaceTracker | None = None):
        if detect_every < 1:
            raise ValueError(f"detect_every: must be at least 1, got {detect_every}")
        if motion_threshold < 0:
            raise ValueError(f"motion_threshold: must be >= 0, got {motion_threshold}")
        self.predictor = predictor
        self.detect_every = detect_every
        self.motion_threshold = motion_threshold
        self.tracker = tracker or FaceTracker(predictor.thresholds)
        #: Frames processed, and how many of them ran the detector.
        self.frames = 0
        self.detector_runs = 0
        #: Whether the last processed frame ran the detector.
        self.detected = False
        self._detections: list[Detection] = []
        self._reference: np.ndarray | None = None
        self._since_detection = 0

    def process(self, frame: np.ndarray, bgr: bool = False) -> list[TrackedFace]:
        """The tracked, smoothed faces of the next frame.

        Args:
            frame: RGB uint8 ``(H, W, 3)``, or BGR with ``bgr``.
            bgr: ``frame`` is BGR, as OpenCV's ``VideoCapture.read`` gives it.

        Returns:
            One :class:`TrackedFace` per face, best detector score first.

        Raises:
            ValueError: ``frame`` is not a uint8 ``(H, W, 3)`` array.
        """
        check_rgb(frame, "frame")
        if bgr:
            frame = read_image(frame, bgr=True)
        current = thumbnail(frame)
        self.detected = self._needs_detection(current)
        if self.detected:
            self._detections = self.predictor.detector.detect(frame)
            self._reference = current
            self._since_detection = 0
            self.detector_runs += 1
        self._since_detection += 1
        self.frames += 1
        faces = self.predictor.classify([frame], [self._detections])[0] if self._detections else []
        return self.tracker.update(faces)

    def _needs_detection(self, current: np.ndarray) -> bool:
        """The rule of the module docstring, on this frame's thumbnail."""
        if self._reference is None or self._since_detection >= self.detect_every:
            return True
        change = motion(self._reference, current, [d.box for d in self._detections])
        logger.debug("motion %.2f since the last detection", change)
        return change > self.motion_threshold
