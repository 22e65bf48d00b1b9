"""Masked multi-task losses: 40 attribute logits and a beauty score in one back-propagable total.

A batch mixes datasets that label different things (CelebA: attributes, SCUT-FBP5500:
beauty), so every term is masked: an unknown label contributes nothing, and a batch that
has none of a task's labels gives a zero loss that still back-propagates (never NaN).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from faceattr.attributes import BEAUTY_RANGE, NUM_ATTRIBUTES
from faceattr.config import (
    ATTRIBUTE_LOSSES,
    BEAUTY_HEAD_KINDS,
    BEAUTY_LOSSES,
    LossConfig,
)

logger = logging.getLogger(__name__)

#: Keeps every attribute's weight within a factor 5 of the mean, so no attribute is ever
#: ignored and none dominates, whatever the validation scores.
WEIGHT_RANGE = (0.2, 5.0)
#: Added to the balanced-accuracy error so a perfect attribute keeps a small weight.
ERROR_FLOOR = 0.05
SMOOTH_L1_BETA = 0.5
#: The beauty ranking term's logistic scale: a predicted gap of 0.25 points in the raters'
#: order costs log(1 + e^-1), as much as a logit of 1 in RankNet (Burges et al. 2005).
RANKING_SCALE = 4.0


def score_to_distribution(score: Tensor, bins: int, sigma: float = 0.5) -> Tensor:
    """A discretised Gaussian around each score over the bin centres ``linspace(1, 5, bins)``.

    SCUT-FBP5500's per-rater histograms are not available, so the EMD target is built from
    the mean score alone.

    Args:
        score: ``(B,)`` scores on the 1-5 scale.
        bins: Number of bins.
        sigma: Standard deviation of the Gaussian, in score units.

    Returns:
        ``(B, bins)`` float32 distributions, each summing to 1.

    >>> d = score_to_distribution(torch.tensor([3.0]), bins=5)
    >>> int(d.argmax()), round(float(d.sum()), 6)
    (2, 1.0)
    """
    centres = torch.linspace(*BEAUTY_RANGE, bins, device=score.device, dtype=torch.float32)
    distance = (centres - score.float().unsqueeze(-1)) / sigma
    return torch.softmax(-0.5 * distance.square(), dim=-1)


class MultiTaskLoss(torch.nn.Module):
    """Masked attribute loss + ``beauty_weight`` x masked beauty loss.

    The attribute loss is a mean over the known (sample, attribute) pairs of the per-pair
    loss times two weights: a class weight chosen by the (unsmoothed) label, and the
    adaptive weight of the attribute. Class weights by ``config.attributes``:

    - ``bce``, ``ohem``: 1.
    - ``weighted_bce``: ``0.5 / p`` for positives and ``0.5 / (1 - p)`` for negatives, where
      ``p`` is the attribute's positive rate; both classes then count equally, as in
      balanced accuracy.
    - ``focal``: alpha (``auto``: ``1 - p`` for positives, ``p`` for negatives; a number
      ``a``: ``a`` and ``1 - a``; ``None``: 1), and the per-pair loss is
      ``BCE * (1 - p_t) ** gamma`` (Lin et al. 2017).

    ``ohem`` keeps the ``ohem_ratio`` share of known pairs with the largest weighted loss.

    With ``config.beauty_ranking`` > 0 the beauty loss gains a RankNet term (Burges et al. 2005)
    over every pair of rated faces in the batch whose scores differ:
    ``beauty_ranking x mean softplus(-RANKING_SCALE x (s_i - s_j) x sign(t_i - t_j))``, which the
    regression alone does not ask for: scores that order faces as the raters did (what Pearson
    measures), beside scores close to theirs (what MAE measures).

    Adaptive attribute weights (buffer ``attribute_weights``, starting at 1, saved in the
    state dict) follow this rule after each validation, when ``config.adaptive_weights``:

    1. ``target_a = (1 - bacc_a + 0.05) ** adaptive_power``, normalised to mean 1 over the
       attributes that have a balanced accuracy (NaN means no validation labels);
    2. ``new_a = momentum * old_a + (1 - momentum) * target_a`` for those attributes; an
       attribute with NaN keeps its old weight exactly;
    3. the updated weights are scaled so that all 40 weights have mean 1, then clipped to
       [0.2, 5].

    Args:
        config: Which losses and their parameters.
        positive_rate: ``(40,)`` positive rates of the training labels (see
            :attr:`faceattr.data.loader.DataBundle.positive_rate`), used by ``weighted_bce``
            and ``focal`` with ``auto`` alpha.
        beauty_head: ``regression`` or ``distribution``; ``emd`` needs ``distribution``.
        beauty_bins: Number of bins of the distribution head.

    Raises:
        ValueError: On an unknown loss or head name, ``emd`` without the distribution head,
            or a parameter out of range; the message names the parameter (a config file gets
            the same checks, naming its key, from :func:`faceattr.config.validate`).

    >>> loss = MultiTaskLoss(LossConfig(attributes="bce", beauty="mse"), np.full(40, 0.5))
    >>> batch = {"attributes": torch.ones(2, 40), "attribute_mask": torch.ones(2, 40, dtype=torch.bool),
    ...          "beauty": torch.tensor([3.0, 0.0]), "beauty_mask": torch.tensor([True, False])}
    >>> out = loss({"attributes": torch.zeros(2, 40), "beauty": torch.tensor([4.0, 1.0])}, batch)
    >>> round(float(out["attributes"]), 4), float(out["beauty"])
    (0.6931, 1.0)
    """

    attribute_weights: Tensor
    positive_weight: Tensor
    negative_weight: Tensor

    def __init__(self, config: LossConfig, positive_rate: np.ndarray | Tensor,
                 beauty_head: str = "regression", beauty_bins: int = 9) -> None:
        super().__init__()
        _check_settings(config, beauty_head, beauty_bins)
        self.config = config
        self.beauty_head = beauty_head
        self.beauty_bins = beauty_bins
        rate = torch.as_tensor(positive_rate, dtype=torch.float32).detach().cpu().clamp(0.01, 0.99)
        if rate.shape != (NUM_ATTRIBUTES,):
            raise ValueError(f"positive_rate: expected shape ({NUM_ATTRIBUTES},), got {tuple(rate.shape)}")
        positive, negative = _class_weights(config, rate)
        # Derived from the training labels at construction, so not part of the state dict.
        self.register_buffer("positive_weight", positive, persistent=False)
        self.register_buffer("negative_weight", negative, persistent=False)
        self.register_buffer("attribute_weights", torch.ones(NUM_ATTRIBUTES))

    def forward(self, outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Computes the total loss and its detached parts.

        Args:
            outputs: Model outputs: ``attributes`` ``(B, 40)`` logits, ``beauty`` ``(B,)``
                scores and, for the distribution head, ``beauty_logits`` ``(B, bins)``.
            batch: ``attributes`` ``(B, 40)``, ``attribute_mask`` ``(B, 40)``, ``beauty``
                ``(B,)`` and ``beauty_mask`` ``(B,)``.

        Returns:
            ``{"loss": total, "attributes": ..., "beauty": ...}``; only ``loss`` carries a graph.
        """
        # Losses in float32 whatever the autocast dtype of the model: half-precision logs
        # and squares lose the small differences the gradients are made of.
        with torch.autocast(device_type=outputs["attributes"].device.type, enabled=False):
            attribute_loss = self._attribute_loss(outputs["attributes"], batch)
            beauty_loss = self._beauty_loss(outputs, batch)
            total = attribute_loss + self.config.beauty_weight * beauty_loss
        return {"loss": total, "attributes": attribute_loss.detach(), "beauty": beauty_loss.detach()}

    def _attribute_loss(self, logits: Tensor, batch: dict[str, Tensor]) -> Tensor:
        logits = logits.float()
        labels = batch["attributes"].to(logits.device, torch.float32)
        mask = batch["attribute_mask"].to(logits.device, torch.bool)
        if logits.shape != labels.shape or labels.shape != mask.shape:
            raise ValueError(f"attribute logits {tuple(logits.shape)}, labels {tuple(labels.shape)} "
                             f"and mask {tuple(mask.shape)} must have the same shape")
        smoothing = self.config.label_smoothing
        targets = labels * (1.0 - smoothing) + 0.5 * smoothing
        per_pair = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        if self.config.attributes == "focal":
            probability = torch.sigmoid(logits)
            p_true = probability * targets + (1.0 - probability) * (1.0 - targets)
            # The floor keeps the gradient of pow finite for gamma < 1 on saturated logits.
            per_pair = per_pair * (1.0 - p_true).clamp(min=1e-12).pow(self.config.focal_gamma)
        class_weight = torch.where(labels > 0.5, self.positive_weight, self.negative_weight)
        per_pair = per_pair * class_weight * self.attribute_weights
        known = mask.sum()
        if self.config.attributes == "ohem":
            return self._hardest_mean(per_pair, mask, known)
        # torch.where, not indexing: the result stays connected to the graph (a zero that
        # back-propagates when nothing is known) and needs no host sync.
        return torch.where(mask, per_pair, 0.0).sum() / known.clamp(min=1)

    def _hardest_mean(self, per_pair: Tensor, mask: Tensor, known: Tensor) -> Tensor:
        """Mean of the ``ohem_ratio`` largest known terms, without a host sync on ``known``."""
        ordered = torch.where(mask, per_pair, -math.inf).flatten().sort(descending=True).values
        keep = torch.ceil(known * self.config.ohem_ratio)
        rank = torch.arange(ordered.numel(), device=ordered.device)
        return torch.where(rank < keep, ordered, 0.0).sum() / keep.clamp(min=1)

    def _beauty_loss(self, outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> Tensor:
        predicted = outputs["beauty"].float()
        target = batch["beauty"].to(predicted.device, torch.float32)
        mask = batch["beauty_mask"].to(predicted.device, torch.bool)
        if self.config.beauty == "emd":
            logits = outputs["beauty_logits"].float()
            per_sample = _emd(torch.softmax(logits, dim=-1), score_to_distribution(target, logits.shape[-1]))
        elif self.config.beauty == "mse":
            per_sample = F.mse_loss(predicted, target, reduction="none")
        elif self.config.beauty == "l1":
            per_sample = F.l1_loss(predicted, target, reduction="none")
        else:
            per_sample = F.smooth_l1_loss(predicted, target, reduction="none", beta=SMOOTH_L1_BETA)
        loss = torch.where(mask, per_sample, 0.0).sum() / mask.sum().clamp(min=1)
        if self.config.beauty_ranking:
            loss = loss + self.config.beauty_ranking * _ranking_loss(predicted, target, mask)
        return loss

    @torch.no_grad()
    def update_attribute_weights(self, balanced_accuracy: np.ndarray | Tensor) -> Tensor:
        """Moves the attribute weights towards the attributes that validate worst.

        Applies the rule in the class docstring; a no-op unless ``config.adaptive_weights``.

        Args:
            balanced_accuracy: ``(40,)`` validation balanced accuracy per attribute, NaN
                where an attribute had no validation labels.

        Returns:
            A copy of the new ``(40,)`` weights.

        >>> loss = MultiTaskLoss(LossConfig(adaptive_momentum=0.0), np.full(40, 0.5))
        >>> bacc = np.full(40, 0.95); bacc[0] = 0.65
        >>> w = loss.update_attribute_weights(bacc)
        >>> round(float(w[0] / w[1]), 3), round(float(w.mean()), 3)
        (4.0, 1.0)
        """
        weights = self.attribute_weights
        if not self.config.adaptive_weights:
            return weights.clone()
        bacc = torch.as_tensor(balanced_accuracy, dtype=torch.float32, device=weights.device)
        if bacc.shape != (NUM_ATTRIBUTES,):
            raise ValueError(f"balanced_accuracy: expected shape ({NUM_ATTRIBUTES},), got {tuple(bacc.shape)}")
        known = ~torch.isnan(bacc)
        if ((bacc[known] < 0) | (bacc[known] > 1)).any():
            raise ValueError(f"balanced_accuracy: values must lie in [0, 1], got {bacc[known].tolist()}")
        if not known.any():
            logger.warning("no attribute has a validation balanced accuracy; weights unchanged")
            return weights.clone()
        target = (1.0 - bacc[known] + ERROR_FLOOR).pow(self.config.adaptive_power)
        target = target / target.mean()
        momentum = self.config.adaptive_momentum
        blended = momentum * weights[known] + (1.0 - momentum) * target
        # The fixed (NaN) attributes keep their weight; the others share the rest of a
        # total of 40, never less than their floor.
        free_total = (NUM_ATTRIBUTES - weights[~known].sum()).clamp(min=WEIGHT_RANGE[0] * known.sum())
        updated = weights.clone()
        updated[known] = blended * free_total / blended.sum()
        weights.copy_(updated.clamp(*WEIGHT_RANGE))
        logger.info("attribute weights updated: min %.3f, max %.3f", float(weights.min()), float(weights.max()))
        return weights.clone()


def _check_settings(config: LossConfig, beauty_head: str, beauty_bins: int) -> None:
    """Raises ValueError naming the first setting the loss cannot work with."""
    names = {"attributes": (config.attributes, ATTRIBUTE_LOSSES), "beauty": (config.beauty, BEAUTY_LOSSES),
             "beauty_head": (beauty_head, BEAUTY_HEAD_KINDS)}
    for name, (value, allowed) in names.items():
        if value not in allowed:
            raise ValueError(f"{name}: {value!r} is not one of {', '.join(allowed)}")
    if config.beauty == "emd" and beauty_head != "distribution":
        raise ValueError("beauty: 'emd' needs the distribution beauty head")
    alpha = config.focal_alpha
    if isinstance(alpha, str) and alpha != "auto":
        raise ValueError(f"focal_alpha: {alpha!r} is not 'auto', a number or None")
    bounds = {"ohem_ratio": (config.ohem_ratio, 0 < config.ohem_ratio <= 1, "in (0, 1]"),
              "focal_alpha": (alpha, not isinstance(alpha, (int, float)) or 0 <= alpha <= 1, "in [0, 1]"),
              "focal_gamma": (config.focal_gamma, config.focal_gamma >= 0, ">= 0"),
              "label_smoothing": (config.label_smoothing, 0 <= config.label_smoothing < 1, "in [0, 1)"),
              "beauty_weight": (config.beauty_weight, config.beauty_weight >= 0, ">= 0"),
              "beauty_ranking": (config.beauty_ranking, config.beauty_ranking >= 0, ">= 0"),
              "adaptive_power": (config.adaptive_power, config.adaptive_power >= 0, ">= 0"),
              "adaptive_momentum": (config.adaptive_momentum, 0 <= config.adaptive_momentum < 1, "in [0, 1)"),
              "beauty_bins": (beauty_bins, beauty_head != "distribution" or beauty_bins >= 2, ">= 2")}
    for name, (value, within, allowed) in bounds.items():
        if not within:
            raise ValueError(f"{name}: must be {allowed}, got {value}")


def _ranking_loss(predicted: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean RankNet loss over the pairs of rated samples with different targets (0 with a graph if none)."""
    # Each pair once, (i, j) with t_i > t_j: ties carry no order.
    pairs = mask.unsqueeze(1) & mask.unsqueeze(0) & (target.unsqueeze(1) > target.unsqueeze(0))
    gap = predicted.unsqueeze(1) - predicted.unsqueeze(0)
    per_pair = F.softplus(-RANKING_SCALE * gap)
    return torch.where(pairs, per_pair, 0.0).sum() / pairs.sum().clamp(min=1)


def _emd(predicted: Tensor, target: Tensor) -> Tensor:
    """Per-sample NIMA earth mover's distance (r = 2) between ``(B, bins)`` distributions."""
    gap = torch.cumsum(predicted, dim=-1) - torch.cumsum(target, dim=-1)
    # The small epsilon keeps the gradient of sqrt finite when the two distributions match.
    return (gap.square().mean(dim=-1) + 1e-12).sqrt()


def _class_weights(config: LossConfig, rate: Tensor) -> tuple[Tensor, Tensor]:
    """Per-attribute (positive, negative) class weights for ``config.attributes``."""
    ones = torch.ones_like(rate)
    if config.attributes == "weighted_bce":
        return 0.5 / rate, 0.5 / (1.0 - rate)
    if config.attributes != "focal" or config.focal_alpha is None:
        return ones, ones
    if config.focal_alpha == "auto":
        return 1.0 - rate, rate.clone()
    alpha = float(config.focal_alpha)
    return ones * alpha, ones * (1.0 - alpha)
