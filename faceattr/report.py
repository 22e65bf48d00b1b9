"""Evaluation report: renders an evaluation dict as markdown, CSV, JSON and PNG plots.

The evaluation dict (built by :func:`faceattr.evaluate.summarize` from the metric dicts of
:mod:`faceattr.metrics`) has the keys ``meta``, ``attributes``, ``attribute_means``,
``attribute_means_at_0.5``, ``beauty`` and ``beauty_predictions``; the attribute or beauty
parts are ``None`` when the data has no such labels, and their sections and plots are then
skipped. Metric values may be NaN (or ``None``, as in a ``report.json`` read back), shown as
``n/a`` in the markdown, a blank cell in the CSV and ``null`` in the JSON, so a report
re-renders unchanged from its own ``report.json``.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from faceattr.attributes import ATTRIBUTE_INDEX, ATTRIBUTES, BEAUTY_RANGE
from faceattr.errors import FaceAttrError

logger = logging.getLogger(__name__)

#: Per-attribute metrics, in the column order of ``attributes.csv`` and the markdown table.
ATTRIBUTE_COLUMNS: tuple[str, ...] = (
    "base_rate", "threshold", "accuracy", "balanced_accuracy", "precision", "recall", "f1",
    "average_precision", "count",
)
_COLUMN_TITLES = {
    "base_rate": "base rate", "threshold": "threshold", "accuracy": "accuracy",
    "balanced_accuracy": "bal. acc.", "precision": "precision", "recall": "recall", "f1": "F1",
    "average_precision": "AP", "count": "count",
}
_MEAN_KEYS = ("accuracy", "balanced_accuracy", "precision", "recall", "f1", "average_precision", "base_rate")
_HEADLINE = (("balanced_accuracy", "balanced accuracy"), ("accuracy", "accuracy"), ("f1", "F1"),
             ("average_precision", "average precision"))
_SECTION_KEYS = {
    "attributes": ATTRIBUTES, "attribute_means": _MEAN_KEYS, "attribute_means_at_0.5": _MEAN_KEYS,
    "beauty": ("count", "pearson", "mae", "rmse", "bins", "high_cutoff", "roc"),
    "beauty_predictions": ("predicted", "target"),
}
_BIN_KEYS = ("low", "high", "count", "mae", "bias")
_ROC_KEYS = ("auc", "best_threshold", "fpr", "tpr")
#: Outer-bin MAE this many times the middle bins' (or its inverse) counts as a difference.
_EXTREME_RATIO = 1.1
_WEAKEST_IN_SUMMARY = 5
_DPI = 120


class ReportError(FaceAttrError, ValueError):
    """The evaluation dict is malformed; the message names the key at fault."""


def write_report(evaluation: Mapping[str, Any], out_dir: str | Path,
                 title: str = "faceattr evaluation") -> dict[str, Path]:
    """Writes ``report.md``, ``report.json``, ``attributes.csv`` and the plots into ``out_dir``.

    Args:
        evaluation: The evaluation dict described in the module docstring.
        out_dir: Report folder; created if needed; files of the same names are replaced.
        title: First heading of ``report.md``.

    Returns:
        ``{"markdown", "json", "csv"}`` and one key per plot written (``balanced_accuracy``,
        ``beauty_scatter``, ``beauty_roc``, ``beauty_bins``), each the file's path. ``csv``
        and ``balanced_accuracy`` are absent without attribute metrics, the beauty plots
        without beauty metrics, the scatter also without ``beauty_predictions`` and the
        ROC plot without curve points.

    Raises:
        ReportError: A required key is missing, or there is neither attribute nor beauty data.

    >>> paths = write_report(evaluation, "runs/r1/report")  # doctest: +SKIP
    >>> sorted(paths)  # doctest: +SKIP
    ['balanced_accuracy', 'beauty_bins', 'beauty_roc', 'beauty_scatter', 'csv', 'json', 'markdown']
    """
    _check_evaluation(evaluation)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "report.json"}
    paths["json"].write_text(json.dumps(_jsonable(evaluation), indent=2, allow_nan=False) + "\n",
                             encoding="utf-8")
    if evaluation.get("attributes") is not None:
        paths["csv"] = out / "attributes.csv"
        _write_csv(evaluation["attributes"], paths["csv"])
    plots = _write_plots(evaluation, out)
    paths["markdown"] = out / "report.md"
    paths["markdown"].write_text(_markdown(evaluation, title, plots), encoding="utf-8")
    logger.info("wrote the evaluation report to %s (%d files)", out, len(paths) + len(plots))
    return {**paths, **plots}


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
    _check_evaluation(evaluation)
    lines = []
    means = evaluation.get("attribute_means")
    if means is not None:
        lines.append(f"attributes: mean balanced accuracy {_fmt(means['balanced_accuracy'])}, "
                     f"accuracy {_fmt(means['accuracy'])}, F1 {_fmt(means['f1'])} (tuned thresholds "
                     f"{_fmt(_tuning_gain(evaluation, 'balanced_accuracy'), '+.3f')} balanced accuracy over 0.5)")
    if evaluation.get("attributes") is not None:
        weakest = _ranked_attributes(evaluation["attributes"], unlabelled=False)[:_WEAKEST_IN_SUMMARY]
        lines.append("weakest: " + ", ".join(f"{name} {_fmt(value)}" for name, value in weakest))
    beauty = evaluation.get("beauty")
    if beauty is not None:
        lines.append(f"beauty: Pearson {_fmt(beauty['pearson'])}, MAE {_fmt(beauty['mae'])}, "
                     f"RMSE {_fmt(beauty['rmse'])} ({_fmt(beauty['count'], '.0f')} images)")
    return "\n".join(lines)


def _check_evaluation(evaluation: Mapping[str, Any]) -> None:
    _require(evaluation, ("meta",), "the evaluation")
    _require(evaluation["meta"], (), "evaluation['meta']")
    for key, keys in _SECTION_KEYS.items():
        if evaluation.get(key) is not None:
            _require(evaluation[key], keys, f"evaluation[{key!r}]")
    if evaluation.get("attributes") is not None:
        unknown = sorted(set(evaluation["attributes"]) - set(ATTRIBUTE_INDEX))
        if unknown:
            raise ReportError(f"evaluation['attributes'] has unknown attributes {unknown}")
        for name in ATTRIBUTES:
            _require(evaluation["attributes"][name], ATTRIBUTE_COLUMNS, f"evaluation['attributes'][{name!r}]")
    if evaluation.get("beauty") is not None:
        for i, bin_ in enumerate(evaluation["beauty"]["bins"]):
            _require(bin_, _BIN_KEYS, f"evaluation['beauty']['bins'][{i}]")
        _require(evaluation["beauty"]["roc"], _ROC_KEYS, "evaluation['beauty']['roc']")
    predictions = evaluation.get("beauty_predictions")
    if predictions is not None and len(predictions["predicted"]) != len(predictions["target"]):
        raise ReportError(f"evaluation['beauty_predictions'] has {len(predictions['predicted'])} "
                          f"predicted scores but {len(predictions['target'])} targets")
    if evaluation.get("attributes") is None and evaluation.get("beauty") is None:
        raise ReportError("the evaluation has neither 'attributes' nor 'beauty' metrics: nothing to report")


def _require(value: Any, keys: Sequence[str], where: str) -> None:
    if not isinstance(value, Mapping):
        raise ReportError(f"{where} must be a dict, got {type(value).__name__}")
    missing = [key for key in keys if key not in value]
    if missing:
        raise ReportError(f"{where} lacks the keys {missing}")


def _jsonable(value: Any) -> Any:
    """Plain JSON types; non-finite floats become None because strict JSON has no NaN."""
    if isinstance(value, Mapping):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if hasattr(value, "tolist"):  # numpy arrays and scalars, torch tensors
        return _jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def _num(value: Any) -> float:
    """A metric as a float; None (NaN in a JSON round trip) becomes NaN."""
    return math.nan if value is None else float(value)


def _fmt(value: Any, spec: str = ".3f") -> str:
    """A metric for people: three decimals by default, ``n/a`` for NaN or None."""
    number = _num(value)
    return "n/a" if math.isnan(number) else format(number, spec)


def _tuning_gain(evaluation: Mapping[str, Any], key: str) -> float:
    """Mean ``key`` at the tuned thresholds minus at 0.5; NaN where the 0.5 means are absent."""
    fixed = evaluation.get("attribute_means_at_0.5") or {}
    return _num(evaluation["attribute_means"][key]) - _num(fixed.get(key))


def _ranked_attributes(attributes: Mapping[str, Mapping[str, Any]],
                       unlabelled: bool = True) -> list[tuple[str, float]]:
    """``(name, balanced accuracy)`` weakest first, then (if ``unlabelled``) the NaN ones."""
    pairs = [(name, _num(attributes[name]["balanced_accuracy"])) for name in ATTRIBUTES]
    ranked = sorted((pair for pair in pairs if not math.isnan(pair[1])), key=lambda pair: pair[1])
    return ranked + ([pair for pair in pairs if math.isnan(pair[1])] if unlabelled else [])


def _write_csv(attributes: Mapping[str, Mapping[str, Any]], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(("attribute", *ATTRIBUTE_COLUMNS))
        for name in ATTRIBUTES:
            cells = [_num(attributes[name][column]) for column in ATTRIBUTE_COLUMNS]
            # repr keeps full precision; count is an integer however metrics typed it.
            writer.writerow((name, *("" if math.isnan(v) else repr(int(v) if c == "count" else v)
                                     for c, v in zip(ATTRIBUTE_COLUMNS, cells))))


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
        return json.dumps(_jsonable(value))
    return str(value)


def _markdown(evaluation: Mapping[str, Any], title: str, plots: Mapping[str, Path]) -> str:
    meta = evaluation["meta"]
    lines = [f"# {title}", "", "## Run", "",
             *_table(("field", "value"), [(key, _meta_value(value)) for key, value in meta.items()], 2)]
    if evaluation.get("attributes") is not None:
        lines += _attribute_section(evaluation, plots)
    if evaluation.get("beauty") is not None:
        lines += _beauty_section(evaluation, plots)
    return "\n".join(lines).rstrip("\n") + "\n"


def _attribute_section(evaluation: Mapping[str, Any], plots: Mapping[str, Path]) -> list[str]:
    lines = ["## Attributes", ""]
    means, fixed = evaluation.get("attribute_means"), evaluation.get("attribute_means_at_0.5") or {}
    if means is not None:
        rows = [(label, _fmt(means[key]), _fmt(fixed.get(key)), _fmt(_tuning_gain(evaluation, key), "+.3f"))
                for key, label in _HEADLINE]
        lines += _table(("mean over attributes", "tuned thresholds", "0.5 thresholds", "gain from tuning"), rows)
    attributes = evaluation["attributes"]
    rows = [[name, *(_fmt(attributes[name][c], ".0f" if c == "count" else ".3f")
                     for c in ATTRIBUTE_COLUMNS)]
            for name, _ in _ranked_attributes(attributes)]
    lines += ["### Per attribute (weakest balanced accuracy first)", "",
              *_table(["attribute", *(_COLUMN_TITLES[c] for c in ATTRIBUTE_COLUMNS)], rows)]
    lines += _image(plots, "balanced_accuracy", "Balanced accuracy per attribute")
    return lines


def _image(plots: Mapping[str, Path], key: str, alt: str) -> list[str]:
    """A relative image link and a blank line, or nothing where that plot was not drawn."""
    return [f"![{alt}]({plots[key].name})", ""] if key in plots else []


def _bin_label(bin_: Mapping[str, Any], last: bool) -> str:
    return f"[{_num(bin_['low']):g}, {_num(bin_['high']):g}{']' if last else ')'}"


def _versus(mae: float, middle: float) -> str:
    if mae > middle * _EXTREME_RATIO:
        return "worse"
    if mae * _EXTREME_RATIO < middle:
        return "better"
    return "about as good"


def _extremes_sentence(bins: Sequence[Mapping[str, Any]]) -> str:
    """Whether each outermost populated bin has a larger MAE than the bins between them."""
    populated = [b for b in bins if _num(b["count"]) > 0 and not math.isnan(_num(b["mae"]))]
    if len(populated) < 3:
        return "Too few populated bins to compare the extremes of the scale with its middle."
    low, high = populated[0], populated[-1]
    counts = [_num(b["count"]) for b in populated[1:-1]]
    middle = sum(c * _num(b["mae"]) for c, b in zip(counts, populated[1:-1])) / sum(counts)
    low_verdict, high_verdict = _versus(_num(low["mae"]), middle), _versus(_num(high["mae"]), middle)
    if low_verdict == high_verdict:
        verdict = f"{low_verdict} at the extremes"
    else:
        verdict = f"{low_verdict} at the low end and {high_verdict} at the high end"
    sentence = (f"Compared with the middle of the scale (MAE {middle:.3f}), the model is {verdict}: "
                f"MAE {_num(low['mae']):.3f} on {_bin_label(low, low is bins[-1])} and "
                f"{_num(high['mae']):.3f} on {_bin_label(high, high is bins[-1])}.")
    low_bias, high_bias = _num(low["bias"]), _num(high["bias"])
    if low_bias > 0 > high_bias:
        sentence += (f" Predictions are pulled toward the middle (bias {low_bias:+.3f} at the low end, "
                     f"{high_bias:+.3f} at the high end).")
    return sentence


def _beauty_section(evaluation: Mapping[str, Any], plots: Mapping[str, Path]) -> list[str]:
    beauty = evaluation["beauty"]
    lines = ["## Beauty score", "",
             *_table(("images", "Pearson", "MAE", "RMSE"),
                     [(_fmt(beauty["count"], ".0f"), _fmt(beauty["pearson"]), _fmt(beauty["mae"]),
                       _fmt(beauty["rmse"]))], 0)]
    lines += _image(plots, "beauty_scatter", "Predicted against true beauty score")
    bins = beauty["bins"]
    if bins:
        rows = [(_bin_label(b, i == len(bins) - 1), _fmt(b["count"], ".0f"), _fmt(b["mae"]),
                 _fmt(b["bias"], "+.3f")) for i, b in enumerate(bins)]
        lines += ["### Error by true score", "",
                  *_table(("true score", "images", "MAE", "bias (predicted − true)"), rows),
                  _extremes_sentence(bins), ""]
        lines += _image(plots, "beauty_bins", "MAE and bias per true-score bin")
    roc = beauty["roc"]
    lines += [f"### Telling high scores (≥ {_num(beauty['high_cutoff']):g}) from the rest", "",
              f"ROC AUC {_fmt(roc['auc'])}; best threshold on the predicted score "
              f"{_fmt(roc['best_threshold'])}.", ""]
    lines += _image(plots, "beauty_roc", "ROC curve for a high beauty score")
    return lines


def _new_axes(width: float, height: float, grid: str = "both") -> Any:
    """Axes on a pyplot-free Agg figure: no global backend switch, nothing left open after saving."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.grid(axis=grid, alpha=0.3)
    axes.set_axisbelow(True)
    return axes


def _write_plots(evaluation: Mapping[str, Any], out: Path) -> dict[str, Path]:
    """Draws the plots whose data is present; returns their paths keyed by file stem."""
    drawers = {}
    attributes = evaluation.get("attributes")
    ranked = [] if attributes is None else _ranked_attributes(attributes, unlabelled=False)
    if ranked:
        means = evaluation.get("attribute_means")
        mean = float(np.mean([v for _, v in ranked])) if means is None else _num(means["balanced_accuracy"])
        drawers["balanced_accuracy"] = lambda: _plot_balanced_accuracy(ranked, mean)
    beauty, predictions = evaluation.get("beauty"), evaluation.get("beauty_predictions")
    if beauty is not None and predictions is not None and len(predictions["target"]) > 0:
        drawers["beauty_scatter"] = lambda: _plot_beauty_scatter(beauty, predictions)
    if beauty is not None and len(beauty["roc"]["fpr"]) > 1:
        drawers["beauty_roc"] = lambda: _plot_beauty_roc(beauty, predictions)
    if beauty is not None and beauty["bins"]:
        drawers["beauty_bins"] = lambda: _plot_beauty_bins(beauty["bins"])
    paths = {name: out / f"{name}.png" for name in drawers}
    for name, draw in drawers.items():
        draw().figure.savefig(paths[name])
    return paths


def _plot_balanced_accuracy(ranked: Sequence[tuple[str, float]], mean: float) -> Any:
    from matplotlib import colormaps

    names, values = [name for name, _ in ranked], np.array([value for _, value in ranked])
    rows = np.arange(len(names))
    axes = _new_axes(8.0, 1.6 + 0.26 * len(names), grid="x")
    # Bars start at chance, so their length is what the model adds over guessing.
    colours = colormaps["RdYlGn"](np.clip((values - 0.5) / 0.5, 0.0, 1.0) * 0.8 + 0.1)
    axes.barh(rows, values - 0.5, left=0.5, height=0.72, color=colours, edgecolor="#555555", linewidth=0.4)
    for row, value in zip(rows, values):
        axes.text(value + 0.004, row, f"{value:.3f}", va="center", fontsize=7.5,
                  bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 0.5})
    axes.axvline(0.5, color="#b03a2e", linestyle=":", linewidth=1.5, label="chance (0.5)")
    if not math.isnan(mean):
        axes.axvline(mean, color="#1f3b73", linestyle="--", linewidth=1.3, label=f"mean ({mean:.3f})")
    axes.set_yticks(rows, names, fontsize=9)
    axes.set(ylim=(len(names) - 0.4, -0.6),  # weakest at the top, as in the table
             xlim=(min(0.45, values.min() - 0.03), max(1.0, values.max() + 0.06)),
             xlabel="balanced accuracy", title="Balanced accuracy per attribute (weakest first)")
    axes.figure.legend(loc="outside lower center", ncols=2, frameon=False)
    return axes


def _plot_beauty_scatter(beauty: Mapping[str, Any], predictions: Mapping[str, Any]) -> Any:
    target = np.asarray(predictions["target"], dtype=float)
    predicted = np.asarray(predictions["predicted"], dtype=float)
    scores = np.concatenate([target, predicted])
    scores = scores[np.isfinite(scores)]
    limits = (min(BEAUTY_RANGE[0], scores.min(initial=BEAUTY_RANGE[0])) - 0.1,
              max(BEAUTY_RANGE[1], scores.max(initial=BEAUTY_RANGE[1])) + 0.1)
    axes = _new_axes(5.6, 5.6)
    axes.scatter(target, predicted, s=12, alpha=float(np.clip(300 / len(target), 0.2, 0.8)),
                 color="#2e6da4", edgecolors="none")
    axes.plot(limits, limits, color="#333333", linestyle="--", linewidth=1, label="identity")
    axes.set(xlim=limits, ylim=limits, aspect="equal", xlabel="true score", ylabel="predicted score",
             title=f"Beauty score: Pearson {_fmt(beauty['pearson'])}, MAE {_fmt(beauty['mae'])} (n={len(target)})")
    axes.legend(loc="upper left")
    return axes


def _roc_point(predictions: Mapping[str, Any] | None, cutoff: float,
               threshold: float) -> tuple[float, float] | None:
    """(FPR, TPR) of ``predicted >= threshold`` against ``target >= cutoff``, if both classes occur."""
    if predictions is None or math.isnan(threshold):
        return None
    target = np.asarray(predictions["target"], dtype=float) >= cutoff
    predicted = np.asarray(predictions["predicted"], dtype=float) >= threshold
    if target.all() or not target.any():
        return None
    return float(predicted[~target].mean()), float(predicted[target].mean())


def _plot_beauty_roc(beauty: Mapping[str, Any], predictions: Mapping[str, Any] | None) -> Any:
    roc, cutoff = beauty["roc"], _num(beauty["high_cutoff"])
    axes = _new_axes(5.6, 5.6)
    axes.plot([0, 1], [0, 1], color="#888888", linestyle=":", linewidth=1.2, label="chance")
    axes.plot([_num(v) for v in roc["fpr"]], [_num(v) for v in roc["tpr"]], color="#2e6da4",
              linewidth=2, label=f"ROC (AUC {_fmt(roc['auc'])})")
    point = _roc_point(predictions, cutoff, _num(roc["best_threshold"]))
    if point is not None:
        axes.plot(*point, marker="o", markersize=9, color="#b03a2e", linestyle="none",
                  label=f"best threshold {_fmt(roc['best_threshold'])}\n(FPR {point[0]:.2f}, TPR {point[1]:.2f})")
    axes.set(xlim=(-0.01, 1.01), ylim=(-0.01, 1.01), aspect="equal", xlabel="false positive rate",
             ylabel="true positive rate", title=f"Beauty score ≥ {cutoff:g}: ROC")
    axes.legend(loc="lower right")
    return axes


def _plot_beauty_bins(bins: Sequence[Mapping[str, Any]]) -> Any:
    labels = [f"{_bin_label(b, i == len(bins) - 1)}\nn={_fmt(b['count'], '.0f')}" for i, b in enumerate(bins)]
    positions, width = np.arange(len(bins)), 0.38
    axes = _new_axes(7.0, 4.4, grid="y")
    axes.bar(positions - width / 2, [_num(b["mae"]) for b in bins], width, color="#2e6da4", label="MAE")
    axes.bar(positions + width / 2, [_num(b["bias"]) for b in bins], width, color="#e08e3c",
             label="bias (predicted − true)")
    axes.axhline(0, color="#333333", linewidth=0.8)
    axes.set_xticks(positions, labels)
    axes.set(xlabel="true score bin", ylabel="score points", title="Beauty error per true-score bin")
    axes.legend(loc="best")
    return axes
