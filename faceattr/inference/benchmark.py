"""Prediction benchmarks: time and peak memory of detection, of whole predictions, folders and video.

Shared by tools/benchmark_detect.py (FaceDetector against facenet-pytorch's MTCNN used
directly) and tools/benchmark_predict.py (``Predictor.predict`` end to end and by stage, a
folder of photos, the video demo). The inputs are made from the shared photos: a 4000x3000
photo with two faces (two_people.jpg upscaled to 4000 px wide, the bottom edge rows repeated
to 3000 px high), a 640x480 frame with one face (the middle of obama-480p.jpg), and a 640x480
video. Each case runs in a fresh process (:func:`in_fresh_process`), so that its peak
resident memory (ru_maxrss) is its own. Progress lines go to ``report`` (the tools print them).

>>> median_time(lambda: sum(range(100)), runs=3) < 1.0
True
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import os
import platform
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from faceattr.config import Config
from faceattr.files import save_table
from faceattr.image import find_images, read_reduced
from faceattr.inference.align import align_crop
from faceattr.inference.detect import FaceDetector
from faceattr.inference.predictor import Predictor
from faceattr.inference.webcam import DemoOptions, run_demo
from faceattr.models.deployed import DeployedModel
from faceattr.models.net import FaceAttrNet
from faceattr.models.weights_io import save_checkpoint

TWO_PEOPLE = "faces/face_recognition/examples/two_people.jpg"
OBAMA_480P = "faces/face_recognition/examples/obama-480p.jpg"


def photo_folder(data: str) -> Path:
    """argparse type of the benchmarks' ``--data``: the shared data folder, holding their photos.

    Raises:
        argparse.ArgumentTypeError: :data:`TWO_PEOPLE` is not under ``data`` (argparse exits 2 naming ``--data``).

    >>> photo_folder("/nowhere")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: no faces/face_recognition/examples/two_people.jpg under /nowhere
    """
    if not (Path(data) / TWO_PEOPLE).is_file():
        raise argparse.ArgumentTypeError(f"no {TWO_PEOPLE} under {data}")
    return Path(data)


#: The detection cases: (case name, photo of :func:`make_image`, how the detector is used).
DETECT_CASES = [("4000x3000, 2 faces", "large", "FaceDetector"), ("4000x3000, 2 faces", "large", "MTCNN direct"),
                ("640x480, 1 face", "frame", "FaceDetector"), ("640x480, 1 face", "frame", "MTCNN direct")]
#: Backbones measured without a model given, at :data:`IMAGE_SIZE` px (configs/demo.yaml, configs/resnet18_cpu.yaml).
BACKBONES = ("resnet10t", "resnet18")
IMAGE_SIZE = 64
#: The video case: (still, pan, group) frames and the pan's step in px (see :func:`make_video`).
VIDEO = (20, 110, 20, 1)
#: Demo options measured on the video, by name (:class:`~faceattr.inference.webcam.DemoOptions` fields).
VIDEO_OPTIONS: dict[str, dict[str, Any]] = {"demo defaults": {}, "detector on every frame": {"detect_every": 1}}
#: The photo cases: (case name, which image of :func:`make_image`, file name).
PHOTOS = [("4000x3000, 2 faces", "large", "large.jpg"), ("640x480, 1 face", "frame", "frame.jpg")]
JPEG_QUALITY = 90
#: Lengths of the one list of 4000x3000 JPEGs given to ``predict_many``: past the predictor's
#: ``batch_size`` (32), its peak memory must not grow with them.
LIST_LENGTHS = (32, 64)

Report = Callable[[str], None]


def make_image(data: Path, which: str) -> np.ndarray:
    """The 4000x3000 two-face photo (``"large"``) or the 640x480 one-face frame (``"frame"``)."""
    import cv2

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


def build_checkpoint(backbone: str, path: Path) -> Path:
    """An untrained deployable checkpoint of ``backbone`` at :data:`IMAGE_SIZE` px."""
    torch.manual_seed(0)
    config = Config()
    config.data.image_size = IMAGE_SIZE
    save_checkpoint(DeployedModel.from_training(FaceAttrNet(backbone), [0.5] * 40, config, 0, {}).to_checkpoint(), path)
    return path


def set_threads(threads: int, device: str) -> None:
    """Sets torch's CPU threads and, on a GPU, starts its peak-memory count afresh."""
    torch.set_num_threads(threads)
    if device != "cpu" and torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak_memory_mib(device: str) -> dict[str, float]:
    """Peak resident memory of this process so far (Linux reports KiB), and of the GPU when one is used."""
    memory = {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device != "cpu" and torch.cuda.is_available():
        memory["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return memory


def timings(function: Callable[[], Any], runs: int) -> list[float]:
    """Seconds of each of ``runs`` calls of ``function``."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return times


def median_time(function: Callable[[], Any], runs: int) -> float:
    """Median seconds of ``runs`` calls after one untimed warm-up call.

    >>> median_time(lambda: None, 3) < 0.01
    True
    """
    function()
    return statistics.median(timings(function, runs))


def measure_photo(checkpoint: str, photo: str, runs: int, threads: int, device: str) -> dict:
    """End-to-end median seconds of ``Predictor.predict(photo)`` and of each of its stages."""
    set_threads(threads, device)
    predictor = Predictor(checkpoint, device=device)
    faces = predictor.predict(photo)
    total = median_time(lambda: predictor.predict(photo), runs)
    array, _ = read_reduced(photo, predictor.decode_side)
    detections = predictor.detector.detect(array)
    classify = median_time(lambda: predictor.classify([array], [detections]), runs)
    align = median_time(lambda: [align_crop(array, d.landmarks, predictor.image_size) for d in detections], runs)
    stages = {"read": median_time(lambda: read_reduced(photo, predictor.decode_side), runs),
              "detect": median_time(lambda: predictor.detector.detect(array), runs),
              "align": align, "network": classify - align}
    return {"median_s": total, "faces": len(faces), "decoded": f"{array.shape[1]}x{array.shape[0]}",
            "stages_s": stages, **peak_memory_mib(device)}


def mtcnn_direct(device: str) -> Callable[[np.ndarray], int]:
    """facenet-pytorch's MTCNN used directly, as FaceDetector's defaults set it up: RGB image -> faces scoring 0.9+.

    >>> mtcnn_direct("cpu")(np.zeros((64, 64, 3), np.uint8))  # doctest: +SKIP
    0
    """
    from facenet_pytorch import MTCNN

    mtcnn = MTCNN(keep_all=True, min_face_size=20, thresholds=[0.6, 0.7, 0.7], device=device)

    def count_faces(image: np.ndarray) -> int:
        _, probs, _ = mtcnn.detect(image, landmarks=True)
        return int(sum(p is not None and p >= 0.9 for p in probs))

    return count_faces


def measure_mtcnn(photo: str, runs: int, threads: int, device: str) -> dict:
    """The reference: full decode of ``photo`` and facenet-pytorch's MTCNN on the full image."""
    set_threads(threads, device)
    count_faces = mtcnn_direct("cuda" if device != "cpu" and torch.cuda.is_available() else "cpu")

    def detect() -> int:
        return count_faces(np.asarray(Image.open(photo).convert("RGB")))

    faces = detect()
    return {"median_s": median_time(detect, runs), "faces": int(faces), "decoded": "full", **peak_memory_mib(device)}


def measure_folder(checkpoint: str, paths: list[str], batch: int, threads: int, device: str) -> dict:
    """Images per second over ``paths``: one ``predict`` at a time (``batch`` 1) or ``predict_many`` batches."""
    set_threads(threads, device)
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
            **peak_memory_mib(device)}


def measure_video(checkpoint: str, video: str, threads: int, device: str, options: dict[str, Any]) -> dict:
    """Frames per second of the headless video demo (``tools/webcam_demo.py --headless``) on ``video``.

    ``options`` are :class:`~faceattr.inference.webcam.DemoOptions` fields beyond the defaults.
    """
    set_threads(threads, device)
    with tempfile.TemporaryDirectory() as scratch:
        stats = run_demo(DemoOptions(video, model=checkpoint, headless=True, device=device,
                                     output=str(Path(scratch) / "annotated.mp4"), **options))
    return {"fps": stats.mean_fps, "frames": stats.frames, "detector_runs": stats.detector_runs,
            **peak_memory_mib(device)}


def photo_jpeg(data: Path, which: str) -> bytes:
    """The benchmark's photo ``which`` (:func:`make_image`) encoded as JPEG, quality :data:`JPEG_QUALITY`."""
    buffer = io.BytesIO()
    Image.fromarray(make_image(data, which)).save(buffer, "JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def make_photos(data: Path, folder: Path) -> dict[str, str]:
    """Writes the benchmark's JPEGs (:func:`photo_jpeg`) under ``folder``; name -> path."""
    paths = {}
    for _, which, name in PHOTOS:
        path = folder / name
        path.write_bytes(photo_jpeg(data, which))
        paths[which] = str(path)
    return paths


def measure_detect(data: str, which: str, how: str, runs: int, threads: int) -> dict:
    """Median seconds, faces found and peak memory of one case, in the calling process."""
    set_threads(threads, "cpu")
    image = make_image(Path(data), which)
    # Before the detector exists: the figure covers its weights and its work.
    before = peak_memory_mib("cpu")["peak_rss_mib"]
    if how == "FaceDetector":
        detector = FaceDetector()

        def detect() -> int:
            return len(detector.detect(image))
    else:
        count_faces = mtcnn_direct("cpu")

        def detect() -> int:
            return count_faces(image)

    faces = detect()  # warm-up: allocator and thread pools
    times = timings(detect, runs)
    after = peak_memory_mib("cpu")["peak_rss_mib"]
    return {"image": f"{image.shape[1]}x{image.shape[0]}", "faces": int(faces), "median_s": statistics.median(times),
            "times_s": times, "peak_rss_mib": after, "detection_rss_mib": after - before}


def predict_table(rows: list[dict], folder_rows: list[dict], video_rows: list[dict], info: dict) -> str:
    """The markdown report of :func:`run_predict_benchmark`."""
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


def load_average() -> str:
    """The 1-minute load average (other processes share the cores), as the benchmarks' tables note it."""
    return f"{os.getloadavg()[0]:.2f}"




def save_report(out: str | Path, name: str, table: str, record: dict[str, Any], report: Report) -> None:
    """Writes ``OUT/NAME.md`` (the table) and ``OUT/NAME.json`` (``record``), and reports where."""
    markdown, _ = save_table(out, name, table, record)
    report(f"saved {markdown} and .json")


def run_detect_benchmark(data: str | Path, runs: int, threads: int, out: str | Path, report: Report = print) -> str:
    """Measures every case of :data:`DETECT_CASES`, each in a fresh process; writes detect.md and detect.json.

    Args:
        data: The shared data folder (holding :data:`TWO_PEOPLE` and :data:`OBAMA_480P`).
        runs: Timed detections per case (the median is reported).
        threads: Torch CPU threads.
        out: Folder for the report.
        report: Receives each progress line and the table.

    Returns:
        The markdown table.

    >>> run_detect_benchmark("../shared/data", 3, 2, "runs/bench")  # doctest: +SKIP
    '| case | detector | median s | faces | peak RSS MiB | RSS added by the detector MiB |...'
    """
    rows = []
    for case, which, how in DETECT_CASES:
        result = in_fresh_process(measure_detect, str(data), which, how, runs, threads)
        rows.append({"case": case, "detector": how, **result})
        report(f"{case:20s} {how:13s} {result['median_s']:7.2f} s  {result['faces']} faces  "
               f"peak {result['peak_rss_mib']:.0f} MiB (+{result['detection_rss_mib']:.0f} for the detector)")
    info = {"machine": machine(), "torch": torch.__version__, "threads": threads, "runs": runs}
    table = ("| case | detector | median s | faces | peak RSS MiB | RSS added by the detector MiB |\n"
             "|---|---|---|---|---|---|\n"
             + "".join(f"| {r['case']} | {r['detector']} | {r['median_s']:.3f} | {r['faces']} | "
                       f"{r['peak_rss_mib']:.0f} | {r['detection_rss_mib']:.0f} |\n" for r in rows)
             + f"\nMedian of {runs} runs after a warm-up, {threads} torch threads. "
             f"Machine: {info['machine']}; torch {info['torch']}.\n")
    report(table)
    save_report(out, "detect", table, {**info, "rows": rows}, report)
    return table


def run_predict_benchmark(data: str | Path, runs: int, threads: int, device: str, models: list[str] | None,
                          batches: list[int], out: str | Path, report: Report = print) -> str:
    """Measures photos, the folder ``faces/`` and the video demo for each model; writes predict.md and predict.json.

    Args:
        data: The shared data folder.
        runs: Timed predictions per photo case (the median is reported).
        threads: Torch CPU threads.
        device: ``cpu``, ``cuda`` or ``auto``.
        models: Checkpoints to measure; ``None`` for untrained ones of :data:`BACKBONES`.
        batches: ``predict_many`` batch sizes measured on the folder (besides one at a time).
        out: Folder for the report.
        report: Receives each progress line and the table.

    Returns:
        The markdown report.

    >>> run_predict_benchmark("../shared/data", 5, 2, "cpu", None, [8, 32], "runs/bench")  # doctest: +SKIP
    '| case | model | median s | faces | decoded at | read | detect | align | network | peak RSS MiB |...'
    """
    data = Path(data)
    folder_paths = [str(path) for path in find_images([data / "faces"])[0]]
    info = {"machine": machine(), "threads": threads, "runs": runs, "device": device, "load_before": load_average()}
    rows, folder_rows, video_rows = [], [], []
    with tempfile.TemporaryDirectory() as scratch:
        photos = make_photos(data, Path(scratch))
        video = str(Path(scratch) / "clip.avi")
        make_video(data, Path(video), *VIDEO)
        checkpoints = {Path(m).name: m for m in models} if models else {
            name: str(build_checkpoint(name, Path(scratch) / f"{name}.pt")) for name in BACKBONES}
        for model, checkpoint in checkpoints.items():
            for case, which, _ in PHOTOS:
                result = in_fresh_process(measure_photo, checkpoint, photos[which], runs, threads, device)
                rows.append({"case": case, "model": model, **result})
                report(f"{case:20s} {model:12s} {result['median_s']:.3f} s  {result['faces']} faces  "
                       f"peak {result['peak_rss_mib']:.0f} MiB  stages "
                       + " ".join(f"{k} {v * 1000:.1f} ms" for k, v in result["stages_s"].items()))
            for batch in (1, *batches):
                result = in_fresh_process(measure_folder, checkpoint, folder_paths, batch, threads, device)
                how = "predict, one at a time" if batch == 1 else f"predict_many, batches of {batch}"
                folder_rows.append({"model": model, "how": how, "batch": batch, **result})
                report(f"folder {model:12s} {how:30s} {result['images_per_s']:.1f} images/s")
            for length in LIST_LENGTHS:
                result = in_fresh_process(measure_folder, checkpoint, [photos["large"]] * length, length, threads,
                                          device)
                how = f"predict_many, one list of {length} 4000x3000 JPEGs"
                folder_rows.append({"model": model, "how": how, "batch": length, **result})
                report(f"list   {model:12s} {how:30s} peak {result['peak_rss_mib']:.0f} MiB")
            for how, options in VIDEO_OPTIONS.items():
                result = in_fresh_process(measure_video, checkpoint, video, threads, device, options)
                video_rows.append({"model": model, "how": how, **result})
                report(f"video  {model:12s} {how:30s} {result['fps']:.1f} frames/s")
        result = in_fresh_process(measure_mtcnn, photos["large"], runs, threads, device)
        rows.append({"case": PHOTOS[0][0], "model": "MTCNN direct, full image (detection only)", **result})
        report(f"{PHOTOS[0][0]:20s} MTCNN direct {result['median_s']:.3f} s")
    info.update(torch=torch.__version__, load_after=load_average())
    table = predict_table(rows, folder_rows, video_rows, info)
    report(table)
    save_report(out, "predict", table, {**info, "rows": rows, "folder": folder_rows, "video": video_rows}, report)
    return table
