"""Evaluation metrics for the attribute and beauty predictions: numpy in, JSON-ready floats out.

Undefined values (an attribute with no positive label, a single sample, ...) are
``float("nan")`` rather than exceptions, so one rare attribute never stops an evaluation.
"""

from __future__ import annotations

import math

import numpy as np

from faceattr.attributes import ATTRIBUTES, BEAUTY_RANGE, NUM_ATTRIBUTES

NAN = float("nan")

#: Metrics averaged by :func:`mean_metrics` (``threshold`` and ``count`` describe the
#: evaluation rather than measure it).
MEAN_KEYS = ("accuracy", "balanced_accuracy", "precision", "recall", "f1", "average_precision", "roc_auc", "base_rate")
#: Each attribute's confusion counts at the model's thresholds, in the report's column order.
CONFUSION_KEYS: tuple[str, ...] = ("true_positives", "false_positives", "false_negatives", "true_negatives")


def cross_fitting_halves(count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The two ``(fit_rows, score_rows)`` splits of a cross-fitted estimate over ``count`` rows.

    Something fitted and scored on the same images (thresholds, a calibration) flatters the
    model; fitting on one half and scoring on the other, both ways round, does not. The
    halves are alternating rows, so both hold every source and part of the set.

    >>> [(fit.nonzero()[0].tolist(), score.nonzero()[0].tolist()) for fit, score in cross_fitting_halves(5)]
    [([0, 2, 4], [1, 3]), ([1, 3], [0, 2, 4])]
    """
    even = np.arange(count) % 2 == 0
    return [(even, ~even), (~even, even)]


def ranked_counts(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True and false positives at every cut of the scores, highest cut first.

    Equal scores are never split: cut ``k`` calls positive every sample whose score is at
    least the ``k``-th distinct score. This is what precision-recall and ROC curves and the
    threshold search are made of.

    Args:
        scores: ``(N,)`` scores, higher meaning more likely positive.
        labels: ``(N,)`` 0/1 or bool labels.

    Returns:
        ``(distinct_scores, true_positives, false_positives)``, each of length the number of
        distinct scores, ``distinct_scores`` in decreasing order.

    Raises:
        ValueError: When a score is NaN or the shapes differ.

    >>> s, tp, fp = ranked_counts(np.array([0.9, 0.2, 0.9, 0.4]), np.array([1, 0, 0, 1]))
    >>> s.tolist(), tp.tolist(), fp.tolist()
    ([0.9, 0.4, 0.2], [1, 2, 2], [1, 1, 2])
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    if scores.shape != labels.shape or scores.ndim != 1:
        raise ValueError(f"expected scores and labels of the same (N,) shape, "
                         f"got {scores.shape} and {labels.shape}")
    if np.isnan(scores).any():
        raise ValueError(f"{int(np.isnan(scores).sum())} scores are NaN")
    if scores.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return scores, empty, empty
    order = np.argsort(-scores, kind="stable")
    ordered = scores[order]
    last_of_ties = np.r_[np.flatnonzero(np.diff(ordered)), ordered.size - 1]
    true_positives = np.cumsum(labels[order])[last_of_ties]
    false_positives = last_of_ties + 1 - true_positives
    return ordered[last_of_ties], true_positives, false_positives


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the precision-recall curve as a step sum (as scikit-learn computes it).

    Args:
        scores: ``(N,)`` scores.
        labels: ``(N,)`` 0/1 labels.

    Returns:
        ``sum_k (R_k - R_{k-1}) P_k``, or NaN without a positive label.

    >>> average_precision(np.array([0.9, 0.8, 0.1]), np.array([1, 0, 1]))
    0.8333333333333333
    """
    _, true_positives, false_positives = ranked_counts(scores, labels)
    positives = true_positives[-1] if true_positives.size else 0
    if positives == 0:
        return NAN
    precision = true_positives / (true_positives + false_positives)
    recall_gain = np.diff(true_positives, prepend=0) / positives
    return float(np.sum(recall_gain * precision))


def roc(scores: np.ndarray, labels: np.ndarray) -> dict:
    """ROC curve, its area and the threshold of Youden's J (largest ``tpr - fpr``).

    Args:
        scores: ``(N,)`` scores.
        labels: ``(N,)`` 0/1 labels.

    Returns:
        ``{"auc", "best_threshold", "fpr", "tpr"}``; the curve starts at (0, 0) and has one
        point per distinct score. Without both classes: NaN and empty lists.

    >>> r = roc(np.array([0.9, 0.8, 0.3, 0.1]), np.array([1, 0, 1, 0]))
    >>> r["auc"], r["best_threshold"], r["tpr"]
    (0.75, 0.9, [0.0, 0.5, 0.5, 1.0, 1.0])
    """
    distinct, true_positives, false_positives = ranked_counts(scores, labels)
    positives = true_positives[-1] if true_positives.size else 0
    negatives = false_positives[-1] if false_positives.size else 0
    if positives == 0 or negatives == 0:
        return {"auc": NAN, "best_threshold": NAN, "fpr": [], "tpr": []}
    tpr = np.r_[0.0, true_positives / positives]
    fpr = np.r_[0.0, false_positives / negatives]
    # The (0, 0) point has no finite threshold, so J is maximised over the real cuts.
    best = int(np.argmax(tpr[1:] - fpr[1:]))
    return {"auc": float(np.trapezoid(tpr, fpr)), "best_threshold": float(distinct[best]),
            "fpr": fpr.tolist(), "tpr": tpr.tolist()}


def check_attribute_arrays(probs: np.ndarray, labels: np.ndarray,
                           mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Converts and checks the ``(N, 40)`` probabilities, labels and mask of an evaluation.

    Args:
        probs: ``(N, 40)`` predicted probabilities.
        labels: ``(N, 40)`` labels, 0 or 1 where known.
        mask: ``(N, 40)``, True where the label is known.

    Returns:
        ``(probs, labels, mask)`` as float64, float64 and bool arrays.

    Raises:
        ValueError: On wrong shapes, NaN probabilities or known labels other than 0 and 1.

    >>> p, y, m = check_attribute_arrays(np.zeros((2, 40)), np.ones((2, 40)), np.ones((2, 40)))
    >>> m.dtype, p.shape
    (dtype('bool'), (2, 40))
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    shape = (probs.shape[0] if probs.ndim else 0, NUM_ATTRIBUTES)
    if not probs.shape == labels.shape == mask.shape == shape:
        raise ValueError(f"expected probs, labels and mask of shape (N, {NUM_ATTRIBUTES}), "
                         f"got {probs.shape}, {labels.shape} and {mask.shape}")
    if np.isnan(probs).any():
        raise ValueError(f"{int(np.isnan(probs).sum())} probabilities are NaN")
    known_labels = labels[mask]
    valid = np.isin(known_labels, (0.0, 1.0))
    if not valid.all():
        raise ValueError(f"known labels must be 0 or 1, found {np.unique(known_labels[~valid])[:5].tolist()}")
    return probs, labels, mask


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator > 0 else NAN


def confusion_counts(probs: np.ndarray, labels: np.ndarray, mask: np.ndarray,
                     thresholds: np.ndarray) -> dict[str, dict[str, int]]:
    """Each attribute's confusion matrix over its known labels, at ``thresholds``.

    Args:
        probs: ``(N, 40)`` calibrated probabilities.
        labels: ``(N, 40)`` 0/1 labels.
        mask: ``(N, 40)`` True where the label is known.
        thresholds: ``(40,)``; positive when ``prob >= threshold``.

    Returns:
        For each attribute name, the counts of :data:`CONFUSION_KEYS`.

    >>> probs = np.tile([[0.9], [0.2], [0.6]], (1, 40))
    >>> confusion_counts(probs, np.tile([[1], [0], [0]], (1, 40)), np.ones((3, 40), bool), np.full(40, 0.5))["Bald"]
    {'true_positives': 1, 'false_positives': 1, 'false_negatives': 0, 'true_negatives': 1}
    """
    probs, labels, mask = check_attribute_arrays(probs, labels, mask)
    called = probs >= np.asarray(thresholds, np.float64)[None, :]
    truth = labels > 0.5
    cells = (called & truth, called & ~truth, ~called & truth, ~called & ~truth)
    counts = np.stack([(cell & mask).sum(axis=0) for cell in cells], axis=1)
    return {name: dict(zip(CONFUSION_KEYS, map(int, row))) for name, row in zip(ATTRIBUTES, counts)}


def attribute_metrics(probs: np.ndarray, labels: np.ndarray, mask: np.ndarray,
                      thresholds: np.ndarray) -> dict[str, dict[str, float]]:
    """Per-attribute classification metrics over the known labels.

    Args:
        probs: ``(N, 40)`` predicted probabilities.
        labels: ``(N, 40)`` 0/1 labels.
        mask: ``(N, 40)`` bool, True where the label is known.
        thresholds: ``(40,)``; a prediction is positive when ``prob >= threshold``.

    Returns:
        For each name of :data:`~faceattr.attributes.ATTRIBUTES`, in order: ``accuracy``,
        ``balanced_accuracy``, ``precision``, ``recall``, ``f1``, ``average_precision``,
        ``roc_auc`` (threshold-free, as ``average_precision``), ``base_rate`` (share of
        positives), ``threshold`` and ``count`` (known labels).
        Undefined values are NaN.

    Raises:
        ValueError: On wrong shapes, NaN probabilities or known labels other than 0 and 1.

    >>> probs = np.tile([[0.9], [0.2], [0.6]], (1, 40))
    >>> labels = np.tile([[1], [0], [0]], (1, 40))
    >>> m = attribute_metrics(probs, labels, np.ones((3, 40), bool), np.full(40, 0.5))
    >>> m["Smiling"]["accuracy"], m["Smiling"]["precision"], m["Smiling"]["count"]
    (0.6666666666666666, 0.5, 3)
    """
    probs, labels, mask = check_attribute_arrays(probs, labels, mask)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    if thresholds.shape != (NUM_ATTRIBUTES,):
        raise ValueError(f"thresholds: expected shape ({NUM_ATTRIBUTES},), got {thresholds.shape}")
    confusion = confusion_counts(probs, labels, mask, thresholds)
    results = {}
    for index, name in enumerate(ATTRIBUTES):
        known = mask[:, index]
        scores = probs[known, index]
        truth = labels[known, index] > 0.5
        true_positives, false_positives, false_negatives, true_negatives = (confusion[name][key]
                                                                            for key in CONFUSION_KEYS)
        count = int(known.sum())
        positives, negatives = true_positives + false_negatives, false_positives + true_negatives
        recall = _ratio(true_positives, positives)
        specificity = _ratio(true_negatives, negatives)
        results[name] = {
            "accuracy": _ratio(true_positives + true_negatives, count),
            "balanced_accuracy": 0.5 * (recall + specificity),
            "precision": _ratio(true_positives, true_positives + false_positives),
            "recall": recall,
            "f1": _ratio(2 * true_positives, 2 * true_positives + false_positives + positives - true_positives),
            "average_precision": average_precision(scores, truth),
            "roc_auc": roc(scores, truth)["auc"],
            "base_rate": _ratio(positives, count),
            "threshold": float(thresholds[index]),
            "count": count,
        }
    return results


def mean_metrics(per_attribute: dict[str, dict[str, float]]) -> dict[str, float]:
    """Means over attributes of each metric, ignoring NaN (an attribute where it is undefined).

    Args:
        per_attribute: The output of :func:`attribute_metrics`.

    Returns:
        The mean of each of :data:`MEAN_KEYS`; NaN where no attribute defines it.

    >>> mean_metrics({"a": {"f1": 0.5, "recall": float("nan")}, "b": {"f1": 1.0, "recall": 0.5}})["f1"]
    0.75
    """
    means = {}
    for key in MEAN_KEYS:
        values = [metrics[key] for metrics in per_attribute.values() if key in metrics]
        defined = [value for value in values if not math.isnan(value)]
        means[key] = float(np.mean(defined)) if defined else NAN
    return means


def beauty_metrics(predicted: np.ndarray, target: np.ndarray, high_cutoff: float = 3.5) -> dict:
    """Regression metrics of the beauty score, per true-score bin, and as a high/low classifier.

    Args:
        predicted: ``(N,)`` predicted scores.
        target: ``(N,)`` true mean ratings on the 1-5 scale.
        high_cutoff: A face is "high" when its true score is at least this; the ROC curve
            treats ``predicted`` as the score of that classifier.

    Returns:
        ``{"count", "pearson", "mae", "rmse", "bins", "high_cutoff", "roc"}``. ``bins`` has
        one ``{"low", "high", "count", "mae", "bias"}`` per true-score bin [1,2), [2,3),
        [3,4), [4,5], where ``bias`` is the mean of ``predicted - target``: positive at the
        low end and negative at the high end when predictions regress to the mean. ``roc``
        is as :func:`roc` returns. Undefined values are NaN.

    Raises:
        ValueError: On different shapes, NaN, or a target outside 1-5.

    >>> m = beauty_metrics(np.array([2.0, 3.0, 4.0]), np.array([1.5, 3.0, 4.5]))
    >>> m["mae"], m["bins"][0]["bias"], m["roc"]["auc"]
    (0.3333333333333333, 0.5, 1.0)
    """
    predicted = np.asarray(predicted, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if predicted.shape != target.shape or predicted.ndim != 1:
        raise ValueError(f"expected predicted and target of the same (N,) shape, "
                         f"got {predicted.shape} and {target.shape}")
    if np.isnan(predicted).any() or np.isnan(target).any():
        raise ValueError("predicted and target must not contain NaN")
    low, high = BEAUTY_RANGE
    outside = (target < low) | (target > high)
    if outside.any():
        raise ValueError(f"{int(outside.sum())} targets lie outside {low}-{high}, e.g. {target[outside][0]}")
    error = predicted - target
    count = int(target.size)
    edges = np.arange(low, high + 1.0)
    bins = []
    for bin_low, bin_high in zip(edges[:-1], edges[1:]):
        # The last bin is closed so that a perfect 5 is counted.
        inside = (target >= bin_low) & ((target < bin_high) | (bin_high == high))
        bins.append({"low": float(bin_low), "high": float(bin_high), "count": int(inside.sum()),
                     "mae": _mean(np.abs(error[inside])), "bias": _mean(error[inside])})
    return {"count": count, "pearson": _pearson(predicted, target), "mae": _mean(np.abs(error)),
            "rmse": math.sqrt(_mean(error ** 2)), "bins": bins, "high_cutoff": float(high_cutoff),
            "roc": roc(predicted, target >= high_cutoff)}


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else NAN


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson's r, NaN with fewer than two samples or a constant input."""
    if x.size < 2:
        return NAN
    x_centred, y_centred = x - x.mean(), y - y.mean()
    scale = math.sqrt(float(np.sum(x_centred ** 2) * np.sum(y_centred ** 2)))
    return float(np.sum(x_centred * y_centred) / scale) if scale > 0 else NAN
