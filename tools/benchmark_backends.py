"""Torch against ONNX Runtime: model load time, network time per batch and end-to-end prediction time.

For each thread count, three cases each in a fresh process: the torch backend, the onnx backend
with the model exported to ONNX in memory as it loads, and the onnx backend on the model's .onnx
file (--onnx, or exported into a temporary folder in the model's own dtype). Network time is the backend alone on batches of random uint8 crops;
prediction time is Predictor.predict on a 640x480 JPEG with one face and a 4000x3000 JPEG with two
(made from the shared photos as in tools/benchmark_predict.py), with MTCNN's detection time
beside it. Needs pip install "faceattr[onnx]". Writes backends.md and backends.json.

Examples:
    python tools/benchmark_backends.py
    python tools/benchmark_backends.py --model runs/r18/best.pt --threads 2 --runs 10
"""

from __future__ import annotations

import argparse
import functools
import sys
import tempfile
from pathlib import Path

from faceattr.inference.benchmark import photo_folder

ROOT = Path(__file__).resolve().parents[1]


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Compare the torch and onnx prediction backends.", epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=photo_folder, default=str(ROOT.parent / "shared" / "data"),
                        help="the shared data folder")
    parser.add_argument("--model", default=None, help="a .safetensors or best.pt (default: the installed model)")
    parser.add_argument("--onnx", default=None, metavar="FILE",
                        help="the model's .onnx export (default: exported into a temporary folder)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per figure (median reported)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="intra-op thread counts")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32], help="network batch sizes")
    parser.add_argument("--out", default="runs/bench", help="folder for backends.md and backends.json")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    from faceattr.inference.backend_benchmark import run_backend_benchmark
    from faceattr.models.deployed import DeployedModel
    from faceattr.training.export import export_deployed

    with tempfile.TemporaryDirectory() as scratch:
        onnx_model = args.onnx
        if onnx_model is None:
            model = DeployedModel.load(args.model)
            onnx_model = Path(scratch) / "model.onnx"
            export_deployed(model, onnx_model, (model.description or {}).get("dtype", "float32"))
        run_backend_benchmark(args.data, args.model, onnx_model, args.runs, args.threads, args.batches, args.out,
                              report=functools.partial(print, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
