"""Tests of faceattr.evaluation.metrics: every metric cross-checked against scikit-learn, numpy or scipy."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.stats import pearsonr
from sklearn import metrics as sk

from faceattr.attributes import ATTRIBUTES
from faceattr.evaluation.metrics import (
    MEAN_KEYS,
    attribute_metrics,
    average_precision,
    beauty_metrics,
    mean_metrics,
    ranked_counts,
    roc,
)

N, A = 300, len(ATTRIBUTES)


def make_predictions(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Imbalanced labels, informative but noisy (and partly tied) probabilities, 20% unknown."""
    rng = np.random.default_rng(seed)
    base_rates = np.linspace(0.05, 0.7, A)
    labels = (rng.random((N, A)) < base_rates).astype(np.float32)
    probs = np.round(1 / (1 + np.exp(-(2 * labels - 1 + rng.normal(0, 1.2, (N, A))))), 2)
    mask = rng.random((N, A)) > 0.2
    thresholds = rng.uniform(0.3, 0.7, A)
    return probs, labels, mask, thresholds


def test_attribute_metrics_match_sklearn():
    probs, labels, mask, thresholds = make_predictions()
    results = attribute_metrics(probs, labels, mask, thresholds)
    assert list(results) == list(ATTRIBUTES)
    for index, name in enumerate(ATTRIBUTES):
        known = mask[:, index]
        truth, scores = labels[known, index], probs[known, index]
        predicted = scores >= thresholds[index]
        expected = {
            "accuracy": sk.accuracy_score(truth, predicted),
            "balanced_accuracy": sk.balanced_accuracy_score(truth, predicted),
            "precision": sk.precision_score(truth, predicted),
            "recall": sk.recall_score(truth, predicted),
            "f1": sk.f1_score(truth, predicted),
            "average_precision": sk.average_precision_score(truth, scores),
            "roc_auc": sk.roc_auc_score(truth, scores),
            "base_rate": truth.mean(),
            "threshold": thresholds[index],
            "count": known.sum(),
        }
        assert results[name] == pytest.approx(expected, rel=1e-9), name


def test_average_precision_with_ties_matches_sklearn():
    rng = np.random.default_rng(1)
    labels = rng.random(200) < 0.3
    scores = rng.integers(0, 5, 200) / 4
    assert average_precision(scores, labels) == pytest.approx(sk.average_precision_score(labels, scores))


def test_ranked_counts_never_split_ties():
    distinct, true_positives, false_positives = ranked_counts(np.array([0.5, 0.5, 0.1]), np.array([1, 0, 1]))
    assert distinct.tolist() == [0.5, 0.1]
    assert true_positives.tolist() == [1, 2] and false_positives.tolist() == [1, 1]


def test_degenerate_attributes_give_nan_not_errors():
    probs, labels, mask, thresholds = make_predictions()
    labels[:, 0] = 0
    mask[:, 1] = False
    labels[:, 2], probs[:, 2] = 1, 0.0
    results = attribute_metrics(probs, labels, mask, thresholds)
    no_positive, unknown, no_negative = (results[ATTRIBUTES[i]] for i in range(3))
    assert math.isnan(no_positive["recall"]) and math.isnan(no_positive["average_precision"])
    assert math.isnan(no_positive["balanced_accuracy"]) and no_positive["base_rate"] == 0.0
    assert unknown["count"] == 0 and all(math.isnan(unknown[key]) for key in MEAN_KEYS)
    assert math.isnan(no_negative["precision"]) and no_negative["f1"] == 0.0


def test_unknown_labels_are_ignored():
    probs, labels, mask, thresholds = make_predictions()
    flipped = np.where(mask, labels, 1 - labels)
    assert attribute_metrics(probs, flipped, mask, thresholds) == attribute_metrics(probs, labels, mask, thresholds)


def test_bad_labels_or_shapes_raise():
    probs, labels, mask, thresholds = make_predictions()
    labels[0, 0], mask[0, 0] = 2, True
    with pytest.raises(ValueError, match="0 or 1"):
        attribute_metrics(probs, labels, mask, thresholds)
    with pytest.raises(ValueError, match="shape"):
        attribute_metrics(probs[:, :39], labels, mask, thresholds)


def test_results_are_json_serialisable():
    probs, labels, mask, thresholds = make_predictions()
    results = attribute_metrics(probs, labels, mask, thresholds)
    beauty = beauty_metrics(np.array([2.0, 3.0, 4.1]), np.array([1.5, 3.0, 4.5]))
    assert json.loads(json.dumps({"attributes": results, "beauty": beauty}))["beauty"]["count"] == 3


def test_mean_metrics_ignore_nan():
    per_attribute = {"a": {"accuracy": 0.5, "f1": math.nan, "threshold": 0.9, "count": 10},
                     "b": {"accuracy": 1.0, "f1": 0.4, "threshold": 0.1, "count": 30}}
    means = mean_metrics(per_attribute)
    assert means["accuracy"] == 0.75 and means["f1"] == 0.4
    assert set(means) == set(MEAN_KEYS) and math.isnan(means["recall"])


def test_beauty_regression_metrics_match_numpy_and_scipy():
    rng = np.random.default_rng(2)
    target = rng.uniform(1, 5, 100)
    predicted = 3 + 0.6 * (target - 3) + rng.normal(0, 0.3, 100)
    result = beauty_metrics(predicted, target)
    assert result["count"] == 100
    assert result["pearson"] == pytest.approx(pearsonr(predicted, target).statistic)
    assert result["mae"] == pytest.approx(np.abs(predicted - target).mean())
    assert result["rmse"] == pytest.approx(np.sqrt(sk.mean_squared_error(target, predicted)))


def test_beauty_bins_show_regression_to_the_mean():
    target = np.array([1.0, 1.5, 2.5, 3.5, 4.5, 5.0])
    predicted = 3 + 0.5 * (target - 3)
    bins = beauty_metrics(predicted, target)["bins"]
    assert [(b["low"], b["high"], b["count"]) for b in bins] == [(1, 2, 2), (2, 3, 1), (3, 4, 1), (4, 5, 2)]
    assert bins[0]["bias"] == pytest.approx(0.875) and bins[3]["bias"] == pytest.approx(-0.875)
    assert bins[3]["mae"] == pytest.approx(0.875)


def test_beauty_roc_matches_sklearn():
    rng = np.random.default_rng(3)
    target = np.round(rng.uniform(1, 5, 80), 1)
    predicted = np.round(target + rng.normal(0, 0.8, 80), 1)
    result = beauty_metrics(predicted, target, high_cutoff=3.0)["roc"]
    high = target >= 3.0
    fpr, tpr, cuts = sk.roc_curve(high, predicted, drop_intermediate=False)
    assert result["auc"] == pytest.approx(sk.roc_auc_score(high, predicted))
    assert np.allclose(result["fpr"], fpr) and np.allclose(result["tpr"], tpr)
    assert result["best_threshold"] == pytest.approx(cuts[np.argmax(tpr - fpr)])


def test_beauty_with_one_sample_or_one_class_gives_nan():
    one = beauty_metrics(np.array([3.0]), np.array([4.0]))
    assert math.isnan(one["pearson"]) and one["mae"] == 1.0 and math.isnan(one["roc"]["auc"])
    same_class = roc(np.array([0.1, 0.9]), np.array([1, 1]))
    assert math.isnan(same_class["best_threshold"]) and same_class["fpr"] == []


def test_beauty_target_outside_scale_raises():
    with pytest.raises(ValueError, match="outside"):
        beauty_metrics(np.array([3.0, 3.0]), np.array([3.0, 0.0]))


def test_cross_fitting_halves_split_every_row_once_each_way():
    from faceattr.evaluation.metrics import cross_fitting_halves

    (fit_a, score_a), (fit_b, score_b) = cross_fitting_halves(7)
    assert fit_a.tolist() == [True, False] * 3 + [True]
    assert np.array_equal(score_a, ~fit_a) and np.array_equal(fit_b, score_a) and np.array_equal(score_b, fit_a)
