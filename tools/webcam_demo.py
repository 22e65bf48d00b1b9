"""Live or recorded video with each face's box, track id, present attributes and beauty score drawn on it.

SOURCE is a camera index (0 is the default webcam), a video file or a stream URL (anything
cv2.VideoCapture opens). Faces are followed across frames (faceattr.inference.video): attributes are
smoothed per face so labels do not flicker, and the detector runs on a copy at most --max-side
pixels long, only every --detect-every frames or when the picture moves; other frames reuse
its boxes. An FPS meter (average of the last 30 frames) sits in the top-left corner. In the
window, q or Esc quits.

--headless opens no window (for servers, tests and benchmarks); with --output it writes the
annotated video (.avi: MJPG, anything else: mp4v). The window needs an OpenCV built with GUI
support: faceattr installs opencv-python-headless, which has none (see the message it gives).

Without --model the default model installed with faceattr is used.

Examples:
    python tools/webcam_demo.py 0
    python tools/webcam_demo.py 0 --model runs/demo/best.pt
    python tools/webcam_demo.py clip.mp4 --model runs/demo/best.pt --headless --output annotated.mp4
    python tools/webcam_demo.py rtsp://camera.local/stream --model best.pt --max-side 480 --detect-every 5

Exit status: 0 done, 2 usage error (no model, unreadable source or model, output not writable,
no GUI for the window), 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from faceattr.errors import FaceAttrError, ImageError

EXIT_OK, EXIT_USAGE, EXIT_INTERRUPTED = 0, 2, 130
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


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Facial attributes and beauty on live or recorded video.",
                                     epilog=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", metavar="SOURCE", help="camera index (0, 1, ...), video file or stream URL")
    parser.add_argument("--model", metavar="MODEL",
                        help="a best.pt written by tools/train.py or a .safetensors written by tools/export_model.py "
                             "(default: the model installed with faceattr)")
    parser.add_argument("--headless", action="store_true", help="open no window")
    parser.add_argument("--output", metavar="FILE", help="write the annotated video here (.avi: MJPG, else mp4v)")
    parser.add_argument("--max-frames", type=int, metavar="N", help="stop after N frames")
    parser.add_argument("--max-side", type=int, default=320, metavar="PX",
                        help="longest side the detector sees; larger frames are detected on a smaller copy "
                             "(default: 320, half of a 640x480 frame)")
    parser.add_argument("--min-face-size", type=int, default=40, metavar="PX",
                        help="smallest face found, in frame pixels (default: 40)")
    parser.add_argument("--detect-every", type=int, default=10, metavar="N",
                        help="run the detector at least every N frames, and whenever the picture moves (default: 10; "
                             "1: every frame)")
    parser.add_argument("--motion-threshold", type=float, default=12.0, metavar="GRAY",
                        help="mean gray-level change (0-255) of the frame or a face since the last detection that "
                             "makes the detector run again (default: 12)")
    parser.add_argument("--smoothing", type=float, default=0.6,
                        help="weight of the past in each face's moving average, 0-1 (default: 0.6; 0: none)")
    parser.add_argument("--top", type=int, default=3, metavar="K", help="present attributes drawn per face (default: 3)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: auto")
    parser.add_argument("--threads", type=int, default=1, metavar="N",
                        help="torch CPU threads (default: 1; 0 keeps torch's default)")
    return parser


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


def draw(frame: np.ndarray, tracked: Sequence[Any], fps: float, top: int) -> np.ndarray:
    """The RGB frame with each tracked face (box, ``#id``, labels) and the FPS meter drawn on a copy."""
    from faceattr.inference.annotate import annotate

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


def build_video_predictor(args: argparse.Namespace) -> Any:
    """The :class:`faceattr.inference.video.VideoPredictor` of the arguments (loads the model and MTCNN).

    Raises:
        CheckpointError: The model is missing or unusable.
    """
    from faceattr.inference.detect import FaceDetector
    from faceattr.inference.predictor import Predictor
    from faceattr.runtime import select_device
    from faceattr.inference.video import FaceTracker, VideoPredictor

    if args.threads > 0:
        import torch

        # One frame's batch is one or two 64-px faces: too little work to share between threads.
        # With several, each convolution waits for every thread, so on a busy CPU one stalled
        # thread stalls the frame (measured 12 ms vs 270 ms per forward on the busy 2-core CI machine).
        torch.set_num_threads(args.threads)
    # The detector must sit on the predictor's device, so "auto" is resolved here once for both.
    device = str(select_device("auto")) if args.device == "auto" else args.device
    detector = FaceDetector("mtcnn", device=device, min_face_size=args.min_face_size, max_side=args.max_side)
    predictor = Predictor(args.model, device=device, detector=detector)
    return VideoPredictor(predictor, detect_every=args.detect_every, motion_threshold=args.motion_threshold,
                          tracker=FaceTracker(predictor.thresholds, smoothing=args.smoothing))


def run(args: argparse.Namespace) -> DemoStats:
    """Reads, annotates and shows or writes the frames of ``args.source``; returns what it did.

    Raises:
        FaceAttrError: No model, unreadable model or source, or an output that cannot be written.
    """
    import cv2

    from faceattr.models.deployed import DeployedModel

    if args.model is None:
        DeployedModel.path_of(None)  # where no default model is installed, say so before opening the camera
    # The source first: a wrong camera index or path is reported before seconds of model loading.
    capture = open_source(args.source)
    writer = None
    stats, meter = DemoStats(), FpsMeter()
    try:
        video = build_video_predictor(args)
        start = time.perf_counter()
        while args.max_frames is None or stats.frames < args.max_frames:
            ok, bgr = capture.read()
            if not ok:
                break
            # OpenCV decodes to BGR; the detector and the network take RGB: convert once, and back once to write.
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            tracked = video.process(rgb)
            shown = cv2.cvtColor(draw(rgb, tracked, meter.fps, args.top), cv2.COLOR_RGB2BGR)
            if args.output is not None:
                if writer is None:
                    fps = capture.get(cv2.CAP_PROP_FPS) or DEFAULT_FPS
                    writer = open_writer(args.output, fps, (shown.shape[1], shown.shape[0]))
                writer.write(shown)
            stats.frames += 1
            stats.track_ids.append(sorted(t.track_id for t in tracked))
            meter.tick()
            if not args.headless:
                cv2.imshow(WINDOW, shown)
                if (cv2.waitKey(1) & 0xFF) in QUIT_KEYS:
                    break
        stats.seconds = time.perf_counter() - start
        stats.detector_runs = video.detector_runs
    finally:
        capture.release()
        if writer is not None:
            writer.release()
        if not args.headless:
            cv2.destroyAllWindows()
    if stats.frames == 0:
        raise ImageError(f"{args.source}: no frame could be read")
    return stats


def main(argv: list[str] | None = None) -> int:
    """Runs the demo; returns the exit status (0 done, 2 usage error, 130 interrupted)."""
    parser = get_args_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # argparse exits on --help and usage errors
        return int(stop.code or 0)
    problems = [f"--{name.replace('_', '-')} must be at least {low}" for name, low in
                (("max_frames", 1), ("detect_every", 1), ("max_side", 32), ("min_face_size", 1), ("top", 0))
                if getattr(args, name) is not None and getattr(args, name) < low]
    if not 0.0 <= args.smoothing < 1.0:
        problems.append("--smoothing must be in [0, 1)")
    if problems:
        print(f"webcam_demo: {'; '.join(problems)}", file=sys.stderr)
        return EXIT_USAGE
    if not args.headless and (problem := gui_problem()) is not None:
        print(f"webcam_demo: {problem}", file=sys.stderr)
        return EXIT_USAGE
    try:
        stats = run(args)
    except FaceAttrError as error:
        print(f"webcam_demo: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("webcam_demo: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(stats.summary())
    if args.output is not None:
        print(f"annotated video: {args.output}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
