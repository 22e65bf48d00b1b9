"""Pick whole people (groups) of a data source to hold out of training, for an honest validation set.

The groups are drawn in a seeded random order until their images reach ``--fraction`` of the
source's images; the file written lists them one per line, for ``data.holdout_groups``. In
training, every image of a listed group, in any source, is left out of the training split,
and a source with ``split: holdout`` uses the listed groups' images as its validation split.

CelebA's in-the-wild photos (``img_celeba``) are all in CelebA's training partition; aligned
with ``tools/align_dataset.py``, some of their people held out this way make the validation
set that measures the model on faces found and aligned by faceattr itself.

Examples:
    python tools/align_dataset.py ../shared/data/celeba/img_celeba data/aligned/img_celeba
    python tools/make_holdout.py celeba ../shared/data/celeba --images $PWD/data/aligned/img_celeba \\
        --fraction 0.5 --out configs/holdout_celeba_wild.txt
"""

from __future__ import annotations

import argparse
import sys

from faceattr.config import SOURCE_KINDS, SourceConfig
from faceattr.data.holdout import write_holdout
from faceattr.errors import FaceAttrError


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=SOURCE_KINDS, help="the source's dataset kind")
    parser.add_argument("root", help="the source's root folder (for csv: the CSV file)")
    parser.add_argument("--images", help="the source's image folder (as data.sources[i].images)")
    parser.add_argument("--fraction", type=float, default=0.5, help="share of the images to hold out (default 0.5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random order of groups")
    parser.add_argument("--out", required=True, help="the text file to write")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        held = write_holdout(SourceConfig(kind=args.kind, root=args.root, images=args.images), args.out,
                             args.fraction, args.seed)
    except FaceAttrError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"held out {len(held.groups)} of {held.total_groups} groups ({held.held_images} of {held.total_images} "
          f"images): {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
