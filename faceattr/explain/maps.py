"""Grad-CAM maps of every face of a photo, over the aligned face and back on the photo.

:func:`explain_photo` runs a :class:`~faceattr.inference.predictor.Predictor`'s own pipeline
(decode, detect, align, classify) and explains its network's outputs for each face with
:func:`~faceattr.explain.gradcam.grad_cam`: one batched call per photo for all faces and targets.
Each map is given over the aligned crop the network saw and warped back onto the photo with the
inverse of the alignment warp (:func:`~faceattr.inference.align.crop_matrix`,
:func:`~faceattr.explain.gradcam.warp_to_photo`). :func:`overlay` draws a map over an image;
:func:`explain` is the one-call public API (``faceattr.explain(...)``).

>>> import faceattr
>>> faces = faceattr.explain("photo.jpg", attribute="Smiling", beauty=True)  # doctest: +SKIP
>>> sorted(faces[0].crop_maps)  # doctest: +SKIP
['Smiling', 'beauty']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from faceattr.attributes import ATTRIBUTE_INDEX, ATTRIBUTES
from faceattr.errors import ConfigError
from faceattr.explain.gradcam import BEAUTY_TARGET, grad_cam, target_layer, warp_to_photo
from faceattr.image import read_reduced
from faceattr.inference.align import align_crop, crop_matrix
from faceattr.inference.predictor import Predictor, _landmarks, load_model, rescale_faces
from faceattr.inference.results import FaceResult
from faceattr.models.deployed import DeployedModel

#: Present attributes explained per face when no target is named (most probable first), with beauty.
DEFAULT_ATTRIBUTE_TARGETS = 3

#: How strongly :func:`overlay` tints the image where a map is 1 (0: not at all, 1: colour only).
OVERLAY_OPACITY = 0.5

#: Models kept loaded by :func:`explain`.
_CACHE_SIZE = 2


@dataclass(frozen=True)
class FaceExplanation:
    """One face's Grad-CAM maps.

    Attributes:
        face: The face's prediction, in the photo's pixels (as :meth:`Predictor.predict` gives it).
        crop: The aligned face the network saw, ``(S, S, 3)`` uint8 RGB at the model's input size.
        matrix: The ``(2, 3)`` warp from photo pixels to crop pixels.
        crop_maps: Target -> ``(S, S)`` float32 map over ``crop``, 0-1.
        photo_maps: Target -> ``(height, width)`` float32 map over the photo, 0-1, 0 outside the crop
            (empty when :func:`explain_photo` was asked for no photo maps).
    """

    face: FaceResult
    crop: np.ndarray = field(repr=False)
    matrix: np.ndarray = field(repr=False)
    crop_maps: dict[str, np.ndarray] = field(repr=False)
    photo_maps: dict[str, np.ndarray] = field(repr=False)

    @property
    def targets(self) -> list[str]:
        """The explained targets, in the order they were asked for."""
        return list(self.crop_maps)


def torch_module(predictor: Predictor) -> nn.Module:
    """The PyTorch network (:class:`~faceattr.models.net.FaceAttrNet`) a predictor runs.

    Args:
        predictor: A predictor with the ``torch`` backend.

    Returns:
        The module, on the predictor's device.

    Raises:
        ConfigError: The predictor runs another backend (ONNX Runtime has no gradients to explain).
    """
    module = getattr(predictor.model, "network", None)
    if predictor.backend != "torch" or not isinstance(module, nn.Module):
        raise ConfigError(f"backend: Grad-CAM needs the torch backend (gradients), got {predictor.backend!r}; "
                          "load the model with backend='torch' (an .onnx export cannot be explained: use its "
                          ".safetensors or best.pt)")
    return module


def check_targets(targets: Sequence[str]) -> list[str]:
    """``targets`` without repeats, each checked to be an attribute name or ``"beauty"``.

    Raises:
        ConfigError: A target is unknown (the message names it and the valid names).

    >>> check_targets(["Smiling", "beauty", "Smiling"])
    ['Smiling', 'beauty']
    """
    if isinstance(targets, str):  # one name, not its letters
        targets = [targets]
    unknown = [name for name in targets if name != BEAUTY_TARGET and name not in ATTRIBUTE_INDEX]
    if unknown:
        raise ConfigError(f"unknown attribute {', '.join(map(repr, unknown))}; use {BEAUTY_TARGET!r} or one of: "
                          f"{', '.join(ATTRIBUTES)}")
    return list(dict.fromkeys(targets))


def default_targets(face: FaceResult, count: int = DEFAULT_ATTRIBUTE_TARGETS) -> list[str]:
    """The targets explained when none is named: the face's ``count`` most probable present attributes, and beauty.

    >>> face = FaceResult((0.0, 0.0, 1.0, 1.0), 1.0, None, {}, ("Smiling", "Young", "Male", "Bangs"), 3.0)
    >>> default_targets(face)
    ['Smiling', 'Young', 'Male', 'beauty']
    """
    return [*face.attributes[:count], BEAUTY_TARGET]


def _full_photo_matrix(matrix: np.ndarray, scale_x: float, scale_y: float) -> np.ndarray:
    """``matrix`` (decoded-array pixels -> crop) made to take full-photo pixels, the decode being ``scale`` of it.

    Pixel ``i`` is centred at ``i``, so a full-photo ``x`` is ``(x + 0.5) * scale - 0.5`` in the decode.
    """
    to_decoded = np.array([[scale_x, 0.0, 0.5 * scale_x - 0.5], [0.0, scale_y, 0.5 * scale_y - 0.5], [0.0, 0.0, 1.0]])
    return matrix @ to_decoded


def explain_photo(predictor: Predictor, image: Any, targets: Sequence[str] | None = None,
                  bgr: bool = False, full_size: tuple[int, int] | None = None,
                  photo_maps: bool = True, layer: str | int | None = None) -> list[FaceExplanation]:
    """Grad-CAM maps of every face of one photo, over its aligned crop and over the photo.

    The faces are found, aligned and classified exactly as :meth:`Predictor.predict` does; then all
    crops go through one :func:`grad_cam` call for the union of the faces' targets (one forward
    pass, the hook released after it).

    Args:
        predictor: A predictor with the ``torch`` backend.
        image: Any input :func:`~faceattr.image.read_image` accepts.
        targets: Attribute names and/or ``"beauty"``, the same for every face; ``None``: each face's
            :func:`default_targets`.
        bgr: An array input is BGR (see :meth:`Predictor.predict`).
        full_size: The full photo's ``(width, height)`` when ``image`` is an array decoded reduced
            from it (as :func:`~faceattr.image.read_reduced` gives it): faces, matrices and photo
            maps are then in the full photo's pixels; ``None``: ``image``'s own size.
        photo_maps: Warp each map onto the photo; ``False`` leaves ``photo_maps`` empty, for a
            client that draws the crop map through ``matrix`` itself (the service's page): a
            photo-sized float map per face is then never made.
        layer: The layer explained (:func:`~faceattr.explain.gradcam.target_layer`; ``None``: the deepest stage
            whose map is at least 4x4).

    Returns:
        One :class:`FaceExplanation` per face, best detector score first; ``[]`` if there is no face.
        Photo maps have the photo's full size (a large JPEG decoded reduced for detection is
        mapped back to its full pixels).

    Raises:
        ConfigError: A target is unknown, ``layer`` names no layer, or the predictor does not run the torch
            backend.
        ImageError: The input cannot be read.
    """
    named = None if targets is None else check_targets(targets)
    network = torch_module(predictor)
    target_layer(network, layer)  # a bad layer is refused before the photo is read
    array, (width, height) = read_reduced(image, predictor.decode_side, predictor.max_pixels, bgr)
    if full_size is not None:
        width, height = full_size
    detections = predictor.detector.detect(array)
    if not detections:
        return []
    faces = predictor.classify([array], [detections])[0]
    scale_x, scale_y = array.shape[1] / width, array.shape[0] / height
    faces = rescale_faces(faces, 1.0 / scale_x, 1.0 / scale_y)
    matrices = [crop_matrix(_landmarks(d), predictor.image_size, predictor.crop) for d in detections]
    crops = [align_crop(array, _landmarks(d), predictor.image_size, predictor.crop) for d in detections]
    wanted = [named if named is not None else default_targets(face) for face in faces]
    union = list(dict.fromkeys(name for face_targets in wanted for name in face_targets))
    images = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).to(predictor.device)
    maps = {name: cam.cpu().numpy().astype(np.float32) for name, cam in grad_cam(network, images, union, layer).items()}
    explanations = []
    for row, (face, crop, matrix, face_targets) in enumerate(zip(faces, crops, matrices, wanted)):
        full_matrix = _full_photo_matrix(matrix, scale_x, scale_y)
        crop_maps = {name: maps[name][row] for name in face_targets}
        warped = {name: np.clip(warp_to_photo(cam, full_matrix, (height, width)), 0.0, 1.0)
                  for name, cam in crop_maps.items()} if photo_maps else {}
        explanations.append(FaceExplanation(face, crop, full_matrix, crop_maps, warped))
    return explanations


def overlay(image: np.ndarray, cam: np.ndarray, opacity: float = OVERLAY_OPACITY) -> np.ndarray:
    """``image`` with ``cam`` drawn over it in OpenCV's JET colours (blue low, red high).

    The colour's weight grows with the map (``opacity * cam``), so where the map is 0 the image
    shows unchanged (a photo map leaves everything outside the face as it was) and its faint values
    hardly tint it: a ``sqrt(cam)`` weight tinted the whole crop and drew the crop's edge over the photo.

    Args:
        image: ``(H, W, 3)`` uint8 RGB image.
        cam: ``(H, W)`` map, 0-1.
        opacity: The colour's weight where the map is 1, in [0, 1].

    Returns:
        The ``(H, W, 3)`` uint8 RGB blend.

    Raises:
        ConfigError: The shapes do not match, ``image`` is not uint8 RGB, or ``opacity`` is outside [0, 1].

    >>> int(overlay(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4))).max())
    0
    """
    import cv2

    picture = np.asarray(image)
    values = np.asarray(cam, dtype=np.float32)
    if picture.ndim != 3 or picture.shape[2] != 3 or picture.dtype != np.uint8:
        raise ConfigError(f"overlay image must be (H, W, 3) uint8 RGB, got {picture.dtype} {picture.shape}")
    if values.shape != picture.shape[:2]:
        raise ConfigError(f"overlay map shape {values.shape} does not match the image's {picture.shape[:2]}")
    if not 0.0 <= opacity <= 1.0:
        raise ConfigError(f"overlay opacity must be in [0, 1], got {opacity}")
    values = np.nan_to_num(np.clip(values, 0.0, 1.0))
    colour = cv2.cvtColor(cv2.applyColorMap(np.round(values * 255).astype(np.uint8), cv2.COLORMAP_JET),
                          cv2.COLOR_BGR2RGB).astype(np.float32)
    weight = (opacity * values)[..., None]
    return np.round(picture.astype(np.float32) * (1.0 - weight) + colour * weight).astype(np.uint8)


@lru_cache(maxsize=_CACHE_SIZE)
def _cached_predictor(checkpoint: Path) -> Predictor:
    return load_model(checkpoint, backend="torch")


def explain(image: Any, attribute: str | Sequence[str] | None = None, beauty: bool = False,
            model: str | Path | None = None, bgr: bool = False, layer: str | int | None = None
            ) -> list[FaceExplanation]:
    """Grad-CAM maps of the faces in one photo: what the model looks at for an attribute or beauty.

    Without ``attribute`` or ``beauty``, each face's three most probable present attributes and
    beauty are explained. The model of each path is loaded once and kept for later calls.

    Args:
        image: An input :func:`~faceattr.image.read_image` accepts.
        attribute: An attribute name or a list of them (``faceattr.ATTRIBUTES``).
        beauty: Explain the beauty score too.
        model: A ``best.pt`` or ``.safetensors`` (not an ``.onnx``: it has no gradients);
            ``None``: the default model installed with the package.
        bgr: An array input is BGR, as OpenCV gives it.
        layer: The layer explained: a module name (``"backbone.layer3"``) or a stage index
            (:func:`~faceattr.explain.gradcam.target_layer`); ``None``: the backbone's last stage.

    Returns:
        One :class:`FaceExplanation` per face (``crop_maps`` and ``photo_maps`` by target).

    Raises:
        ConfigError: An unknown attribute or layer, or an ``.onnx`` model.
        CheckpointError: The model cannot be loaded.
        ImageError: The input cannot be read.

    >>> import faceattr
    >>> face = faceattr.explain("photo.jpg", attribute="Smiling")[0]  # doctest: +SKIP
    >>> face.photo_maps["Smiling"].shape == face_photo.shape[:2]  # doctest: +SKIP
    True
    """
    names = [attribute] if isinstance(attribute, str) else list(attribute or [])
    targets = [*names, BEAUTY_TARGET] if beauty else names
    checked = check_targets(targets) if targets else None  # refused before a model is loaded
    predictor = _cached_predictor(DeployedModel.path_of(None) if model is None else Path(model).resolve())
    return explain_photo(predictor, image, checked, bgr=bgr, layer=layer)
