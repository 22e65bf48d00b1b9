"""Draws the evaluation report's PNG plots: balanced accuracy per attribute, and beauty scatter, ROC, bins and deciles.

matplotlib is imported only when a plot is drawn, onto pyplot-free Agg figures: no global
backend switch, and nothing left open after saving.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from faceattr.attributes import BEAUTY_RANGE
from faceattr.evaluation.report.format import (
    as_number,
    bin_label,
    decile_label,
    format_metric,
    ranked_attributes,
)

_DPI = 120


def write_plots(evaluation: Mapping[str, Any], out: Path) -> dict[str, Path]:
    """Draws the plots whose data is present into ``out`` as PNG files.

    Args:
        evaluation: The evaluation dict described in :mod:`faceattr.evaluation.report.markdown`, already checked.
        out: An existing folder; files of the same names are replaced.

    Returns:
        Each plot's path, keyed by its file stem: ``balanced_accuracy`` (with attribute
        metrics), ``beauty_scatter`` (with ``beauty_predictions``), ``beauty_roc`` (with ROC
        points), ``beauty_bins`` (with score bins) and ``beauty_deciles`` (with the error per
        predicted-score decile).

    >>> write_plots(evaluation, Path("runs/r1/report"))  # doctest: +SKIP
    {'balanced_accuracy': PosixPath('runs/r1/report/balanced_accuracy.png'), ...}
    """
    drawers = {}
    attributes = evaluation.get("attributes")
    ranked = [] if attributes is None else ranked_attributes(attributes, unlabelled=False)
    if ranked:
        means = evaluation.get("attribute_means")
        mean = float(np.mean([v for _, v in ranked])) if means is None else as_number(means["balanced_accuracy"])
        drawers["balanced_accuracy"] = lambda: _plot_balanced_accuracy(ranked, mean)
    beauty, predictions = evaluation.get("beauty"), evaluation.get("beauty_predictions")
    if beauty is not None and predictions is not None and len(predictions["target"]) > 0:
        drawers["beauty_scatter"] = lambda: _plot_beauty_scatter(beauty, predictions)
    if beauty is not None and len(beauty["roc"]["fpr"]) > 1:
        drawers["beauty_roc"] = lambda: _plot_beauty_roc(beauty, predictions)
    if beauty is not None and beauty["bins"]:
        names = [bin_label(b, i == len(beauty["bins"]) - 1) for i, b in enumerate(beauty["bins"])]
        drawers["beauty_bins"] = lambda: _plot_beauty_bins(beauty["bins"], names, "true score bin",
                                                           "Beauty error per true-score bin")
    deciles = (evaluation.get("beauty_deciles") or {}).get("bins")
    if deciles:
        drawers["beauty_deciles"] = lambda: _plot_beauty_bins(deciles, [decile_label(b) for b in deciles],
                                                              "predicted score (decile)",
                                                              "Beauty error per predicted-score decile")
    paths = {name: out / f"{name}.png" for name in drawers}
    for name, draw in drawers.items():
        draw().figure.savefig(paths[name])
    return paths


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
             title=f"Beauty score: Pearson {format_metric(beauty['pearson'])}, "
                   f"MAE {format_metric(beauty['mae'])} (n={len(target)})")
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
    roc, cutoff = beauty["roc"], as_number(beauty["high_cutoff"])
    axes = _new_axes(5.6, 5.6)
    axes.plot([0, 1], [0, 1], color="#888888", linestyle=":", linewidth=1.2, label="chance")
    axes.plot([as_number(v) for v in roc["fpr"]], [as_number(v) for v in roc["tpr"]], color="#2e6da4",
              linewidth=2, label=f"ROC (AUC {format_metric(roc['auc'])})")
    point = _roc_point(predictions, cutoff, as_number(roc["best_threshold"]))
    if point is not None:
        axes.plot(*point, marker="o", markersize=9, color="#b03a2e", linestyle="none",
                  label=f"best threshold {format_metric(roc['best_threshold'])}\n"
                        f"(FPR {point[0]:.2f}, TPR {point[1]:.2f})")
    axes.set(xlim=(-0.01, 1.01), ylim=(-0.01, 1.01), aspect="equal", xlabel="false positive rate",
             ylabel="true positive rate", title=f"Beauty score ≥ {cutoff:g}: ROC")
    axes.legend(loc="lower right")
    return axes


def _plot_beauty_bins(bins: Sequence[Mapping[str, Any]], names: Sequence[str], xlabel: str, title: str) -> Any:
    """MAE and bias bars per group of images (true-score bins or predicted-score deciles), each named and counted."""
    labels = [f"{name}\nn={format_metric(b['count'], '.0f')}" for name, b in zip(names, bins)]
    positions, width = np.arange(len(bins)), 0.38
    axes = _new_axes(max(7.0, 0.9 * len(bins)), 4.4, grid="y")
    axes.bar(positions - width / 2, [as_number(b["mae"]) for b in bins], width, color="#2e6da4", label="MAE")
    axes.bar(positions + width / 2, [as_number(b["bias"]) for b in bins], width, color="#e08e3c",
             label="bias (predicted − true)")
    axes.axhline(0, color="#333333", linewidth=0.8)
    axes.set_xticks(positions, labels, fontsize=8 if len(bins) > 6 else None)
    axes.set(xlabel=xlabel, ylabel="score points", title=title)
    axes.legend(loc="best")
    return axes
