"""Measures how alignment should fill pixels from outside the photo: each border mode on CelebA faces cut tight.

Each CelebA validation image (partition 1 of img_align_celeba) is cut to its central share
(--keep; 1 is the untouched image), so that the model's crop needs pixels from outside the
photo, as for tightly cropped faces. The model's detector finds the face, alignment warps it
with each border mode (constant, replicate, reflect, reflect_101: OpenCV's cv2.BORDER_*), and
the model classifies it; the table gives mean balanced accuracy with the model's balanced
thresholds, the mean share of the crop outside the photo, and the predictor's own path (its
default border). Saves borders.md and borders.json in --out.

Example:
    python tools/measure_borders.py ../shared/data/celeba --out runs/bench
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from faceattr.files import save_table
from faceattr.inference.predictor import Predictor
from faceattr.prep.alignment_check import borders_markdown, measure_borders


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("celeba_root", type=Path, help="CelebA folder holding img_align_celeba and its label files")
    parser.add_argument("--model", type=Path, default=None, help="model to measure (default: the installed one)")
    parser.add_argument("--keep", type=float, nargs="+", default=[1.0, 0.8, 0.65],
                        help="shares of each side kept (default: 1 0.8 0.65)")
    parser.add_argument("--limit", type=int, default=None, help="use at most this many validation images")
    parser.add_argument("--out", type=Path, default=Path("runs/bench"), help="folder for borders.md/.json")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    if not (args.celeba_root / "img_align_celeba").is_dir():
        print(f"{args.celeba_root / 'img_align_celeba'}: folder not found", file=sys.stderr)
        return 2
    if not all(0.0 < keep <= 1.0 for keep in args.keep):
        print(f"--keep: each share must be in (0, 1], got {args.keep}", file=sys.stderr)
        return 2
    summary = measure_borders(Predictor(args.model, device="cpu", decision="balanced"), args.celeba_root, args.keep, args.limit)
    table = borders_markdown(summary)
    markdown, _ = save_table(args.out, "borders", table, summary)
    print(table + f"\nsaved {markdown} and borders.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
