"""End-to-end prediction time and peak memory: from a JPEG on disk to the list of FaceResults.

``Predictor.predict(path)`` does everything a user pays for: decode (reduced for large JPEGs),
EXIF, detect, align, network, thresholds. Cases, each in a fresh process so that its peak
resident memory (ru_maxrss) is its own:

* a 4000x3000 JPEG with two faces and a 640x480 JPEG with one face (made from the shared photos
  as in ``tools/benchmark_detect.py``): the median of ``--runs`` predictions after a warm-up,
  with the time of each stage (read, detect, align, network) measured the same way;
* the reference for the 4000x3000 photo: decoding it and running facenet-pytorch's MTCNN
  directly on the full image (detection only, no attributes);
* a folder: every photo under ``faces/`` of the shared data, in images per second, one
  ``predict`` at a time against ``predict_many`` in batches of ``--batches``;
* video: ``tools/webcam_demo.py --headless`` on a 640x480 video of 150 frames made from the
  shared photos (20 still, 110 panning 1 px a frame, 20 of two people), writing the annotated
  video, in frames per second: with its defaults, and detecting on every frame.

Speed does not depend on the weights: without ``--model``, untrained checkpoints of the two
CPU configurations (ResNet-10-T and ResNet-18 at 64 px, as ``configs/demo.yaml`` and
``configs/resnet18_cpu.yaml``) are built and measured. Writes ``predict.md`` and ``predict.json``.

Examples:
    python tools/benchmark_predict.py
    python tools/benchmark_predict.py --runs 5 --model runs/demo/best.pt --device cuda
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

from faceattr.inference.benchmark import BACKBONES, photo_folder, run_predict_benchmark

ROOT = Path(__file__).resolve().parents[1]


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Measure end-to-end prediction time and memory.", epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=photo_folder, default=str(ROOT.parent / "shared" / "data"),
                        help="the shared data folder")
    parser.add_argument("--runs", type=int, default=5, help="timed predictions per photo case (median reported)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu", help="default: cpu")
    parser.add_argument("--model", action="append", metavar="CKPT",
                        help="a checkpoint to measure (repeatable); default: untrained " + " and ".join(BACKBONES))
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 32], help="predict_many batch sizes")
    parser.add_argument("--out", default="runs/bench", help="folder for predict.md and predict.json")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    run_predict_benchmark(args.data, args.runs, args.threads, args.device, args.model, args.batches, args.out,
                          report=functools.partial(print, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
