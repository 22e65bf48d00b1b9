"""Per-attribute decision thresholds: fit them on validation scores.

A single 0.5 cut suits balanced attributes only: for a rare attribute such as ``Bald``
(about 2% of CelebA) the threshold that maximises balanced accuracy or F1 is far from it.
"""

from __future__ import annotations

import logging

import numpy as np

from faceattr.attributes import ATTRIBUTES, NUM_ATTRIBUTES
from faceattr.config import THRESHOLD_METRICS
from faceattr.evaluation.metrics import check_attribute_arrays, ranked_counts

logger = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.5


def fit_thresholds(probs: np.ndarray, labels: np.ndarray, mask: np.ndarray,
                   metric: str = "balanced_accuracy") -> np.ndarray:
    """For each attribute, the threshold that maximises ``metric`` on the known labels.

    The search is exact: the scores are sorted once and every cut between two distinct
    scores is evaluated with cumulative sums. The threshold returned is the midpoint
    between the lowest score called positive and the highest called negative, so that it
    generalises rather than sitting on one validation score. On ties of the metric the
    highest threshold wins.

    Args:
        probs: ``(N, 40)`` predicted probabilities.
        labels: ``(N, 40)`` labels, 0 or 1 where known.
        mask: ``(N, 40)`` bool, True where the label is known.
        metric: ``balanced_accuracy`` or ``f1``.

    Returns:
        ``(40,)`` float64 thresholds; 0.5 for an attribute without both a positive and a
        negative known label.

    Raises:
        ValueError: On an unknown metric (the message names it) or malformed arrays.

    >>> probs = np.tile([[0.1], [0.2], [0.3], [0.4]], (1, 40))
    >>> labels = np.tile([[0], [0], [1], [1]], (1, 40))
    >>> fit_thresholds(probs, labels, np.ones((4, 40), bool))[0]
    np.float64(0.25)
    """
    if metric not in THRESHOLD_METRICS:
        raise ValueError(f"threshold metric {metric!r} is not one of {', '.join(THRESHOLD_METRICS)}")
    probs, labels, mask = check_attribute_arrays(probs, labels, mask)
    thresholds = np.full(NUM_ATTRIBUTES, DEFAULT_THRESHOLD)
    defaulted = []
    for index in range(NUM_ATTRIBUTES):
        known = mask[:, index]
        distinct, true_positives, false_positives = ranked_counts(probs[known, index], labels[known, index])
        positives = int(true_positives[-1]) if distinct.size else 0
        negatives = int(false_positives[-1]) if distinct.size else 0
        if positives == 0 or negatives == 0:
            defaulted.append(ATTRIBUTES[index])
            continue
        thresholds[index] = _best_cut(distinct, true_positives, false_positives, metric)
    if defaulted:
        logger.info("%d attributes lack a positive or a negative label and keep threshold %.1f: %s",
                    len(defaulted), DEFAULT_THRESHOLD, ", ".join(defaulted))
    return thresholds


def _best_cut(distinct: np.ndarray, true_positives: np.ndarray, false_positives: np.ndarray,
              metric: str) -> float:
    """Threshold of the best cut of one attribute's ranked counts (both classes present)."""
    positives, negatives = true_positives[-1], false_positives[-1]
    # Cut k calls the k highest distinct scores positive; cut 0 calls nothing positive.
    tp = np.r_[0, true_positives].astype(np.float64)
    fp = np.r_[0, false_positives].astype(np.float64)
    if metric == "balanced_accuracy":
        score = 0.5 * (tp / positives + 1.0 - fp / negatives)
    else:
        score = 2.0 * tp / (tp + fp + positives)
    best = int(np.argmax(score))
    # Pad beyond the extreme scores so the two outer cuts have neighbours: probabilities lie
    # in [0, 1], and nextafter keeps the cut strict when a score sits on that bound.
    above = max(1.0, float(np.nextafter(distinct[0], np.inf)))
    below = min(0.0, float(np.nextafter(distinct[-1], -np.inf)))
    padded = np.r_[above, distinct, below]
    lowest_positive, highest_negative = padded[best], padded[best + 1]
    midpoint = 0.5 * (lowest_positive + highest_negative)
    # Two adjacent floats have no float between them; the midpoint then rounds onto one.
    return float(midpoint if midpoint > highest_negative else lowest_positive)
