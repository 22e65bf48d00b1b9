"""Train a faceattr model: python tools/train.py CONFIG [key=value ...] [--resume | --overwrite].

Examples:
    python tools/train.py configs/gc_resnet101.yaml
    python tools/train.py configs/resnet18_cpu.yaml optim.epochs=5 train.output_dir=runs/r18
    python tools/train.py configs/gc_resnet101.yaml --resume
    torchrun --nproc_per_node 4 tools/train.py configs/gc_resnet101.yaml
"""

from __future__ import annotations

import argparse
import sys

from faceattr.config import load_config
from faceattr.errors import FaceAttrError
from faceattr.runtime import configure_logging


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Train a faceattr model.", epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="YAML config file (see configs/)")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. optim.lr=0.01")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in train.output_dir from its last.pt")
    parser.add_argument("--overwrite", action="store_true",
                        help="start again in a train.output_dir that holds a run (any of best.pt, last.pt, "
                             "config.yaml, metrics.jsonl: without --resume or --overwrite such a folder is refused)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    configure_logging()
    from faceattr.evaluation.report.markdown import format_summary
    from faceattr.training.engine import fit

    try:
        evaluation = fit(load_config(args.config, args.overrides), resume=args.resume, overwrite=args.overwrite)
    except FaceAttrError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if evaluation:
        print(format_summary(evaluation))
    return 0


if __name__ == "__main__":
    sys.exit(main())
