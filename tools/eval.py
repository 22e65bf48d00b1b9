"""Evaluate a checkpoint on its validation data and write a report (markdown, CSV, JSON, plots).

Examples:
    python tools/eval.py runs/gc_resnet101/best.pt
    python tools/eval.py runs/r18/best.pt --out runs/r18/report_hq data.sources.0.root=/data/celeba
"""

from __future__ import annotations

import argparse
import sys

from faceattr.errors import FaceAttrError
from faceattr.runtime import configure_logging


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Evaluate a faceattr checkpoint.", epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="best.pt or last.pt written by tools/train.py")
    parser.add_argument("overrides", nargs="*", help="key=value changes to the checkpoint's stored config")
    parser.add_argument("--out", help="report folder (default: report/ beside the checkpoint)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    configure_logging()
    from faceattr.evaluate import evaluate_checkpoint
    from faceattr.report import format_summary

    try:
        evaluation, paths = evaluate_checkpoint(args.checkpoint, args.overrides, args.out, args.device)
    except FaceAttrError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_summary(evaluation))
    print(f"report: {paths['markdown']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
