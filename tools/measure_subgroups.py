"""Measure one attribute's error rate within hand-labelled groups of validation faces.

The groups file (``image,source,GROUP``; ``#`` comments) names validation images of the model's
own sources (``source`` as ``tools/eval.py --source`` names them: ``celeba:img_align_celeba``,
``celebahq``) and a group for each. The model's user-facing decision (its default policy on
calibrated probabilities) on the attribute is compared with the dataset's label, per source and
group. The default question: how often are women with short hair called Male?

Examples:
    python tools/measure_subgroups.py --groups datasets/celeba_val_hair.csv --attribute Male
    python tools/measure_subgroups.py runs/default_cpu/best.pt --groups datasets/celeba_val_hair.csv --out runs/bench
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from faceattr.errors import FaceAttrError
from faceattr.runtime import configure_logging


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", default="default",
                        help="best.pt or exported .safetensors (default: the installed default model)")
    parser.add_argument("--groups", type=Path, required=True, help="the groups file (image,source,GROUP)")
    parser.add_argument("--attribute", default="Male", help="the attribute whose decisions are scored (default: Male)")
    parser.add_argument("--out", type=Path, help="also write subgroups.md and subgroups.json here")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("overrides", nargs="*", help="key=value changes to the model's stored config (data roots)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_intermixed_args(argv)
    configure_logging()
    import numpy as np

    from faceattr.attributes import ATTRIBUTES
    from faceattr.config import DEFAULT_MODEL_NAME
    from faceattr.evaluation.calibration import apply_calibration
    from faceattr.evaluation.decision import decide, policy_thresholds
    from faceattr.evaluation.evaluate import source_predictions
    from faceattr.evaluation.subgroups import group_error_rates, read_group_labels
    from faceattr.files import save_table
    from faceattr.models.deployed import DeployedModel

    try:
        if args.attribute not in ATTRIBUTES:
            raise FaceAttrError(f"--attribute: {args.attribute!r} is not a CelebA attribute")
        column = ATTRIBUTES.index(args.attribute)
        groups = read_group_labels(args.groups)
        deployed = DeployedModel.load(None if args.model == DEFAULT_MODEL_NAME else args.model)
        thresholds = policy_thresholds(deployed.default_decision, deployed.fitted_thresholds())
        rows = []
        for source in sorted({source for source, _ in groups}):
            predictions, paths = source_predictions(deployed, [source], args.overrides, args.device)
            probs = apply_calibration(predictions.logits, np.asarray(deployed.temperatures),
                                      np.asarray(deployed.offsets))
            # decide, as prediction does: an exclusive pair (Male with Wearing_Lipstick, say) keeps its more probable one.
            present = decide(probs, thresholds)[:, column]
            rows += group_error_rates(present, probs[:, column], predictions.attribute_labels[:, column],
                                      predictions.attribute_mask[:, column], [(source, Path(p).name) for p in paths],
                                      groups)
    except FaceAttrError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    table = "\n".join([f"{args.attribute} decided by the {deployed.default_decision} policy of {args.model}",
                       "", "| source | group | faces | errors | error rate | mean P | labelled present |",
                       "|---|---|---:|---:|---:|---:|---:|",
                       *(f"| {r['source']} | {r['group']} | {r['faces']} | {r['errors']} | {r['error_rate']:.3f} | "
                         f"{r['mean_probability']:.3f} | {r['label_rate']:.3f} |" for r in rows)])
    print(table)
    if args.out:
        save_table(args.out, "subgroups", table, {"model": args.model, "attribute": args.attribute, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
