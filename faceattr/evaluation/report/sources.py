"""The per-source table of ``tools/eval.py --each-source``: one row of headline figures per source."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from faceattr.evaluation.report.format import format_metric
from faceattr.evaluation.summary import headline_figures

#: The table's columns: title (also the row's key in ``sources.json``), then the figure of
#: :func:`~faceattr.evaluation.summary.headline_figures` it shows.
SOURCE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("bal. acc. (stored thresholds)", "balanced_accuracy"),
    ("bal. acc. (cross-fitted)", "balanced_accuracy_cross_fitted"),
    ("bal. acc. at 0.5", "balanced_accuracy_at_0.5"),
    ("mean ROC AUC", "roc_auc"),
    ("beauty Pearson", "beauty_pearson"),
    ("beauty MAE", "beauty_mae"),
    ("beauty RMSE", "beauty_rmse"),
)


def source_row(index: int, label: str, evaluation: Mapping[str, Any] | None) -> dict[str, Any]:
    """One source's row of the table.

    Args:
        index: The source's position in ``data.sources``.
        label: Its name (:func:`faceattr.evaluation.evaluate.source_label`).
        evaluation: Its evaluation; None when it has no validation images (a training-only source).

    Returns:
        ``{"index", "source", "images"}`` and one key per title of :data:`SOURCE_COLUMNS`
        (None where the evaluation lacks that figure).

    >>> source_row(2, "celeba:train_only", None)["images"], source_row(2, "celeba:train_only", None)["beauty MAE"]
    (0, None)
    """
    figures = headline_figures(evaluation) if evaluation is not None else {}
    row = {"index": index, "source": label, "images": figures.get("images", 0)}
    for title, figure in SOURCE_COLUMNS:
        row[title] = figures.get(figure)
    return row


def sources_markdown(rows: Sequence[Mapping[str, Any]], checkpoint: str) -> str:
    """The table of :func:`source_row` rows as a markdown page.

    >>> print(sources_markdown([source_row(0, "scut", None)], "best.pt").splitlines()[-1])
    | 0 scut | 0 |  |  |  |  |  |  |  |
    """
    titles = [title for title, _ in SOURCE_COLUMNS]
    lines = [f"# Per-source evaluation: {checkpoint}", "",
             ("Validation images of each source alone, with the checkpoint's stored thresholds; cross-fitted: "
              "thresholds tuned on one half of the source's images and scored on the other; 0 images: a source "
              "with no validation images (training only)."), "",
             "| source | images | " + " | ".join(titles) + " |", "|---|---" + "|---:" * len(titles) + "|"]
    for row in rows:
        cells = ["" if row[title] is None else format_metric(row[title]) for title in titles]
        lines.append(f"| {row['index']} {row['source']} | {row['images']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
