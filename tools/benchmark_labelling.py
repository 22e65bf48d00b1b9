"""The labelling simulation benchmark (issue 12): simulated raters voting on pairs of faces whose
true scores are SCUT-FBP5500's mean ratings.

Three parts, written to ``--out`` as Markdown + JSON (and two PNG plots):
1. ``labelling_noise``: which rater noise and metric come closest to the seeds' table (1,000 images);
2. ``labelling_seeds_table``: the seeds' layout, 1,000 to 5,000 images, 20 votes an image, 100 / 75 /
   50 / 25 % random pairs, every metric for Elo and Bradley-Terry;
3. ``labelling_curves``: Spearman against votes per image for the seeds' and the model-seeded
   scheduler, Elo, Bradley-Terry and Bradley-Terry with the model prior, and the votes per image each
   needs to reach 0.9;
4. ``labelling_real_prior`` (with ``--predictions``): the same curves on held-out SCUT images with a real
   model's beauty predictions as the prior, e.g. the default model's on SCUT fold 0:
   ``python tools/eval.py faceattr/weights/default.safetensors 'data.sources=[{kind: scut, root:
   ../shared/data/scut_fbp5500, folds: 5, fold: 0}]' --device cpu --out /tmp/scut_fold0``, then
   ``--predictions /tmp/scut_fold0/report.json``.

Examples:
    python tools/benchmark_labelling.py
    python tools/benchmark_labelling.py --images 1000 2000 --repeats 1 --out /tmp/labelling
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from faceattr.label.benchmark import BUDGETS, SEEDS_TABLE, BenchmarkSettings, run_labelling_benchmark
from faceattr.label.simulate import RaterModel

ROOT = Path(__file__).resolve().parents[1]


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Simulate pairwise labelling projects.", epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data",
                        help="folder holding scut_fbp5500/ (normal truths where absent)")
    parser.add_argument("--images", type=int, nargs="+", default=list(SEEDS_TABLE),
                        help="image counts of the seeds' table (default: 1000 2000 3000 4000 5000)")
    parser.add_argument("--curve-images", type=int, default=1000, help="images of the curves (default: 1000)")
    parser.add_argument("--repeats", type=int, default=3, help="simulated projects per curve (default: 3)")
    parser.add_argument("--budgets", type=int, nargs="+", default=list(BUDGETS), help="votes per image of the curves")
    parser.add_argument("--judge-sd", type=float, default=RaterModel.judge_sd,
                        help=f"rater noise in truth units (default: {RaterModel.judge_sd})")
    parser.add_argument("--random-clicks", type=float, default=0.0, help="share of random clicks (default: 0)")
    parser.add_argument("--predictions", type=Path, default=None,
                        help="tools/eval.py's report.json of a model on held-out SCUT images: adds curves with its "
                             "beauty predictions as the prior")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "labelling", help="output folder")
    return parser


def main(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    settings = BenchmarkSettings(data=args.data, images=args.images, curve_images=args.curve_images,
                                 repeats=args.repeats, rater=RaterModel(args.judge_sd, args.random_clicks),
                                 budgets=args.budgets, predictions=args.predictions)
    parts = run_labelling_benchmark(settings, args.out)
    for name in ("noise", "seeds_table", "curves", "real_prior"):
        if name in parts:
            print(parts[name]["table"], end="\n\n")
    print(f"{parts['seconds']:.0f} s; written to {args.out}")


if __name__ == "__main__":
    main(get_args_parser().parse_args())
