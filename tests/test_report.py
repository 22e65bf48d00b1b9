"""Tests of faceattr.evaluation.report.markdown: the evaluation report files and the terminal summary."""

from __future__ import annotations

import copy
import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceattr.attributes import ATTRIBUTES
from faceattr.errors import EvaluationError
from faceattr.evaluation.report.markdown import format_summary, write_report

ALL_FILES = {"markdown", "json", "csv", "balanced_accuracy", "beauty_scatter", "beauty_roc", "beauty_bins"}
#: An attribute with no labels in the evaluated data: every metric NaN, count 0.
UNLABELLED = "Blurry"


def _attribute_metrics(rng: np.random.Generator, name: str) -> dict:
    if name == UNLABELLED:
        return {**dict.fromkeys(("accuracy", "balanced_accuracy", "precision", "recall", "f1",
                                 "average_precision", "roc_auc", "base_rate", "threshold"), math.nan), "count": 0.0}
    recall, specificity = rng.uniform(0.5, 0.97, size=2)
    base_rate = float(rng.uniform(0.02, 0.8))
    precision = recall * base_rate / (recall * base_rate + (1 - specificity) * (1 - base_rate))
    return {"accuracy": recall * base_rate + specificity * (1 - base_rate),
            "balanced_accuracy": (recall + specificity) / 2, "precision": precision, "recall": recall,
            "f1": 2 * precision * recall / (precision + recall), "average_precision": float(rng.uniform(0.3, 0.95)),
            "roc_auc": float(rng.uniform(0.6, 0.99)), "base_rate": base_rate, "threshold": float(rng.uniform(0.2, 0.8)), "count": 780.0}


def _means(per_attribute: dict, shift: float = 0.0) -> dict:
    keys = ("accuracy", "balanced_accuracy", "precision", "recall", "f1", "average_precision", "roc_auc", "base_rate")
    return {key: float(np.nanmean([m[key] for m in per_attribute.values()])) - shift for key in keys}


def _beauty(rng: np.random.Generator, n: int = 200) -> tuple[dict, dict]:
    target = np.clip(rng.normal(3.0, 0.7, n), 1.0, 5.0)
    predicted = 3.0 + 0.8 * (target - 3.0) + rng.normal(0.0, 0.3, n)
    error = predicted - target
    bins = []
    for low in (1.0, 2.0, 3.0, 4.0):
        inside = (target >= low) & ((target < low + 1) if low < 4 else (target <= 5.0))
        bins.append({"low": low, "high": low + 1, "count": float(inside.sum()),
                     "mae": float(np.abs(error[inside]).mean()), "bias": float(error[inside].mean())})
    high = target >= 3.5
    thresholds = np.sort(predicted)[::-1]
    tpr = np.array([0.0, *((predicted[high][None] >= thresholds[:, None]).mean(1))])
    fpr = np.array([0.0, *((predicted[~high][None] >= thresholds[:, None]).mean(1))])
    roc = {"auc": float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2)),
           "best_threshold": float(thresholds[np.argmax(tpr[1:] - fpr[1:])]), "fpr": fpr.tolist(), "tpr": tpr.tolist()}
    metrics = {"count": float(n), "pearson": float(np.corrcoef(predicted, target)[0, 1]),
               "mae": float(np.abs(error).mean()), "rmse": float(np.sqrt((error ** 2).mean())), "bins": bins,
               "high_cutoff": 3.5, "roc": roc}
    return metrics, {"predicted": predicted.tolist(), "target": target.tolist()}


def make_evaluation(seed: int = 0, attributes: bool = True, beauty: bool = True) -> dict:
    """A realistic evaluation dict built from random numbers, shaped like faceattr.evaluation.metrics' output."""
    rng = np.random.default_rng(seed)
    per_attribute = {name: _attribute_metrics(rng, name) for name in ATTRIBUTES} if attributes else None
    beauty_metrics, predictions = _beauty(rng) if beauty else (None, None)
    return {"meta": {"checkpoint": "runs/r1/best.pt", "split": "val", "images": 980, "epoch": 7,
                     "backbone": "resnet18", "image_size": 64},
            "attributes": per_attribute,
            "attribute_means": _means(per_attribute) if attributes else None,
            "attribute_means_at_0.5": _means(per_attribute, shift=0.04) if attributes else None,
            "attribute_means_cross_fitted": _means(per_attribute, shift=0.01) if attributes else None,
            "beauty": beauty_metrics, "beauty_predictions": predictions}


def _weakest(evaluation: dict, k: int) -> list[str]:
    labelled = [n for n in ATTRIBUTES if n != UNLABELLED]
    return sorted(labelled, key=lambda n: evaluation["attributes"][n]["balanced_accuracy"])[:k]


@pytest.fixture(scope="module")
def full_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict[str, Path]]:
    evaluation = make_evaluation()
    return evaluation, write_report(evaluation, tmp_path_factory.mktemp("report") / "out")


def test_write_report_writes_every_file(full_report):
    _, paths = full_report
    assert set(paths) == ALL_FILES
    assert all(path.is_file() and path.stat().st_size > 0 for path in paths.values())
    assert len({path.parent for path in paths.values()}) == 1


def test_json_is_strict_and_writes_nan_as_null(full_report):
    evaluation, paths = full_report

    def reject(constant: str) -> None:
        raise AssertionError(f"non-standard JSON constant {constant}")

    loaded = json.loads(paths["json"].read_text(encoding="utf-8"), parse_constant=reject)
    assert loaded["attributes"][UNLABELLED]["balanced_accuracy"] is None
    assert loaded["attributes"]["Smiling"] == evaluation["attributes"]["Smiling"]
    assert loaded["beauty"] == evaluation["beauty"]
    assert loaded["meta"] == evaluation["meta"]


def test_csv_has_a_row_per_attribute_in_order_with_the_values(full_report):
    evaluation, paths = full_report
    with paths["csv"].open(newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    assert [row["attribute"] for row in rows] == list(ATTRIBUTES)
    for row in rows:
        expected = evaluation["attributes"][row["attribute"]]
        for key, value in expected.items():
            assert (row[key] == "") if math.isnan(value) else (float(row[key]) == value), (row["attribute"], key)
    assert rows[ATTRIBUTES.index("Smiling")]["count"] == "780"


def test_markdown_lists_every_attribute_and_the_headline(full_report):
    evaluation, paths = full_report
    text = paths["markdown"].read_text(encoding="utf-8")
    assert all(f"| {name} |" in text for name in ATTRIBUTES)
    means = evaluation["attribute_means"]
    bacc = means["balanced_accuracy"]
    assert f"| balanced accuracy | {bacc:.3f} | {bacc - 0.01:.3f} | {bacc - 0.04:.3f} | +0.040 |" in text
    assert "| gain from tuning |" in text
    assert f"| accuracy | {means['accuracy']:.3f} |" in text
    assert f"| F1 | {means['f1']:.3f} |" in text
    assert "runs/r1/best.pt" in text


def test_markdown_table_is_sorted_weakest_first_with_unlabelled_last(full_report):
    evaluation, paths = full_report
    lines = paths["markdown"].read_text(encoding="utf-8").splitlines()
    order = [line.split("|")[1].strip() for line in lines if line.split("|")[1:2] and line.split("|")[1].strip() in ATTRIBUTES]
    assert order[:39] == _weakest(evaluation, 39)
    assert order[-1] == UNLABELLED
    assert f"| {UNLABELLED} | n/a |" in "\n".join(lines)


def test_markdown_embeds_the_plots_by_relative_link(full_report):
    _, paths = full_report
    text = paths["markdown"].read_text(encoding="utf-8")
    for key in ("balanced_accuracy", "beauty_scatter", "beauty_roc", "beauty_bins"):
        assert f"]({key}.png)" in text


def test_markdown_beauty_section_has_numbers_bins_and_roc(full_report):
    evaluation, paths = full_report
    text = paths["markdown"].read_text(encoding="utf-8")
    beauty = evaluation["beauty"]
    assert f"| {int(beauty['count'])} | {beauty['pearson']:.3f} | {beauty['mae']:.3f} | {beauty['rmse']:.3f} |" in text
    assert "| [1, 2) |" in text and "| [4, 5] |" in text
    roc = beauty["roc"]
    assert f"ROC AUC {roc['auc']:.3f}; best threshold on the predicted score {roc['best_threshold']:.3f}." in text


def test_plots_are_pngs_of_sensible_size(full_report):
    _, paths = full_report
    for key in ("balanced_accuracy", "beauty_scatter", "beauty_roc", "beauty_bins"):
        with Image.open(paths[key]) as image:
            assert image.format == "PNG"
            assert 400 <= image.width <= 2000 and 400 <= image.height <= 2000, key
    with Image.open(paths["balanced_accuracy"]) as image:
        assert image.height >= 1.3 * image.width  # tall enough for 40 readable names


@pytest.mark.parametrize(("mae", "verdict"), [
    ((0.6, 0.2, 0.25, 0.7), "the model is worse at the extremes: MAE 0.600 on [1, 2) and 0.700 on [4, 5]."),
    ((0.2, 0.5, 0.45, 0.2), "the model is better at the extremes:"),
    ((0.6, 0.3, 0.3, 0.3), "the model is worse at the low end and about as good at the high end:"),
    # An empty lowest bin: the populated [2, 3) is the low end.
    ((math.nan, 0.2, 0.2, 0.5), "(MAE 0.200), the model is about as good at the low end and worse at the high end: "
                                "MAE 0.200 on [2, 3) and 0.500 on [4, 5]."),
])
def test_markdown_says_whether_beauty_error_is_worse_at_the_extremes(tmp_path, mae, verdict):
    evaluation = make_evaluation(attributes=False)
    for bin_, value in zip(evaluation["beauty"]["bins"], mae):
        bin_["mae"] = value
        bin_["count"] = 0.0 if math.isnan(value) else bin_["count"]
    text = write_report(evaluation, tmp_path)["markdown"].read_text(encoding="utf-8")
    assert verdict in text


def test_beauty_only_evaluation_skips_attribute_outputs(tmp_path):
    paths = write_report(make_evaluation(attributes=False), tmp_path)
    assert set(paths) == {"markdown", "json", "beauty_scatter", "beauty_roc", "beauty_bins"}
    text = paths["markdown"].read_text(encoding="utf-8")
    assert "## Beauty score" in text and "## Attributes" not in text
    assert not (tmp_path / "attributes.csv").exists()


def test_attribute_only_evaluation_skips_beauty_outputs(tmp_path):
    paths = write_report(make_evaluation(beauty=False), tmp_path)
    assert set(paths) == {"markdown", "json", "csv", "balanced_accuracy"}
    text = paths["markdown"].read_text(encoding="utf-8")
    assert "## Attributes" in text and "## Beauty score" not in text


def test_headline_without_fixed_threshold_means_shows_no_gain(tmp_path):
    evaluation = make_evaluation(beauty=False)
    evaluation["attribute_means_at_0.5"] = evaluation["attribute_means_cross_fitted"] = None
    text = write_report(evaluation, tmp_path)["markdown"].read_text(encoding="utf-8")
    assert f"| balanced accuracy | {evaluation['attribute_means']['balanced_accuracy']:.3f} | n/a | n/a | n/a |" in text


def test_report_json_read_back_renders_the_same_markdown(full_report, tmp_path):
    _, paths = full_report
    loaded = json.loads(paths["json"].read_text(encoding="utf-8"))
    again = write_report(loaded, tmp_path)
    assert again["markdown"].read_text(encoding="utf-8") == paths["markdown"].read_text(encoding="utf-8")


def test_format_summary_names_the_five_weakest_attributes():
    evaluation = make_evaluation()
    summary = format_summary(evaluation)
    weakest_line = next(line for line in summary.splitlines() if line.startswith("weakest:"))
    assert [item.rsplit(" ", 1)[0] for item in weakest_line.removeprefix("weakest: ").split(", ")] == _weakest(evaluation, 5)
    assert f"mean balanced accuracy {evaluation['attribute_means']['balanced_accuracy']:.3f}" in summary
    assert f"Pearson {evaluation['beauty']['pearson']:.3f}" in summary


def test_format_summary_of_beauty_only_has_only_the_beauty_line():
    summary = format_summary(make_evaluation(attributes=False))
    assert summary.splitlines()[0].startswith("beauty: Pearson") and len(summary.splitlines()) == 1


def test_missing_attribute_is_named_in_the_error(tmp_path):
    evaluation = copy.deepcopy(make_evaluation(beauty=False))
    del evaluation["attributes"]["Smiling"]
    with pytest.raises(EvaluationError, match="Smiling"):
        write_report(evaluation, tmp_path)
    assert not any(tmp_path.iterdir())


def test_missing_beauty_key_is_named_in_the_error(tmp_path):
    evaluation = make_evaluation(attributes=False)
    del evaluation["beauty"]["roc"]["auc"]
    with pytest.raises(EvaluationError, match=r"\['roc'\].*auc"):
        write_report(evaluation, tmp_path)


def test_evaluation_without_attributes_or_beauty_is_rejected(tmp_path):
    with pytest.raises(EvaluationError, match="nothing to report"):
        write_report(make_evaluation(attributes=False, beauty=False), tmp_path)
