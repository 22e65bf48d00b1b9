"""Evaluate a checkpoint on its validation data and write a report (markdown, CSV, JSON, plots).

All sources of the checkpoint's config are pooled unless ``--source`` picks some (an index
into ``data.sources``, or a name: ``celeba:img_align_celeba``, ``scut``; the kind alone
when one source has it). ``--each-source`` writes one report per source into sub-folders
and a summary table (``sources.md``, ``sources.json``). The thresholds stored in the
checkpoint are used as they are; ``data.max_val_samples`` caps each source on its own.
Each report links error galleries (``galleries/ATTRIBUTE.png``, ``galleries/beauty.png``): the
most confident false positives and negatives per attribute, and the highest, lowest and worst
beauty scores, each evaluated face with its Grad-CAM map; ``--galleries N`` images per row (0: none).

Examples:
    python tools/eval.py runs/gc_resnet101/best.pt
    python tools/eval.py runs/r18/best.pt --out runs/r18/report_hq data.sources.0.root=/data/celeba
    python tools/eval.py runs/r18/best.pt --source scut                # report in runs/r18/report_source3/
    python tools/eval.py runs/r18/best.pt --each-source --device cpu   # runs/r18/report_sources/
    python tools/eval.py runs/r18/best.pt --galleries 0                # no galleries: faster
    python tools/eval.py runs/gpu_se_resnet18/best.pt --data-from configs/default_cpu.yaml  # packed -> originals
    python tools/eval.py default --data-from configs/finetune_beauty.yaml --out runs/finetune_beauty/report_default
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from faceattr.errors import FaceAttrError
from faceattr.evaluation.errors import DEFAULT_GALLERY_SIZE
from faceattr.runtime import configure_logging


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Evaluate a faceattr checkpoint.", epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="best.pt or last.pt written by tools/train.py, an exported .safetensors, "
                                           "or 'default' (the model installed with faceattr; needs --out)")
    parser.add_argument("overrides", nargs="*", help="key=value changes to the checkpoint's stored config")
    parser.add_argument("--out", help="report folder (default: report/, report_sourceN/ or report_sources/ "
                                      "beside the checkpoint)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--data-from", metavar="CONFIG",
                        help="take the data sources and holdout_groups from this config: e.g. evaluate a model "
                             "trained on a pack (tools/pack_dataset.py) on the original images")
    parser.add_argument("--galleries", type=int, default=DEFAULT_GALLERY_SIZE, metavar="N",
                        help=f"images per row of the error galleries (default: {DEFAULT_GALLERY_SIZE}; 0: none)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--source", action="append", dest="sources", metavar="N|NAME",
                       help="evaluate on this source's validation images only (repeat to pool several)")
    which.add_argument("--each-source", action="store_true", help="one report per source, and a summary table")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = get_args_parser()
    args = parser.parse_intermixed_args(argv)
    if args.galleries < 0:
        parser.error(f"--galleries: {args.galleries} images per row; give 0 (no galleries) or more")
    configure_logging()
    from faceattr.config import DEFAULT_MODEL_NAME, data_overrides
    from faceattr.evaluation.evaluate import evaluate_checkpoint, evaluate_each_source
    from faceattr.evaluation.report.markdown import format_summary
    from faceattr.explain.galleries import draw_galleries
    from faceattr.models.deployed import DeployedModel

    if args.checkpoint == DEFAULT_MODEL_NAME and not args.out:
        print("error: evaluating the default model needs --out: its report would go beside it, into the package",
              file=sys.stderr)
        return 2
    try:
        if args.checkpoint == DEFAULT_MODEL_NAME:
            args.checkpoint = str(DeployedModel.path_of(None))
        if args.data_from:
            args.overrides = [*data_overrides(args.data_from), *args.overrides]
        if args.each_source:
            out = Path(args.out) if args.out else Path(args.checkpoint).parent / "report_sources"
            out.mkdir(parents=True, exist_ok=True)
            evaluate_each_source(args.checkpoint, args.overrides, out, args.device, args.galleries, draw_galleries)
            print((out / "sources.md").read_text(), end="")
            print(f"reports: {out}/source*/report.md")
            return 0
        sources = None if args.sources is None else [int(s) if s.isdigit() else s for s in args.sources]
        evaluation, paths = evaluate_checkpoint(args.checkpoint, args.overrides, args.out, args.device, sources,
                                                args.galleries, draw_galleries)
    except FaceAttrError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_summary(evaluation))
    print(f"report: {paths['markdown']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
