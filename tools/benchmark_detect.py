"""Face detection time and peak memory: FaceDetector against facenet-pytorch's MTCNN used directly.

Two inputs, both made from the shared photos: a 4000x3000 photo with two faces (two_people.jpg
upscaled to 4000 px wide, the bottom edge rows repeated to 3000 px high) and a 640x480 frame
with one face (the middle of obama-480p.jpg). FaceDetector detects on a copy downscaled to at
most ``max_side`` pixels; MTCNN used directly runs its pyramid on the full image. Each case runs
in a fresh process, so its peak resident memory (ru_maxrss) is its own; the time is the median
of ``--runs`` detections after one untimed warm-up.

Examples:
    python tools/benchmark_detect.py
    python tools/benchmark_detect.py --runs 5 --data ../shared/data --out runs/bench
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

from faceattr.inference.benchmark import photo_folder, run_detect_benchmark

ROOT = Path(__file__).resolve().parents[1]


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Measure face detection time and memory.", epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=photo_folder, default=str(ROOT.parent / "shared" / "data"),
                        help="the shared data folder")
    parser.add_argument("--runs", type=int, default=3, help="timed detections per case (median reported)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--out", default="runs/bench", help="folder for detect.md and detect.json")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    run_detect_benchmark(args.data, args.runs, args.threads, args.out, report=functools.partial(print, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
