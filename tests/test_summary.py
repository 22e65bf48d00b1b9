"""faceattr.evaluation.summary: the one definition of an evaluation's sections, headline figures and stored form."""

from __future__ import annotations

import json

import numpy as np
import pytest

from faceattr.errors import EvaluationError
from faceattr.evaluation.evaluate import Predictions, summarize
from faceattr.evaluation.summary import (
    FIGURES,
    SECTION_KEYS,
    check_evaluation,
    compact_evaluation,
    headline,
    headline_figures,
)


@pytest.fixture(scope="module")
def evaluation() -> dict:
    """A summarized evaluation of random predictions with attribute labels and beauty ratings, and galleries."""
    rng = np.random.default_rng(0)
    labels = (rng.random((60, 40)) < 0.3).astype(np.float32)
    target = rng.uniform(1, 5, 60)
    predictions = Predictions(rng.random((60, 40)), labels, np.ones((60, 40), bool), target + rng.normal(0, 0.3, 60),
                              target, np.ones(60, bool), loss=0.25)
    return summarize(predictions, np.full(40, 0.4), {"split": "val"}, paths=[f"{i}.jpg" for i in range(60)],
                     gallery_size=3)


def test_summarize_builds_every_section_with_its_keys(evaluation):
    assert list(evaluation) == ["meta", *SECTION_KEYS]
    check_evaluation(evaluation)
    for section, keys in SECTION_KEYS.items():
        assert set(keys) <= set(evaluation[section]), section


def test_headline_figures_read_each_figure_from_its_section(evaluation):
    figures = headline_figures(evaluation)
    assert list(figures) == list(FIGURES)
    assert figures["images"] == 60 and figures["validation_loss"] == 0.25
    assert figures["balanced_accuracy"] == evaluation["attribute_means"]["balanced_accuracy"]
    assert figures["balanced_accuracy_at_0.5"] == evaluation["attribute_means_at_0.5"]["balanced_accuracy"]
    assert figures["balanced_accuracy_cross_fitted"] == evaluation["attribute_means_cross_fitted"]["balanced_accuracy"]
    assert figures["f1"] == evaluation["attribute_means"]["f1"] and figures["beauty_rmse"] == evaluation["beauty"]["rmse"]
    assert figures["roc_auc"] == evaluation["attribute_means"]["roc_auc"]
    assert headline(evaluation) == figures["balanced_accuracy"]


def test_a_stored_evaluation_from_before_roc_auc_has_no_such_figure(evaluation):
    older = {**evaluation, "attribute_means": {key: value for key, value in evaluation["attribute_means"].items()
                                               if key != "roc_auc"}}
    assert headline_figures(older)["roc_auc"] is None
    assert headline_figures(older)["balanced_accuracy"] == evaluation["attribute_means"]["balanced_accuracy"]


def test_figures_of_missing_sections_are_none_and_beauty_alone_is_selected_on_pearson(evaluation):
    beauty_only = {**evaluation, **{section: None for section in SECTION_KEYS if not section.startswith("beauty")}}
    figures = headline_figures(beauty_only)
    assert figures["balanced_accuracy"] is None and figures["accuracy"] is None
    assert headline(beauty_only) == figures["beauty_pearson"] == evaluation["beauty"]["pearson"]
    assert np.isnan(headline({**beauty_only, "beauty": None}))


def test_compact_form_drops_per_image_data_only_and_leaves_the_evaluation_alone(evaluation):
    compact = compact_evaluation(evaluation)
    assert "galleries" not in compact and evaluation["galleries"] is not None  # paths of the machine that evaluated
    assert compact["confusion"] == evaluation["confusion"] and compact["beauty_deciles"] == evaluation["beauty_deciles"]
    assert "beauty_predictions" not in compact and set(compact["beauty"]["roc"]) == {"auc", "best_threshold"}
    assert evaluation["beauty"]["roc"]["fpr"] and evaluation["beauty_predictions"] is not None
    assert compact["attributes"] == evaluation["attributes"] and compact["beauty"]["pearson"] == evaluation["beauty"]["pearson"]


def test_an_evaluation_read_back_from_json_still_checks(evaluation):
    check_evaluation(json.loads(json.dumps(evaluation)))


@pytest.mark.parametrize("damage, message", [
    (lambda e: e["calibration"].pop("ece_after"), r"evaluation\['calibration'\] lacks the keys \['ece_after'\]"),
    (lambda e: e["attribute_means_cross_fitted"].pop("f1"), r"'attribute_means_cross_fitted'\] lacks the keys \['f1'\]"),
    (lambda e: e["attributes"]["Bald"].pop("count"), r"\['Bald'\] lacks the keys \['count'\]"),
    (lambda e: e["beauty"]["bins"][2].pop("bias"), r"\['bins'\]\[2\] lacks the keys \['bias'\]"),
    (lambda e: e["beauty_predictions"]["target"].pop(), "60 predicted scores but 59 targets"),
    (lambda e: e.update(attributes=None, beauty=None), "neither 'attributes' nor 'beauty'"),
    (lambda e: e.update(meta=[]), r"evaluation\['meta'\] must be a dict"),
])
def test_a_damaged_evaluation_is_refused_naming_what_is_wrong(evaluation, damage, message):
    damaged = json.loads(json.dumps(evaluation))
    damage(damaged)
    with pytest.raises(EvaluationError, match=message):
        check_evaluation(damaged)
