"""Train one run per variant of a config (and per SCUT fold), resumably, and tabulate them.

Each ``--variant NAME KEY=VALUE ...`` is the config with those overrides on top of the common
ones (given right after CONFIG, before the first ``--variant``). Every run's config is checked
before any training starts, so a mistyped key stops the sweep at once, naming it. With
``--folds K``, each variant is trained K times, the ``scut`` and ``csv`` sources set to
``folds: K`` and ``fold: 0..K-1`` (K-fold cross-validation on SCUT-FBP5500, also when packed
into a CSV with a ``fold`` column by tools/pack_dataset.py; a CSV without a fold column
ignores them; CelebA keeps its own split).

With ``--jobs N``, N runs train at once, each in its own process (its log in
``RUN/train.log``): small models leave most of a GPU idle, so the folds of a
cross-validation can share one. Runs land in ``OUT/NAME`` (``OUT/NAME/foldK`` when folded). Running the same command again
skips finished runs (``best.pt`` present and ``metrics.jsonl`` at the last epoch, or early
stopped) and resumes unfinished ones exactly (``--resume``); a finished run made with other
settings stops the sweep, naming them. At the end ``OUT/sweep.md`` and ``OUT/sweep.json``
hold one row per variant, read from each run's ``best.pt`` and ``metrics.jsonl`` (mean ±
sample standard deviation over folds when folded): mean balanced accuracy with the thresholds
tuned on the validation images (what runs are selected on; in-sample), cross-fitted (tuned on
one half, scored on the other: what to expect on new images) and at a fixed 0.5 (so "tuned vs
fixed thresholds" needs no run of its own), mean accuracy and F1 (tuned), beauty Pearson, MAE
and RMSE, epochs, training seconds (training and validation of every epoch) and parameters.

A variant may replace a list whole with YAML flow syntax, quoted for the shell, e.g. the
sources: ``'data.sources=[{kind: scut, root: ../shared/data/scut_fbp5500}]'``.

Examples (the figures of the model card; equal budget: the same epochs and epoch_size):
    # attribute loss: BCE vs class-weighted BCE vs focal
    python tools/sweep.py configs/resnet18_cpu.yaml --out runs/sweep/loss \\
        --variant bce loss.attributes=bce --variant weighted loss.attributes=weighted_bce \\
        --variant focal loss.attributes=focal
    # adaptive per-attribute loss weights on/off
    python tools/sweep.py configs/resnet18_cpu.yaml --out runs/sweep/adaptive \\
        --variant adaptive loss.adaptive_weights=true --variant fixed loss.adaptive_weights=false
    # backbones at equal budget (names: faceattr.models.BACKBONES)
    python tools/sweep.py configs/resnet18_cpu.yaml optim.epochs=8 data.epoch_size=12000 \\
        --out runs/sweep/backbones --variant resnet18 model.backbone=resnet18 \\
        --variant resnet34 model.backbone=resnet34 --variant se_resnet50 model.backbone=se_resnet50
    # beauty head alone vs jointly with the attributes, SCUT 5-fold cross-validation
    python tools/sweep.py configs/resnet18_cpu.yaml --folds 5 --out runs/sweep/beauty --variant joint \\
        --variant alone 'data.sources=[{kind: scut, root: ../shared/data/scut_fbp5500}]'
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from faceattr.errors import FaceAttrError
from faceattr.runtime import configure_logging


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="YAML config file (see configs/)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides common to every variant")
    parser.add_argument("--variant", nargs="+", action="append", required=True, metavar=("NAME", "KEY=VALUE"),
                        help="a name (its run folder) and its overrides; repeat for each variant")
    parser.add_argument("--folds", type=int,
                        help="K-fold cross-validation on the scut sources and csv fold columns (K >= 2)")
    parser.add_argument("--out", help="sweep folder (default: runs/sweep/CONFIG_NAME)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="trainings at once, each in its own process logging to RUN/train.log (default 1: "
                             "one after another in this process); for small runs sharing a GPU")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = get_args_parser().parse_args(argv)
    configure_logging()
    from faceattr.training.sweep import run_sweep

    out = Path(args.out) if args.out else Path("runs/sweep") / Path(args.config).stem
    try:
        run_sweep(args.config, args.variant, args.overrides, args.folds, out, args.jobs,
                  shlex.join(["python", "tools/sweep.py", *argv]))
    except FaceAttrError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print((out / "sweep.md").read_text(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
