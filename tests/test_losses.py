"""Tests of faceattr.training.losses: each loss against an independent formula, masking, zero batches, weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import sigmoid_focal_loss

from faceattr.config import LossConfig
from faceattr.training.losses import MultiTaskLoss, score_to_distribution

B, A = 6, 40


def make_batch(seed: int = 0, attribute_known: float = 0.7, beauty_known: int = 3) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    beauty_mask = torch.zeros(B, dtype=torch.bool)
    beauty_mask[:beauty_known] = True
    beauty = torch.where(beauty_mask, 1 + 4 * torch.rand(B, generator=generator), 0.0)
    return {"image": torch.zeros(B, 3, 8, 8),
            "attributes": (torch.rand(B, A, generator=generator) < 0.3).float(),
            "attribute_mask": torch.rand(B, A, generator=generator) < attribute_known,
            "beauty": beauty, "beauty_mask": beauty_mask}


def make_outputs(seed: int = 1, bins: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    outputs = {"attributes": (2 * torch.randn(B, A, generator=generator)).requires_grad_(),
               "beauty": (1 + 4 * torch.rand(B, generator=generator)).requires_grad_()}
    if bins:
        outputs["beauty_logits"] = torch.randn(B, bins, generator=generator).requires_grad_()
    return outputs


def make_loss(rate: np.ndarray | None = None, head: str = "regression", bins: int = 9, **config) -> MultiTaskLoss:
    config = {"attributes": "bce", "beauty": "mse", **config}
    return MultiTaskLoss(LossConfig(**config), np.full(A, 0.3) if rate is None else rate, head, bins)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> float:
    return float(values[mask].mean().detach())


RATE = np.linspace(0.05, 0.9, A)


def test_bce_is_mean_over_known_pairs():
    batch, outputs = make_batch(), make_outputs()
    result = make_loss()(outputs, batch)
    per_pair = F.binary_cross_entropy_with_logits(outputs["attributes"], batch["attributes"], reduction="none")
    assert float(result["attributes"]) == pytest.approx(masked_mean(per_pair, batch["attribute_mask"]), rel=1e-5)


def test_unknown_labels_do_not_change_the_loss():
    batch, outputs = make_batch(), make_outputs()
    loss = make_loss(RATE, attributes="weighted_bce")
    before = loss(outputs, batch)["attributes"]
    batch["attributes"] = torch.where(batch["attribute_mask"], batch["attributes"], 1 - batch["attributes"])
    assert float(loss(outputs, batch)["attributes"]) == pytest.approx(float(before), rel=1e-6)


def test_weighted_bce_uses_balanced_class_weights():
    batch, outputs = make_batch(), make_outputs()
    rate = torch.tensor(RATE, dtype=torch.float32)
    weight = torch.where(batch["attributes"] > 0, 0.5 / rate, 0.5 / (1 - rate))
    per_pair = F.binary_cross_entropy_with_logits(outputs["attributes"], batch["attributes"],
                                                  weight=weight, reduction="none")
    result = make_loss(RATE, attributes="weighted_bce")(outputs, batch)
    assert float(result["attributes"]) == pytest.approx(masked_mean(per_pair, batch["attribute_mask"]), rel=1e-5)


@pytest.mark.parametrize("alpha", [0.25, None])
def test_focal_matches_torchvision(alpha):
    batch, outputs = make_batch(), make_outputs()
    expected = sigmoid_focal_loss(outputs["attributes"], batch["attributes"], alpha=-1 if alpha is None else alpha,
                                  gamma=1.5, reduction="none")
    result = make_loss(attributes="focal", focal_gamma=1.5, focal_alpha=alpha)(outputs, batch)
    assert float(result["attributes"]) == pytest.approx(masked_mean(expected, batch["attribute_mask"]), rel=1e-5)


def test_focal_auto_alpha_weights_each_attribute_by_its_rate():
    batch, outputs = make_batch(), make_outputs()
    rate = torch.tensor(RATE, dtype=torch.float32)
    alpha = torch.where(batch["attributes"] > 0, 1 - rate, rate)
    expected = sigmoid_focal_loss(outputs["attributes"], batch["attributes"], alpha=-1, gamma=2.0,
                                  reduction="none") * alpha
    result = make_loss(RATE, attributes="focal", focal_alpha="auto")(outputs, batch)
    assert float(result["attributes"]) == pytest.approx(masked_mean(expected, batch["attribute_mask"]), rel=1e-5)


def test_focal_down_weights_easy_examples_more_than_bce():
    labels = torch.ones(1, A)
    batch = {"attributes": labels, "attribute_mask": torch.ones(1, A, dtype=torch.bool),
             "beauty": torch.zeros(1), "beauty_mask": torch.zeros(1, dtype=torch.bool)}

    def ratio(name: str) -> float:
        loss = make_loss(attributes=name, focal_alpha=None)
        easy = loss({"attributes": torch.full((1, A), 4.0), "beauty": torch.zeros(1)}, batch)["attributes"]
        hard = loss({"attributes": torch.full((1, A), -1.0), "beauty": torch.zeros(1)}, batch)["attributes"]
        return float(easy / hard)

    assert ratio("focal") < 0.01 * ratio("bce")


def test_focal_gradient_is_finite_on_saturated_logits():
    batch = make_batch()
    outputs = {"attributes": torch.full((B, A), 40.0, requires_grad=True), "beauty": torch.zeros(B)}
    make_loss(attributes="focal", focal_gamma=0.5)(outputs, batch)["loss"].backward()
    assert torch.isfinite(outputs["attributes"].grad).all()


def test_ohem_keeps_the_hardest_share():
    batch, outputs = make_batch(), make_outputs()
    per_pair = F.binary_cross_entropy_with_logits(outputs["attributes"], batch["attributes"], reduction="none")
    known = per_pair[batch["attribute_mask"]]
    keep = int(np.ceil(0.3 * known.numel()))
    expected = known.sort(descending=True).values[:keep].mean().detach()
    result = make_loss(attributes="ohem", ohem_ratio=0.3)(outputs, batch)
    assert float(result["attributes"]) == pytest.approx(float(expected), rel=1e-5)


def test_label_smoothing_pulls_targets_to_half():
    batch, outputs = make_batch(), make_outputs()
    smoothed = batch["attributes"] * 0.8 + 0.1
    per_pair = F.binary_cross_entropy_with_logits(outputs["attributes"], smoothed, reduction="none")
    result = make_loss(label_smoothing=0.2)(outputs, batch)
    assert float(result["attributes"]) == pytest.approx(masked_mean(per_pair, batch["attribute_mask"]), rel=1e-5)


@pytest.mark.parametrize("name, function", [("mse", F.mse_loss), ("l1", F.l1_loss),
                                            ("smooth_l1", lambda p, t: F.smooth_l1_loss(p, t, beta=0.5))])
def test_beauty_regression_losses_over_known_samples(name, function):
    batch, outputs = make_batch(), make_outputs()
    mask = batch["beauty_mask"]
    expected = function(outputs["beauty"][mask], batch["beauty"][mask]).detach()
    assert float(make_loss(beauty=name)(outputs, batch)["beauty"]) == pytest.approx(float(expected), rel=1e-5)


def test_total_is_attributes_plus_weighted_beauty_and_parts_are_detached():
    result = make_loss(beauty_weight=2.5)(make_outputs(), make_batch())
    expected = float(result["attributes"] + 2.5 * result["beauty"])
    assert float(result["loss"].detach()) == pytest.approx(expected, rel=1e-6)
    assert result["loss"].requires_grad and not result["attributes"].requires_grad
    assert not result["beauty"].requires_grad


@pytest.mark.parametrize("attributes", ["bce", "weighted_bce", "focal", "ohem"])
@pytest.mark.parametrize("beauty, head", [("smooth_l1", "regression"), ("emd", "distribution")])
def test_batch_without_labels_gives_zero_loss_that_backpropagates(attributes, beauty, head):
    batch = make_batch(attribute_known=0.0, beauty_known=0)
    outputs = make_outputs(bins=9)
    result = make_loss(RATE, head, attributes=attributes, beauty=beauty)(outputs, batch)
    result["loss"].backward()
    assert float(result["loss"].detach()) == 0.0
    beauty_output = outputs["beauty_logits"] if beauty == "emd" else outputs["beauty"]
    gradients = [outputs["attributes"].grad, beauty_output.grad]
    assert all(g is not None and torch.all(g == 0) for g in gradients)


def test_gradient_reaches_only_known_pairs():
    batch, outputs = make_batch(), make_outputs()
    make_loss()(outputs, batch)["loss"].backward()
    grad = outputs["attributes"].grad
    assert torch.all(grad[~batch["attribute_mask"]] == 0) and torch.all(grad[batch["attribute_mask"]] != 0)


def test_score_to_distribution_is_normalised_and_centred():
    scores = torch.tensor([1.0, 2.7, 3.0, 5.0])
    distribution = score_to_distribution(scores, bins=9)
    centres = torch.linspace(1, 5, 9)
    assert torch.allclose(distribution.sum(-1), torch.ones(4))
    assert distribution.argmax(-1).tolist() == [0, 3, 4, 8]
    assert float((distribution[2] * centres).sum()) == pytest.approx(3.0, abs=1e-6)


def test_emd_matches_nima_formula_and_vanishes_on_the_target():
    batch, outputs = make_batch(), make_outputs(bins=5)
    mask = batch["beauty_mask"]
    loss = make_loss(head="distribution", bins=5, beauty="emd")
    target = score_to_distribution(batch["beauty"], 5)
    predicted = torch.softmax(outputs["beauty_logits"], -1)
    gap = predicted.cumsum(-1) - target.cumsum(-1)
    expected = gap.square().mean(-1).sqrt()[mask].mean().detach()
    assert float(loss(outputs, batch)["beauty"]) == pytest.approx(float(expected), rel=1e-4)
    outputs["beauty_logits"] = target.log()
    assert float(loss(outputs, batch)["beauty"]) < 1e-5


def test_emd_on_a_hand_computed_case():
    # Two bins (scores 1 and 5); a target of 5 is (0, 1) up to exp(-32). Sample 0 predicts (1, 0):
    # cumulative gap (1, 0), EMD sqrt((1 + 0) / 2). Sample 1 predicts (1/2, 1/2): gap (1/2, 0),
    # EMD sqrt(1/8). Sample 2 has no beauty label and counts for nothing.
    loss = MultiTaskLoss(LossConfig(attributes="bce", beauty="emd", beauty_weight=1.0), np.full(A, 0.5),
                         "distribution", 2)
    outputs = {"attributes": torch.zeros(3, A), "beauty": torch.zeros(3),
               "beauty_logits": torch.tensor([[50.0, -50.0], [0.0, 0.0], [-50.0, 50.0]])}
    batch = {"attributes": torch.zeros(3, A), "attribute_mask": torch.zeros(3, A, dtype=torch.bool),
             "beauty": torch.tensor([5.0, 5.0, 1.0]), "beauty_mask": torch.tensor([True, True, False])}
    expected = (0.5 ** 0.5 + 0.125 ** 0.5) / 2
    assert float(loss(outputs, batch)["beauty"]) == pytest.approx(expected, rel=1e-5)


def test_autocast_outputs_give_a_float32_loss_close_to_full_precision():
    batch, outputs = make_batch(), make_outputs()
    loss = make_loss(RATE, attributes="focal")
    reference = loss(outputs, batch)["loss"]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = {key: value.to(torch.bfloat16) for key, value in outputs.items()}
        result = loss(low, batch)["loss"]
    assert result.dtype == torch.float32
    assert float(result.detach()) == pytest.approx(float(reference.detach()), rel=2e-2)


@pytest.mark.parametrize("change, message", [({"attributes": "hinge"}, "attributes: 'hinge' is not one of bce"),
                                             ({"beauty": "huber"}, "beauty: 'huber' is not one of mse"),
                                             ({"beauty": "emd"}, "beauty: 'emd' needs the distribution"),
                                             ({"ohem_ratio": 0.0}, r"ohem_ratio: must be in \(0, 1\]"),
                                             ({"focal_alpha": 1.5}, "focal_alpha: must be in"),
                                             ({"focal_alpha": "half"}, "focal_alpha: 'half'"),
                                             ({"label_smoothing": 1.0}, "label_smoothing: must be in"),
                                             ({"adaptive_momentum": 1.0}, "adaptive_momentum: must be in")])
def test_bad_settings_raise_naming_the_setting(change, message):
    with pytest.raises(ValueError, match=message):
        make_loss(**change)


def test_an_unknown_head_or_too_few_bins_are_refused():
    with pytest.raises(ValueError, match="beauty_head: 'ordinal'"):
        make_loss(head="ordinal")
    with pytest.raises(ValueError, match="beauty_bins: must be >= 2, got 1"):
        make_loss(head="distribution", bins=1)


def test_attribute_weights_start_at_one_and_are_saved():
    state = make_loss().state_dict()
    assert list(state) == ["attribute_weights"] and torch.all(state["attribute_weights"] == 1)


def test_update_attribute_weights_follows_documented_rule():
    loss = make_loss(adaptive_power=2.0, adaptive_momentum=0.5)
    bacc = np.linspace(0.7, 0.99, A)
    target = (1 - bacc + 0.05) ** 2
    expected = 0.5 + 0.5 * target / target.mean()
    expected = np.clip(expected / expected.mean(), 0.2, 5)
    weights = loss.update_attribute_weights(bacc)
    assert np.allclose(weights.numpy(), expected, rtol=1e-5)
    assert torch.equal(loss.attribute_weights, weights)


def test_updated_weights_scale_the_attribute_loss():
    batch, outputs = make_batch(), make_outputs()
    loss = make_loss()
    bacc = np.full(A, 0.9)
    bacc[:20] = 0.6
    weights = loss.update_attribute_weights(bacc)
    per_pair = F.binary_cross_entropy_with_logits(outputs["attributes"], batch["attributes"], reduction="none")
    expected = masked_mean(per_pair * weights, batch["attribute_mask"])
    assert float(loss(outputs, batch)["attributes"]) == pytest.approx(expected, rel=1e-5)


def test_update_attribute_weights_keeps_nan_attributes_and_clips():
    loss = make_loss(adaptive_power=8.0, adaptive_momentum=0.0)
    bacc = np.full(A, 0.99)
    bacc[0] = 0.5
    bacc[1] = np.nan
    weights = loss.update_attribute_weights(bacc).numpy()
    assert weights[1] == 1.0
    assert weights[0] == 5.0 and weights[2] == pytest.approx(0.2)


def test_update_attribute_weights_is_a_no_op_when_disabled():
    loss = make_loss(adaptive_weights=False)
    weights = loss.update_attribute_weights(np.full(A, 0.5) - np.linspace(0, 0.4, A))
    assert torch.all(weights == 1) and torch.all(loss.attribute_weights == 1)



def test_beauty_ranking_adds_ranknet_over_the_rated_pairs():
    batch, outputs = make_batch(beauty_known=4), make_outputs()
    plain = make_loss()(outputs, batch)
    ranked = make_loss(beauty_ranking=0.5)(outputs, batch)
    target, predicted = batch["beauty"][:4], outputs["beauty"][:4].detach()
    pairs = [(i, j) for i in range(4) for j in range(4) if target[i] > target[j]]
    ranknet = np.mean([float(F.softplus(-4.0 * (predicted[i] - predicted[j]))) for i, j in pairs])
    assert len(pairs) == 6
    assert float(ranked["beauty"]) == pytest.approx(float(plain["beauty"]) + 0.5 * ranknet, rel=1e-5)


def test_beauty_ranking_prefers_the_raters_order_and_needs_two_rated_faces():
    batch = make_batch(beauty_known=3)
    order = batch["beauty"][:3].argsort()
    scores = torch.zeros(B)
    scores[order] = torch.tensor([2.0, 3.0, 4.0])  # the raters' order, at the wrong scale
    loss = make_loss(beauty_ranking=1.0, beauty_weight=1.0)
    right = loss({"attributes": torch.zeros(B, A), "beauty": scores}, batch)
    reversed_scores = torch.zeros(B)
    reversed_scores[order] = torch.tensor([4.0, 3.0, 2.0])
    wrong = loss({"attributes": torch.zeros(B, A), "beauty": reversed_scores}, batch)
    assert float(wrong["beauty"]) - float(right["beauty"]) > 2.0
    single = make_batch(beauty_known=1)
    outputs = make_outputs()
    total = loss(outputs, single)["loss"]
    plain = make_loss(beauty_weight=1.0)(outputs, single)["loss"]
    assert torch.isfinite(total) and float(total.detach()) == pytest.approx(float(plain.detach()))
    total.backward()
