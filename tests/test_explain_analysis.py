"""Specification of the sparsity analysis (faceattr.explain.analysis), on tiny networks and drawn faces."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from faceattr.errors import ConfigError
import faceattr.image
from faceattr.explain.analysis import (
    EMBEDDING_NORMS,
    NetworkInput,
    analyze_sparsity,
    feature_families,
    measure_networks,
    regress_families,
    report_markdown,
    untrained_copy,
    write_report,
)
from faceattr.models.net import FaceAttrNet
from faceattr.synthetic.fixtures import make_scut

MEASURES = ["gini", "hoyer", "mean_activation"]


@pytest.fixture(scope="module")
def faces(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], np.ndarray]:
    """40 drawn SCUT faces at 64 px and their ratings."""
    root = make_scut(tmp_path_factory.mktemp("scut"), count=40, size=64)
    rows = [line.split() for line in (root / "train_test_files" / "All_labels.txt").read_text().splitlines()]
    return [root / "Images" / name for name, _ in rows], np.array([float(score) for _, score in rows])


@pytest.fixture(scope="module")
def network() -> FaceAttrNet:
    torch.manual_seed(1)
    return FaceAttrNet("resnet10t")


def run(network: FaceAttrNet, faces: tuple[list[Path], np.ndarray], **options: object):
    images, ratings = faces
    return analyze_sparsity(network, images, ratings, image_size=64, crop=None, batch_size=16, measures=MEASURES,
                            folds=5, repeats=2, curve_measures=("gini",), **options)


@pytest.fixture(scope="module")
def analysis(network, faces):
    """The analysis of the tiny network, and its untrained copy, on the drawn faces."""
    return run(network, faces)


def test_the_analysis_reports_every_family_for_both_networks(analysis):
    assert set(analysis.networks) == {"trained", "untrained"}
    layers = len(analysis.layers)
    assert layers == 5  # resnet10t: the stem and its four stages of one block
    for result in analysis.networks.values():
        assert {name: table.shape for name, table in result.values.items()} == {m: (40, layers) for m in MEASURES}
        assert set(result.families) == {
            "gini per layer", "hoyer per layer", "gini depth curve", "gini contextual mean", "hoyer contextual mean",
            "all sparsity, per layer", "mean activation (control)", "all sparsity + mean activation",
            "embedding L1", "embedding L2"}
        for r2, spread in result.families.values():
            assert np.isfinite(r2) and r2 <= 1 and spread >= 0
        assert len(result.per_layer["gini"]) == layers and len(result.correlations["gini"]) == layers
        assert set(result.logistic_failures) == {"gini"}
        assert result.embedding_size == 512 and result.image_size == 64 and result.crop is None
        assert result.layers == analysis.layers
    # The untrained copy has other weights, so other activations.
    assert not np.allclose(analysis.networks["trained"].values["gini"], analysis.networks["untrained"].values["gini"])
    assert analysis.seconds >= analysis.measure_seconds > 0


def test_the_analysis_is_deterministic_and_leaves_the_network_as_it_was(network, faces):
    network.train()
    few = (faces[0][:20], faces[1][:20])
    first, second = run(network, few, untrained=False), run(network, few, untrained=False)
    assert network.training
    assert list(first.networks) == ["trained"]
    assert first.networks["trained"].families == second.networks["trained"].families
    np.testing.assert_array_equal(first.networks["trained"].values["hoyer"],
                                  second.networks["trained"].values["hoyer"])


def test_the_untrained_copy_is_seeded_and_leaves_the_random_stream_alone(network):
    torch.manual_seed(5)
    expected = torch.rand(1)
    torch.manual_seed(5)
    copy, again = untrained_copy(network, seed=3), untrained_copy(network, seed=3)
    assert torch.equal(torch.rand(1), expected)
    assert copy.model_args == network.model_args and not copy.training
    for (name, mine), (_, theirs) in zip(copy.state_dict().items(), again.state_dict().items()):
        assert torch.equal(mine, theirs), name
    with pytest.raises(ConfigError, match="model_args"):
        untrained_copy(torch.nn.Linear(2, 2))


def test_a_rating_planted_in_one_layer_is_found_at_that_layer():
    rng = np.random.default_rng(0)
    values = {"gini": rng.uniform(0.2, 0.8, (300, 6)), "mean_activation": rng.normal(size=(300, 6))}
    ratings = 3.0 + 4.0 * values["gini"][:, 2] + rng.normal(0, 0.05, 300)
    result = regress_families(values, ratings, folds=10, repeats=2)
    per_layer = [r2 for r2, _ in result.per_layer["gini"]]
    assert per_layer[2] > 0.95
    assert max(per_layer[:2] + per_layer[3:]) < 0.05
    assert result.families["gini per layer"][0] > 0.95
    assert result.families["mean activation (control)"][0] < 0.05  # the control carries nothing here
    assert result.correlations["gini"][2] > 0.95


def test_feature_families_impute_failed_fits_and_drop_layers_without_values():
    rng = np.random.default_rng(1)
    gini_per_channel = rng.uniform(size=(20, 4))
    gini_per_channel[:, 3] = np.nan  # a pooled layer: no spatial positions
    flat = np.tile(np.linspace(0, 1, 4), (20, 1))
    flat[0] = 0.5  # a flat curve: its logistic fit fails
    families, failures = feature_families({"gini_per_channel": gini_per_channel, "gini": flat})
    assert families["gini_per_channel per layer"].shape == (20, 3)
    assert failures == {"gini": 1}
    assert all(np.isfinite(table).all() for table in families.values())


def test_bad_inputs_are_refused_with_the_value_at_fault(network, faces):
    images, ratings = faces
    with pytest.raises(ConfigError, match=r"ratings must be \(40,\)"):
        analyze_sparsity(network, images, ratings[:-1], image_size=64, crop=None)
    with pytest.raises(ConfigError, match="unknown sparsity measures"):
        analyze_sparsity(network, images, ratings, image_size=64, crop=None, measures=["sharpness"])
    with pytest.raises(ConfigError, match="folds must be between 2"):
        analyze_sparsity(network, images, ratings, image_size=64, crop=None, folds=41)


def test_the_report_holds_the_table_and_the_plots(analysis, tmp_path):
    markdown = report_markdown(analysis)
    assert "| mean activation (control) |" in markdown and "backbone.layer4.0" in markdown
    written = write_report(analysis, tmp_path)
    assert sorted(path.name for path in written) == ["depth.png", "r2_families.png", "r2_per_layer.png",
                                                     "report.json", "report.md"]
    figures = json.loads((tmp_path / "report.json").read_text())
    assert figures["images"] == 40 and set(figures["networks"]) == {"trained", "untrained"}
    with pytest.raises(ConfigError, match="'l0' was not measured"):
        write_report(analysis, tmp_path / "other", measure="l0")


def test_each_network_reads_its_own_input_and_each_image_is_decoded_once(network, faces, monkeypatch):
    decoded = []
    real_load = faceattr.image.load_image

    def counting_load(path):
        decoded.append(path)
        return real_load(path)

    monkeypatch.setattr(faceattr.image, "load_image", counting_load)
    images = faces[0][:10]
    torch.manual_seed(2)
    small = FaceAttrNet("resnet10t")
    measured = measure_networks({"big": NetworkInput(network, 64), "big again": NetworkInput(network, 64),
                                 "small": NetworkInput(small, 32, (0.25, 0.25, 0.75, 0.75))},
                                images, batch_size=4, measures=["gini"])
    assert sorted(decoded) == sorted(images)  # one decoding per file, whatever the readings
    from faceattr.data.transforms import eval_transform

    batch = torch.stack([eval_transform(32, (0.25, 0.25, 0.75, 0.75))(real_load(path)) for path in images])
    with torch.no_grad():
        expected = small.eval().features(batch).numpy()
    np.testing.assert_allclose(measured["small"].embeddings, expected, rtol=1e-5, atol=1e-6)
    assert measured["big"].embeddings.shape == (10, 512)
    np.testing.assert_array_equal(measured["big"].values["gini"], measured["big again"].values["gini"])
    assert not any(module._forward_hooks for module in (network.backbone, small.backbone))  # hooks released


def test_a_rating_planted_in_the_embedding_is_found_by_the_embedding_families():
    rng = np.random.default_rng(3)
    embeddings = rng.uniform(0, 1, (300, 16))
    direction = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    ratings = 3.0 + 5.0 * direction[:, 0] - 3.0 * direction[:, 5] + rng.normal(0, 0.02, 300)
    values = {"gini": rng.uniform(0.2, 0.8, (300, 4))}  # unrelated to the ratings
    result = regress_families(values, ratings, folds=10, repeats=2, embeddings=embeddings)
    assert set(EMBEDDING_NORMS) <= set(result.families) and result.embedding_size == 16
    assert result.families["embedding L2"][0] > 0.95
    assert result.families["embedding L1"][0] > 0.8
    assert result.families["gini per layer"][0] < 0.05
    without = regress_families(values, ratings, folds=10, repeats=2)
    assert not set(EMBEDDING_NORMS) & set(without.families) and without.embedding_size == 0


def test_compared_networks_are_analysed_alike_with_their_own_input(network, faces):
    images, ratings = faces[0][:20], faces[1][:20]
    torch.manual_seed(4)
    other = NetworkInput(FaceAttrNet("resnet10t"), 32, (0.1, 0.1, 0.9, 0.9), "other.pt")
    analysis = analyze_sparsity(network, images, ratings, image_size=64, crop=None, batch_size=8, measures=MEASURES,
                                folds=4, repeats=1, curve_measures=("gini",), compare={"other": other})
    assert list(analysis.networks) == ["trained", "untrained", "other"]
    compared = analysis.networks["other"]
    assert (compared.image_size, compared.crop, compared.model) == (32, (0.1, 0.1, 0.9, 0.9), "other.pt")
    assert set(compared.families) == set(analysis.networks["trained"].families)
    figures = analysis.record()["networks"]["other"]
    assert figures["image_size"] == 32 and figures["crop"] == [0.1, 0.1, 0.9, 0.9]
    assert "| other | other.pt | 32 px | 0.1, 0.1, 0.9, 0.9 |" in report_markdown(analysis)
    with pytest.raises(ConfigError, match="cannot be named"):
        analyze_sparsity(network, images, ratings, image_size=64, crop=None, folds=4, compare={"untrained": other})
