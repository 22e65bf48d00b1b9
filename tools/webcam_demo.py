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
import sys

from faceattr.errors import FaceAttrError
from faceattr.inference.webcam import DemoOptions, gui_problem, run_demo

EXIT_OK, EXIT_USAGE, EXIT_INTERRUPTED = 0, 2, 130


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


def main(argv: list[str] | None = None) -> int:
    """Runs the demo; returns the exit status (0 done, 2 usage error, 130 interrupted)."""
    parser = get_args_parser()
    try:
        options = DemoOptions(**vars(parser.parse_args(argv)))
    except SystemExit as stop:  # argparse exits on --help and usage errors
        return int(stop.code or 0)
    if problems := options.problems():
        print(f"webcam_demo: {'; '.join(problems)}", file=sys.stderr)
        return EXIT_USAGE
    if not options.headless and (problem := gui_problem()) is not None:
        print(f"webcam_demo: {problem}", file=sys.stderr)
        return EXIT_USAGE
    try:
        stats = run_demo(options)
    except FaceAttrError as error:
        print(f"webcam_demo: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("webcam_demo: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(stats.summary())
    if options.output is not None:
        print(f"annotated video: {options.output}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
