"""Measure the decision policies' present lists on CelebA validation, and derive the exclusive pairs.

For each policy (balanced, f1, probability >= cut-off) the precision and recall of the present
list over all faces and attributes, and the attributes listed per face against the true count,
on CelebA's validation partition (aligned images present in img_align_celeba), with thresholds
fitted on one half of the faces and scored on the other. With --pairs-from, the attribute pairs
CelebA's training labels almost never show together are written to
faceattr/evaluation/exclusive_pairs.py. With --update, the model's decision policies are fitted
on all these faces and the export rewritten with --default as its default policy; its weights,
calibration and balanced thresholds are kept.

Examples:
    python tools/measure_decisions.py --pairs-from ../shared/data/celeba
    python tools/measure_decisions.py --celeba ../shared/data/celeba --out runs/decisions
    python tools/measure_decisions.py --celeba ../shared/data/celeba --update faceattr/weights/default.safetensors --default f1
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from faceattr.config import DECISION_POLICIES
from faceattr.errors import FaceAttrError
from faceattr.files import save_table
from faceattr.runtime import configure_logging

PAIRS_MODULE = Path(__file__).resolve().parents[1] / "faceattr" / "evaluation" / "exclusive_pairs.py"


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--celeba", type=Path, help="CelebA folder (official layout): score its validation faces")
    parser.add_argument("--model", help="the model to measure (default: the installed default model)")
    parser.add_argument("--cuts", type=float, nargs="+", default=[0.5], help="probability cut-offs (default: 0.5)")
    parser.add_argument("--out", type=Path, help="also write decisions.md and decisions.json here")
    parser.add_argument("--pairs-from", type=Path, metavar="CELEBA",
                        help="derive the exclusive pairs from this CelebA folder's training labels and rewrite "
                             f"{PAIRS_MODULE.name}")
    parser.add_argument("--max-rate", type=float, default=0.035, help="co-occurrence rate below which a pair is "
                                                                     "exclusive (default: 0.035)")
    parser.add_argument("--update", type=Path, metavar="WEIGHTS",
                        help="fit the policies on all the validation faces and rewrite this export (.safetensors)")
    parser.add_argument("--default", choices=DECISION_POLICIES, help="with --update: the default policy")
    parser.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    configure_logging()
    from faceattr.evaluation import decision

    try:
        if args.pairs_from:
            labels = decision.celeba_split_labels(args.pairs_from, "train")
            rows = decision.exclusive_pairs(labels, args.max_rate)
            PAIRS_MODULE.write_text(decision.exclusive_pairs_module(rows, args.max_rate, len(labels)), encoding="utf-8")
            for a, b, rate, both in rows:
                print(f"{rate:.4f}  {a} + {b}  ({both} of {len(labels)} faces)")
            print(f"wrote {len(rows)} pairs to {PAIRS_MODULE}")
        if args.celeba:
            from faceattr.inference.predictor import Predictor

            predictor = Predictor(args.model or args.update, device=args.device)
            probs, labels, mask = decision.score_celeba_validation(predictor.predict_aligned, args.celeba)
            rows = decision.measure_policies(probs, labels, mask, args.cuts)
            table = decision.policies_table(rows)
            print(f"{len(probs)} CelebA validation faces, thresholds cross-fitted on halves:\n{table}")
            if args.out:
                save_table(args.out, "decisions", table + "\n", rows)
            if args.update:
                from faceattr.training.export import refit_decisions

                refit_decisions(args.update, probs, labels, mask, args.default)
                print(f"rewrote {args.update} with the policies fitted on {len(probs)} faces, default "
                      f"{args.default or 'unchanged'}")
    except FaceAttrError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
