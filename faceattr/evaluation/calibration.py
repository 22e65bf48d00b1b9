"""Probability calibration: per-attribute temperature and offset fitted on validation logits, and its error.

A network trained with class-weighted or focal losses, or simply for long, gives probabilities
that are too sure (or not sure enough) of themselves, and focal or weighted losses shift rare
attributes' probabilities up. Each attribute's logit is divided by a temperature ``T``
(``T > 1`` softens, ``T < 1`` sharpens) and shifted by an offset, both fitted on validation
(temperature scaling with a bias: Platt scaling). The map is increasing, so the ranking of
faces, the average precision and the balanced accuracy at correspondingly moved thresholds are
unchanged: only the probabilities become honest. The expected calibration error (ECE)
measures how honest they are.

>>> rng = np.random.default_rng(0)
>>> logits = rng.normal(0, 3, (4000, 40))
>>> labels = (rng.random((4000, 40)) < 1 / (1 + np.exp(-(logits / 2 - 1)))).astype(np.float32)
>>> temperatures, offsets = fit_calibration(logits, labels, np.ones((4000, 40), bool))
>>> round(float(temperatures[0]), 1), round(float(offsets[0]), 1)
(2.0, -1.0)
"""

from __future__ import annotations

import logging

import numpy as np

from faceattr.attributes import NUM_ATTRIBUTES
from faceattr.evaluation.metrics import check_attribute_arrays, cross_fitting_halves

logger = logging.getLogger(__name__)

#: The temperatures searched; the bounds keep a degenerate fit (one class only, separable
#: scores) from running away to 0 or infinity.
TEMPERATURE_RANGE: tuple[float, float] = (0.05, 20.0)

#: Probabilities are clipped this far from 0 and 1 before taking logits: float32 sigmoid
#: outputs reach exactly 0 or 1 from |logit| of about 17 and 104.
PROBABILITY_EPSILON = 1e-7

#: The offsets allowed (logit units): sigmoid(15) is 1 - 3e-7.
OFFSET_RANGE: tuple[float, float] = (-15.0, 15.0)

#: Newton steps (logistic regression converges in under 10 from the identity) and step halvings.
_NEWTON_STEPS = 20
_HALVINGS = 12
_RIDGE = 1e-12


def logits_from_probabilities(probabilities: np.ndarray) -> np.ndarray:
    """The logits of probabilities, clipped :data:`PROBABILITY_EPSILON` from 0 and 1.

    >>> logits_from_probabilities(np.array([0.5, 0.880797]))[1].round(3)
    np.float64(2.0)
    """
    p = np.clip(np.asarray(probabilities, dtype=np.float64), PROBABILITY_EPSILON, 1.0 - PROBABILITY_EPSILON)
    return np.log(p) - np.log1p(-p)


def apply_calibration(logits: np.ndarray, temperatures: np.ndarray, offsets: np.ndarray | None = None) -> np.ndarray:
    """Calibrated probabilities ``sigmoid(logits / temperatures + offsets)``, per attribute (last axis).

    >>> apply_calibration(np.array([[2.0] * 40]), np.full(40, 2.0))[0, 0].round(4)
    np.float64(0.7311)
    >>> apply_calibration(np.array([[2.0] * 40]), np.full(40, 2.0), np.full(40, -1.0))[0, 0].round(4)
    np.float64(0.5)
    """
    scaled = np.asarray(logits, dtype=np.float64) / np.asarray(temperatures, dtype=np.float64)
    if offsets is not None:
        scaled = scaled + np.asarray(offsets, dtype=np.float64)
    # exp of a large positive number overflows; the two branches keep exp's argument <= 0.
    small = np.exp(-np.abs(scaled))
    return np.where(scaled >= 0, 1.0 / (1.0 + small), small / (1.0 + small))


def _mean_nll(logits: np.ndarray, labels: np.ndarray, weights: np.ndarray, scales: np.ndarray,
              offsets: np.ndarray) -> np.ndarray:
    """Per-attribute mean binary cross-entropy of ``sigmoid(logits * scales + offsets)`` over weighted rows."""
    scaled = logits * scales + offsets
    # log(1 + exp(-|x|)) + max(x, 0) - x*y: the stable form of BCE with logits.
    loss = np.logaddexp(0.0, -np.abs(scaled)) + np.maximum(scaled, 0.0) - scaled * labels
    return (loss * weights).sum(axis=0) / np.maximum(weights.sum(axis=0), 1.0)


def fit_calibration(logits: np.ndarray, labels: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each attribute, the temperature and offset that minimise the mean cross-entropy on the known labels.

    Calibrated probabilities are ``sigmoid(logit / T + offset)``: a logistic regression of the
    labels on the logit (Platt scaling), fitted by Newton's method on all 40 attributes at once
    (the loss is convex in ``1 / T`` and the offset). The offset matters as much as the
    temperature: focal and class-weighted losses shift rare attributes' logits, which no
    temperature undoes.

    Args:
        logits: ``(N, 40)`` attribute logits (not probabilities).
        labels: ``(N, 40)`` labels, 0 or 1 where known.
        mask: ``(N, 40)`` bool, True where the label is known.

    Returns:
        ``(temperatures, offsets)``, each ``(40,)`` float64; temperatures within
        :data:`TEMPERATURE_RANGE`, offsets within :data:`OFFSET_RANGE`; 1.0 and 0.0 for an
        attribute without both a positive and a negative known label.

    Raises:
        ValueError: On malformed arrays.
    """
    logits, labels, mask = check_attribute_arrays(logits, labels, mask)
    weights = mask.astype(np.float64) / np.maximum(mask.sum(axis=0), 1)
    scales, offsets = np.ones(NUM_ATTRIBUTES), np.zeros(NUM_ATTRIBUTES)
    loss = _mean_nll(logits, labels, weights, scales, offsets)
    for _ in range(_NEWTON_STEPS):
        p = apply_calibration(logits, 1.0 / scales, offsets)
        residual, curvature = weights * (p - labels), weights * p * (1.0 - p)
        grad_scale, grad_offset = (residual * logits).sum(axis=0), residual.sum(axis=0)
        # The 2x2 Hessian of each attribute; the ridge keeps it invertible when all p saturate.
        h_ss = (curvature * logits**2).sum(axis=0) + _RIDGE
        h_so = (curvature * logits).sum(axis=0)
        h_oo = curvature.sum(axis=0) + _RIDGE
        determinant = h_ss * h_oo - h_so**2
        step_scale = (h_oo * grad_scale - h_so * grad_offset) / determinant
        step_offset = (h_ss * grad_offset - h_so * grad_scale) / determinant
        # Halve an attribute's step until its loss does not rise (Newton overshoots on separable data).
        length = np.ones(NUM_ATTRIBUTES)
        for _ in range(_HALVINGS):
            new_scales = np.clip(scales - length * step_scale, 1.0 / TEMPERATURE_RANGE[1], 1.0 / TEMPERATURE_RANGE[0])
            new_offsets = np.clip(offsets - length * step_offset, *OFFSET_RANGE)
            new_loss = _mean_nll(logits, labels, weights, new_scales, new_offsets)
            better = new_loss <= loss
            if better.all():
                break
            length = np.where(better, length, length / 2)
        scales, offsets = np.where(better, new_scales, scales), np.where(better, new_offsets, offsets)
        loss = np.where(better, new_loss, loss)
    positives, negatives = (labels * mask).sum(axis=0), ((1.0 - labels) * mask).sum(axis=0)
    both = (positives > 0) & (negatives > 0)
    if not both.all():
        logger.info("%d attributes lack a positive or a negative label and stay uncalibrated", int((~both).sum()))
    return np.where(both, 1.0 / scales, 1.0), np.where(both, offsets, 0.0)


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, mask: np.ndarray,
                               bins: int = 15) -> dict[str, np.ndarray | float]:
    """The expected calibration error of each attribute's positive-class probability, and their mean.

    Per attribute, the known labels are put into ``bins`` equal-width bins of the predicted
    probability on [0, 1] (a probability of exactly 1 goes in the last bin); the ECE is the
    image-weighted mean over bins of ``|mean label - mean probability|``.

    Args:
        probabilities: ``(N, 40)`` predicted probabilities.
        labels: ``(N, 40)`` labels, 0 or 1 where known.
        mask: ``(N, 40)`` bool, True where the label is known.
        bins: Number of bins.

    Returns:
        ``{"per_attribute": (40,) array (NaN where no label is known), "mean": float}`` (the
        mean over attributes with labels; NaN if none).

    Raises:
        ValueError: On malformed arrays or ``bins`` < 1.

    >>> probs = np.array([[0.2] * 40, [0.2] * 40, [0.9] * 40, [0.9] * 40])
    >>> labels = np.array([[0] * 40, [1] * 40, [1] * 40, [1] * 40])
    >>> round(expected_calibration_error(probs, labels, np.ones((4, 40), bool))["mean"], 3)
    0.2
    """
    if bins < 1:
        raise ValueError(f"bins: must be at least 1, got {bins}")
    probabilities, labels, mask = check_attribute_arrays(probabilities, labels, mask)
    probabilities, labels = probabilities.astype(np.float64), labels.astype(np.float64)
    which = np.clip((probabilities * bins).astype(np.int64), 0, bins - 1)
    per_attribute = np.full(NUM_ATTRIBUTES, np.nan)
    for index in range(NUM_ATTRIBUTES):
        known = mask[:, index]
        if not known.any():
            continue
        bin_of = which[known, index]
        counts = np.bincount(bin_of, minlength=bins)
        gap = (np.bincount(bin_of, weights=labels[known, index], minlength=bins)
               - np.bincount(bin_of, weights=probabilities[known, index], minlength=bins))
        # Each bin's |sum of labels - sum of probabilities| is its count times its |mean gap|.
        per_attribute[index] = float(np.abs(gap).sum() / counts.sum())
    labelled = ~np.isnan(per_attribute)
    return {"per_attribute": per_attribute,
            "mean": float(per_attribute[labelled].mean()) if labelled.any() else float("nan")}


def cross_fitted_ece(logits: np.ndarray, labels: np.ndarray, mask: np.ndarray, bins: int = 15) -> float:
    """Mean ECE after calibration, fitted on one half of the images and scored on the other.

    Fitting and scoring on the same images flatters the calibration; as for tuned thresholds
    (:func:`faceattr.evaluation.evaluate.cross_fitted_means`), the halves are alternating rows, each
    scored with the other's temperatures, and the two means averaged.

    >>> rng = np.random.default_rng(0)
    >>> logits = rng.normal(0, 3, (2000, 40))
    >>> labels = (rng.random((2000, 40)) < 1 / (1 + np.exp(-logits / 2))).astype(np.float32)
    >>> cross_fitted_ece(logits, labels, np.ones((2000, 40), bool)) < 0.05
    True
    """
    means = []
    for fit_rows, score_rows in cross_fitting_halves(len(logits)):
        temperatures, offsets = fit_calibration(logits[fit_rows], labels[fit_rows], mask[fit_rows])
        means.append(expected_calibration_error(apply_calibration(logits[score_rows], temperatures, offsets),
                                                labels[score_rows], mask[score_rows], bins)["mean"])
    return float(np.nanmean(means)) if not np.isnan(means).all() else float("nan")
