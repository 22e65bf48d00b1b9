"""The network backends compared: load time, network time per batch and end-to-end prediction, torch against ONNX.

For each backend of :mod:`faceattr.inference.backends` and each thread count, in a fresh
process: the time to build the :class:`~faceattr.inference.predictor.Predictor` (the detector,
the model and, for ``onnx`` with a ``.safetensors``, its export to ONNX in memory), the time of
the network alone on batches of uint8 crops, and of ``Predictor.predict`` on the 640x480 one-face
JPEG and the 4000x3000 two-face JPEG of :mod:`faceattr.inference.benchmark`, with the detection
alone beside them (the same for both backends); each the fastest of the runs, and their median.
The ``.onnx`` case runs the model exported to a file (``tools/export_model.py --format onnx``).
Used by ``tools/benchmark_backends.py``; writes ``backends.md`` and ``backends.json``.

>>> run_backend_benchmark("../shared/data", None, "dist/default.onnx", 5, [1, 2], [1, 8, 32], "runs/bench")  # doctest: +SKIP
'| backend | threads | load s | network ms, batch 1 |...'
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from faceattr.image import read_reduced
from faceattr.inference.benchmark import (
    PHOTOS,
    Report,
    load_average,
    in_fresh_process,
    machine,
    make_photos,
    save_report,
    set_threads,
    timings,
)
from faceattr.inference.predictor import Predictor
from faceattr.models.deployed import DeployedModel

#: The cases measured: (name, backend, whether the model's ``.onnx`` export is run).
CASES: tuple[tuple[str, str, bool], ...] = (("torch", "torch", False), ("onnx, exported at load", "onnx", False),
                                            ("onnx, .onnx file", "onnx", True))


def fastest_and_median(function: Callable[[], Any], runs: int) -> dict[str, float]:
    """The fastest and the median seconds of ``runs`` calls after one untimed warm-up call.

    The fastest is the figure the tables show: on cores shared with other work, the slower runs
    measure the others' load more than the code.

    >>> sorted(fastest_and_median(lambda: None, 3))
    ['fastest', 'median']
    """
    function()
    times = timings(function, runs)
    return {"fastest": min(times), "median": statistics.median(times)}


def measure_backend(model: str | None, backend: str, threads: int, photos: dict[str, str], runs: int,
                    batches: Sequence[int]) -> dict:
    """One backend's load time, and network times by batch size, prediction and detection times by photo, in
    seconds (:func:`fastest_and_median` each)."""
    set_threads(threads, "cpu")
    start = time.perf_counter()
    predictor = Predictor(model, device="cpu", backend=backend)
    load = time.perf_counter() - start
    rng = np.random.default_rng(0)
    network = {}
    for batch in batches:
        crops = rng.integers(0, 256, (batch, predictor.image_size, predictor.image_size, 3), dtype=np.uint8)
        network[str(batch)] = fastest_and_median(lambda: predictor.model(crops), runs)
    predict, detect, faces = {}, {}, {}
    for _, which, _ in PHOTOS:
        photo = photos[which]
        faces[which] = len(predictor.predict(photo))
        predict[which] = fastest_and_median(lambda: predictor.predict(photo), runs)
        array, _ = read_reduced(photo, predictor.decode_side)
        detect[which] = fastest_and_median(lambda: predictor.detector.detect(array), runs)
    return {"load_s": load, "network_s": network, "predict_s": predict, "detect_s": detect, "faces": faces}


def backend_table(rows: list[dict], batches: Sequence[int], info: dict) -> str:
    """The markdown report of :func:`run_backend_benchmark`."""
    names = [name for name, _, _ in PHOTOS]
    lines = ["| backend | threads | load s | " + " | ".join(f"network ms, batch {b}" for b in batches) + " | "
             + " | ".join(f"predict ms, {name}" for name in names) + " | "
             + " | ".join(f"of which detect ms, {name}" for name in names) + " |",
             "|---|---|---|" + "---|" * (len(batches) + 2 * len(names))]
    for row in rows:
        cells = [f"{row['network_s'][str(b)]['fastest'] * 1000:.1f}" for b in batches]
        cells += [f"{row['predict_s'][which]['fastest'] * 1000:.0f}" for _, which, _ in PHOTOS]
        cells += [f"{row['detect_s'][which]['fastest'] * 1000:.0f}" for _, which, _ in PHOTOS]
        lines.append(f"| {row['case']} | {row['threads']} | {row['load_s']:.1f} | " + " | ".join(cells) + " |")
    lines += ["", f"Model: {info['model']}. Fastest of {info['runs']} runs after a warm-up (medians in the .json); network: random uint8 "
              "crops through the backend alone; predict: Predictor.predict on the JPEG (read, detect, align, "
              "network, calibration, decision); detect: MTCNN alone on the decoded array (torch in every case). "
              "Load: building the Predictor in a fresh process (detector, model, ONNX export or session). "
              f"Machine: {info['machine']}; torch {info['torch']}, onnxruntime {info['onnxruntime']}; load "
              f"average before the run {info['load_before']}, after {info['load_after']}."]
    return "\n".join(lines) + "\n"


def run_backend_benchmark(data: str | Path, model: str | None, onnx_model: str | Path, runs: int,
                          threads: Sequence[int], batches: Sequence[int], out: str | Path,
                          report: Report = print) -> str:
    """Measures every case of :data:`CASES` at each thread count; writes backends.md and backends.json.

    Args:
        data: The shared data folder (the photos of :func:`~faceattr.inference.benchmark.make_photos`).
        model: The model (``None``: the installed default), a ``.safetensors`` or ``best.pt``.
        onnx_model: ``model`` exported as an ``.onnx``.
        runs: Timed runs per figure (the median is reported).
        threads: Torch and ONNX Runtime intra-op thread counts to measure.
        batches: Network batch sizes.
        out: Folder for the report.
        report: Receives each progress line and the table.

    Returns:
        The markdown table.
    """
    import onnxruntime

    info = {"machine": machine(), "torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "runs": runs,
            "model": str(DeployedModel.path_of(model)), "load_before": load_average()}
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        photos = make_photos(Path(data), Path(scratch))
        for count in threads:
            for case, backend, from_file in CASES:
                result = in_fresh_process(measure_backend, str(onnx_model) if from_file else model, backend, count,
                                          photos, runs, batches)
                rows.append({"case": case, "backend": backend, "threads": count, **result})
                report(f"{case:24s} {count} threads: load {result['load_s']:.1f} s, network "
                       + ", ".join(f"{b}: {s['fastest'] * 1000:.1f} ms" for b, s in result["network_s"].items())
                       + "; predict " + ", ".join(f"{w}: {s['fastest'] * 1000:.0f} ms"
                                                  for w, s in result["predict_s"].items()))
    info["load_after"] = load_average()
    table = backend_table(rows, batches, info)
    report(table)
    save_report(out, "backends", table, {**info, "batches": list(batches), "rows": rows}, report)
    return table
