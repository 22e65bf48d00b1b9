"""Backbones: timm feature extractors by name, optionally initialised from a local weights file.

Every backbone is built with ``timm.create_model(..., pretrained=False, num_classes=0)``, so it
maps images ``(B, 3, H, W)`` to pooled features ``(B, head_hidden_size)``. Nothing is ever
downloaded: pretrained weights come only from a local file given as ``weights``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from torch import nn

from faceattr.errors import CheckpointError
from faceattr.models.weights_io import load_state_dict_checked, read_state_dict

logger = logging.getLogger(__name__)

#: Key prefixes of a timm checkpoint's classifier, which a ``num_classes=0`` backbone lacks.
CLASSIFIER_PREFIXES: tuple[str, ...] = ("fc.", "classifier.", "head.")


def _timm_model(model_name: str, **kwargs: Any) -> nn.Module:
    """A timm model without classifier and without downloaded weights."""
    import timm

    return timm.create_model(model_name, pretrained=False, num_classes=0, **kwargs)


def _gc_resnet(model_name: str) -> nn.Module:
    """A timm ResNet with Global Context blocks placed as in GCNet (Cao et al. 2019).

    GCNet adds a GC block to every bottleneck of stages c3-c5 (timm's ``layer2``-``layer4``),
    after the last 1x1 conv (and its BN) and before the residual addition, which is exactly
    where timm's ``Bottleneck`` applies its ``attn_layer`` (``BasicBlock``, of ResNet-18/34,
    applies it at the same place, after its second conv). The paper's best variant fuses the
    context by addition (not scaling) through a ``1x1 conv - LayerNorm - ReLU - 1x1 conv``
    transform with bottleneck ratio 1/16.
    """
    from timm.layers import GlobalContext

    gc_block = partial(GlobalContext, fuse_add=True, fuse_scale=False, rd_ratio=1 / 16)
    model = _timm_model(model_name, block_args=dict(attn_layer=gc_block))
    # timm's block_args reach every stage alike; GCNet leaves c2 (layer1) without GC blocks.
    # Bottleneck.forward skips its attention when `se` is None, as in a plain ResNet block.
    for block in model.layer1:
        block.se = None
    # ResNet.init_weights re-initialises every conv with Kaiming, undoing GlobalContext's zero
    # init of its last conv; GCNet zero-inits it so each block starts as the plain ResNet block.
    for module in model.modules():
        if isinstance(module, GlobalContext):
            module.reset_parameters()
    return model


#: Backbone name -> builder of the timm feature extractor (random initialisation).
BACKBONES: dict[str, Callable[[], nn.Module]] = {
    "resnet10t": partial(_timm_model, "resnet10t"),
    "resnet18": partial(_timm_model, "resnet18"),
    "resnet34": partial(_timm_model, "resnet34"),
    "resnet50": partial(_timm_model, "resnet50"),
    "resnet101": partial(_timm_model, "resnet101"),
    "resnet152": partial(_timm_model, "resnet152"),
    "se_resnet18": partial(_timm_model, "seresnet18"),
    "se_resnet50": partial(_timm_model, "seresnet50"),
    "se_resnet101": partial(_timm_model, "seresnet101"),
    "gc_resnet18": partial(_gc_resnet, "resnet18"),
    "gc_resnet50": partial(_gc_resnet, "resnet50"),
    "gc_resnet101": partial(_gc_resnet, "resnet101"),
    "cbam_resnet50": partial(_timm_model, "resnet50", block_args=dict(attn_layer="cbam")),
    "eca_resnet50": partial(_timm_model, "resnet50", block_args=dict(attn_layer="eca")),
    "sk_resnet18": partial(_timm_model, "skresnet18"),
    "sk_resnet34": partial(_timm_model, "skresnet34"),
    "sk_resnet50": partial(_timm_model, "skresnet50"),
    "mobilenetv3_small_050": partial(_timm_model, "mobilenetv3_small_050"),
    "mobilenetv3_small": partial(_timm_model, "mobilenetv3_small_100"),
    "mobilenetv3_large": partial(_timm_model, "mobilenetv3_large_100"),
    "efficientnet_b0": partial(_timm_model, "efficientnet_b0"),
}


def create_backbone(name: str, weights: str | Path | None = None) -> nn.Module:
    """Builds a backbone by name, optionally loading a local weights file.

    The returned module maps ``(B, 3, H, W)`` images to ``(B, F)`` pooled features, where
    ``F = module.head_hidden_size`` (timm's ``num_features`` differs from ``F`` for models
    with a conv head such as MobileNetV3).

    Args:
        name: A key of :data:`BACKBONES`.
        weights: ``None`` or empty for a random initialisation; otherwise a local
            ``.safetensors`` file or a torch state-dict file (possibly a dict holding the state
            dict under ``"model"`` or ``"state_dict"``). Classifier keys of a timm checkpoint
            (``fc.*``, ``classifier.*``, ``head.*``) are ignored.

    Returns:
        The backbone.

    Raises:
        ValueError: ``name`` is not a known backbone; the message lists the valid names.
        CheckpointError: ``weights`` is missing, unreadable, or its keys or shapes do not
            match the backbone.

    >>> import torch
    >>> create_backbone("resnet10t")(torch.zeros(1, 3, 64, 64)).shape
    torch.Size([1, 512])
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; valid names: {', '.join(BACKBONES)}")
    model = BACKBONES[name]()
    if weights:
        _load_backbone_weights(model, Path(weights))
    return model


def _load_backbone_weights(model: nn.Module, path: Path) -> None:
    """Loads ``path`` into ``model``, ignoring the classifier of a timm checkpoint."""
    if not path.is_file():
        raise CheckpointError(
            f"{path}: backbone weights file not found; faceattr never downloads weights, so "
            "point model.weights at a local .safetensors or .pt file (or leave it empty to "
            "train from scratch)")
    load_state_dict_checked(model, read_state_dict(path), source=str(path),
                            ignored_prefixes=CLASSIFIER_PREFIXES)
    logger.info("loaded backbone weights from %s", path)
