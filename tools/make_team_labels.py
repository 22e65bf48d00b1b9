"""Write a simulated team's beauty labels of SCUT-FBP5500 faces as an export's labels.csv (for the fine-tuning demo).

The team's score of a face is its SCUT mean shifted by its group (faceattr.synthetic.team_labels.TEAM_SHIFT)
plus a seeded disagreement of spread --noise; validation is SCUT fold 0 (the default model's validation
fold, never trained on), training --train-count faces of the other folds. Image names are SCUT's: train
with the csv source's `images` set to SCUT's Images folder.

Example:
    python tools/make_team_labels.py ../shared/data/scut_fbp5500 runs/team/labels.csv --train-count 1000
"""

from __future__ import annotations

import argparse
import sys

from faceattr.errors import FaceAttrError


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scut_root", help="the SCUT-FBP5500 folder")
    parser.add_argument("out", help="the labels.csv to write (must not exist)")
    parser.add_argument("--train-count", type=int, default=1000, help="training faces (default: 1000)")
    parser.add_argument("--noise", type=float, default=0.25, help="spread of each face's disagreement (default: 0.25)")
    parser.add_argument("--seed", type=int, default=0, help="default: 0")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    from faceattr.synthetic.team_labels import write_team_labels

    try:
        counts = write_team_labels(args.scut_root, args.out, args.train_count, args.noise, args.seed)
    except (FaceAttrError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {counts['train']} training and {counts['val']} validation faces")
    return 0


if __name__ == "__main__":
    sys.exit(main())
