"""Check that a dataset folder (or team CSV) is in the layout faceattr reads, and say what it holds.

Prints the expected layout, then what the reader found: label rows, images found and
missing, records per split, groups (people), and how many have attributes or a beauty score.
Exits 0 when the dataset is usable, 1 with the reason when it is not.

Examples:
    python tools/check_dataset.py celeba ../shared/data/celeba
    python tools/check_dataset.py celeba ../shared/data/celeba --images img_align_celeba_89x109
    python tools/check_dataset.py celebahq ../shared/data/celebahq --celeba-root ../shared/data/celeba
    python tools/check_dataset.py scut ../shared/data/scut_fbp5500
    python tools/check_dataset.py csv my_team/labels.csv
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter

from faceattr.config import SOURCE_KINDS, SourceConfig
from faceattr.data.records import SPLITS, ReadResult
from faceattr.data.sources import LAYOUTS, read_source
from faceattr.errors import FaceAttrError


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Check a dataset for faceattr.", epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=SOURCE_KINDS)
    parser.add_argument("root", help="the dataset folder (for csv: the CSV file)")
    parser.add_argument("--images", help="image folder inside root (default: the dataset's official one)")
    parser.add_argument("--celeba-root", help="for celebahq: the CelebA folder that gives splits and people")
    parser.add_argument("--skip-bad-rows", action="store_true",
                        help="count unparseable label rows instead of stopping at the first")
    return parser


def describe(result: ReadResult) -> str:
    """What a reader found, one fact a line."""
    splits = Counter(record.split for record in result.records)
    rows = len(result.records) + result.missing_images + result.bad_rows
    return "\n".join([
        f"label rows:        {rows}",
        f"images found:      {len(result.records)}",
        f"images missing:    {result.missing_images}",
        f"bad rows skipped:  {result.bad_rows}",
        "per split:         " + ", ".join(f"{split} {splits[split]}" for split in SPLITS),
        f"groups (people):   {len({record.group for record in result.records})}",
        f"with attributes:   {sum(record.has_attributes for record in result.records)}",
        f"with beauty score: {sum(record.has_beauty for record in result.records)}",
    ])


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    print(f"expected layout for {args.kind}:\n{LAYOUTS[args.kind]}\n")
    source = SourceConfig(kind=args.kind, root=args.root, images=args.images, celeba_root=args.celeba_root)
    try:
        result = read_source(source, on_bad_row="skip" if args.skip_bad_rows else "error")
    except FaceAttrError as error:
        print(f"NOT USABLE: {error}", file=sys.stderr)
        return 1
    print(f"found in {args.root}:\n{describe(result)}")
    if not result.records:
        print("NOT USABLE: no label row has its image", file=sys.stderr)
        return 1
    print("OK: usable")
    return 0


if __name__ == "__main__":
    sys.exit(main())
