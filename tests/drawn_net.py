"""A network with a known answer for the explanation tests: a tiny FaceAttrNet look-alike trained to
find a bright square drawn in the top-left quadrant of noise images, and the fixtures built on it."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from faceattr.attributes import ATTRIBUTE_INDEX, NUM_ATTRIBUTES
from faceattr.explain.sanity import rank_correlations

SIDE = 32
TOP_LEFT = (0, 0, SIDE // 2, SIDE // 2)
#: The attribute the drawn fixture's label is given to: any name would do; an upper-frame one
#: (faceattr.explain.sanity.ATTRIBUTE_REGIONS) so that the region test has a known answer.
LABEL = "Bangs"


class TinyNet(nn.Module):
    """FaceAttrNet's layout at toy size: a ``backbone`` whose last stage is ``layer4``, global average
    pooling, an attribute head and a beauty head, float images in; ``model_args`` rebuild it untrained."""

    def __init__(self) -> None:
        super().__init__()
        self.model_args: dict[str, object] = {}
        self.backbone = nn.Sequential(OrderedDict(
            layer1=nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)),
            layer4=nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.ReLU())))
        self.attribute_head = nn.Linear(32, NUM_ATTRIBUTES)
        self.beauty_head = nn.Linear(32, 1)

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        features = self.backbone(images).mean(dim=(2, 3))
        return {"attributes": self.attribute_head(features), "beauty": self.beauty_head(features)[:, 0]}


def draw(count: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Noise images; half of them (label 1) have a bright 5x5 square somewhere in the top-left quadrant."""
    images = torch.rand(count, 3, SIDE, SIDE, generator=generator) * 0.5
    labels = (torch.arange(count) % 2).float()
    corners = torch.randint(0, SIDE // 2 - 5 + 1, (count, 2), generator=generator)
    for image, label, (x, y) in zip(images, labels, corners.tolist()):
        if label:
            image[:, y:y + 5, x:x + 5] = 1.0
    return images, labels


def train_tiny(seed: int, steps: int = 150) -> TinyNet:
    """A TinyNet trained to predict LABEL from the drawn square."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = TinyNet()
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        images, labels = draw(32, generator)
        logits = model(images)["attributes"][:, ATTRIBUTE_INDEX[LABEL]]
        loss = nn.functional.binary_cross_entropy_with_logits(logits, labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return model.eval()


@pytest.fixture(scope="module")
def trained() -> tuple[TinyNet, TinyNet]:
    """Two TinyNets trained from different seeds."""
    return train_tiny(0), train_tiny(1)


@pytest.fixture(scope="module")
def positives() -> Tensor:
    """Held-out drawn images that carry the square."""
    images, labels = draw(64, torch.Generator().manual_seed(99))
    return images[labels == 1]


def mean_rank_correlation(first: Tensor, second: Tensor) -> float:
    """Mean over images of the Spearman correlation of two maps of the same image, a flat map counting 0
    (it ranks nothing)."""
    return float(np.mean(np.nan_to_num(rank_correlations(first, second), nan=0.0)))
