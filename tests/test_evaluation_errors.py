"""faceattr.evaluation.errors (which errors the galleries show, beauty error by decile) and metrics.confusion_counts."""

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from faceattr.attributes import ATTRIBUTES
from faceattr.evaluation.errors import beauty_deciles, beauty_extremes, confident_errors, gallery_selection
from faceattr.evaluation.metrics import CONFUSION_KEYS, attribute_metrics, confusion_counts


def test_most_confident_false_positives_are_the_most_probable_label_0_rows_at_or_above_the_threshold():
    probs = np.array([0.95, 0.60, 0.99, 0.50, 0.49, 0.80, 0.10, 0.30, 0.70])
    labels = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1])
    mask = np.array([1, 1, 0, 1, 1, 1, 1, 1, 1], bool)  # row 2, the most probable, has no known label
    false_positives, false_negatives = confident_errors(probs, labels, mask, 0.5, 8)
    assert false_positives.tolist() == [0, 1, 3]  # 0.95, 0.60, then 0.50 (at the threshold: called present)
    assert false_negatives.tolist() == [6, 7]  # label 1 under 0.5, least probable first
    assert confident_errors(probs, labels, mask, 0.5, 1)[0].tolist() == [0]
    assert [rows.tolist() for rows in confident_errors(probs, labels, np.zeros(9, bool), 0.5, 8)] == [[], []]


def test_equal_probabilities_keep_row_order():
    false_positives, _ = confident_errors(np.array([0.7, 0.9, 0.7]), np.zeros(3), np.ones(3, bool), 0.5, 3)
    assert false_positives.tolist() == [1, 0, 2]


def random_attributes(seed=0, n=300):
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, 40)) < np.linspace(0.05, 0.6, 40)).astype(np.float32)
    probs = np.clip(0.35 * labels + rng.random((n, 40)) * 0.65, 0, 1)
    mask = rng.random((n, 40)) > 0.2
    return probs, labels, mask, rng.uniform(0.3, 0.7, 40)


def test_confusion_counts_and_precision_recall_f1_agree_with_sklearn_on_known_labels_only():
    probs, labels, mask, thresholds = random_attributes()
    counts = confusion_counts(probs, labels, mask, thresholds)
    metrics = attribute_metrics(probs, labels, mask, thresholds)
    for index, name in enumerate(ATTRIBUTES):
        known = mask[:, index]
        truth, called = labels[known, index].astype(int), (probs[known, index] >= thresholds[index]).astype(int)
        (tn, fp), (fn, tp) = confusion_matrix(truth, called, labels=[0, 1])
        assert [counts[name][key] for key in CONFUSION_KEYS] == [tp, fp, fn, tn]
        precision, recall, f1, _ = precision_recall_fscore_support(truth, called, average="binary", zero_division=0)
        assert (metrics[name]["precision"], metrics[name]["recall"], metrics[name]["f1"]) == pytest.approx(
            (precision, recall, f1))


def test_gallery_selection_names_each_row_by_its_image_and_shows_no_unrated_face():
    probs, labels, mask, thresholds = random_attributes(seed=1, n=50)
    predicted = np.linspace(1.0, 5.0, 50)
    target = np.full(50, 3.0)
    rated = np.ones(50, bool)
    rated[[0, 49]] = False  # the lowest and highest predictions have no rating
    paths = [f"img{i}.jpg" for i in range(50)]
    selection = gallery_selection(probs, labels, mask, thresholds, (predicted, target, rated), paths, count=2)
    smiling = ATTRIBUTES.index("Smiling")
    expected = confident_errors(probs[:, smiling], labels[:, smiling], mask[:, smiling], thresholds[smiling], 2)
    shown = selection["attributes"]["Smiling"]
    assert [item["row"] for item in shown["false_positives"]] == expected[0].tolist()
    assert [item["path"] for item in shown["false_negatives"]] == [paths[row] for row in expected[1]]
    assert [item["probability"] for item in shown["false_positives"]] == probs[expected[0], smiling].tolist()
    assert [item["row"] for item in selection["beauty"]["highest"]] == [48, 47]
    assert [item["row"] for item in selection["beauty"]["lowest"]] == [1, 2]
    assert {item["row"] for item in selection["beauty"]["largest_errors"]} == {1, 48}  # |error| 1.92 each
    assert selection["size"] == 2
    assert gallery_selection(None, None, None, None, None, paths, 2) == {"size": 2, "attributes": None, "beauty": None}


def test_beauty_deciles_cut_the_ranked_predictions_into_equal_groups():
    rng = np.random.default_rng(2)
    predicted = rng.permutation(np.linspace(1.0, 5.0, 100))
    target = predicted - 0.1 * (predicted > 3)  # over-predicted by 0.1 above 3 only
    rows = beauty_deciles(predicted, target)
    assert [row["count"] for row in rows] == [10] * 10
    assert [row["low"] for row in rows] == sorted(row["low"] for row in rows)
    assert rows[0]["low"] == 1.0 and rows[-1]["high"] == 5.0 and rows[0]["high"] < rows[1]["low"]
    assert rows[0]["mae"] == pytest.approx(0.0) and rows[-1]["bias"] == pytest.approx(0.1)
    assert rows[-1]["mae"] == pytest.approx(0.1)


def test_beauty_deciles_of_tied_or_few_scores_leave_no_group_empty():
    tied = beauty_deciles(np.full(25, 3.0), np.full(25, 2.0))
    assert [row["count"] for row in tied] == [3] * 5 + [2] * 5 and all(row["bias"] == 1.0 for row in tied)
    assert [row["count"] for row in beauty_deciles(np.array([2.0, 4.0, 3.0]), np.array([2.0, 4.0, 3.0]))] == [1, 1, 1]
    assert beauty_deciles(np.zeros(0), np.zeros(0)) == []
    with pytest.raises(ValueError, match="same"):
        beauty_deciles(np.zeros(3), np.zeros(2))


def test_beauty_extremes_order_the_most_extreme_first():
    picked = beauty_extremes(np.array([3.0, 4.8, 1.2, 4.0]), np.array([3.0, 3.0, 1.5, 4.1]), 2)
    assert picked["highest"].tolist() == [1, 3] and picked["lowest"].tolist() == [2, 0]
    assert picked["largest_errors"].tolist() == [1, 2]


def test_report_shows_each_confusion_matrix_links_its_gallery_and_tabulates_the_deciles(tmp_path):
    import json

    from faceattr.evaluation.evaluate import Predictions, summarize
    from faceattr.evaluation.report.markdown import write_report

    probs, labels, mask, thresholds = random_attributes(seed=3, n=120)
    rng = np.random.default_rng(3)
    target = rng.uniform(1, 5, 120)
    predictions = Predictions(probs, labels, mask, target + rng.normal(0, 0.4, 120), target, np.ones(120, bool))
    evaluation = summarize(predictions, thresholds, {}, paths=[f"{i}.jpg" for i in range(120)], gallery_size=4)
    drawn = {"Smiling": tmp_path / "galleries" / "Smiling.png", "beauty": tmp_path / "galleries" / "beauty.png"}
    paths = write_report(evaluation, tmp_path, galleries=drawn)
    text = paths["markdown"].read_text()
    counts = evaluation["confusion"]["Smiling"]
    smiling = evaluation["attributes"]["Smiling"]
    assert (f"| Smiling | {counts['true_positives']} | {counts['false_positives']} | {counts['false_negatives']} | "
            f"{counts['true_negatives']} | {smiling['precision']:.3f} | {smiling['recall']:.3f} | {smiling['f1']:.3f} "
            "| [errors](galleries/Smiling.png) |") in text
    assert [line for line in text.splitlines() if line.startswith("| Bald |")][-1].endswith("|  |")  # no gallery
    assert "![Highest and lowest predicted beauty scores and largest errors](galleries/beauty.png)" in text
    first = evaluation["beauty_deciles"]["bins"][0]
    assert f"| 1 | {first['low']:.2f}-{first['high']:.2f} | 12 | {first['mae']:.3f} | {first['bias']:+.3f} |" in text
    assert paths["beauty_deciles"].is_file() and paths["gallery_Smiling"] == drawn["Smiling"]
    again = write_report(json.loads(paths["json"].read_text()), tmp_path / "again", galleries={
        target: tmp_path / "again" / "galleries" / path.name for target, path in drawn.items()})
    # From the attributes on (the run table shows a NaN validation loss as "nan", then as "None").
    assert again["markdown"].read_text().split("## Attributes")[1] == text.split("## Attributes")[1]


def test_report_without_galleries_has_no_gallery_column(tmp_path):
    from faceattr.evaluation.evaluate import Predictions, summarize
    from faceattr.evaluation.report.markdown import write_report

    probs, labels, mask, thresholds = random_attributes(seed=4, n=40)
    predictions = Predictions(probs, labels, mask, np.zeros(40), np.zeros(40), np.zeros(40, bool))
    text = write_report(summarize(predictions, thresholds, {}), tmp_path)["markdown"].read_text()
    assert "| attribute | true pos. | false pos. | false neg. | true neg. | precision | recall | F1 |\n" in text
    assert "gallery" not in text.lower()
