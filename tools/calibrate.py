"""Fit a checkpoint's calibration and thresholds again on its validation data, as training does.

For a checkpoint trained before calibration existed (it then predicts with temperature 1 and
offset 0), or after changing its validation sources with overrides at evaluation. The weights are
unchanged; the new checkpoint holds the fitted temperatures, offsets and thresholds, and the
evaluation they give, and can be evaluated and exported like any best.pt.

Examples:
    python tools/calibrate.py runs/default_cpu/best.pt runs/default_cpu/calibrated.pt
    # a model trained on a pack, calibrated on the original images (the sources of its recipe)
    python tools/calibrate.py runs/gpu_se_resnet18/best.pt runs/gpu_se_resnet18/calibrated.pt \
        --data-from configs/default_cpu.yaml
"""

from __future__ import annotations

import argparse
import sys

from faceattr.errors import FaceAttrError
from faceattr.runtime import configure_logging


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="best.pt written by tools/train.py")
    parser.add_argument("out", help="the calibrated checkpoint to write")
    parser.add_argument("overrides", nargs="*", help="key=value changes to the checkpoint's stored config")
    parser.add_argument("--data-from", metavar="CONFIG",
                        help="take the data section's sources and holdout_groups from this config (e.g. the "
                             "recipe a pack was made from), streamed rather than preloaded")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_intermixed_args(argv)
    configure_logging()
    from faceattr.config import data_overrides
    from faceattr.evaluation.evaluate import calibrate_checkpoint
    from faceattr.evaluation.report.markdown import format_summary

    try:
        overrides = list(args.overrides)
        if args.data_from:
            overrides = [*data_overrides(args.data_from), *overrides]
        evaluation = calibrate_checkpoint(args.checkpoint, args.out, args.device, overrides)
    except FaceAttrError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_summary(evaluation))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
