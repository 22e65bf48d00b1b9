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
import json
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TWO_PEOPLE = "faces/face_recognition/examples/two_people.jpg"
OBAMA_480P = "faces/face_recognition/examples/obama-480p.jpg"
#: (case name, photo, how the detector is used)
CASES = [("4000x3000, 2 faces", "large", "FaceDetector"), ("4000x3000, 2 faces", "large", "MTCNN direct"),
         ("640x480, 1 face", "frame", "FaceDetector"), ("640x480, 1 face", "frame", "MTCNN direct")]


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Measure face detection time and memory.", epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"), help="the shared data folder")
    parser.add_argument("--runs", type=int, default=3, help="timed detections per case (median reported)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--out", default="runs/bench", help="folder for detect.md and detect.json")
    return parser


def make_image(data: Path, which: str) -> np.ndarray:
    """The 4000x3000 two-face photo (``"large"``) or the 640x480 one-face frame (``"frame"``)."""
    import cv2
    from PIL import Image

    if which == "large":
        photo = np.asarray(Image.open(data / TWO_PEOPLE).convert("RGB"))
        height = round(photo.shape[0] * 4000 / photo.shape[1])
        big = cv2.resize(photo, (4000, height), interpolation=cv2.INTER_CUBIC)
        return cv2.copyMakeBorder(big, 0, 3000 - height, 0, 0, cv2.BORDER_REPLICATE)
    photo = np.asarray(Image.open(data / OBAMA_480P).convert("RGB"))
    left = (photo.shape[1] - 640) // 2
    return np.ascontiguousarray(photo[:480, left:left + 640])


def make_video(data: Path, path: Path, still: int, pan: int, group: int, step: int) -> None:
    """A 640x480 MJPG video at 25 fps: obama-480p.jpg still for ``still`` frames, then panning ``step``
    px a frame for ``pan`` frames, then two_people.jpg (scaled to 640 wide) still for ``group`` frames."""
    import cv2

    obama = cv2.imread(str(data / OBAMA_480P))  # 853x480, BGR as a camera gives
    two = cv2.imread(str(data / TWO_PEOPLE))
    height = round(two.shape[0] * 640 / two.shape[1])
    two = cv2.copyMakeBorder(cv2.resize(two, (640, height), interpolation=cv2.INTER_AREA),
                             0, 480 - height, 0, 0, cv2.BORDER_CONSTANT)
    offsets = [0] * still + [min(step * (i + 1), obama.shape[1] - 640) for i in range(pan)]
    frames = [obama[:, x:x + 640] for x in offsets] + [two] * group
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (640, 480))
    for frame in frames:
        writer.write(np.ascontiguousarray(frame))
    writer.release()


def _maxrss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(data: str, which: str, how: str, runs: int, threads: int) -> dict:
    """Median seconds, faces found and peak memory of one case, in the calling process."""
    import torch

    torch.set_num_threads(threads)
    image = make_image(Path(data), which)
    before = _maxrss_mib()  # before the detector exists: the figure covers its weights and its work
    if how == "FaceDetector":
        from faceattr.inference.detect import FaceDetector

        detector = FaceDetector()

        def detect() -> int:
            return len(detector.detect(image))
    else:
        from facenet_pytorch import MTCNN

        mtcnn = MTCNN(keep_all=True, min_face_size=20, thresholds=[0.6, 0.7, 0.7])

        def detect() -> int:
            _, probs, _ = mtcnn.detect(image, landmarks=True)
            return sum(p is not None and p >= 0.9 for p in probs)

    faces = detect()  # warm-up: allocator and thread pools
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        detect()
        times.append(time.perf_counter() - start)
    after = _maxrss_mib()
    return {"image": f"{image.shape[1]}x{image.shape[0]}", "faces": int(faces), "median_s": statistics.median(times),
            "times_s": times, "peak_rss_mib": after, "detection_rss_mib": after - before}


def _child(queue: multiprocessing.Queue, function: Callable[..., dict], args: tuple) -> None:
    queue.put(function(*args))


def in_fresh_process(function: Callable[..., dict], *args: object) -> dict:
    """``function(*args)`` in a fresh process, so that its peak memory (ru_maxrss) is its own."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(queue, function, args))
    process.start()
    result = queue.get()
    process.join()
    return result


def machine() -> str:
    """A one-line description of the hardware the figures come from: CPU model and cores."""
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]
        model = names[0] if names else model
    return f"{model}, {os.cpu_count()} CPU cores"


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    if not (Path(args.data) / TWO_PEOPLE).is_file():
        print(f"no {TWO_PEOPLE} under {args.data}: pass --data", file=sys.stderr)
        return 2
    rows = []
    for case, which, how in CASES:
        result = in_fresh_process(measure, args.data, which, how, args.runs, args.threads)
        rows.append({"case": case, "detector": how, **result})
        print(f"{case:20s} {how:13s} {result['median_s']:7.2f} s  {result['faces']} faces  "
              f"peak {result['peak_rss_mib']:.0f} MiB (+{result['detection_rss_mib']:.0f} for the detector)", flush=True)
    import torch

    info = {"machine": machine(), "torch": torch.__version__, "threads": args.threads, "runs": args.runs}
    table = ("| case | detector | median s | faces | peak RSS MiB | RSS added by the detector MiB |\n"
             "|---|---|---|---|---|---|\n"
             + "".join(f"| {r['case']} | {r['detector']} | {r['median_s']:.3f} | {r['faces']} | "
                       f"{r['peak_rss_mib']:.0f} | {r['detection_rss_mib']:.0f} |\n" for r in rows)
             + f"\nMedian of {args.runs} runs after a warm-up, {args.threads} torch threads. "
             f"Machine: {info['machine']}; torch {info['torch']}.\n")
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "detect.json").write_text(json.dumps({**info, "rows": rows}, indent=2))
    (out / "detect.md").write_text(table)
    print(f"saved {out / 'detect.md'} and .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
