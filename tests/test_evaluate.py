"""Turning predictions into an evaluation: tuned, fixed and cross-fitted thresholds, beauty."""

import json
import shutil

import numpy as np
import pytest
import torch

from faceattr.attributes import ATTRIBUTES
from faceattr.errors import FaceAttrError
from faceattr.evaluation.evaluate import (
    Predictions,
    cross_fitted_means,
    evaluate_checkpoint,
    evaluate_each_source,
    summarize,
    tune_thresholds,
)
from faceattr.evaluation.summary import headline


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


@pytest.fixture(scope="module")
def two_source_checkpoint(tmp_path_factory):
    """An untrained checkpoint whose config holds a CelebA source (capped at 5 validation images) and a SCUT one."""
    from faceattr.config import config_from_dict
    from faceattr.models.deployed import DeployedModel
    from faceattr.models.net import FaceAttrNet
    from faceattr.models.weights_io import save_checkpoint
    from faceattr.synthetic.fixtures import make_celeba, make_scut

    root = tmp_path_factory.mktemp("per_source")
    make_celeba(root / "celeba", identities=30, images_per_identity=3, seed=4)
    make_scut(root / "scut", count=24, size=16, seed=4)
    # The training-partition images alone: a source with no validation images.
    partition = (root / "celeba" / "list_eval_partition.txt").read_text().split()
    (root / "celeba" / "train_only").mkdir()
    for name, code in zip(partition[::2], partition[1::2]):
        if code == "0" and (root / "celeba" / "img_align_celeba" / name).is_file():
            shutil.copy(root / "celeba" / "img_align_celeba" / name, root / "celeba" / "train_only" / name)
    sources = [{"kind": "celeba", "root": str(root / "celeba"), "images": "img_align_celeba"},
               {"kind": "scut", "root": str(root / "scut"), "folds": 3},
               {"kind": "celeba", "root": str(root / "celeba"), "images": "train_only"}]
    config = config_from_dict({"data": {"sources": sources, "image_size": 32, "batch_size": 4, "workers": 0,
                                        "max_val_samples": 5},
                               "model": {"backbone": "resnet10t"}, "train": {"amp": False}})
    torch.manual_seed(0)
    thresholds = np.linspace(0.3, 0.7, 40).tolist()  # distinct stored thresholds, to see them used
    save_checkpoint(DeployedModel.from_training(FaceAttrNet("resnet10t"), thresholds, config, 1, {}).to_checkpoint(),
                    root / "run" / "best.pt")
    return root / "run" / "best.pt", sources


def only_source(checkpoint, source, out):
    """The same checkpoint with a config holding only ``source`` (a list replaced by a flow-YAML override)."""
    return evaluate_checkpoint(checkpoint, [f"data.sources=[{json.dumps(source)}]"], out)[0]


def test_one_source_scores_like_a_config_holding_only_that_source(two_source_checkpoint, tmp_path):
    checkpoint, sources = two_source_checkpoint
    alone, paths = evaluate_checkpoint(checkpoint, out_dir=tmp_path / "a", sources=[0])
    reference = only_source(checkpoint, sources[0], tmp_path / "b")
    assert alone["meta"]["images"] == reference["meta"]["images"] == 5  # the cap applies to the source alone
    assert json.dumps(alone["attributes"]) == json.dumps(reference["attributes"])  # NaN-safe, exact
    assert alone["beauty"] is None
    assert [alone["attributes"][name]["threshold"] for name in ATTRIBUTES] == pytest.approx(np.linspace(0.3, 0.7, 40))
    assert "data.sources[0] (celeba:img_align_celeba)" in paths["markdown"].read_text().splitlines()[0]


def test_a_source_named_by_kind_scores_its_own_images_only(two_source_checkpoint, tmp_path):
    checkpoint, sources = two_source_checkpoint
    alone = evaluate_checkpoint(checkpoint, out_dir=tmp_path / "a", sources=["scut"])[0]
    reference = only_source(checkpoint, sources[1], tmp_path / "b")
    assert alone["attributes"] is None and alone["meta"]["images"] == 5
    assert alone["beauty"]["pearson"] == pytest.approx(reference["beauty"]["pearson"])
    assert alone["beauty_predictions"] == reference["beauty_predictions"]


@pytest.mark.parametrize("source, message", [(3, "source 3 is not one"), ("celeba", "'celeba' matches several"),
                                             ("celeba:train_only", "no validation images")])
def test_a_missing_ambiguous_or_empty_source_is_refused_naming_it(two_source_checkpoint, tmp_path, source, message):
    with pytest.raises(FaceAttrError, match=message):
        evaluate_checkpoint(two_source_checkpoint[0], out_dir=tmp_path, sources=[source])


def test_each_source_writes_a_report_per_source_and_a_summary(two_source_checkpoint, tmp_path):
    returned = evaluate_each_source(two_source_checkpoint[0], [], tmp_path)
    rows = json.loads((tmp_path / "sources.json").read_text())
    assert rows == json.loads(json.dumps(returned))
    assert [(row["source"], row["images"]) for row in rows] == [("celeba:img_align_celeba", 5), ("scut", 5),
                                                                  ("celeba:train_only", 0)]
    scut = json.loads((tmp_path / "source1" / "report.json").read_text())
    assert rows[1]["beauty Pearson"] == pytest.approx(scut["beauty"]["pearson"]) and rows[1]["bal. acc. at 0.5"] is None
    assert (tmp_path / "source0" / "report.md").is_file() and not (tmp_path / "source2").exists()
    assert "| 1 scut | 5 |" in (tmp_path / "sources.md").read_text()


def test_each_source_takes_an_export_as_the_default_model_is(two_source_checkpoint, tmp_path):
    from faceattr.training.export import export_model

    export_model(two_source_checkpoint[0], tmp_path / "model.safetensors", "float32")
    rows = evaluate_each_source(tmp_path / "model.safetensors", [], tmp_path / "out")
    assert rows == evaluate_each_source(two_source_checkpoint[0], [], tmp_path / "from_checkpoint")


def test_calibrating_a_checkpoint_fits_what_training_would_and_keeps_the_weights(two_source_checkpoint, tmp_path):
    from faceattr.evaluation.evaluate import calibrate_checkpoint
    from faceattr.models.weights_io import load_checkpoint

    checkpoint, _ = two_source_checkpoint
    evaluation = calibrate_checkpoint(checkpoint, tmp_path / "calibrated.pt", device="cpu")
    old, new = load_checkpoint(checkpoint), load_checkpoint(tmp_path / "calibrated.pt")
    assert set(old.get("temperatures", [1.0])) == {1.0} and len(new["temperatures"]) == len(new["offsets"]) == 40
    assert set(new["temperatures"]) != {1.0}
    assert all(torch.equal(old["model"][key], new["model"][key]) for key in old["model"])
    assert new["metrics"]["attribute_means"] == pytest.approx(evaluation["attribute_means"], nan_ok=True)
    assert new["thresholds"] != old["thresholds"]
    # Evaluating the new checkpoint with its stored thresholds reproduces the fit's own figures.
    again, _ = evaluate_checkpoint(tmp_path / "calibrated.pt", out_dir=tmp_path / "report", device="cpu")
    assert again["attribute_means"] == pytest.approx(evaluation["attribute_means"], nan_ok=True)


def test_data_from_evaluates_and_calibrates_on_another_configs_sources(two_source_checkpoint, tmp_path):
    """What a model trained on a pack needs: its recipe's original sources instead of the pack's."""
    from faceattr.config import data_overrides
    from faceattr.evaluation.evaluate import calibrate_checkpoint
    from faceattr.models.weights_io import load_checkpoint

    checkpoint, sources = two_source_checkpoint
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(json.dumps({"data": {"sources": [sources[1]], "preload": True}}))
    evaluate_checkpoint(checkpoint, data_overrides(recipe), tmp_path / "eval")
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["beauty"]["pearson"] == pytest.approx(only_source(checkpoint, sources[1], tmp_path / "b")
                                                        ["beauty"]["pearson"])
    calibrate_checkpoint(checkpoint, tmp_path / "c.pt", "cpu", [*data_overrides(recipe), "data.batch_size=2"])
    stored = load_checkpoint(tmp_path / "c.pt")["config"]["data"]
    assert [source["root"] for source in stored["sources"]] == [sources[1]["root"]]
    assert stored["preload"] is False and stored["batch_size"] == 2


def test_eval_tool_takes_each_source_and_data_from_and_prints_the_table(two_source_checkpoint, tmp_path, run_tool):
    checkpoint, sources = two_source_checkpoint
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(json.dumps({"data": {"sources": sources[:2]}}))
    result = run_tool("eval", checkpoint, "--each-source", "--data-from", recipe, "--out", tmp_path / "out",
                      "--device", "cpu")
    assert result.status == 0, result.err
    assert "| 1 scut | 5 |" in result.out and "celeba:train_only" not in result.out  # the recipe's 2 sources
    assert len(json.loads((tmp_path / "out" / "sources.json").read_text())) == 2
