"""Tests of faceattr.evaluation.calibration and its use in evaluation: temperatures and offsets, ECE, cross-fitting, storage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from faceattr.config import Config
from faceattr.errors import CheckpointError
from faceattr.evaluation.calibration import (
    TEMPERATURE_RANGE,
    apply_calibration,
    cross_fitted_ece,
    expected_calibration_error,
    fit_calibration,
    logits_from_probabilities,
)
from faceattr.evaluation.evaluate import Predictions, summarize
from faceattr.evaluation.report.markdown import format_summary, write_report
from faceattr.models.deployed import DeployedModel
from faceattr.models.net import FaceAttrNet


def synthetic(temperature: float, offset: float = 0.0, rows: int = 4000,
              seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Logits, and labels drawn from ``sigmoid(logits / temperature + offset)``: those calibrate them."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 3.0, (rows, 40))
    labels = (rng.random((rows, 40)) < 1.0 / (1.0 + np.exp(-(logits / temperature + offset)))).astype(np.float64)
    return logits, labels, np.ones((rows, 40), bool)


def test_fit_recovers_the_temperature_and_offset_labels_were_drawn_with() -> None:
    # 4000 labels per attribute: each estimate is noisy (measured within 9% of the truth), their mean is not.
    for truth, offset in ((2.0, 0.0), (0.5, -1.5)):
        temperatures, offsets = fit_calibration(*synthetic(truth, offset))
        assert temperatures.mean() == pytest.approx(truth, rel=0.02)
        assert np.allclose(temperatures, truth, rtol=0.15)
        assert offsets.mean() == pytest.approx(offset, abs=0.05)
        assert np.allclose(offsets, offset, atol=0.3)


def test_fit_ignores_unknown_labels_and_defaults_without_both_classes() -> None:
    logits, labels, mask = synthetic(2.0)
    # Unknown labels that contradict the logits must not pull the fit.
    labels[::2, 0] = (logits[::2, 0] < 0)
    mask[::2, 0] = False
    labels[:, 1], mask[:, 2] = 1.0, False  # one class only; no labels at all
    temperatures, offsets = fit_calibration(logits, labels, mask)
    assert temperatures[0] == pytest.approx(2.0, abs=0.25) and offsets[0] == pytest.approx(0.0, abs=0.2)
    assert temperatures[1] == temperatures[2] == 1.0 and offsets[1] == offsets[2] == 0.0


def test_separable_scores_stay_within_the_range() -> None:
    logits = np.tile(np.array([[-1.0], [1.0]]), (50, 40))
    labels = (logits > 0).astype(np.float64)
    temperatures, offsets = fit_calibration(logits, labels, np.ones_like(labels, bool))
    assert np.allclose(temperatures, TEMPERATURE_RANGE[0], rtol=1e-3)
    assert np.allclose(offsets, 0.0, atol=1e-6)


def test_ece_matches_a_hand_computation() -> None:
    # Bin [0.2, 0.267): probabilities 0.2, 0.25, labels 0, 1: |0.5 - 0.225| * 2 = 0.55.
    # Bin [0.933, 1]: probabilities 0.95 and 1.0, labels 1, 1: |1 - 0.975| * 2 = 0.05.  Sum / 4 = 0.15.
    probs = np.tile(np.array([[0.2], [0.25], [0.95], [1.0]]), (1, 40))
    labels = np.tile(np.array([[0.0], [1.0], [1.0], [1.0]]), (1, 40))
    mask = np.ones((4, 40), bool)
    mask[:, 3] = False
    mask[1, 5] = False  # attribute 5 without row 1: |0 - 0.2| * 1 + |1 - 0.975| * 2 = 0.25, / 3
    ece = expected_calibration_error(probs, labels, mask, bins=15)
    assert ece["per_attribute"][0] == pytest.approx(0.15)
    assert ece["per_attribute"][5] == pytest.approx(0.25 / 3)
    assert np.isnan(ece["per_attribute"][3])
    assert ece["mean"] == pytest.approx((0.15 * 38 + 0.25 / 3) / 39)


def test_ece_is_small_when_calibrated_and_large_when_over_confident() -> None:
    logits, labels, mask = synthetic(1.0, rows=20000)
    assert expected_calibration_error(apply_calibration(logits, np.ones(40)), labels, mask)["mean"] < 0.02
    over_confident = apply_calibration(logits, np.full(40, 0.25))
    assert expected_calibration_error(over_confident, labels, mask)["mean"] > 0.1


def test_cross_fitted_ece_is_small_when_a_temperature_and_offset_fit() -> None:
    logits, labels, mask = synthetic(3.0, 1.0)
    before = expected_calibration_error(apply_calibration(logits, np.ones(40)), labels, mask)["mean"]
    crossed = cross_fitted_ece(logits, labels, mask)
    assert before > 0.1 and crossed < 0.04


def test_logits_from_probabilities_inverts_the_sigmoid_and_clips_saturation() -> None:
    logits = np.array([-5.0, 0.0, 3.0])
    assert np.allclose(logits_from_probabilities(1.0 / (1.0 + np.exp(-logits))), logits)
    assert np.isfinite(logits_from_probabilities(np.array([0.0, 1.0]))).all()


def predictions(temperature: float, offset: float = 0.0) -> Predictions:
    logits, labels, mask = synthetic(temperature, offset, rows=2000)
    n = len(logits)
    return Predictions(apply_calibration(logits, np.ones(40)).astype(np.float32), labels, mask, np.zeros(n),
                       np.zeros(n), np.zeros(n, bool), attribute_logits=logits)


def test_summarize_reports_ece_before_and_after_and_scores_calibrated_probabilities() -> None:
    raw = predictions(2.0, 0.5)
    temperatures, offsets = fit_calibration(raw.logits, raw.attribute_labels, raw.attribute_mask)
    # A threshold of 0.6 on calibrated probabilities is logit (0.405 - offset) * T on the raw ones.
    evaluation = summarize(raw, np.full(40, 0.6), {}, temperatures=temperatures, offsets=offsets)
    calibration = evaluation["calibration"]
    assert calibration["ece_before"] > 0.05 > calibration["ece_after"]
    assert calibration["ece_after_cross_fitted"] < 0.05
    assert calibration["temperatures"]["Smiling"] == pytest.approx(2.0, abs=0.3)
    assert calibration["offsets"]["Smiling"] == pytest.approx(0.5, abs=0.3)
    predicted = raw.logits[:, 0] >= (np.log(0.6 / 0.4) - offsets[0]) * temperatures[0]
    labels = raw.attribute_labels[:, 0] == 1
    recall = (predicted & labels).sum() / labels.sum()
    assert evaluation["attributes"]["5_o_Clock_Shadow"]["recall"] == pytest.approx(recall)


def test_summarize_without_temperatures_scores_the_probabilities_as_they_are() -> None:
    raw = predictions(1.0)
    evaluation = summarize(raw, np.full(40, 0.5), {})
    assert evaluation["calibration"]["ece_before"] == evaluation["calibration"]["ece_after"]
    assert set(evaluation["calibration"]["temperatures"].values()) == {1.0}
    assert set(evaluation["calibration"]["offsets"].values()) == {0.0}


def test_checkpoint_without_calibration_means_uncalibrated_and_bad_values_are_refused() -> None:
    state = DeployedModel.from_training(FaceAttrNet("resnet10t"), [0.5] * 40, Config(), 1, {}).to_checkpoint()
    del state["temperatures"], state["offsets"]
    old = DeployedModel.from_checkpoint(state, Path("old.pt"))
    assert (old.temperatures, old.offsets) == ((1.0,) * 40, (0.0,) * 40)
    with pytest.raises(CheckpointError, match="old.pt: 'temperatures'"):
        DeployedModel.from_checkpoint({**state, "temperatures": [1.0] * 39}, Path("old.pt"))
    with pytest.raises(CheckpointError, match="'temperatures'"):
        DeployedModel.from_checkpoint({**state, "temperatures": [0.0] * 40}, Path("old.pt"))
    with pytest.raises(CheckpointError, match="'offsets'"):
        DeployedModel.from_checkpoint({**state, "offsets": ["x"] * 40}, Path("old.pt"))


def test_report_headline_gives_ece_before_and_after(tmp_path) -> None:
    raw = predictions(2.0, 0.5)
    temperatures, offsets = fit_calibration(raw.logits, raw.attribute_labels, raw.attribute_mask)
    evaluation = summarize(raw, np.full(40, 0.5), {}, temperatures=temperatures, offsets=offsets)
    calibration = evaluation["calibration"]
    line = (f"{calibration['ece_before']:.3f} before calibration (temperature and offset per attribute), "
            f"{calibration['ece_after']:.3f} after ({calibration['ece_after_cross_fitted']:.3f}")
    assert line in write_report(evaluation, tmp_path)["markdown"].read_text()
    assert line in format_summary(evaluation)
