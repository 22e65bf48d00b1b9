"""The video demo's run loop: frames in, each face's box, track id, attributes and beauty drawn, FPS shown.

Frames come from a camera, a video file or a stream (:func:`open_source`); faces are followed
across frames by :class:`~faceattr.inference.video.VideoPredictor`, drawn with
:func:`~faceattr.inference.annotate.annotate` and an FPS meter, then shown in a window and/or
written to a video file (:func:`open_writer`). tools/webcam_demo.py is the command; OpenCV,
torch and the model are imported only when a run starts.

>>> DemoOptions("0").problems()
[]
>>> DemoOptions("clip.mp4", detect_every=0, smoothing=1.0).problems()
['--detect-every must be at least 1', '--smoothing must be in [0, 1)']
"""

from __future__ import annotations

import os
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from faceattr.errors import ImageError
from faceattr.inference.annotate import annotate
from faceattr.inference.detect import FaceDetector
from faceattr.inference.video import FaceTracker, TrackedFace, VideoPredictor

WINDOW = "faceattr demo"
#: Frames averaged by the FPS meter.
FPS_WINDOW = 30
#: Frame rate written to --output when the source does not report one (cameras often do not).
DEFAULT_FPS = 25.0
#: Keys that close the window: q and Esc.
QUIT_KEYS = (ord("q"), 27)

NO_GUI = """the installed OpenCV ({version}) has no GUI support (it is the headless build that faceattr installs), so it cannot open a window. Either
  - install the GUI build: pip uninstall -y opencv-python-headless && pip install "opencv-python<5"
    (or, after uninstalling the headless build: pip install "faceattr[demo]"), or
  - run without a window and write the annotated video: --headless --output demo.mp4"""


@dataclass
class DemoStats:
    """What a run did: frames, detector runs, time, and the faces (track ids) of each frame."""

    frames: int = 0
    detector_runs: int = 0
    seconds: float = 0.0
    track_ids: list[list[int]] = field(default_factory=list)

    @property
    def mean_fps(self) -> float:
        """Frames per second over the whole run (reading, detection, classification, drawing, writing)."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        """The lines printed at the end of a run."""
        tracks = len({i for ids in self.track_ids for i in ids})
        with_faces = sum(1 for ids in self.track_ids if ids)
        return (f"frames processed: {self.frames} ({with_faces} with faces, {tracks} face tracks)\n"
                f"mean FPS: {self.mean_fps:.1f}\n"
                f"detector runs / frames: {self.detector_runs} / {self.frames}")


class FpsMeter:
    """Frames per second over the last ``window`` frames.

    >>> meter = FpsMeter(window=3)
    >>> for t in (0.0, 0.1, 0.2, 0.3):
    ...     meter.tick(t)
    >>> round(meter.fps, 6)
    10.0
    """

    def __init__(self, window: int = FPS_WINDOW):
        self.times: deque[float] = deque(maxlen=window + 1)

    def tick(self, now: float | None = None) -> None:
        """Records that a frame was shown at ``now`` (default: ``time.perf_counter()``)."""
        self.times.append(time.perf_counter() if now is None else now)

    @property
    def fps(self) -> float:
        """The frame rate, 0 until two frames are recorded."""
        elapsed = self.times[-1] - self.times[0] if len(self.times) > 1 else 0.0
        return (len(self.times) - 1) / elapsed if elapsed > 0 else 0.0



@dataclass(frozen=True)
class DemoOptions:
    """How :func:`run_demo` runs: tools/webcam_demo.py's options, one field per flag.

    Attributes:
        source: Camera index (``"0"``), video file or stream URL.
        model: The model file; ``None`` for the default model installed with faceattr.
        headless: Open no window.
        output: Write the annotated video here (``.avi``: MJPG, else mp4v), or ``None``.
        max_frames: Stop after this many frames (``None``: at the end of the source).
        max_side: Longest side the detector sees, in pixels.
        min_face_size: Smallest face found, in frame pixels.
        detect_every: Run the detector at least every this many frames (and when the picture moves).
        motion_threshold: Mean gray-level change (0-255) that makes the detector run again.
        smoothing: Weight of the past in each face's moving average, 0-1.
        top: Present attributes drawn per face.
        device: ``auto``, ``cpu`` or ``cuda``.
        threads: Torch CPU threads (0 keeps torch's default).
    """

    source: str
    model: str | None = None
    headless: bool = False
    output: str | None = None
    max_frames: int | None = None
    max_side: int = 320
    min_face_size: int = 40
    detect_every: int = 10
    motion_threshold: float = 12.0
    smoothing: float = 0.6
    top: int = 3
    device: str = "auto"
    threads: int = 1

    def problems(self) -> list[str]:
        """What is wrong with the options, named by their flags (empty when nothing is)."""
        problems = [f"--{name.replace('_', '-')} must be at least {low}" for name, low in
                    (("max_frames", 1), ("detect_every", 1), ("max_side", 32), ("min_face_size", 1), ("top", 0))
                    if getattr(self, name) is not None and getattr(self, name) < low]
        if not 0.0 <= self.smoothing < 1.0:
            problems.append("--smoothing must be in [0, 1)")
        return problems


def gui_problem() -> str | None:
    """Why a window cannot be opened (no GUI in this OpenCV build, no display), or ``None`` if it can."""
    import cv2

    gui = [line.split(":", 1)[1].strip() for line in cv2.getBuildInformation().splitlines()
           if line.strip().startswith("GUI:")]
    if not gui or gui[0].upper() == "NONE":
        return NO_GUI.format(version=cv2.__version__)
    # A GUI build without a display aborts the process inside Qt/GTK instead of raising.
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "no display to open a window on (DISPLAY is not set): run with --headless --output demo.mp4"
    return None


def open_source(source: str) -> Any:
    """An opened ``cv2.VideoCapture``: a camera for an integer, else a file or URL.

    Raises:
        ImageError: The source cannot be opened (the message names it).
    """
    import cv2

    capture = cv2.VideoCapture(int(source) if source.isdigit() else source)
    if not capture.isOpened():
        what = f"camera {source} not found" if source.isdigit() else "cannot open video file or stream"
        raise ImageError(f"{source}: {what}")
    return capture


def open_writer(path: str, fps: float, size: tuple[int, int]) -> Any:
    """An opened ``cv2.VideoWriter`` for ``path`` (MJPG for .avi, mp4v otherwise).

    Raises:
        ImageError: OpenCV cannot write there (the message names the file).
    """
    import cv2

    codec = "MJPG" if path.lower().endswith(".avi") else "mp4v"
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*codec), fps, size)
    if not writer.isOpened():
        raise ImageError(f"{path}: cannot write a {codec} video there")
    return writer


def draw(frame: np.ndarray, tracked: Sequence[TrackedFace], fps: float, top: int) -> np.ndarray:
    """The RGB frame with each tracked face (box, ``#id``, labels) and the FPS meter drawn on a copy."""
    canvas = annotate(frame, [t.face for t in tracked], top, ids=[t.track_id for t in tracked])
    _draw_fps(canvas, fps)
    return canvas


def _draw_fps(canvas: np.ndarray, fps: float) -> None:
    """Writes the frame rate in white on black in the top-left corner."""
    import cv2

    text, font, scale = f"{fps:5.1f} FPS", cv2.FONT_HERSHEY_SIMPLEX, 0.5
    (width, height), base = cv2.getTextSize(text, font, scale, 1)
    cv2.rectangle(canvas, (0, 0), (width + 6, height + base + 6), (0, 0, 0), -1)
    cv2.putText(canvas, text, (3, height + 3), font, scale, (255, 255, 255), 1, cv2.LINE_AA)


def build_video_predictor(options: DemoOptions) -> VideoPredictor:
    """The :class:`~faceattr.inference.video.VideoPredictor` of ``options`` (loads the model and MTCNN).

    Raises:
        CheckpointError: The model is missing or unusable.
    """
    import torch

    from faceattr.inference.predictor import Predictor
    from faceattr.runtime import select_device

    if options.threads > 0:
        # One frame's batch is one or two 64-px faces: too little work to share between threads.
        # With several, each convolution waits for every thread, so on a busy CPU one stalled
        # thread stalls the frame (measured 12 ms vs 270 ms per forward on the busy 2-core CI machine).
        torch.set_num_threads(options.threads)
    # The detector must sit on the predictor's device, so "auto" is resolved here once for both.
    device = str(select_device("auto")) if options.device == "auto" else options.device
    detector = FaceDetector("mtcnn", device=device, min_face_size=options.min_face_size, max_side=options.max_side)
    predictor = Predictor(options.model, device=device, detector=detector)
    return VideoPredictor(predictor, detect_every=options.detect_every, motion_threshold=options.motion_threshold,
                          tracker=FaceTracker(predictor.thresholds, smoothing=options.smoothing))


def run_demo(options: DemoOptions) -> DemoStats:
    """Reads, annotates and shows or writes the frames of ``options.source``; returns what it did.

    Raises:
        FaceAttrError: No model, unreadable model or source, or an output that cannot be written.
    """
    import cv2

    from faceattr.models.deployed import DeployedModel

    if options.model is None:
        DeployedModel.path_of(None)  # where no default model is installed, say so before opening the camera
    # The source first: a wrong camera index or path is reported before seconds of model loading.
    capture = open_source(options.source)
    writer = None
    stats, meter = DemoStats(), FpsMeter()
    try:
        video = build_video_predictor(options)
        start = time.perf_counter()
        while options.max_frames is None or stats.frames < options.max_frames:
            ok, bgr = capture.read()
            if not ok:
                break
            # OpenCV decodes to BGR; the detector and the network take RGB: convert once, and back once to write.
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            tracked = video.process(rgb)
            shown = cv2.cvtColor(draw(rgb, tracked, meter.fps, options.top), cv2.COLOR_RGB2BGR)
            if options.output is not None:
                if writer is None:
                    fps = capture.get(cv2.CAP_PROP_FPS) or DEFAULT_FPS
                    writer = open_writer(options.output, fps, (shown.shape[1], shown.shape[0]))
                writer.write(shown)
            stats.frames += 1
            stats.track_ids.append(sorted(t.track_id for t in tracked))
            meter.tick()
            if not options.headless:
                cv2.imshow(WINDOW, shown)
                if (cv2.waitKey(1) & 0xFF) in QUIT_KEYS:
                    break
        stats.seconds = time.perf_counter() - start
        stats.detector_runs = video.detector_runs
    finally:
        capture.release()
        if writer is not None:
            writer.release()
        if not options.headless:
            cv2.destroyAllWindows()
    if stats.frames == 0:
        raise ImageError(f"{options.source}: no frame could be read")
    return stats
