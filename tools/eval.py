"""Evaluate a checkpoint on its validation data and write a report (markdown, CSV, JSON, plots).

All sources of the checkpoint's config are pooled unless ``--source`` picks some (an index
into ``data.sources``, or a name: ``celeba:img_align_celeba``, ``scut``; the kind alone
when one source has it). ``--each-source`` writes one report per source into sub-folders
and a summary table (``sources.md``, ``sources.json``). The thresholds stored in the
checkpoint are used as they are; ``data.max_val_samples`` caps each source on its own.

Examples:
    python tools/eval.py runs/gc_resnet101/best.pt
    python tools/eval.py runs/r18/best.pt --out runs/r18/report_hq data.sources.0.root=/data/celeba
    python tools/eval.py runs/r18/best.pt --source scut                # report in runs/r18/report_source3/
    python tools/eval.py runs/r18/best.pt --each-source --device cpu   # runs/r18/report_sources/
    python tools/eval.py runs/gpu_se_resnet18/best.pt --data-from configs/default_cpu.yaml  # packed -> originals
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from faceattr.errors import EvaluationError, FaceAttrError
from faceattr.runtime import configure_logging

#: Summary columns: title, then the key path in the evaluation dict.
SUMMARY_COLUMNS: tuple[tuple[str, tuple[str, str]], ...] = (
    ("bal. acc. (stored thresholds)", ("attribute_means", "balanced_accuracy")),
    ("bal. acc. (cross-fitted)", ("attribute_means_cross_fitted", "balanced_accuracy")),
    ("bal. acc. at 0.5", ("attribute_means_at_0.5", "balanced_accuracy")),
    ("beauty Pearson", ("beauty", "pearson")),
    ("beauty MAE", ("beauty", "mae")),
    ("beauty RMSE", ("beauty", "rmse")),
)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Evaluate a faceattr checkpoint.", epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="best.pt or last.pt written by tools/train.py")
    parser.add_argument("overrides", nargs="*", help="key=value changes to the checkpoint's stored config")
    parser.add_argument("--out", help="report folder (default: report/, report_sourceN/ or report_sources/ "
                                      "beside the checkpoint)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--data-from", metavar="CONFIG",
                        help="take the data sources and holdout_groups from this config: e.g. evaluate a model "
                             "trained on a pack (tools/pack_dataset.py) on the original images")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--source", action="append", dest="sources", metavar="N|NAME",
                       help="evaluate on this source's validation images only (repeat to pool several)")
    which.add_argument("--each-source", action="store_true", help="one report per source, and a summary table")
    return parser


def summary_row(index: int, label: str, evaluation: dict | None) -> dict:
    """One source's line of the ``--each-source`` table (``evaluation`` None: no validation images)."""
    row = {"index": index, "source": label, "images": evaluation["meta"]["images"] if evaluation else 0}
    for title, (section, key) in SUMMARY_COLUMNS:
        part = evaluation.get(section) if evaluation else None
        row[title] = None if part is None else part[key]
    return row


def summary_markdown(rows: list[dict], checkpoint: str) -> str:
    """The ``--each-source`` table as markdown."""
    from faceattr.evaluation.report.format import format_metric

    titles = [title for title, _ in SUMMARY_COLUMNS]
    lines = [f"# Per-source evaluation: {checkpoint}", "",
             ("Validation images of each source alone, with the checkpoint's stored thresholds; cross-fitted: "
              "thresholds tuned on one half of the source's images and scored on the other; 0 images: a source "
              "with no validation images (training only)."), "",
             "| source | images | " + " | ".join(titles) + " |", "|---|---" + "|---:" * len(titles) + "|"]
    for row in rows:
        cells = ["" if row[title] is None else format_metric(row[title]) for title in titles]
        lines.append(f"| {row['index']} {row['source']} | {row['images']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def each_source(checkpoint: str, overrides: list[str], out: Path, device: str) -> list[dict]:
    """Evaluates every source alone into ``out/sourceN``; writes and returns the summary rows."""
    from faceattr.models.weights_io import load_checkpoint
    from faceattr.config import config_from_dict
    from faceattr.evaluation.evaluate import evaluate_checkpoint, source_label

    configured = config_from_dict(load_checkpoint(checkpoint)["config"], overrides).data.sources
    rows = []
    for index, source in enumerate(configured):
        try:
            evaluation, _ = evaluate_checkpoint(checkpoint, overrides, out / f"source{index}", device, [index])
        except EvaluationError as error:  # a source used for training only
            print(f"source {index}: {error}", file=sys.stderr)
            evaluation = None
        rows.append(summary_row(index, source_label(source), evaluation))
    (out / "sources.json").write_text(json.dumps(rows, indent=2) + "\n")
    (out / "sources.md").write_text(summary_markdown(rows, checkpoint))
    return rows


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_intermixed_args(argv)
    configure_logging()
    from faceattr.config import data_overrides
    from faceattr.evaluation.evaluate import evaluate_checkpoint
    from faceattr.evaluation.report.markdown import format_summary

    try:
        if args.data_from:
            args.overrides = [*data_overrides(args.data_from), *args.overrides]
        if args.each_source:
            out = Path(args.out) if args.out else Path(args.checkpoint).parent / "report_sources"
            out.mkdir(parents=True, exist_ok=True)
            each_source(args.checkpoint, args.overrides, out, args.device)
            print((out / "sources.md").read_text(), end="")
            print(f"reports: {out}/source*/report.md")
            return 0
        sources = None if args.sources is None else [int(s) if s.isdigit() else s for s in args.sources]
        evaluation, paths = evaluate_checkpoint(args.checkpoint, args.overrides, args.out, args.device, sources)
    except FaceAttrError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_summary(evaluation))
    print(f"report: {paths['markdown']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
