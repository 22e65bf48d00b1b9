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
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmark_detect import ROOT, TWO_PEOPLE, in_fresh_process, machine, make_image, make_video

#: Backbones measured without ``--model``, at :data:`IMAGE_SIZE` px (configs/demo.yaml, configs/resnet18_cpu.yaml).
BACKBONES = ("resnet10t", "resnet18")
IMAGE_SIZE = 64
#: The video case: (still, pan, group) frames and the pan's step in px (see benchmark_detect.make_video).
VIDEO = (20, 110, 20, 1)
#: Demo options measured on the video, by name.
VIDEO_OPTIONS = {"demo defaults": [], "detector on every frame": ["--detect-every", "1"]}
#: (case name, which image of benchmark_detect.make_image, file name)
PHOTOS = [("4000x3000, 2 faces", "large", "large.jpg"), ("640x480, 1 face", "frame", "frame.jpg")]
JPEG_QUALITY = 90


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Measure end-to-end prediction time and memory.", epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"), help="the shared data folder")
    parser.add_argument("--runs", type=int, default=5, help="timed predictions per photo case (median reported)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu", help="default: cpu")
    parser.add_argument("--model", action="append", metavar="CKPT",
                        help="a checkpoint to measure (repeatable); default: untrained " + " and ".join(BACKBONES))
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 32], help="predict_many batch sizes")
    parser.add_argument("--out", default="runs/bench", help="folder for predict.md and predict.json")
    return parser


def build_checkpoint(backbone: str, path: Path) -> Path:
    """An untrained deployable checkpoint of ``backbone`` at :data:`IMAGE_SIZE` px."""
    import torch

    from faceattr.models.deployed import DeployedModel
    from faceattr.models.weights_io import save_checkpoint
    from faceattr.config import Config
    from faceattr.models.net import FaceAttrNet

    torch.manual_seed(0)
    config = Config()
    config.data.image_size = IMAGE_SIZE
    save_checkpoint(DeployedModel.from_training(FaceAttrNet(backbone), [0.5] * 40, config, 0, {}).to_checkpoint(), path)
    return path


def _setup(threads: int, device: str) -> None:
    import torch

    torch.set_num_threads(threads)
    if device != "cpu" and torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def _memory(device: str) -> dict[str, float]:
    """Peak resident memory of this process (Linux reports KiB), and of the GPU when one is used."""
    import resource

    import torch

    memory = {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device != "cpu" and torch.cuda.is_available():
        memory["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return memory


def _median_time(function: Callable[[], Any], runs: int) -> float:
    """Median seconds of ``runs`` calls after one untimed warm-up call."""
    function()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure_photo(checkpoint: str, photo: str, runs: int, threads: int, device: str) -> dict:
    """End-to-end median seconds of ``Predictor.predict(photo)`` and of each of its stages."""
    _setup(threads, device)
    from faceattr.inference.align import align_crop
    from faceattr.image import read_reduced
    from faceattr.inference.predictor import Predictor

    predictor = Predictor(checkpoint, device=device)
    faces = predictor.predict(photo)
    total = _median_time(lambda: predictor.predict(photo), runs)
    array, _ = read_reduced(photo, predictor.decode_side)
    detections = predictor.detector.detect(array)
    classify = _median_time(lambda: predictor.classify([array], [detections]), runs)
    align = _median_time(lambda: [align_crop(array, d.landmarks, predictor.image_size) for d in detections], runs)
    stages = {"read": _median_time(lambda: read_reduced(photo, predictor.decode_side), runs),
              "detect": _median_time(lambda: predictor.detector.detect(array), runs),
              "align": align, "network": classify - align}
    return {"median_s": total, "faces": len(faces), "decoded": f"{array.shape[1]}x{array.shape[0]}",
            "stages_s": stages, **_memory(device)}


def measure_mtcnn(photo: str, runs: int, threads: int, device: str) -> dict:
    """The reference: full decode of ``photo`` and facenet-pytorch's MTCNN on the full image."""
    _setup(threads, device)
    import torch
    from facenet_pytorch import MTCNN
    from PIL import Image

    mtcnn = MTCNN(keep_all=True, min_face_size=20, thresholds=[0.6, 0.7, 0.7],
                  device="cuda" if device != "cpu" and torch.cuda.is_available() else "cpu")

    def detect() -> int:
        _, probs, _ = mtcnn.detect(np.asarray(Image.open(photo).convert("RGB")), landmarks=True)
        return sum(p is not None and p >= 0.9 for p in probs)

    faces = detect()
    return {"median_s": _median_time(detect, runs), "faces": int(faces), "decoded": "full", **_memory(device)}


def measure_folder(checkpoint: str, paths: list[str], batch: int, threads: int, device: str) -> dict:
    """Images per second over ``paths``: one ``predict`` at a time (``batch`` 1) or ``predict_many`` batches."""
    _setup(threads, device)
    from faceattr.inference.predictor import Predictor

    predictor = Predictor(checkpoint, device=device)
    predictor.predict(paths[0])  # warm-up
    start = time.perf_counter()
    if batch == 1:
        faces = sum(len(predictor.predict(path)) for path in paths)
    else:
        faces = sum(len(result.faces) for start_index in range(0, len(paths), batch)
                    for result in predictor.predict_many(paths[start_index:start_index + batch]))
    seconds = time.perf_counter() - start
    return {"images": len(paths), "faces": faces, "seconds": seconds, "images_per_s": len(paths) / seconds,
            **_memory(device)}


def measure_video(checkpoint: str, video: str, threads: int, device: str, options: list[str]) -> dict:
    """Frames per second of ``tools/webcam_demo.py --headless`` on ``video`` with ``options``."""
    _setup(threads, device)
    import webcam_demo

    with tempfile.TemporaryDirectory() as scratch:
        args = webcam_demo.get_args_parser().parse_args(
            [video, "--model", checkpoint, "--headless", "--output", str(Path(scratch) / "annotated.mp4"),
             "--device", device, *options])
        stats = webcam_demo.run(args)
    return {"fps": stats.mean_fps, "frames": stats.frames, "detector_runs": stats.detector_runs, **_memory(device)}


def make_photos(data: Path, folder: Path) -> dict[str, str]:
    """Writes the benchmark's JPEGs (quality :data:`JPEG_QUALITY`) under ``folder``; name -> path."""
    from PIL import Image

    paths = {}
    for _, which, name in PHOTOS:
        path = folder / name
        Image.fromarray(make_image(data, which)).save(path, quality=JPEG_QUALITY)
        paths[which] = str(path)
    return paths


def _table(rows: list[dict], folder_rows: list[dict], video_rows: list[dict], info: dict) -> str:
    """The markdown report."""
    lines = ["| case | model | median s | faces | decoded at | read | detect | align | network | peak RSS MiB |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        stages = row.get("stages_s", {})
        cells = [f"{stages[k] * 1000:.1f} ms" if k in stages else "-" for k in ("read", "detect", "align", "network")]
        lines.append(f"| {row['case']} | {row['model']} | {row['median_s']:.3f} | {row['faces']} | {row['decoded']} | "
                     + " | ".join(cells) + f" | {row['peak_rss_mib']:.0f} |")
    lines += ["", f"Folder: {folder_rows[0]['images'] if folder_rows else 0} photos of faces/ "
              "(jpg, jpeg, png; any size).", "",
              "| model | how | images/s | seconds | faces | peak RSS MiB |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['how']} | {r['images_per_s']:.1f} | {r['seconds']:.2f} | {r['faces']} | "
              f"{r['peak_rss_mib']:.0f} |" for r in folder_rows]
    lines += ["", f"Video: tools/webcam_demo.py --headless, 640x480, {sum(VIDEO[:3])} frames, annotated video written.",
              "", "| model | how | frames/s | detector runs / frames | peak RSS MiB |", "|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['how']} | {r['fps']:.1f} | {r['detector_runs']} / {r['frames']} | "
              f"{r['peak_rss_mib']:.0f} |" for r in video_rows]
    lines += ["", f"Median of {info['runs']} runs after a warm-up; stages timed separately (network = classify "
              f"minus align). Device {info['device']}, {info['threads']} torch threads. Machine: {info['machine']}; "
              f"torch {info['torch']}; load average before the run {info['load_before']}, after "
              f"{info['load_after']}."]
    return "\n".join(lines) + "\n"


def _load() -> str:
    """The 1-minute load average (other processes share the cores)."""
    return f"{os.getloadavg()[0]:.2f}"


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    data = Path(args.data)
    if not (data / TWO_PEOPLE).is_file():
        print(f"no {TWO_PEOPLE} under {args.data}: pass --data", file=sys.stderr)
        return 2
    from faceattr.cli import find_images

    folder_paths = [str(path) for path in find_images([data / "faces"])[0]]
    info = {"machine": machine(), "threads": args.threads, "runs": args.runs, "device": args.device,
            "load_before": _load()}
    rows, folder_rows, video_rows = [], [], []
    with tempfile.TemporaryDirectory() as scratch:
        photos = make_photos(data, Path(scratch))
        video = str(Path(scratch) / "clip.avi")
        make_video(data, Path(video), *VIDEO)
        models = {Path(m).name: m for m in args.model} if args.model else {
            name: str(build_checkpoint(name, Path(scratch) / f"{name}.pt")) for name in BACKBONES}
        for model, checkpoint in models.items():
            for case, which, _ in PHOTOS:
                result = in_fresh_process(measure_photo, checkpoint, photos[which], args.runs, args.threads,
                                          args.device)
                rows.append({"case": case, "model": model, **result})
                print(f"{case:20s} {model:12s} {result['median_s']:.3f} s  {result['faces']} faces  "
                      f"peak {result['peak_rss_mib']:.0f} MiB  stages "
                      + " ".join(f"{k} {v * 1000:.1f} ms" for k, v in result["stages_s"].items()), flush=True)
            for batch in (1, *args.batches):
                result = in_fresh_process(measure_folder, checkpoint, folder_paths, batch, args.threads, args.device)
                how = "predict, one at a time" if batch == 1 else f"predict_many, batches of {batch}"
                folder_rows.append({"model": model, "how": how, "batch": batch, **result})
                print(f"folder {model:12s} {how:30s} {result['images_per_s']:.1f} images/s", flush=True)
            for how, options in VIDEO_OPTIONS.items():
                result = in_fresh_process(measure_video, checkpoint, video, args.threads, args.device, options)
                video_rows.append({"model": model, "how": how, **result})
                print(f"video  {model:12s} {how:30s} {result['fps']:.1f} frames/s", flush=True)
        result = in_fresh_process(measure_mtcnn, photos["large"], args.runs, args.threads, args.device)
        rows.append({"case": PHOTOS[0][0], "model": "MTCNN direct, full image (detection only)", **result})
        print(f"{PHOTOS[0][0]:20s} MTCNN direct {result['median_s']:.3f} s", flush=True)
    import torch

    info.update(torch=torch.__version__, load_after=_load())
    table = _table(rows, folder_rows, video_rows, info)
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "predict.json").write_text(json.dumps({**info, "rows": rows, "folder": folder_rows, "video": video_rows}, indent=2))
    (out / "predict.md").write_text(table)
    print(f"saved {out / 'predict.md'} and .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
