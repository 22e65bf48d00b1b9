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

from faceattr.config import RESNET_BACKBONES, STANDARD_STEM_STRIDE
from faceattr.errors import CheckpointError
from faceattr.models.weights_io import load_state_dict_checked, read_state_dict

logger = logging.getLogger(__name__)

#: Key prefixes of a timm checkpoint's classifier, which a ``num_classes=0`` backbone lacks.
CLASSIFIER_PREFIXES: tuple[str, ...] = ("fc.", "classifier.", "head.")
#: Channels of a timm ResNet's four stages at width 1 (BasicBlock; Bottleneck expands them 4x).
RESNET_CHANNELS: tuple[int, ...] = (64, 128, 256, 512)
#: Channels of a timm ResNet's stem at width 1.
RESNET_STEM_WIDTH: dict[str, int] = {name: 32 if name == "resnet10t" else 64 for name in RESNET_BACKBONES}


def _timm_model(model_name: str, **kwargs: Any) -> nn.Module:
    """A timm model without classifier and without downloaded weights."""
    import timm

    return timm.create_model(model_name, pretrained=False, num_classes=0, **kwargs)


def _gc_resnet(model_name: str, **kwargs: Any) -> nn.Module:
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
    model = _timm_model(model_name, block_args=dict(attn_layer=gc_block), **kwargs)
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


#: Backbone name -> builder of the timm feature extractor (random initialisation); keyword
#: arguments go to ``timm.create_model``.
BACKBONES: dict[str, Callable[..., nn.Module]] = {
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


def create_backbone(name: str, weights: str | Path | None = None, *, stem_stride: int = STANDARD_STEM_STRIDE, width: float = 1.0,
                    drop_path_rate: float = 0.0) -> nn.Module:
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
        stem_stride: How much a ResNet's stem shrinks the image before its first stage:
            4 (the standard stride-2 convolution and max-pool), 2 (no max-pool) or 1 (no
            max-pool, stride-1 first convolution); see :func:`shrink_stem`.
        width: Multiplies a ResNet's channels (stem and stages; 0.5 halves them).
        drop_path_rate: Stochastic depth: the largest chance of skipping a residual block
            while training (timm scales it up linearly from the first block to the last).

    Returns:
        The backbone.

    Raises:
        ValueError: ``name`` is not a known backbone (the message lists the valid names), or
            ``stem_stride``/``width`` are set for a backbone that is not a ResNet.
        CheckpointError: ``weights`` is missing, unreadable, or its keys or shapes do not
            match the backbone.

    >>> import torch
    >>> create_backbone("resnet10t")(torch.zeros(1, 3, 64, 64)).shape
    torch.Size([1, 512])
    >>> create_backbone("resnet18", stem_stride=2, width=0.5)(torch.zeros(1, 3, 64, 64)).shape
    torch.Size([1, 256])
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; valid names: {', '.join(BACKBONES)}")
    if (stem_stride != STANDARD_STEM_STRIDE or width != 1.0) and name not in RESNET_BACKBONES:
        raise ValueError(f"stem_stride and width apply to the ResNet backbones ({', '.join(RESNET_BACKBONES)}), "
                         f"not to {name!r}")
    kwargs: dict[str, Any] = {"drop_path_rate": drop_path_rate} if drop_path_rate else {}
    if width != 1.0:
        kwargs |= dict(channels=tuple(max(8, round(channels * width)) for channels in RESNET_CHANNELS),
                       stem_width=max(8, round(RESNET_STEM_WIDTH[name] * width)))
    model = BACKBONES[name](**kwargs)
    if stem_stride != STANDARD_STEM_STRIDE:
        shrink_stem(model, stem_stride)
    if weights:
        _load_backbone_weights(model, Path(weights))
    return model


def shrink_stem(resnet: nn.Module, stem_stride: int) -> None:
    """Makes a timm ResNet's stem keep more resolution for small faces, in place.

    A standard ResNet stem (a stride-2 convolution, then a stride-2 max-pool) turns a 64 px face
    into 16x16 maps before the first block and 2x2 after the last. ``stem_stride`` 2 drops the
    max-pool (32x32 into the first block, 4x4 at the end, 4x the computation); 1 also makes the
    first convolution stride 1 (16x the computation). The weights keep their shapes, so a
    trained standard-stem network loads into a shrunk one, though every map then shows the face
    at twice the scale its filters learnt (measured on the default model: a warm start first
    loses 11 points of balanced accuracy; docs/MODEL_CARD.md). ``feature_info``
    reductions are updated, so Grad-CAM picks its layer by the true map sizes.

    Args:
        resnet: A timm ``ResNet`` (``conv1`` a convolution or a deep stem's ``Sequential``).
        stem_stride: 2 or 1.
    """
    if stem_stride not in (1, 2):
        raise ValueError(f"stem_stride: must be 2 or 1 ({STANDARD_STEM_STRIDE} is the standard stem, left as it is), "
                         f"got {stem_stride}")
    resnet.maxpool = nn.Identity()
    if stem_stride == 1:
        first_conv = next(module for module in resnet.conv1.modules() if isinstance(module, nn.Conv2d))
        first_conv.stride = (1, 1)
    for stage in resnet.feature_info:
        # act1 comes before the max-pool, so only the first convolution's stride reaches it.
        stage["reduction"] = stem_stride if stage["module"] == "act1" else stage["reduction"] * stem_stride // STANDARD_STEM_STRIDE


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
