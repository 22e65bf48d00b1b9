"""FaceAttrNet: a timm backbone with an attribute head and a beauty head, returning a dict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from faceattr.attributes import NUM_ATTRIBUTES
from faceattr.config import STANDARD_STEM_STRIDE, ModelConfig
from faceattr.data.transforms import MEAN, STD
from faceattr.models.backbone import create_backbone
from faceattr.models.heads import AttributeHead, BeautyHead


class FaceAttrNet(nn.Module):
    """The multi-task network: images -> attribute logits and a beauty score.

    It takes uint8 images and normalises them itself, so data loaders move 4x fewer bytes
    and leave the arithmetic to the device. The constructor arguments (except ``weights``,
    which only initialise the backbone) are kept in :attr:`model_args`, so a checkpoint that stores them rebuilds the network with
    ``FaceAttrNet(**checkpoint["model_args"])`` and nothing else.

    Args:
        backbone: A name from :data:`faceattr.models.BACKBONES`.
        beauty_head: ``regression`` or ``distribution`` (see :class:`BeautyHead`).
        beauty_bins: Bins of the distribution head.
        drop_rate: Dropout on the pooled features, before both heads.
        stem_stride: How much a ResNet stem shrinks the image: 4 (standard), 2 or 1 (see
            :func:`faceattr.models.backbone.shrink_stem`).
        width: Channel multiplier of a ResNet backbone.
        drop_path_rate: Stochastic depth of the backbone's residual blocks.
        weights: Optional local weights file for the backbone (see :func:`create_backbone`).

    >>> import torch
    >>> net = FaceAttrNet("resnet10t", beauty_head="distribution", beauty_bins=5).eval()
    >>> images = torch.zeros(2, 3, 64, 64, dtype=torch.uint8)
    >>> {key: tuple(value.shape) for key, value in net(images).items()}
    {'attributes': (2, 40), 'beauty': (2,), 'beauty_logits': (2, 5)}
    >>> net.model_args["backbone"]
    'resnet10t'
    """

    def __init__(self, backbone: str, beauty_head: str = "regression", beauty_bins: int = 9,
                 drop_rate: float = 0.0, stem_stride: int = STANDARD_STEM_STRIDE, width: float = 1.0, drop_path_rate: float = 0.0,
                 weights: str | Path | None = None):
        super().__init__()
        self._model_args: dict[str, Any] = dict(
            backbone=backbone, beauty_head=beauty_head, beauty_bins=beauty_bins, drop_rate=drop_rate,
            stem_stride=stem_stride, width=width, drop_path_rate=drop_path_rate)
        self.backbone = create_backbone(backbone, weights, stem_stride=stem_stride, width=width,
                                        drop_path_rate=drop_path_rate)
        # head_hidden_size, not num_features: they differ for backbones with a conv head
        # after pooling (MobileNetV3), and the heads see the pooled output.
        features = self.backbone.head_hidden_size
        self.dropout = nn.Dropout(drop_rate)
        # Not saved in the state dict: they are constants, not weights.
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1) * 255, persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1) * 255, persistent=False)
        self.attribute_head = AttributeHead(features, NUM_ATTRIBUTES)
        self.beauty_head = BeautyHead(features, beauty_head, beauty_bins)

    @property
    def model_args(self) -> dict[str, Any]:
        """The constructor arguments except ``weights`` (a copy): ``FaceAttrNet(**model_args)``."""
        return dict(self._model_args)

    def features(self, images: Tensor) -> Tensor:
        """The backbone's pooled features, what both heads read (before dropout): the face embedding.

        Args:
            images: RGB images ``(B, 3, H, W)``, uint8 (0-255).

        Returns:
            ``(B, D)`` features, ``D`` = ``backbone.head_hidden_size`` (512 for ResNet-18).
        """
        if images.dtype != torch.uint8:
            raise TypeError(f"FaceAttrNet takes uint8 images (0-255), got {images.dtype}")
        return self.backbone((images.float() - self.mean) / self.std)

    def forward(self, images: Tensor, with_features: bool = False) -> dict[str, Tensor]:
        """Runs the network.

        Args:
            images: RGB images ``(B, 3, H, W)``, uint8 (0-255) as the transforms give them.
            with_features: Also return the pooled features the heads read (:meth:`features`), from the
                same pass: a face's embedding and its predictions come from one forward.

        Returns:
            ``"attributes"``: ``(B, 40)`` logits in :data:`faceattr.ATTRIBUTES` order;
            ``"beauty"``: ``(B,)`` scores; ``"beauty_logits"``: ``(B, bins)``, only for the
            distribution head; ``"features"``: ``(B, D)``, only ``with_features``.
        """
        pooled = self.features(images)
        features = self.dropout(pooled)
        # The heads run in float32 even under autocast: bfloat16 would round beauty scores to
        # steps of 1/64 and put ties into the threshold search.
        with torch.autocast(features.device.type, enabled=False):
            features = features.float()
            outputs = {"attributes": self.attribute_head(features), **self.beauty_head(features)}
        return outputs | ({"features": pooled} if with_features else {})


def build_model(config: ModelConfig) -> FaceAttrNet:
    """Builds the network described by the ``model`` section of a config.

    Args:
        config: The model configuration; an empty ``weights`` means random initialisation.

    Returns:
        The network.

    >>> build_model(ModelConfig(backbone="resnet10t")).model_args["beauty_head"]
    'regression'
    """
    return FaceAttrNet(backbone=config.backbone, beauty_head=config.beauty_head,
                       beauty_bins=config.beauty_bins, drop_rate=config.drop_rate,
                       stem_stride=config.stem_stride, width=config.width, drop_path_rate=config.drop_path_rate,
                       weights=config.weights or None)
