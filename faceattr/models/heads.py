"""Task heads: pooled backbone features -> attribute logits and a beauty score."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from faceattr.attributes import BEAUTY_RANGE, NUM_ATTRIBUTES
from faceattr.config import BEAUTY_HEAD_KINDS


class AttributeHead(nn.Module):
    """One logit per attribute, from pooled features.

    Args:
        in_features: Size of the feature vector.
        num_attributes: Number of binary attributes.

    >>> AttributeHead(8)(torch.zeros(2, 8)).shape
    torch.Size([2, 40])
    """

    def __init__(self, in_features: int, num_attributes: int = NUM_ATTRIBUTES):
        super().__init__()
        self.fc = nn.Linear(in_features, num_attributes)

    def forward(self, features: Tensor) -> Tensor:
        """Maps ``(B, in_features)`` features to ``(B, num_attributes)`` logits."""
        return self.fc(features)


class BeautyHead(nn.Module):
    """A beauty score on the 1-5 scale, by regression or as the mean of a distribution over bins.

    ``regression`` predicts the score directly; its bias starts at the middle of the scale so
    early training is not spent on the offset. ``distribution`` predicts logits over ``bins``
    evenly spaced scores (the buffer ``centres``, from 1 to 5), and the score is their expectation,
    which always lies inside the scale.

    Args:
        in_features: Size of the feature vector.
        kind: ``regression`` or ``distribution``.
        bins: Number of bins of the ``distribution`` head (ignored for ``regression``).

    Raises:
        ValueError: ``kind`` is unknown or ``bins`` is below 2.

    >>> head = BeautyHead(8, kind="distribution", bins=5)
    >>> head.centres.tolist()
    [1.0, 2.0, 3.0, 4.0, 5.0]
    >>> sorted(head(torch.zeros(2, 8)))
    ['beauty', 'beauty_logits']
    """

    def __init__(self, in_features: int, kind: str = "regression", bins: int = 9):
        super().__init__()
        if kind not in BEAUTY_HEAD_KINDS:
            raise ValueError(f"unknown beauty head {kind!r}; valid kinds: {', '.join(BEAUTY_HEAD_KINDS)}")
        if kind == "distribution" and bins < 2:
            raise ValueError(f"a distribution beauty head needs at least 2 bins, got {bins}")
        self.kind = kind
        low, high = BEAUTY_RANGE
        if kind == "regression":
            self.fc = nn.Linear(in_features, 1)
            nn.init.constant_(self.fc.bias, (low + high) / 2)
        else:
            self.fc = nn.Linear(in_features, bins)
            # Derived from `bins`, so kept out of the state dict (checkpoints rebuild it).
            self.register_buffer("centres", torch.linspace(low, high, bins), persistent=False)

    def forward(self, features: Tensor) -> dict[str, Tensor]:
        """Maps ``(B, in_features)`` features to ``{"beauty": (B,)}``, plus
        ``"beauty_logits": (B, bins)`` for the distribution head."""
        if self.kind == "regression":
            return {"beauty": self.fc(features).squeeze(1)}
        logits = self.fc(features)
        score = logits.softmax(dim=1) @ self.centres
        return {"beauty": score, "beauty_logits": logits}
