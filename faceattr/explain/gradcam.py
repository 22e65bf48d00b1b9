"""Grad-CAM (Selvaraju et al. 2017) for any attribute or the beauty head, hook-based, no new dependency.

For a target score ``y`` (an attribute's logit or the beauty score) and the activation ``A`` of
the backbone's last convolutional stage, or a chosen one (:func:`target_layer`; ``C`` channels
of ``h x w``), the map is ``ReLU(sum_k w_k A_k)`` with ``w_k`` the spatial mean of ``dy/dA_k``,
upsampled (bilinear) to the input size and scaled to 0-1 per map. One forward pass serves every
target of a batch.

The forward hook replaces the activation by a detached copy that requires grad, and the
gradients are taken with :func:`torch.autograd.grad` with respect to that copy alone, so nothing
is back-propagated into the layers below it and no ``.grad`` accumulates in any parameter (a
model with frozen weights works as well).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from faceattr.attributes import ATTRIBUTE_INDEX
from faceattr.errors import ConfigError

#: The target naming the beauty head's score; every other target is an attribute name.
BEAUTY_TARGET = "beauty"
#: The smallest side of the default layer's map: a 2x2 map (ResNet's last stage at 64 px) puts the eyes
#: and the brows in one cell; 4x4 separates eyes, mouth and forehead (docs/EXPLAIN.md).
MIN_MAP_SIDE = 4


def stage_names(model: nn.Module) -> list[str]:
    """The names (relative to ``model``) of the backbone's stages, shallowest first: the layers Grad-CAM can explain.

    timm's ``feature_info`` modules (``backbone.act1``, ``backbone.layer1`` ... ``backbone.layer4`` of a
    ResNet; each halves the map's side); a model without ``feature_info`` offers its ``layer4`` alone.

    Args:
        model: A :class:`~faceattr.models.net.FaceAttrNet` or a bare backbone.

    Returns:
        The names, for :func:`target_layer`'s ``layer``; ``[]`` if the model has neither.
    """
    backbone = getattr(model, "backbone", model)
    prefix = "backbone." if backbone is not model else ""
    feature_info = getattr(backbone, "feature_info", None)
    if feature_info:
        return [prefix + stage["module"] for stage in feature_info]
    return [prefix + "layer4"] if isinstance(getattr(backbone, "layer4", None), nn.Module) else []


def _default_stage(model: nn.Module, input_side: int | None) -> int:
    """The index into :func:`stage_names` of the default layer: the deepest stage at least :data:`MIN_MAP_SIDE` a side."""
    feature_info = getattr(getattr(model, "backbone", model), "feature_info", None)
    if not feature_info or input_side is None:
        return -1
    fine_enough = [index for index, stage in enumerate(feature_info)
                   if input_side // stage["reduction"] >= MIN_MAP_SIDE]
    return fine_enough[-1] if fine_enough else -1


def target_layer(model: nn.Module, layer: str | int | None = None, input_side: int | None = None) -> nn.Module:
    """The module whose output Grad-CAM explains: by default the backbone's last convolutional stage.

    The default is the deepest stage of timm's ``feature_info`` whose map is at least
    :data:`MIN_MAP_SIDE` pixels a side for an input of ``input_side`` (its side is ``input_side`` over the
    stage's ``reduction``): the last stage (``layer4`` of every ResNet variant, ``blocks.5``/``blocks.6``
    of MobileNetV3 and EfficientNet) from 128 px up, ``layer3`` for the default model's 64 px, whose
    ``layer4`` map is 2x2 and cannot tell the eyes from the brows (docs/EXPLAIN.md measures it). Without
    ``input_side``, or when no stage is that fine, the last stage. A model without ``feature_info`` (a
    small custom network) is explained at its ``layer4``. A shallower stage gives a finer map (twice the
    side per stage up) from less abstract features.

    Args:
        model: A :class:`~faceattr.models.net.FaceAttrNet` (its ``backbone`` is searched) or a
            bare backbone.
        layer: ``None``: the default; a module name relative to ``model`` (``"backbone.layer3"``);
            or an index into :func:`stage_names` (``-1`` is the last stage, ``-2`` the stage before it).
        input_side: The shorter side of the images explained, for the default.

    Returns:
        The target module (a submodule of ``model``).

    Raises:
        ConfigError: If ``layer`` names no module or indexes no stage (the message lists the stages),
            or, for ``None``, neither ``feature_info`` nor a ``layer4`` names a layer.
    """
    stages = stage_names(model)
    if layer is None and not stages:
        backbone = getattr(model, "backbone", model)
        raise ConfigError(f"no Grad-CAM target layer in {type(backbone).__name__}: it has neither timm's "
                          "feature_info nor a 'layer4' module")
    if layer is None or isinstance(layer, int):
        index = _default_stage(model, input_side) if layer is None else layer
        if not -len(stages) <= index < len(stages):
            raise ConfigError(f"Grad-CAM layer index {index} is out of range: {type(model).__name__} has "
                              f"{len(stages)} stages ({', '.join(stages) or 'none'})")
        return model.get_submodule(stages[index])
    try:
        if not layer:  # get_submodule("") is the model itself, whose output is no map
            raise AttributeError(layer)
        return model.get_submodule(layer)
    except AttributeError:
        raise ConfigError(f"Grad-CAM layer {layer!r} is not a module of {type(model).__name__}; its stages are: "
                          f"{', '.join(stages) or 'none'}") from None


def _target_score(outputs: dict[str, Tensor], target: str) -> Tensor:
    """The ``(N,)`` score of ``target`` in a FaceAttrNet output dict."""
    if target == BEAUTY_TARGET:
        return outputs["beauty"]
    return outputs["attributes"][:, ATTRIBUTE_INDEX[target]]


def normalise_maps(maps: Tensor) -> Tensor:
    """Scales each map of ``(N, H, W)`` to 0-1 (min to 0, max to 1); a flat map becomes all 0.

    Args:
        maps: ``(N, H, W)`` float maps.

    Returns:
        The scaled maps, same shape, never NaN.
    """
    flat = maps.flatten(1)
    low = flat.min(dim=1).values.view(-1, 1, 1)
    span = (flat.max(dim=1).values.view(-1, 1, 1) - low)
    # A flat map carries no location: 0 everywhere rather than 0/0.
    return torch.where(span > 0, (maps - low) / span.clamp_min(torch.finfo(maps.dtype).tiny),
                       torch.zeros_like(maps))


def grad_cam(model: nn.Module, images: Tensor, targets: Sequence[str],
             layer: str | int | None = None) -> dict[str, Tensor]:
    """Grad-CAM maps of a batch for each target, from one forward pass.

    The model runs in eval mode (dropout off, batch-norm running statistics: the maps explain
    what the model predicts at inference) and is put back in the mode it was in; the hook is
    removed whatever happens.

    Args:
        model: A :class:`~faceattr.models.net.FaceAttrNet`, or any module with the same output
            dict (``"attributes"`` ``(N, 40)``, ``"beauty"`` ``(N,)``) and a target layer
            (:func:`target_layer`).
        images: ``(N, 3, H, W)`` images as the model takes them (uint8 for FaceAttrNet).
        targets: Attribute names (their logit is explained) and/or ``"beauty"``.
        layer: The layer explained, as :func:`target_layer` takes it (``None``: its default for these images).

    Returns:
        Target -> ``(N, H, W)`` float32 maps on the images' device, each scaled to 0-1.

    Raises:
        ConfigError: If ``images`` is not ``(N, 3, H, W)``, ``targets`` is empty or names an
            unknown target, ``layer`` names no layer, or the target layer's output is not a 4-D map.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ConfigError(f"grad_cam takes images (N, 3, H, W), got shape {tuple(images.shape)}")
    if isinstance(targets, str):  # a lone name would be iterated letter by letter
        targets = [targets]
    if not targets:
        raise ConfigError("grad_cam needs at least one target (an attribute name or 'beauty')")
    names = list(dict.fromkeys(targets))
    for target in names:  # refused before the forward pass, not after it
        if target != BEAUTY_TARGET and target not in ATTRIBUTE_INDEX:
            raise ConfigError(f"unknown Grad-CAM target {target!r}; use {BEAUTY_TARGET!r} or an attribute name "
                              f"({', '.join(ATTRIBUTE_INDEX)})")
    module = target_layer(model, layer, min(images.shape[-2:]))
    captured: list[Tensor] = []

    def capture(_module: nn.Module, _inputs: object, output: Tensor) -> Tensor:
        # A detached leaf that requires grad: the gradient stops here, whether or not the
        # weights below require grad, and nothing reaches their .grad.
        activation = output.detach().requires_grad_(True)
        captured.append(activation)
        return activation

    was_training = model.training
    handle = module.register_forward_hook(capture)
    try:
        model.eval()
        with torch.enable_grad():
            outputs = model(images)
            scores = {target: _target_score(outputs, target) for target in names}
            activation = captured[-1]
            if activation.ndim != 4:
                raise ConfigError(f"Grad-CAM target layer {type(module).__name__} gives shape "
                                  f"{tuple(activation.shape)}, not a (N, C, h, w) map")
            maps: dict[str, Tensor] = {}
            for position, target in enumerate(names):
                # Samples are independent in eval mode, so the gradient of the batch sum gives
                # each sample the gradient of its own score.
                (gradient,) = torch.autograd.grad(scores[target].sum(), activation,
                                                  retain_graph=position < len(names) - 1)
                weights = gradient.float().mean(dim=(2, 3), keepdim=True)
                cam = F.relu((weights * activation.detach().float()).sum(dim=1, keepdim=True))
                cam = F.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False)
                maps[target] = normalise_maps(cam[:, 0])
        return maps
    finally:
        handle.remove()
        model.train(was_training)


def box_mask(box: Sequence[float], shape: Sequence[int]) -> Tensor:
    """The ``(H, W)`` float64 mask, 1 inside ``box`` and 0 elsewhere: the pixels :func:`region_share` counts.

    Args:
        box: ``(x1, y1, x2, y2)`` in pixels, ``x2``/``y2`` exclusive; rounded to whole pixels and
            clipped to the map.
        shape: The map's ``(H, W)``.

    Returns:
        The mask (all 0 for a box outside the map).

    Raises:
        ConfigError: If ``box`` is not four numbers with ``x1 < x2``, ``y1 < y2``.

    >>> box_mask((1, 0, 3, 1), (2, 4)).tolist()
    [[0.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]]
    """
    if len(box) != 4 or not (box[0] < box[2] and box[1] < box[3]):
        raise ConfigError(f"region box must be (x1, y1, x2, y2) with x1 < x2 and y1 < y2, got {box}")
    height, width = int(shape[0]), int(shape[1])
    x1, y1 = max(int(round(box[0])), 0), max(int(round(box[1])), 0)
    x2, y2 = min(int(round(box[2])), width), min(int(round(box[3])), height)
    mask = torch.zeros(height, width, dtype=torch.float64)
    if x2 > x1 and y2 > y1:
        mask[y1:y2, x1:x2] = 1.0
    return mask


def region_share(cam: Tensor | np.ndarray, box: Sequence[float]) -> float:
    """The share of a map's mass inside a box: 1/4 for a uniform map and a quarter-size box.

    Args:
        cam: ``(H, W)`` non-negative map.
        box: ``(x1, y1, x2, y2)`` in pixels, ``x2``/``y2`` exclusive; clipped to the map (:func:`box_mask`).

    Returns:
        Mass inside the box over the total mass; 0.0 for an all-zero map.

    Raises:
        ConfigError: If ``cam`` is not 2-D or ``box`` is not four numbers with ``x1 < x2``, ``y1 < y2``.
    """
    values = torch.as_tensor(cam, dtype=torch.float64)
    if values.ndim != 2:
        raise ConfigError(f"region_share takes one (H, W) map, got shape {tuple(values.shape)}")
    mask = box_mask(box, values.shape)
    total = float(values.sum())
    return float((values * mask).sum()) / total if total > 0 else 0.0


def warp_to_photo(cam: Tensor | np.ndarray, matrix: np.ndarray, photo_size: Sequence[int]) -> np.ndarray:
    """Maps a heatmap over the aligned face back onto the photo it was cut from.

    ``matrix`` is the alignment's warp from photo pixels to the model's input pixels (the
    ``(2, 3)`` similarity of :func:`faceattr.inference.align.align_crop`); warping with its
    inverse puts each map value back where it came from. Photo pixels outside the face crop get 0.

    Args:
        cam: ``(h, w)`` map over the model's input.
        matrix: ``(2, 3)`` affine warp, photo pixels -> map pixels.
        photo_size: The photo's ``(height, width)`` (``photo.shape[:2]``).

    Returns:
        ``(height, width)`` float32 map over the photo.

    Raises:
        ConfigError: If ``cam`` is not 2-D, ``matrix`` not a finite ``(2, 3)`` invertible warp, or
            ``photo_size`` not two positive integers.
    """
    import cv2

    values = cam.detach().cpu().numpy() if isinstance(cam, Tensor) else np.asarray(cam)
    if values.ndim != 2:
        raise ConfigError(f"warp_to_photo takes one (h, w) map, got shape {values.shape}")
    warp = np.asarray(matrix, dtype=np.float64)
    if warp.shape != (2, 3) or not np.isfinite(warp).all() or abs(np.linalg.det(warp[:, :2])) < 1e-12:
        raise ConfigError(f"warp_to_photo matrix must be a finite invertible (2, 3) affine warp, got {matrix!r}")
    if len(photo_size) != 2 or min(int(side) for side in photo_size) <= 0:
        raise ConfigError(f"warp_to_photo photo_size must be (height, width) > 0, got {photo_size}")
    height, width = int(photo_size[0]), int(photo_size[1])
    # WARP_INVERSE_MAP: each photo pixel p takes the map's value at matrix @ p, i.e. the inverse warp.
    return cv2.warpAffine(values.astype(np.float32), warp, (width, height),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
