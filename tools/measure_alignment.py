"""Derives CelebA's 5-point template and measures how closely faceattr.inference.align reproduces CelebA's crops.

``--derive`` runs MTCNN on official aligned crops (img_align_celeba, 178x218) and prints the
median position of each landmark: :data:`faceattr.inference.align.CELEBA_TEMPLATE`.

Otherwise, for each in-the-wild photo in img_celeba whose official aligned crop is present,
MTCNN finds the face's landmarks, :func:`faceattr.inference.align.align_face` aligns it, and the result
is compared with CelebA's own crop: (a) landmark error, the mean distance between MTCNN's
landmarks on our crop and on the official one, in 178x218 pixels; (b) the normalised
cross-correlation (NCC) of the two grayscale crops over the training square
(:data:`faceattr.inference.align.CELEBA_CROP`). For reference, (c) the mean distance of the official
crop's own landmarks from the template (how much CelebA's crops vary). Crops that exist only
at half size (img_align_celeba_89x109) are compared at that size, ours shrunk the same way,
with errors scaled back to 178x218 pixels. Saves alignment.md and alignment.json in --out.

Example:
    python tools/measure_alignment.py ../shared/data/celeba --derive --count 500
    python tools/measure_alignment.py ../shared/data/celeba --out runs/bench
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from faceattr.files import save_table
from faceattr.prep.alignment_check import (
    derive_template,
    make_detector,
    markdown,
    measure,
)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("celeba_root", type=Path, help="folder holding img_celeba and the aligned crops")
    parser.add_argument("--derive", action="store_true", help="print the template measured on aligned crops")
    parser.add_argument("--count", type=int, default=500, help="aligned crops to derive the template from")
    parser.add_argument("--limit", type=int, default=None, help="compare at most this many photos per folder")
    parser.add_argument("--out", type=Path, default=Path("runs/bench"), help="folder for alignment.md/.json")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    if not (args.celeba_root / "img_align_celeba").is_dir():
        print(f"{args.celeba_root / 'img_align_celeba'}: folder not found", file=sys.stderr)
        return 2
    detector = make_detector()
    if args.derive:
        median, found, tried = derive_template(detector, args.celeba_root / "img_align_celeba", args.count)
        print(f"template from {found} of {tried} aligned crops (x, y in 178x218 pixels):")
        print(np.array2string(median.round(2), separator=", "))
        return 0
    summary = measure(detector, args.celeba_root, args.limit)
    table = markdown(summary)
    saved, _ = save_table(args.out, "alignment", table, summary)
    print(table + f"\nsaved {saved} and alignment.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
