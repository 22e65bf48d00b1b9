"""The evaluation result: its sections and their keys, its headline figures, its stored form and its check.

An evaluation is a plain dict, so that a checkpoint holding one loads with
``torch.load(weights_only=True)`` and a ``report.json`` read back is one again. Its sections:

- ``meta``: descriptive fields (checkpoint, split, epoch, ...) with ``images`` and ``validation_loss``;
- ``attributes``: per attribute name, the metrics of :data:`ATTRIBUTE_KEYS`;
- ``attribute_means`` (thresholds tuned on these images), ``attribute_means_at_0.5`` and
  ``attribute_means_cross_fitted`` (tuned on one half, scored on the other): the means of
  :data:`~faceattr.evaluation.metrics.MEAN_KEYS` over attributes;
- ``calibration``: expected calibration error before and after the model's calibration;
- ``beauty``: the regression metrics of the beauty score, and ``beauty_predictions``: the
  per-image predicted and true scores;
- ``confusion``: per attribute name, the confusion counts of
  :data:`~faceattr.evaluation.metrics.CONFUSION_KEYS` at the model's thresholds;
- ``beauty_deciles``: ``{"bins": [...]}``, the beauty error per decile of the predicted score;
- ``galleries``: which validation images the error galleries show
  (:func:`~faceattr.evaluation.errors.gallery_selection`), only when galleries were asked for.

The attribute sections (calibration and confusion included) or the beauty ones are ``None`` when
the data has no such labels; an evaluation stored before a section existed lacks it, and reads as None. Metric values may be NaN, or ``None`` in JSON read back.

>>> evaluation = evaluation_result({"split": "val"}, images=2, validation_loss=0.7,
...                                beauty={"pearson": 0.8, "mae": 0.3, "rmse": 0.4})
>>> headline(evaluation), headline_figures(evaluation)["beauty_mae"], headline_figures(evaluation)["f1"]
(0.8, 0.3, None)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from faceattr.attributes import ATTRIBUTE_INDEX, ATTRIBUTES
from faceattr.errors import EvaluationError
from faceattr.evaluation.metrics import CONFUSION_KEYS, MEAN_KEYS

#: Each attribute's metrics (as :func:`~faceattr.evaluation.metrics.attribute_metrics` gives
#: them), in the column order of the report's table and ``attributes.csv``.
ATTRIBUTE_KEYS: tuple[str, ...] = ("base_rate", "threshold", "accuracy", "balanced_accuracy", "precision",
                                   "recall", "f1", "average_precision", "roc_auc", "count")

#: Each section of an evaluation and the keys it must have when it is not None.
SECTION_KEYS: dict[str, tuple[str, ...]] = {
    "attributes": ATTRIBUTES,
    "attribute_means": MEAN_KEYS,
    "attribute_means_at_0.5": MEAN_KEYS,
    "attribute_means_cross_fitted": MEAN_KEYS,
    "calibration": ("bins", "ece_before", "ece_after", "ece_after_cross_fitted"),
    "beauty": ("count", "pearson", "mae", "rmse", "bins", "high_cutoff", "roc"),
    "beauty_predictions": ("predicted", "target"),
    "confusion": ATTRIBUTES,
    "beauty_deciles": ("bins",),
    "galleries": ("size", "attributes", "beauty"),
}
#: The keys of each of ``beauty["bins"]`` and of ``beauty["roc"]``.
BEAUTY_BIN_KEYS: tuple[str, ...] = ("low", "high", "count", "mae", "bias")
ROC_KEYS: tuple[str, ...] = ("auc", "best_threshold", "fpr", "tpr")
#: The ROC curve's points: one per distinct predicted score, left out of a model's stored metrics.
_ROC_CURVE_KEYS = ("fpr", "tpr")

#: The flat figures of :func:`headline_figures`: name, then where it lies in the evaluation.
FIGURES: dict[str, tuple[str, str]] = {
    "images": ("meta", "images"),
    "validation_loss": ("meta", "validation_loss"),
    "balanced_accuracy": ("attribute_means", "balanced_accuracy"),
    "balanced_accuracy_cross_fitted": ("attribute_means_cross_fitted", "balanced_accuracy"),
    "balanced_accuracy_at_0.5": ("attribute_means_at_0.5", "balanced_accuracy"),
    "accuracy": ("attribute_means", "accuracy"),
    "f1": ("attribute_means", "f1"),
    "roc_auc": ("attribute_means", "roc_auc"),
    "beauty_pearson": ("beauty", "pearson"),
    "beauty_mae": ("beauty", "mae"),
    "beauty_rmse": ("beauty", "rmse"),
}


def evaluation_result(meta: Mapping[str, Any], images: int, validation_loss: float,
                      attributes: Mapping[str, Mapping[str, float]] | None = None,
                      means: Mapping[str, float] | None = None, means_at_half: Mapping[str, float] | None = None,
                      means_cross_fitted: Mapping[str, float] | None = None,
                      calibration: Mapping[str, Any] | None = None, beauty: Mapping[str, Any] | None = None,
                      beauty_predictions: Mapping[str, list[float]] | None = None,
                      confusion: Mapping[str, Mapping[str, int]] | None = None,
                      beauty_deciles: Sequence[Mapping[str, float]] | None = None,
                      galleries: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """An evaluation dict from its parts; a part left None means the data had no such labels.

    Args:
        meta: Descriptive fields; ``images`` and ``validation_loss`` are added to them.
        images: Number of images evaluated.
        validation_loss: Mean validation loss (nan without a loss function).
        attributes: Per-attribute metrics.
        means: Their means with the model's thresholds (``attribute_means``).
        means_at_half: The means with every threshold at 0.5 (``attribute_means_at_0.5``).
        means_cross_fitted: The means with thresholds tuned on the other half of the images.
        calibration: Expected calibration error before and after calibration.
        beauty: Beauty regression metrics.
        beauty_predictions: ``{"predicted", "target"}`` lists of the rated images.
        confusion: Per-attribute confusion counts.
        beauty_deciles: Beauty error per predicted-score decile (stored as ``{"bins": beauty_deciles}``).
        galleries: The images of the error galleries (None: none asked for).

    Returns:
        The dict with every section of :data:`SECTION_KEYS` and ``meta``.

    >>> sorted(evaluation_result({}, images=0, validation_loss=float("nan")))[:3]
    ['attribute_means', 'attribute_means_at_0.5', 'attribute_means_cross_fitted']
    """
    return {"meta": {**meta, "images": images, "validation_loss": validation_loss},
            "attributes": attributes, "attribute_means": means, "attribute_means_at_0.5": means_at_half,
            "attribute_means_cross_fitted": means_cross_fitted, "calibration": calibration, "beauty": beauty,
            "beauty_predictions": beauty_predictions, "confusion": confusion,
            "beauty_deciles": None if beauty_deciles is None else {"bins": list(beauty_deciles)},
            "galleries": galleries}


def headline(evaluation: Mapping[str, Any]) -> float:
    """The number a run is selected on: mean balanced accuracy, else beauty Pearson, else nan.

    >>> headline({"attribute_means": None, "beauty": {"pearson": 0.81}})
    0.81
    """
    if evaluation["attribute_means"] is not None:
        return float(evaluation["attribute_means"]["balanced_accuracy"])
    if evaluation["beauty"] is not None:
        return float(evaluation["beauty"]["pearson"])
    return float("nan")


def headline_figures(evaluation: Mapping[str, Any]) -> dict[str, Any]:
    """The evaluation's main figures as one flat dict, keyed by the names of :data:`FIGURES`.

    What the epoch records of ``metrics.jsonl``, the sweep table and the per-source table of
    ``tools/eval.py`` show: images, validation loss, mean balanced accuracy with tuned,
    cross-fitted and 0.5 thresholds, mean accuracy, F1 and ROC AUC, beauty Pearson, MAE and RMSE.

    Returns:
        Each figure as stored (a float, NaN, or None as in JSON read back); None where its
        section is None, or where an evaluation stored with an older model lacks it
        (``roc_auc`` before faceattr measured it).

    >>> means = {"balanced_accuracy": 0.84, "accuracy": 0.9, "f1": 0.7}
    >>> figures = headline_figures({"meta": {"images": 10, "validation_loss": 0.3}, "attribute_means": means,
    ...                             "attribute_means_at_0.5": None, "attribute_means_cross_fitted": None,
    ...                             "beauty": None})
    >>> figures["balanced_accuracy"], figures["balanced_accuracy_at_0.5"], figures["images"]
    (0.84, None, 10)
    """
    figures = {}
    for name, (section, key) in FIGURES.items():
        part = evaluation.get(section)
        figures[name] = None if part is None else part.get(key)
    return figures


def compact_evaluation(evaluation: Mapping[str, Any]) -> dict[str, Any]:
    """The evaluation stored with an exported model: without per-image beauty predictions, galleries and ROC curve points.

    Galleries name images by their paths on the machine that evaluated, meaningless beside a model.

    >>> compact_evaluation({"beauty_predictions": {"predicted": [3.0]}, "beauty": {"roc": {"auc": 0.9, "fpr": [0, 1]}}})
    {'beauty': {'roc': {'auc': 0.9}}}
    """
    compact = {key: value for key, value in evaluation.items() if key not in ("beauty_predictions", "galleries")}
    if isinstance(compact.get("beauty"), Mapping) and isinstance(compact["beauty"].get("roc"), Mapping):
        roc = {key: value for key, value in compact["beauty"]["roc"].items() if key not in _ROC_CURVE_KEYS}
        compact["beauty"] = {**compact["beauty"], "roc": roc}
    return compact


def check_evaluation(evaluation: Mapping[str, Any]) -> None:
    """Checks that a built or loaded evaluation has every key its non-None sections need.

    Raises:
        EvaluationError: Naming the section and the missing keys, an unknown attribute, beauty
            predictions and targets of different lengths, or neither attribute nor beauty metrics.

    >>> check_evaluation({"meta": {}, "beauty": {"pearson": 0.8}})
    Traceback (most recent call last):
    ...
    faceattr.errors.EvaluationError: evaluation['beauty'] lacks the keys ['count', 'mae', 'rmse', 'bins', 'high_cutoff', 'roc']
    """
    _require(evaluation, ("meta",), "the evaluation")
    _require(evaluation["meta"], (), "evaluation['meta']")
    for section, keys in SECTION_KEYS.items():
        if evaluation.get(section) is not None:
            _require(evaluation[section], keys, f"evaluation[{section!r}]")
    if evaluation.get("attributes") is not None:
        unknown = sorted(set(evaluation["attributes"]) - set(ATTRIBUTE_INDEX))
        if unknown:
            raise EvaluationError(f"evaluation['attributes'] has unknown attributes {unknown}")
        for name in ATTRIBUTES:
            _require(evaluation["attributes"][name], ATTRIBUTE_KEYS, f"evaluation['attributes'][{name!r}]")
    if evaluation.get("beauty") is not None:
        for i, bin_ in enumerate(evaluation["beauty"]["bins"]):
            _require(bin_, BEAUTY_BIN_KEYS, f"evaluation['beauty']['bins'][{i}]")
        _require(evaluation["beauty"]["roc"], ROC_KEYS, "evaluation['beauty']['roc']")
    if evaluation.get("confusion") is not None:
        for name in ATTRIBUTES:
            _require(evaluation["confusion"][name], CONFUSION_KEYS, f"evaluation['confusion'][{name!r}]")
    if evaluation.get("beauty_deciles") is not None:
        for i, bin_ in enumerate(evaluation["beauty_deciles"]["bins"]):
            _require(bin_, BEAUTY_BIN_KEYS, f"evaluation['beauty_deciles']['bins'][{i}]")
    predictions = evaluation.get("beauty_predictions")
    if predictions is not None and len(predictions["predicted"]) != len(predictions["target"]):
        raise EvaluationError(f"evaluation['beauty_predictions'] has {len(predictions['predicted'])} "
                              f"predicted scores but {len(predictions['target'])} targets")
    if evaluation.get("attributes") is None and evaluation.get("beauty") is None:
        raise EvaluationError("the evaluation has neither 'attributes' nor 'beauty' metrics: nothing to report")


def _require(value: Any, keys: Sequence[str], where: str) -> None:
    if not isinstance(value, Mapping):
        raise EvaluationError(f"{where} must be a dict, got {type(value).__name__}")
    missing = [key for key in keys if key not in value]
    if missing:
        raise EvaluationError(f"{where} lacks the keys {missing}")
