"""Tests of faceattr.evaluation.thresholds: the exact search against brute force, masks and degenerate attributes."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as sk

from faceattr.attributes import NUM_ATTRIBUTES
from faceattr.evaluation.thresholds import fit_thresholds

N, A = 200, NUM_ATTRIBUTES
SCORERS = {"balanced_accuracy": sk.balanced_accuracy_score, "f1": sk.f1_score}


def make_imbalanced(seed: int = 0, n: int = N) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rare positives whose probabilities are informative but mostly below 0.5, with ties."""
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, A)) < np.linspace(0.03, 0.3, A)).astype(np.float32)
    probs = np.round(1 / (1 + np.exp(-(1.5 * labels - 2.5 + rng.normal(0, 0.8, (n, A))))), 2)
    mask = rng.random((n, A)) > 0.1
    return probs, labels, mask


def best_by_brute_force(scores: np.ndarray, truth: np.ndarray, metric: str) -> float:
    """The best metric over every cut: a threshold on each distinct score, and one above them all."""
    cuts = np.r_[np.unique(scores), np.inf]
    return max(SCORERS[metric](truth, scores >= cut) for cut in cuts)


@pytest.mark.parametrize("metric", ["balanced_accuracy", "f1"])
def test_fitted_threshold_reaches_the_brute_force_best(metric):
    probs, labels, mask = make_imbalanced()
    thresholds = fit_thresholds(probs, labels, mask, metric)
    for index in range(0, A, 3):
        known = mask[:, index]
        scores, truth = probs[known, index], labels[known, index]
        achieved = SCORERS[metric](truth, scores >= thresholds[index])
        assert achieved == pytest.approx(best_by_brute_force(scores, truth, metric)), index


def test_threshold_is_a_midpoint_between_neighbouring_scores():
    probs = np.tile(np.array([[0.1], [0.3], [0.6], [0.7]]), (1, A))
    labels = np.tile(np.array([[0], [0], [1], [1]]), (1, A))
    assert np.allclose(fit_thresholds(probs, labels, np.ones((4, A), bool)), 0.45)


def test_tuned_thresholds_beat_half_on_imbalanced_data():
    probs, labels, mask = make_imbalanced(seed=1, n=400)
    thresholds = fit_thresholds(probs[:200], labels[:200], mask[:200])
    held_out = slice(200, None)

    def mean_balanced_accuracy(cuts: np.ndarray) -> float:
        predicted = probs[held_out] >= cuts
        return np.mean([sk.balanced_accuracy_score(labels[held_out][m, a], predicted[m, a])
                        for a in range(A) for m in [mask[held_out][:, a]]])

    assert mean_balanced_accuracy(thresholds) > mean_balanced_accuracy(np.full(A, 0.5)) + 0.1


def test_unknown_labels_do_not_move_thresholds():
    probs, labels, mask = make_imbalanced(seed=2)
    flipped = np.where(mask, labels, 1 - labels)
    assert np.array_equal(fit_thresholds(probs, flipped, mask), fit_thresholds(probs, labels, mask))


def test_degenerate_attributes_keep_half():
    probs, labels, mask = make_imbalanced(seed=3)
    labels[:, 0] = 0
    labels[:, 1] = 1
    mask[:, 2] = False
    thresholds = fit_thresholds(probs, labels, mask)
    assert thresholds[:3].tolist() == [0.5, 0.5, 0.5] and np.all(thresholds[3:] != 0.5)


@pytest.mark.parametrize("metric, expected", [("f1", True), ("balanced_accuracy", False)])
def test_outer_cuts_hold_at_probabilities_zero_and_one(metric, expected):
    # Inverted scores: the best F1 calls everything positive, so the threshold must not
    # exceed 0; the best balanced accuracy (tied with that) calls nothing positive, so the
    # threshold must exceed 1.
    probs = np.tile(np.array([[0.0], [0.0], [1.0], [1.0]]), (1, A))
    labels = np.tile(np.array([[1], [1], [0], [0]]), (1, A))
    thresholds = fit_thresholds(probs, labels, np.ones((4, A), bool), metric)
    assert np.all((probs >= thresholds) == expected)


def test_unknown_metric_raises_naming_it():
    probs, labels, mask = make_imbalanced()
    with pytest.raises(ValueError, match="'accuracy'"):
        fit_thresholds(probs, labels, mask, "accuracy")
