"""Turning predictions into an evaluation: tuned, fixed and cross-fitted thresholds, beauty."""

import numpy as np
import pytest

from faceattr.evaluate import Predictions, cross_fitted_means, headline, summarize, tune_thresholds


def predictions(rng, n=400, signal=1.0, beauty=True):
    labels = (rng.random((n, 40)) < np.linspace(0.05, 0.5, 40)).astype(np.float32)
    logits = signal * (labels * 2 - 1) + rng.normal(size=(n, 40))
    target = rng.uniform(1, 5, n).astype(np.float32)
    return Predictions(1 / (1 + np.exp(-logits)), labels, np.ones((n, 40), bool),
                       target + rng.normal(scale=0.3, size=n).astype(np.float32), target,
                       np.full(n, beauty))


def test_thresholds_tuned_on_the_same_images_flatter_the_model_and_cross_fitting_does_not():
    rng = np.random.default_rng(0)
    noise = Predictions(rng.random((300, 40)), (rng.random((300, 40)) < 0.2).astype(np.float32),
                        np.ones((300, 40), bool), np.zeros(300), np.zeros(300), np.zeros(300, bool))
    evaluation = summarize(noise, tune_thresholds(noise, "balanced_accuracy"), {})
    assert evaluation["attribute_means"]["balanced_accuracy"] > 0.53  # in-sample optimism on pure noise
    assert evaluation["attribute_means_cross_fitted"]["balanced_accuracy"] == pytest.approx(0.5, abs=0.03)


def test_cross_fitting_keeps_a_real_signal():
    rng = np.random.default_rng(1)
    p = predictions(rng, signal=1.5)
    means = cross_fitted_means(p.attribute_probs, p.attribute_labels, p.attribute_mask, "balanced_accuracy")
    assert means["balanced_accuracy"] > 0.8


def test_summary_has_attribute_and_beauty_parts_and_headline_is_balanced_accuracy():
    rng = np.random.default_rng(2)
    p = predictions(rng)
    evaluation = summarize(p, np.full(40, 0.5), {"split": "val"})
    assert evaluation["meta"]["split"] == "val" and evaluation["meta"]["images"] == 400
    assert len(evaluation["attributes"]) == 40
    assert evaluation["attribute_means"] == evaluation["attribute_means_at_0.5"]  # thresholds were 0.5
    assert evaluation["beauty"]["count"] == 400 and evaluation["beauty"]["pearson"] > 0.9
    assert headline(evaluation) == evaluation["attribute_means"]["balanced_accuracy"]


def test_beauty_only_predictions_select_on_pearson():
    rng = np.random.default_rng(3)
    p = predictions(rng)
    p.attribute_mask[:] = False
    evaluation = summarize(p, np.full(40, 0.5), {})
    assert evaluation["attributes"] is None and evaluation["attribute_means_cross_fitted"] is None
    assert headline(evaluation) == evaluation["beauty"]["pearson"]
