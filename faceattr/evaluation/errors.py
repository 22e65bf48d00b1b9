"""Where a model goes wrong: the most confident errors per attribute, beauty error by decile.

The confusion counts are :func:`~faceattr.evaluation.metrics.confusion_counts`.

Pure numpy on the rows of an evaluation (one row per validation image, in loader order). A row
is positive for an attribute when its calibrated probability is at least the model's stored
threshold, as in :func:`~faceattr.evaluation.metrics.attribute_metrics`; rows whose label is
unknown (masked) are never counted nor shown. The gallery selection names each row by its
image, so that :mod:`faceattr.explain.galleries` can draw it with its Grad-CAM map.

>>> probs = np.array([[0.9], [0.7], [0.2], [0.4]]).repeat(40, axis=1)
>>> labels = np.array([[0], [0], [1], [1]]).repeat(40, axis=1)
>>> confident_errors(probs[:, 0], labels[:, 0], np.ones(4, bool), 0.5, 8)
(array([0, 1]), array([2, 3]))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from faceattr.attributes import ATTRIBUTES

#: The rows of an attribute's gallery: confident false positives, then false negatives.
ATTRIBUTE_GALLERY_ROWS: tuple[str, ...] = ("false_positives", "false_negatives")
#: The rows of the beauty gallery: highest and lowest predicted scores, largest absolute errors.
BEAUTY_GALLERY_ROWS: tuple[str, ...] = ("highest", "lowest", "largest_errors")
#: Images per gallery row when nothing else is asked for (``tools/eval.py --galleries``).
DEFAULT_GALLERY_SIZE = 8
#: Quantile bins of the predicted beauty score.
BEAUTY_DECILES = 10


def confident_errors(probs: np.ndarray, labels: np.ndarray, mask: np.ndarray, threshold: float,
                     count: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows of one attribute's ``count`` most confident false positives and false negatives.

    Args:
        probs: ``(N,)`` calibrated probabilities of the attribute.
        labels: ``(N,)`` 0/1 labels.
        mask: ``(N,)`` True where the label is known.
        threshold: The model's threshold; a row is called positive when ``prob >= threshold``.
        count: At most this many rows of each kind.

    Returns:
        ``(false_positives, false_negatives)``: row indices, the false positives (known label 0,
        called positive) highest probability first, the false negatives (known label 1, called
        negative) lowest probability first; equal probabilities keep row order.
    """
    probs, mask = np.asarray(probs, np.float64), np.asarray(mask, bool)
    truth = np.asarray(labels) > 0.5
    called = probs >= threshold
    false_positives = np.flatnonzero(mask & called & ~truth)
    false_negatives = np.flatnonzero(mask & ~called & truth)
    false_positives = false_positives[np.argsort(-probs[false_positives], kind="stable")]
    false_negatives = false_negatives[np.argsort(probs[false_negatives], kind="stable")]
    return false_positives[:count], false_negatives[:count]


def beauty_deciles(predicted: np.ndarray, target: np.ndarray, bins: int = BEAUTY_DECILES) -> list[dict[str, Any]]:
    """Beauty error per decile of the predicted score: how wrong the model is where it says a score.

    The rated images are ranked by predicted score and cut into ``bins`` groups of equal size
    (the first ones one image larger when ``N`` does not divide), so tied scores never leave a
    decile empty; fewer images than ``bins`` give one group per image.

    Args:
        predicted: ``(N,)`` predicted scores of the rated images.
        target: ``(N,)`` their rated scores.
        bins: Number of groups.

    Returns:
        One ``{"low", "high", "count", "mae", "bias"}`` per group, lowest predictions first:
        the group's smallest and largest predicted score, its size, mean absolute error and mean
        ``predicted - target``; ``[]`` without images.

    Raises:
        ValueError: ``predicted`` and ``target`` are not of the same ``(N,)`` shape.

    >>> rows = beauty_deciles(np.arange(1.0, 5.0), np.array([1.5, 2.0, 3.0, 3.5]), bins=2)
    >>> [(row["low"], row["high"], row["count"], row["bias"]) for row in rows]
    [(1.0, 2.0, 2, -0.25), (3.0, 4.0, 2, 0.25)]
    """
    predicted, target = np.asarray(predicted, np.float64), np.asarray(target, np.float64)
    if predicted.shape != target.shape or predicted.ndim != 1:
        raise ValueError(f"expected predicted and target of the same (N,) shape, got {predicted.shape} "
                         f"and {target.shape}")
    rows: list[dict[str, Any]] = []
    if predicted.size == 0:
        return rows
    for group in np.array_split(np.argsort(predicted, kind="stable"), min(bins, predicted.size)):
        error = predicted[group] - target[group]
        rows.append({"low": float(predicted[group].min()), "high": float(predicted[group].max()),
                     "count": int(group.size), "mae": float(np.abs(error).mean()), "bias": float(error.mean())})
    return rows


def beauty_extremes(predicted: np.ndarray, target: np.ndarray, count: int) -> dict[str, np.ndarray]:
    """Positions of the ``count`` highest and lowest predicted scores and of the largest absolute errors.

    Returns:
        ``{"highest", "lowest", "largest_errors"}`` (:data:`BEAUTY_GALLERY_ROWS`): indices into
        ``predicted``, the most extreme first; ties keep their order.

    >>> picked = beauty_extremes(np.array([3.0, 4.5, 1.5]), np.array([3.0, 3.5, 1.0]), 1)
    >>> {name: rows.tolist() for name, rows in picked.items()}
    {'highest': [1], 'lowest': [2], 'largest_errors': [1]}
    """
    predicted, target = np.asarray(predicted, np.float64), np.asarray(target, np.float64)
    return {"highest": np.argsort(-predicted, kind="stable")[:count],
            "lowest": np.argsort(predicted, kind="stable")[:count],
            "largest_errors": np.argsort(-np.abs(predicted - target), kind="stable")[:count]}


def gallery_selection(probs: np.ndarray | None, labels: np.ndarray | None, mask: np.ndarray | None,
                      thresholds: np.ndarray | None, beauty: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
                      paths: Sequence[str], count: int = DEFAULT_GALLERY_SIZE) -> dict[str, Any]:
    """Which validation images each gallery shows: the evaluation's ``galleries`` section.

    Args:
        probs: ``(N, 40)`` calibrated probabilities (None without attribute labels), with their
            ``labels``, ``mask`` and the model's ``thresholds``.
        labels: ``(N, 40)`` 0/1 labels.
        mask: ``(N, 40)`` True where known.
        thresholds: ``(40,)`` the model's thresholds.
        beauty: ``(predicted, target, rated)``, each ``(N,)``: scores, ratings and True where a
            rating is known (None without ratings).
        paths: ``N`` image paths, the image of each row.
        count: Images per gallery row.

    Returns:
        ``{"size": count, "attributes": {name: {"false_positives": [...], "false_negatives": [...]}}
        | None, "beauty": {"highest": [...], "lowest": [...], "largest_errors": [...]} | None}``; each
        image is ``{"row", "path", "probability"}`` (attributes) or ``{"row", "path", "predicted",
        "target"}`` (beauty), ``row`` its position in the evaluated set. An attribute without
        errors has empty rows.
    """
    attributes = None
    if probs is not None:
        attributes = {}
        for index, name in enumerate(ATTRIBUTES):
            column = probs[:, index]
            picked = confident_errors(column, labels[:, index], mask[:, index], thresholds[index], count)
            attributes[name] = {kind: [{"row": int(row), "path": str(paths[row]), "probability": float(column[row])}
                                       for row in rows] for kind, rows in zip(ATTRIBUTE_GALLERY_ROWS, picked)}
    beauty_rows = None
    if beauty is not None:
        predicted, target, rated = (np.asarray(part) for part in beauty)
        positions = np.flatnonzero(rated)
        picked = beauty_extremes(predicted[positions], target[positions], count)
        beauty_rows = {kind: [{"row": int(positions[i]), "path": str(paths[positions[i]]),
                               "predicted": float(predicted[positions[i]]), "target": float(target[positions[i]])}
                              for i in rows] for kind, rows in picked.items()}
    return {"size": int(count), "attributes": attributes, "beauty": beauty_rows}
