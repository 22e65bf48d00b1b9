"""Write the generated demo datasets (drawn faces in the official CelebA, CelebA-HQ, SCUT-FBP5500
and team-CSV layouts) that configs/demo.yaml trains on.

Example:
    python tools/make_fixtures.py demo_data --seed 0
"""

from __future__ import annotations

import argparse
import sys

from faceattr.synthetic.fixtures import make_demo_data


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Generate faceattr's demo datasets.", epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", help="folder to write (created)")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same files")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    for kind, path in make_demo_data(args.out_dir, seed=args.seed).items():
        print(f"{kind:9s} {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
