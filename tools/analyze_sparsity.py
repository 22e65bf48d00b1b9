"""Relates a model's activation sparsity to beauty ratings (Dibot et al. 2023's design) on SCUT-FBP5500.

Reads the SCUT folder's scores (All_labels.txt, else train.txt), streams its images through the
model's backbone (as its evaluation transform reads them, with the model's SCUT crop) and through an
untrained network of the same architecture, measures every block's sparsity (faceattr.explain.sparsity)
and predicts the ratings from each feature family by ridge regression with repeated 10-fold
cross-validation. --held-out keeps the images the model was not trained on (its SCUT validation
fold). Saves report.md, report.json, depth.png, r2_per_layer.png and r2_families.png in --out.

Example:
    python tools/analyze_sparsity.py ../shared/data/scut_fbp5500 --out runs/sparsity --limit 1000
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from faceattr.data.readers.scut import read_scut
from faceattr.explain.analysis import analyze_sparsity, write_report
from faceattr.models.deployed import DeployedModel

DEFAULT_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "scut_fbp5500"


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scut_root", type=Path, nargs="?", default=DEFAULT_ROOT,
                        help=f"SCUT-FBP5500 folder (default: {DEFAULT_ROOT})")
    parser.add_argument("--model", type=Path, default=None, help="model to analyse (default: the installed one)")
    parser.add_argument("--limit", type=int, default=None, 
                        help="use N images drawn at random (seed 0), so every group is in")
    parser.add_argument("--held-out", action="store_true",
                        help="only the images the model was not trained on: the validation fold of its SCUT source")
    parser.add_argument("--repeats", type=int, default=5, help="cross-validation repeats (default: 5)")
    parser.add_argument("--folds", type=int, default=10, help="cross-validation folds (default: 10)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default: 64)")
    parser.add_argument("--no-untrained", action="store_true", help="skip the untrained network")
    parser.add_argument("--out", type=Path, default=Path("runs/sparsity"), help="folder for the report")
    return parser


def scut_source(model: DeployedModel) -> dict:
    """The model's SCUT training source settings (``{}`` when it was not trained on SCUT)."""
    for source in model.config.get("data", {}).get("sources", []):
        if source.get("kind") == "scut":
            return source
    return {}


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    if args.limit is not None and args.limit < 2:
        sys.exit(f"--limit must be at least 2, got {args.limit}")
    model = DeployedModel.load(args.model)
    source = scut_source(model)
    if args.held_out and not source:
        sys.exit(f"--held-out: {model.where} was not trained on SCUT, so every image is held out: drop --held-out")
    # The model's own folds (training reads SCUT with the same folds and fold), so --held-out keeps its val fold.
    records = read_scut(args.scut_root, folds=source.get("folds") or 5, fold=source.get("fold") or 0).records
    if args.held_out:
        records = [record for record in records if record.split == "val"]
    records = sorted(records, key=lambda record: str(record.path))
    if args.limit is not None and args.limit < len(records):
        # A seeded draw, not the first N: names sort by group (AF, AM, CF, CM), so a prefix would be one group.
        chosen = np.random.default_rng(0).choice(len(records), args.limit, replace=False)
        records = [records[index] for index in sorted(chosen)]
    analysis = analyze_sparsity(model.build_network(), [record.path for record in records],
                                np.array([record.beauty for record in records]), model.image_size, source.get("crop"),
                                batch_size=args.batch_size, folds=min(args.folds, len(records)),
                                repeats=args.repeats, untrained=not args.no_untrained, progress=print)
    for path in write_report(analysis, args.out):
        print(f"wrote {path}")
    print(f"{len(records)} images: {analysis.measure_seconds:.1f} s measuring, {analysis.seconds:.1f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
