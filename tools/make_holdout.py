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
from collections import Counter
from pathlib import Path

import numpy as np

from faceattr.config import SOURCE_KINDS, SourceConfig
from faceattr.data.sources import read_source
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


def pick_groups(groups: list[str], fraction: float, seed: int) -> list[str]:
    """Whole groups, in a seeded random order, until their images reach ``fraction`` of ``groups``.

    Args:
        groups: Each image's group (repeated for a person's several images).
        fraction: Share of the images to cover, in (0, 1).
        seed: Seed of the order.

    Returns:
        The chosen groups, sorted.

    >>> pick_groups(["a", "a", "b", "c"], 0.5, seed=0)
    ['a']
    """
    counts = Counter(groups)
    order = sorted(counts)
    np.random.default_rng(seed).shuffle(order)
    chosen, covered = [], 0
    for group in order:
        if covered >= fraction * len(groups):
            break
        chosen.append(group)
        covered += counts[group]
    return sorted(chosen)


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    if not 0 < args.fraction < 1:
        print(f"error: --fraction must be in (0, 1), got {args.fraction}", file=sys.stderr)
        return 2
    try:
        records = read_source(SourceConfig(kind=args.kind, root=args.root, images=args.images)).records
    except FaceAttrError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    groups = [record.group for record in records if record.split != "test"]
    chosen = pick_groups(groups, args.fraction, args.seed)
    held = sum(group in set(chosen) for group in groups)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    header = (f"# {len(chosen)} of {len(set(groups))} groups, {held} of {len(groups)} images of "
              f"{args.kind} {args.root} {args.images or ''}; tools/make_holdout.py --fraction {args.fraction} "
              f"--seed {args.seed}\n")
    out.write_text(header + "".join(f"{group}\n" for group in chosen))
    print(f"held out {len(chosen)} of {len(set(groups))} groups ({held} of {len(groups)} images): {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
