"""faceattr.explain.sparsity: the measures against hand-computed values, the depth-curve summary on planted
curves, contextual z-scores, and the cross-validated ridge R² on planted signal and on noise."""

import numpy as np
import pytest
import scipy.stats
import torch

from faceattr.errors import ConfigError
from faceattr.explain import sparsity
from faceattr.explain.sparsity import (SPARSITY_MEASURES, LayerStatistics, block_names, contextual,
                                       cross_validated_r2, depth_curve_summary, gini, gini_per_channel, hoyer,
                                       kurtosis, l0, l1, logistic, mean_activation, treves_rolls)

SCALE_FREE = ("gini", "l1", "kurtosis", "hoyer", "treves_rolls")


def one_hot(n: int) -> np.ndarray:
    """One image of ``n`` units, one of them active."""
    values = np.zeros((1, n))
    values[0, n // 3] = 2.5
    return values


def test_all_zero_images_are_defined_and_never_nan():
    zeros = np.zeros((3, 4, 5, 5))
    for name in SCALE_FREE + ("gini_per_channel", "mean_activation"):
        np.testing.assert_array_equal(SPARSITY_MEASURES[name](zeros), np.zeros(3), err_msg=name)
    np.testing.assert_array_equal(l0(zeros), np.ones(3))  # every unit is silent


@pytest.mark.parametrize("n", [2, 4, 100])
def test_one_active_unit_is_maximally_sparse(n):
    values = one_hot(n)
    assert gini(values) == pytest.approx([1 - 1 / n])
    assert hoyer(values) == pytest.approx([1.0])
    assert treves_rolls(values) == pytest.approx([1 - 1 / n])
    assert l1(values) == pytest.approx([1 - 1 / n])
    assert l0(values) == pytest.approx([(n - 1) / n])
    assert mean_activation(values) == pytest.approx([2.5 / n])
    assert kurtosis(values) == pytest.approx(scipy.stats.kurtosis(values, axis=1))


def test_equal_units_are_not_sparse_at_any_scale():
    values = np.full((2, 3, 4, 4), 0.7)
    for name in SCALE_FREE + ("l0", "gini_per_channel"):
        np.testing.assert_array_equal(SPARSITY_MEASURES[name](values), np.zeros(2), err_msg=name)
    assert mean_activation(values) == pytest.approx([0.7, 0.7])


def test_hand_example_with_exact_values():
    # a = (0, 1, 2, 3): L1 = 6, L2 = sqrt(14), mean 1.5, mean square 3.5, central moments 1.25 and 2.5625.
    values = np.array([[0.0, 1.0, 2.0, 3.0]])
    assert gini(values) == pytest.approx([5 / 12])  # 1 - 2 * (0*3.5 + 1*2.5 + 2*1.5 + 3*0.5) / (6 * 4)
    assert l0(values) == pytest.approx([0.25])
    assert l0(values, epsilon=1.0) == pytest.approx([0.5])
    assert l1(values) == pytest.approx([0.5])  # 1 - 1.5 / 3
    assert kurtosis(values) == pytest.approx([2.5625 / 1.25**2 - 3])  # -1.36
    assert hoyer(values) == pytest.approx([(2 - 6 / np.sqrt(14)) / (2 - 1)])
    assert treves_rolls(values) == pytest.approx([5 / 14])  # 1 - 1.5**2 / 3.5
    assert mean_activation(values) == pytest.approx([1.5])


def test_measures_agree_with_references_on_random_batches_and_accept_torch():
    rng = np.random.default_rng(3)
    batch = np.maximum(rng.normal(size=(5, 6, 7, 7)), 0)  # post-ReLU: about half the units are zero
    np.testing.assert_allclose(kurtosis(batch), scipy.stats.kurtosis(batch.reshape(5, -1), axis=1))
    flat = batch.reshape(5, -1)
    np.testing.assert_allclose(l0(batch), (flat == 0).mean(axis=1))
    # Gini by its pairwise form: sum |a_i - a_j| / (2 n^2 mean) equals Hurley & Rickard's for these sums.
    pairwise = np.abs(flat[:, :, None] - flat[:, None, :]).sum(axis=(1, 2)) / (2 * flat.shape[1] ** 2 * flat.mean(1))
    np.testing.assert_allclose(gini(batch), pairwise)
    per_channel = np.mean([[gini(batch[i, c][None]) for c in range(6)] for i in range(5)], axis=1).ravel()
    np.testing.assert_allclose(gini_per_channel(batch), per_channel)
    tensor = torch.from_numpy(batch).float().requires_grad_()
    for name, measure in SPARSITY_MEASURES.items():
        result = measure(tensor)
        assert result.shape == (5,) and result.dtype == np.float64, name
        np.testing.assert_allclose(result, measure(batch), rtol=1e-5, atol=1e-6, err_msg=name)


def test_every_sparsity_measure_grows_as_activity_concentrates():
    n = 64
    # Rows from dense to sparse as the exponent grows (from 1: kurtosis, unlike the others, is not monotone
    # for concave profiles, where a light tail lowers it below the uniform's -1.2).
    spread = np.linspace(1.0, 0.0, n)
    batch = np.stack([spread**power for power in (1.0, 2.0, 8.0, 32.0)])
    for name in SCALE_FREE + ("l0",):
        assert np.all(np.diff(SPARSITY_MEASURES[name](batch)) >= 0), name
    assert np.all(np.diff(mean_activation(batch)) < 0)  # the control falls as sparsity rises


def test_scale_free_measures_ignore_scale():
    batch = np.maximum(np.random.default_rng(0).normal(size=(4, 50)), 0)
    for name in SCALE_FREE:
        np.testing.assert_allclose(SPARSITY_MEASURES[name](batch * 7.5), SPARSITY_MEASURES[name](batch), err_msg=name)


def test_bad_activations_are_refused_with_their_shape():
    with pytest.raises(ConfigError, match=r"\(5,\)"):
        gini(np.ones(5))
    with pytest.raises(ConfigError, match="spatial"):
        gini_per_channel(np.ones((2, 5)))
    with pytest.raises(ConfigError, match="NaN"):
        hoyer(np.array([[1.0, np.nan]]))
    with pytest.raises(ConfigError, match="-0.1"):
        l0(np.ones((1, 3)), epsilon=-0.1)


def planted(steepness: float, inflexion: float, layers: int = 16, base: float = 0.3, amplitude: float = 0.4):
    return logistic(np.linspace(0, 1, layers), base, amplitude, steepness, inflexion)


def test_depth_curve_summary_recovers_planted_logistic_curves():
    truths = [(12.0, 0.6, 0.4), (25.0, 0.3, 0.4), (8.0, 0.5, -0.2)]  # steepness, inflexion, amplitude
    rng = np.random.default_rng(1)
    curves = np.stack([planted(k, x0, amplitude=a) + rng.normal(scale=0.002, size=16) for k, x0, a in truths])
    summary = depth_curve_summary(curves)
    assert not summary["logistic_failed"].any()
    for row, (steepness, inflexion, amplitude) in enumerate(truths):
        assert summary["logistic_inflexion"][row] == pytest.approx(inflexion, abs=0.03)
        assert summary["logistic_steepness"][row] == pytest.approx(steepness, rel=0.15)
        assert summary["logistic_slope"][row] == pytest.approx(amplitude * steepness / 4, rel=0.15)
    np.testing.assert_allclose(summary["range"], np.ptp(curves, axis=1))
    assert list(np.sign(summary["linear_slope"])) == [1, 1, -1]


def test_depth_curve_summary_line_parabola_and_fallbacks():
    depth = np.linspace(0, 1, 6)
    curves = np.stack([2 + 3 * depth, 1 + 0.5 * depth**2, np.full(6, 0.4)])
    summary = depth_curve_summary(curves)
    assert summary["linear_slope"] == pytest.approx([3.0, 0.5, 0.0], abs=1e-9)
    assert summary["acceleration"] == pytest.approx([0.0, 1.0, 0.0], abs=1e-9)  # second derivative of 0.5 x^2
    assert summary["range"] == pytest.approx([3.0, 0.5, 0.0])
    # A flat curve has no inflexion: NaN and counted, never an exception.
    assert list(summary["logistic_failed"]) == [False, False, True]
    assert np.isnan(summary["logistic_inflexion"][2]) and np.isnan(summary["logistic_slope"][2])
    short = depth_curve_summary(np.array([[0.1, 0.5, 0.2], [0.0, np.nan, 1.0]]))
    assert short["logistic_failed"].sum() == 2  # three layers are fewer than the logistic's four parameters
    assert np.isnan(short["linear_slope"][1]) and short["acceleration"][0] == pytest.approx(2 * -1.4, abs=1e-9)
    assert set(short) == {"linear_slope", "range", "acceleration", "logistic_slope", "logistic_steepness",
                          "logistic_inflexion", "logistic_failed"}
    with pytest.raises(ConfigError, match=r"\(4, 1\)"):
        depth_curve_summary(np.ones((4, 1)))


def test_contextual_gives_population_z_scores_per_column():
    values = np.array([[1.0, 5.0, 2.0], [2.0, 5.0, np.nan], [3.0, 5.0, 4.0]])
    scores = contextual(values)
    np.testing.assert_allclose(scores[:, 0], [-np.sqrt(1.5), 0.0, np.sqrt(1.5)])
    np.testing.assert_array_equal(scores[:, 1], [0.0, 0.0, 0.0])  # a constant column: nobody stands out
    np.testing.assert_allclose(scores[[0, 2], 2], [-1.0, 1.0])
    assert np.isnan(scores[1, 2])
    np.testing.assert_allclose(contextual(np.array([1.0, 3.0])), [-1.0, 1.0])


def planted_regression(count: int, r2: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Features and ratings whose population R² (for the best linear predictor) is ``r2``."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(count, 6))
    signal = features @ rng.normal(size=6)
    noise = rng.normal(size=count) * signal.std() * np.sqrt((1 - r2) / r2) if r2 > 0 else rng.normal(size=count)
    return features, (signal if r2 > 0 else 0) + noise


def test_cross_validated_r2_recovers_a_planted_linear_signal():
    features, ratings = planted_regression(800, 0.5, seed=0)
    mean, spread = cross_validated_r2(features, ratings, repeats=3)
    assert mean == pytest.approx(0.5, abs=0.05)
    assert 0 < spread < 0.02  # repeats differ only in their splits


def test_cross_validated_r2_finds_nothing_in_noise_and_is_not_positive_biased():
    means = [cross_validated_r2(*planted_regression(400, 0.0, seed=seed), repeats=2, seed=seed)[0]
             for seed in range(5)]
    assert all(abs(mean) < 0.05 for mean in means)
    assert np.mean(means) <= 0.005  # out-of-fold R² on noise sits at or below 0, not above


def test_cross_validated_r2_is_reproducible_by_seed():
    features, ratings = planted_regression(120, 0.3, seed=4)
    first = cross_validated_r2(features, ratings, folds=5, repeats=2, seed=7)
    assert cross_validated_r2(torch.from_numpy(features), ratings, folds=5, repeats=2, seed=7) == first
    assert cross_validated_r2(features, ratings, folds=5, repeats=2, seed=8) != first
    # One feature as a 1-D array is one column.
    assert cross_validated_r2(features[:, 0], ratings, folds=5, repeats=1) == \
        cross_validated_r2(features[:, :1], ratings, folds=5, repeats=1)


def test_cross_validated_r2_refuses_bad_arguments():
    features, ratings = planted_regression(30, 0.5, seed=0)
    with pytest.raises(ConfigError, match="same N"):
        cross_validated_r2(features, ratings[:-1])
    with pytest.raises(ConfigError, match="folds .* got 31"):
        cross_validated_r2(features, ratings, folds=31)
    with pytest.raises(ConfigError, match="repeats"):
        cross_validated_r2(features, ratings, repeats=0)
    with pytest.raises(ConfigError, match="alphas"):
        cross_validated_r2(features, ratings, alphas=[0.0, 1.0])
    with pytest.raises(ConfigError, match="finite"):
        cross_validated_r2(np.where(features > 2, np.nan, features), ratings)
    assert len(sparsity.RIDGE_ALPHAS) > 5


@pytest.fixture(scope="module")
def tiny_net():
    from faceattr.models.net import FaceAttrNet

    torch.manual_seed(0)
    return FaceAttrNet("resnet10t")


def test_block_names_are_the_backbone_blocks_in_depth_order(tiny_net):
    assert block_names(tiny_net) == ["backbone.act1", "backbone.layer1.0", "backbone.layer2.0", "backbone.layer3.0",
                                     "backbone.layer4.0"]
    assert block_names(tiny_net.backbone)[0] == "act1"
    with pytest.raises(ConfigError, match="feature_info"):
        block_names(torch.nn.Sequential(torch.nn.ReLU()))


def test_layer_statistics_streamed_equal_the_one_shot_computation(tiny_net):
    images = torch.randint(0, 256, (5, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    layers = block_names(tiny_net) + ["backbone.global_pool"]  # pooled (N, 512): no spatial positions
    # One shot: hold every activation of the whole batch, then measure.
    held = {}
    handles = [tiny_net.get_submodule(name).register_forward_hook(
        lambda module, inputs, output, name=name: held.__setitem__(name, output.detach())) for name in layers]
    with torch.no_grad():
        tiny_net.eval()(images)
    for handle in handles:
        handle.remove()

    tiny_net.train()  # update() measures in eval mode and gives the mode back
    with LayerStatistics(tiny_net, layers=layers) as statistics:
        statistics.update(images[:2])
        statistics.update(images[2:])
        streamed = statistics.values()
    assert tiny_net.training
    assert all(not tiny_net.get_submodule(name)._forward_hooks for name in layers)  # hooks released
    assert set(streamed) == set(SPARSITY_MEASURES)
    for name, measure in SPARSITY_MEASURES.items():
        assert streamed[name].shape == (5, len(layers)), name
        for column, layer in enumerate(layers):
            if name == "gini_per_channel" and layer.endswith("global_pool"):
                assert np.isnan(streamed[name][:, column]).all()
                continue
            np.testing.assert_allclose(streamed[name][:, column], measure(held[layer]), rtol=1e-4, atol=1e-6,
                                       err_msg=f"{name} at {layer}")
    # Post-ReLU blocks: silent units exist, and the values feed the depth summary directly.
    assert (streamed["l0"][:, :-1] > 0).all()
    assert depth_curve_summary(streamed["hoyer"])["range"].shape == (5,)
    with pytest.raises(ConfigError, match="closed"):
        statistics.update(images)


def test_layer_statistics_refuses_unknown_names(tiny_net):
    with pytest.raises(ConfigError, match="'backbone.layer9'"):
        LayerStatistics(tiny_net, layers=["backbone.layer9"])
    with pytest.raises(ConfigError, match="entropy"):
        LayerStatistics(tiny_net, measures=["entropy"])
    with LayerStatistics(tiny_net, measures=["l0"]) as statistics:
        assert statistics.values()["l0"].shape == (0, 5)


def test_logistic_fit_keeps_its_grid_start_when_curve_fit_fails(monkeypatch):
    curve = planted(15.0, 0.4)[None]
    refined = depth_curve_summary(curve)

    def failing(*args, **kwargs):
        raise RuntimeError("Optimal parameters not found: The maximum number of function evaluations is exceeded.")

    monkeypatch.setattr(sparsity, "curve_fit", failing)
    fallback = depth_curve_summary(curve)
    assert not fallback["logistic_failed"].any()
    assert fallback["logistic_inflexion"][0] == pytest.approx(refined["logistic_inflexion"][0], abs=0.01)
    assert fallback["logistic_steepness"][0] == pytest.approx(15.0, rel=0.1)  # the grid's nearest point


def test_depth_curve_summary_never_raises_on_rough_curves():
    rng = np.random.default_rng(5)
    curves = np.concatenate([rng.random((30, 8)), rng.integers(0, 2, (10, 8)).astype(float)])  # noise and steps
    summary = depth_curve_summary(curves)
    fitted = ~summary["logistic_failed"]
    assert np.isfinite(summary["logistic_inflexion"][fitted]).all()
    assert ((summary["logistic_inflexion"][fitted] >= 0) & (summary["logistic_inflexion"][fitted] <= 1)).all()
    assert (summary["logistic_steepness"][fitted] <= 100).all()
    np.testing.assert_array_equal(summary["logistic_failed"], np.ptp(curves, axis=1) == 0)
