"""Evaluation report: renders an evaluation dict as markdown, CSV, JSON and PNG plots.

The evaluation dict is built by :func:`faceattr.evaluation.evaluate.summarize`; its sections
and their keys are those of :mod:`faceattr.evaluation.summary`, which checks it. The attribute
or beauty parts are ``None`` when the data has no such labels, and their sections and plots
are then skipped. Metric values may be NaN (or ``None``, as in a ``report.json`` read back),
shown as ``n/a`` in the markdown, a blank cell in the CSV and ``null`` in the JSON, so a report
re-renders unchanged from its own ``report.json``.

Error galleries (contact sheets of the most confident errors with their Grad-CAM maps) are
drawn above this layer (:mod:`faceattr.explain.galleries`) and handed to :func:`write_report`,
which links them; the images they show are listed in the evaluation's ``galleries`` section.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from faceattr.attributes import ATTRIBUTES
from faceattr.evaluation.metrics import CONFUSION_KEYS
from faceattr.evaluation.report.format import (
    as_number,
    bin_label,
    decile_label,
    format_metric,
    ranked_attributes,
)
from faceattr.evaluation.report.plots import write_plots
from faceattr.evaluation.summary import ATTRIBUTE_KEYS, check_evaluation

logger = logging.getLogger(__name__)

_COLUMN_TITLES = {
    "base_rate": "base rate", "threshold": "threshold", "accuracy": "accuracy",
    "balanced_accuracy": "bal. acc.", "precision": "precision", "recall": "recall", "f1": "F1",
    "average_precision": "AP", "roc_auc": "AUC", "count": "count",
}
_HEADLINE = (("balanced_accuracy", "balanced accuracy"), ("accuracy", "accuracy"), ("f1", "F1"),
             ("average_precision", "average precision"), ("roc_auc", "ROC AUC"))
#: Outer-bin MAE this many times the middle bins' (or its inverse) counts as a difference.
_EXTREME_RATIO = 1.1
_WEAKEST_IN_SUMMARY = 5


def write_report(evaluation: Mapping[str, Any], out_dir: str | Path, title: str = "faceattr evaluation",
                 galleries: Mapping[str, Path] | None = None) -> dict[str, Path]:
    """Writes ``report.md``, ``report.json``, ``attributes.csv`` and the plots into ``out_dir``.

    Args:
        evaluation: The evaluation dict described in the module docstring.
        out_dir: Report folder; created if needed; files of the same names are replaced.
        title: First heading of ``report.md``.
        galleries: Gallery images already drawn, by target (attribute name or ``"beauty"``),
            linked from ``report.md`` (relative to ``out_dir`` when inside it).

    Returns:
        ``{"markdown", "json", "csv"}`` and one key per plot written (``balanced_accuracy``,
        ``beauty_scatter``, ``beauty_roc``, ``beauty_bins``, ``beauty_deciles``), each the file's
        path, and ``gallery_TARGET`` for each of ``galleries``. ``csv``
        and ``balanced_accuracy`` are absent without attribute metrics, the beauty plots
        without beauty metrics, the scatter also without ``beauty_predictions`` and the
        ROC plot without curve points.

    Raises:
        EvaluationError: A required key is missing, or there is neither attribute nor beauty data.

    >>> paths = write_report(evaluation, "runs/r1/report")  # doctest: +SKIP
    >>> sorted(paths)  # doctest: +SKIP
    ['balanced_accuracy', 'beauty_bins', 'beauty_roc', 'beauty_scatter', 'csv', 'json', 'markdown']
    """
    check_evaluation(evaluation)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "report.json"}
    paths["json"].write_text(json.dumps(jsonable(evaluation), indent=2, allow_nan=False) + "\n",
                             encoding="utf-8")
    if evaluation.get("attributes") is not None:
        paths["csv"] = out / "attributes.csv"
        _write_csv(evaluation["attributes"], paths["csv"])
    plots = write_plots(evaluation, out)
    paths["markdown"] = out / "report.md"
    links = {target: _relative(path, out) for target, path in (galleries or {}).items()}
    paths["markdown"].write_text(_markdown(evaluation, title, plots, links), encoding="utf-8")
    drawn = {f"gallery_{target}": Path(path) for target, path in (galleries or {}).items()}
    logger.info("wrote the evaluation report to %s (%d files)", out, len(paths) + len(plots) + len(drawn))
    return {**paths, **plots, **drawn}


def format_summary(evaluation: Mapping[str, Any]) -> str:
    """A few plain lines for a terminal: mean attribute metrics, weakest attributes, beauty.

    Args:
        evaluation: The evaluation dict described in the module docstring.

    Returns:
        The lines joined by newlines, without a trailing newline.

    >>> print(format_summary(evaluation))  # doctest: +SKIP
    attributes: mean balanced accuracy 0.842, accuracy 0.903, F1 0.671 (tuned thresholds +0.041 balanced accuracy over 0.5)
    weakest: Oval_Face 0.601, Pointy_Nose 0.622, Big_Lips 0.634, Narrow_Eyes 0.640, Blurry 0.655
    beauty: Pearson 0.871, MAE 0.254, RMSE 0.331 (660 images)
    """
    check_evaluation(evaluation)
    lines = []
    means = evaluation.get("attribute_means")
    if means is not None:
        gain = format_metric(_tuning_gain(evaluation, "balanced_accuracy"), "+.3f")
        crossed = (evaluation.get("attribute_means_cross_fitted") or {}).get("balanced_accuracy")
        lines.append(f"attributes: mean balanced accuracy {format_metric(means['balanced_accuracy'])} "
                     f"({format_metric(crossed)} with thresholds tuned on other images), "
                     f"accuracy {format_metric(means['accuracy'])}, F1 {format_metric(means['f1'])} "
                     f"(tuned thresholds {gain} balanced accuracy over 0.5)")
    if evaluation.get("calibration") is not None:
        lines.append(_calibration_sentence(evaluation["calibration"]))
    if evaluation.get("attributes") is not None:
        weakest = ranked_attributes(evaluation["attributes"], unlabelled=False)[:_WEAKEST_IN_SUMMARY]
        lines.append("weakest: " + ", ".join(f"{name} {format_metric(value)}" for name, value in weakest))
    beauty = evaluation.get("beauty")
    if beauty is not None:
        lines.append(f"beauty: Pearson {format_metric(beauty['pearson'])}, MAE {format_metric(beauty['mae'])}, "
                     f"RMSE {format_metric(beauty['rmse'])} ({format_metric(beauty['count'], '.0f')} images)")
    return "\n".join(lines)


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON types; non-finite floats become None because strict JSON has no NaN.

    >>> jsonable({"a": float("nan"), "b": (1, 2.5)})
    {'a': None, 'b': [1, 2.5]}
    """
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if hasattr(value, "tolist"):  # numpy arrays and scalars, torch tensors
        return jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def _tuning_gain(evaluation: Mapping[str, Any], key: str) -> float:
    """Mean ``key`` at the tuned thresholds minus at 0.5; NaN where the 0.5 means are absent."""
    fixed = evaluation.get("attribute_means_at_0.5") or {}
    return as_number(evaluation["attribute_means"][key]) - as_number(fixed.get(key))


def _write_csv(attributes: Mapping[str, Mapping[str, Any]], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(("attribute", *ATTRIBUTE_KEYS))
        for name in ATTRIBUTES:
            cells = [as_number(attributes[name][column]) for column in ATTRIBUTE_KEYS]
            # repr keeps full precision; count is an integer however metrics typed it.
            writer.writerow((name, *("" if math.isnan(v) else repr(int(v) if c == "count" else v)
                                     for c, v in zip(ATTRIBUTE_KEYS, cells))))


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], left_columns: int = 1) -> list[str]:
    """Markdown table lines; columns after the first ``left_columns`` are right-aligned."""
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(cell).replace("|", "\\|").replace("\n", " ") for cell in cells) + " |"

    rule = ["---" if i < left_columns else "---:" for i in range(len(header))]
    return [line(header), "|" + "|".join(rule) + "|", *(line(row) for row in rows), ""]


def _meta_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (Mapping, list, tuple)):
        return json.dumps(jsonable(value))
    return str(value)


def _relative(path: str | Path, folder: Path) -> str:
    """``path`` as a Markdown link target: relative to the report folder where it lies inside it."""
    path = Path(path)
    try:
        return path.resolve().relative_to(folder.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def _markdown(evaluation: Mapping[str, Any], title: str, plots: Mapping[str, Path],
              galleries: Mapping[str, str]) -> str:
    meta = evaluation["meta"]
    lines = [f"# {title}", "", "## Run", "",
             *_table(("field", "value"), [(key, _meta_value(value)) for key, value in meta.items()], 2)]
    if evaluation.get("attributes") is not None:
        lines += _attribute_section(evaluation, plots)
        if evaluation.get("confusion") is not None:
            lines += _confusion_section(evaluation, galleries)
    if evaluation.get("beauty") is not None:
        lines += _beauty_section(evaluation, plots, galleries)
    return "\n".join(lines).rstrip("\n") + "\n"


def _attribute_section(evaluation: Mapping[str, Any], plots: Mapping[str, Path]) -> list[str]:
    lines = ["## Attributes", ""]
    means, fixed = evaluation.get("attribute_means"), evaluation.get("attribute_means_at_0.5") or {}
    crossed = evaluation.get("attribute_means_cross_fitted") or {}
    if means is not None:
        rows = [(label, format_metric(means[key]), format_metric(crossed.get(key)), format_metric(fixed.get(key)),
                 format_metric(_tuning_gain(evaluation, key), "+.3f")) for key, label in _HEADLINE]
        lines += _table(("mean over attributes", "tuned thresholds", "tuned on the other half", "0.5 thresholds",
                         "gain from tuning"), rows)
        lines += ["Thresholds tuned and scored on the same images flatter the model a little; the "
                  "\"tuned on the other half\" column scores each half of the images with thresholds "
                  "tuned on the other half: expect that on new images.", ""]
    if evaluation.get("calibration") is not None:
        lines += [_calibration_sentence(evaluation["calibration"]), ""]
    attributes = evaluation["attributes"]
    rows = [[name, *(format_metric(attributes[name][c], ".0f" if c == "count" else ".3f")
                     for c in ATTRIBUTE_KEYS)]
            for name, _ in ranked_attributes(attributes)]
    lines += ["### Per attribute (weakest balanced accuracy first)", "",
              *_table(["attribute", *(_COLUMN_TITLES[c] for c in ATTRIBUTE_KEYS)], rows)]
    lines += _image(plots, "balanced_accuracy", "Balanced accuracy per attribute")
    return lines


def _confusion_section(evaluation: Mapping[str, Any], galleries: Mapping[str, str]) -> list[str]:
    """Each attribute's confusion matrix with precision, recall and F1, and a link to its error gallery."""
    confusion, attributes = evaluation["confusion"], evaluation["attributes"]
    size = (evaluation.get("galleries") or {}).get("size")
    rows = [[name, *(format_metric(confusion[name][key], ".0f") for key in CONFUSION_KEYS),
             *(format_metric(attributes[name][key]) for key in ("precision", "recall", "f1")),
             *([f"[errors]({galleries[name]})" if name in galleries else ""] if galleries else [])]
            for name, _ in ranked_attributes(attributes)]
    header = ["attribute", "true pos.", "false pos.", "false neg.", "true neg.", "precision", "recall", "F1"]
    lines = ["### Errors per attribute (at the model's thresholds)", ""]
    if galleries:
        header.append("gallery")
        lines += [f"Each gallery shows the {format_metric(size, '.0f')} most confident false positives (labelled "
                  "absent, called present: highest probability first) and false negatives (labelled present, called "
                  "absent: lowest probability first) among the evaluated images, each face as the model saw it with "
                  "its Grad-CAM map for the attribute and its calibrated probability.", ""]
    return lines + _table(header, rows)


def _calibration_sentence(calibration: Mapping[str, Any]) -> str:
    """One line: mean expected calibration error before and after the model's calibration."""
    return (f"Calibration: mean expected calibration error ({format_metric(calibration['bins'], '.0f')} bins) "
            f"{format_metric(calibration['ece_before'])} before calibration (temperature and offset per attribute), "
            f"{format_metric(calibration['ece_after'])} after "
            f"({format_metric(calibration['ece_after_cross_fitted'])} with calibration fitted on the other half).")


def _image(plots: Mapping[str, Path], key: str, alt: str) -> list[str]:
    """A relative image link and a blank line, or nothing where that plot was not drawn."""
    return [f"![{alt}]({plots[key].name})", ""] if key in plots else []


def _versus(mae: float, middle: float) -> str:
    if mae > middle * _EXTREME_RATIO:
        return "worse"
    if mae * _EXTREME_RATIO < middle:
        return "better"
    return "about as good"


def _extremes_sentence(bins: Sequence[Mapping[str, Any]]) -> str:
    """Whether each outermost populated bin has a larger MAE than the bins between them."""
    populated = [b for b in bins if as_number(b["count"]) > 0 and not math.isnan(as_number(b["mae"]))]
    if len(populated) < 3:
        return "Too few populated bins to compare the extremes of the scale with its middle."
    low, high = populated[0], populated[-1]
    counts = [as_number(b["count"]) for b in populated[1:-1]]
    middle = sum(c * as_number(b["mae"]) for c, b in zip(counts, populated[1:-1])) / sum(counts)
    low_verdict, high_verdict = _versus(as_number(low["mae"]), middle), _versus(as_number(high["mae"]), middle)
    if low_verdict == high_verdict:
        verdict = f"{low_verdict} at the extremes"
    else:
        verdict = f"{low_verdict} at the low end and {high_verdict} at the high end"
    sentence = (f"Compared with the middle of the scale (MAE {middle:.3f}), the model is {verdict}: "
                f"MAE {as_number(low['mae']):.3f} on {bin_label(low, low is bins[-1])} and "
                f"{as_number(high['mae']):.3f} on {bin_label(high, high is bins[-1])}.")
    low_bias, high_bias = as_number(low["bias"]), as_number(high["bias"])
    if low_bias > 0 > high_bias:
        sentence += (f" Predictions are pulled toward the middle (bias {low_bias:+.3f} at the low end, "
                     f"{high_bias:+.3f} at the high end).")
    return sentence


def _beauty_section(evaluation: Mapping[str, Any], plots: Mapping[str, Path],
                    galleries: Mapping[str, str]) -> list[str]:
    beauty = evaluation["beauty"]
    lines = ["## Beauty score", "",
             *_table(("images", "Pearson", "MAE", "RMSE"),
                     [(format_metric(beauty["count"], ".0f"), format_metric(beauty["pearson"]),
                       format_metric(beauty["mae"]), format_metric(beauty["rmse"]))], 0)]
    lines += _image(plots, "beauty_scatter", "Predicted against true beauty score")
    bins = beauty["bins"]
    if bins:
        rows = [(bin_label(b, i == len(bins) - 1), format_metric(b["count"], ".0f"), format_metric(b["mae"]),
                 format_metric(b["bias"], "+.3f")) for i, b in enumerate(bins)]
        lines += ["### Error by true score", "",
                  *_table(("true score", "images", "MAE", "bias (predicted − true)"), rows),
                  _extremes_sentence(bins), ""]
        lines += _image(plots, "beauty_bins", "MAE and bias per true-score bin")
    deciles = (evaluation.get("beauty_deciles") or {}).get("bins")
    if deciles:
        rows = [(str(i + 1), decile_label(b), format_metric(b["count"], ".0f"), format_metric(b["mae"]),
                 format_metric(b["bias"], "+.3f")) for i, b in enumerate(deciles)]
        lines += ["### Error by predicted-score decile", "",
                  "The rated images ranked by predicted score and cut into ten groups of equal size: how wrong "
                  "the model is where it gives a score.", "",
                  *_table(("decile", "predicted score", "images", "MAE", "bias (predicted − true)"), rows, 2)]
        lines += _image(plots, "beauty_deciles", "MAE and bias per predicted-score decile")
    if "beauty" in galleries:
        lines += ["### Beauty gallery", "",
                  "Rows: the highest predicted scores, the lowest, and the largest errors (|predicted − true|); "
                  "each face as the model saw it, with the beauty head's Grad-CAM map, predicted and true score.", "",
                  f"![Highest and lowest predicted beauty scores and largest errors]({galleries['beauty']})", ""]
    roc = beauty["roc"]
    lines += [f"### Telling high scores (≥ {as_number(beauty['high_cutoff']):g}) from the rest", "",
              f"ROC AUC {format_metric(roc['auc'])}; best threshold on the predicted score "
              f"{format_metric(roc['best_threshold'])}.", ""]
    lines += _image(plots, "beauty_roc", "ROC curve for a high beauty score")
    return lines
