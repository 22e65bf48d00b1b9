"""Do the Grad-CAM maps mean something? Two checks on labelled faces: region shares and model randomisation.

**Region test.** Some attributes live in a known part of the face: :data:`ATTRIBUTE_REGIONS` names it
and :func:`face_regions` draws it from the face's 5 landmarks. On the faces where such an attribute
is present (label 1), the share of its map's mass inside its region (:func:`~faceattr.explain.gradcam.region_share`)
is compared with the share of the same region in the maps of the located attributes of the other
regions on the same faces (all 40 would cost a backward pass each), and with a uniform map's share
(the region's area over the image's). A map that means something puts more of its mass in its
attribute's region than the other maps and than chance.

**Model randomisation** (Adebayo et al. 2018, "Sanity checks for saliency maps"). The maps of the
trained network are compared with those of the same architecture untrained
(:func:`~faceattr.explain.analysis.untrained_copy`) by Spearman rank correlation per image
(:func:`rank_correlations`); maps that survive randomisation show the image (edges), not the model.
The cascading variant (:func:`cascade_steps`) randomises from the top down: the heads, then the
deepest stage, then the next ... until all the network is random.

The regions, in one place (``d``: the distance between the eye centres; ``y`` grows downwards):

- ``eyes``: from ``d/2`` left of the image-left eye to ``d/2`` right of the image-right eye, the
  eye line ``+- 0.3 d``: both eyes and a glasses frame.
- ``mouth``: from ``d/4`` beyond each mouth corner, the mouth line ``+- 0.3 d``: the lips.
- ``upper``: the whole width, from the top down to ``d/2`` above the eye line (just above the
  eyebrows): forehead, fringe, hair and hat.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from faceattr.attributes import ATTRIBUTE_INDEX, ATTRIBUTES
from faceattr.errors import ConfigError
from faceattr.explain.analysis import untrained_copy
from faceattr.explain.gradcam import box_mask, grad_cam, stage_names, target_layer
from faceattr.geometry import CELEBA_SIZE
from faceattr.inference.align import CELEBA_TEMPLATE, crop_matrix

#: The attributes whose place on the face is known, and the region (:func:`face_regions`) they live in.
ATTRIBUTE_REGIONS: dict[str, str] = {
    "Eyeglasses": "eyes", "Narrow_Eyes": "eyes",
    "Smiling": "mouth", "Wearing_Lipstick": "mouth",
    "Wearing_Hat": "upper", "Bangs": "upper",
}
#: The regions' sizes in eye distances ``d`` (see the module's docstring).
EYE_MARGIN_X, EYE_MARGIN_Y = 0.5, 0.3
MOUTH_MARGIN_X, MOUTH_MARGIN_Y = 0.25, 0.3
UPPER_ABOVE_EYES = 0.5
#: Aligned images per MTCNN call in :func:`load_faces`.
DETECTION_BATCH = 32
#: The name of the last cascading step: every weight random (the untrained twin itself).
ALL_RANDOM = "all"

Box = tuple[float, float, float, float]


def face_regions(landmarks: np.ndarray, image_size: int) -> dict[str, Box]:
    """The ``eyes``, ``mouth`` and ``upper`` boxes of one face (defined in the module's docstring).

    Args:
        landmarks: ``(5, 2)`` points ``(x, y)`` in the model's input pixels, MTCNN order (image-left eye,
            image-right eye, nose, image-left and image-right mouth corners).
        image_size: The side of the model's square input.

    Returns:
        Region name -> ``(x1, y1, x2, y2)`` in input pixels, clipped to the image.

    Raises:
        ConfigError: If ``landmarks`` is not ``(5, 2)`` finite points with the eyes apart.

    >>> face_regions(np.array([[20, 30], [40, 30], [30, 40], [24, 50], [36, 50]]), 64)["eyes"]
    (10.0, 24.0, 50.0, 36.0)
    """
    points = np.asarray(landmarks, dtype=np.float64)
    if points.shape != (5, 2) or not np.isfinite(points).all():
        raise ConfigError(f"landmarks must be (5, 2) finite points, got {points.shape}: {points.tolist()}")
    (left_eye, right_eye, _nose, left_mouth, right_mouth) = points
    distance = float(np.linalg.norm(right_eye - left_eye))
    if distance <= 0:
        raise ConfigError(f"landmarks: the eyes are at the same point {left_eye.tolist()}")
    eye_y, mouth_y = (left_eye[1] + right_eye[1]) / 2, (left_mouth[1] + right_mouth[1]) / 2
    boxes = {
        "eyes": (min(left_eye[0], right_eye[0]) - EYE_MARGIN_X * distance, eye_y - EYE_MARGIN_Y * distance,
                 max(left_eye[0], right_eye[0]) + EYE_MARGIN_X * distance, eye_y + EYE_MARGIN_Y * distance),
        "mouth": (min(left_mouth[0], right_mouth[0]) - MOUTH_MARGIN_X * distance, mouth_y - MOUTH_MARGIN_Y * distance,
                  max(left_mouth[0], right_mouth[0]) + MOUTH_MARGIN_X * distance, mouth_y + MOUTH_MARGIN_Y * distance),
        "upper": (0.0, 0.0, float(image_size), eye_y - UPPER_ABOVE_EYES * distance),
    }
    return {name: (float(max(x1, 0.0)), float(max(y1, 0.0)), float(min(x2, image_size)), float(min(y2, image_size)))
            for name, (x1, y1, x2, y2) in boxes.items()}


def frame_to_input(points: np.ndarray, image_size: int, crop: Sequence[float],
                   frame_size: tuple[int, int] = CELEBA_SIZE) -> np.ndarray:
    """Points of an aligned CelebA image mapped into the model's input, through its evaluation crop and resize.

    An aligned image of another size than 178x218 (the half-size set) is first scaled to that frame.
    The warp is :func:`~faceattr.inference.align.crop_matrix` of CelebA's own template points: its
    similarity fit is the identity, leaving the cut and resize that
    :func:`~faceattr.data.transforms.eval_transform` applies.

    Args:
        points: ``(K, 2)`` points ``(x, y)`` in the aligned image's pixels.
        image_size: The side of the model's input.
        crop: The model's crop fractions (``DeployedModel.crop``).
        frame_size: The aligned image's ``(width, height)``.

    Returns:
        ``(K, 2)`` points in input pixels.

    >>> frame_to_input(CELEBA_TEMPLATE[:1], 64, (0.051, 0.1665, 0.942, 0.894)).round(1).tolist()
    [[24.3, 30.4]]
    """
    scale = np.array(CELEBA_SIZE, dtype=np.float64) / np.array(frame_size, dtype=np.float64)
    frame = (np.asarray(points, dtype=np.float64) + 0.5) * scale - 0.5
    matrix = crop_matrix(CELEBA_TEMPLATE, image_size, crop)
    return frame @ matrix[:, :2].T + matrix[:, 2]


@dataclass
class LabelledFaces:
    """Aligned faces as a model takes them, with their labels and landmarks.

    Attributes:
        paths: The image files.
        images: ``(N, 3, S, S)`` uint8 model inputs (the evaluation transform).
        labels: ``(N, 40)`` 0/1 labels.
        landmarks: ``(N, 5, 2)`` landmarks in input pixels: MTCNN's where it found the face, else CelebA's template.
        detected: ``(N,)`` True where MTCNN gave the landmarks.
        template_distance: ``(N,)`` mean distance (input pixels) of MTCNN's 5 points from the template's; NaN
            where MTCNN missed.
    """

    paths: list[Path]
    images: Tensor
    labels: np.ndarray
    landmarks: np.ndarray
    detected: np.ndarray
    template_distance: np.ndarray


def load_faces(paths: Sequence[str | Path], labels: np.ndarray, image_size: int, crop: Sequence[float],
               detector: Any | None = None) -> LabelledFaces:
    """Reads aligned CelebA images as a model's inputs and finds their landmarks there.

    The landmarks are found by ``detector`` on the aligned image (the best-scoring face) and mapped
    into the input (:func:`frame_to_input`); where it finds no face, or without a detector,
    CelebA's template points stand in (an aligned image has its eyes and mouth within a few pixels
    of them).

    Args:
        paths: Aligned images (img_align_celeba, or its half-size set).
        labels: ``(N, 40)`` 0/1 labels of the images.
        image_size: The model's input side.
        crop: The model's crop (``DeployedModel.crop``).
        detector: A :class:`~faceattr.inference.detect.FaceDetector` (MTCNN), or ``None``.

    Returns:
        The faces.

    Raises:
        ImageError: An image cannot be read.
    """
    from faceattr.data.transforms import eval_transform
    from faceattr.image import load_image

    transform = eval_transform(image_size, crop)
    template = frame_to_input(CELEBA_TEMPLATE, image_size, crop)
    pictures = [load_image(path) for path in paths]
    images = [transform(picture) for picture in pictures]
    found: list[np.ndarray | None] = [None] * len(pictures)
    if detector is not None:
        for start in range(0, len(pictures), DETECTION_BATCH):  # MTCNN runs same-size images as one batch
            chunk = [np.asarray(picture) for picture in pictures[start:start + DETECTION_BATCH]]
            for offset, faces in enumerate(detector.detect_batch(chunk)):
                found[start + offset] = next((face.landmarks for face in faces if face.landmarks is not None), None)
    landmarks = [template if points is None else frame_to_input(points, image_size, crop, picture.size)
                 for points, picture in zip(found, pictures)]
    detected = np.array([points is not None for points in found])
    distances = np.array([float(np.linalg.norm(points - template, axis=1).mean()) if hit else np.nan
                          for points, hit in zip(landmarks, detected)])
    return LabelledFaces([Path(path) for path in paths], torch.stack(images), np.asarray(labels, dtype=np.float32),
                         np.array(landmarks), detected, distances)


def rank_correlations(first: Tensor | np.ndarray, second: Tensor | np.ndarray) -> np.ndarray:
    """Spearman rank correlation of two maps of each image (ties get their mean rank).

    Args:
        first: ``(N, H, W)`` maps.
        second: ``(N, H, W)`` maps of the same images.

    Returns:
        ``(N,)`` correlations; NaN where either map is flat (it ranks nothing: an untrained network's map
        is often all 0 after Grad-CAM's ReLU).

    >>> rank_correlations(np.arange(8.0).reshape(2, 2, 2), np.array([[[0, 1], [2, 3]], [[5, 5], [5, 5]]]))
    array([ 1., nan])
    """
    from scipy.stats import rankdata

    def ranks(maps: Tensor | np.ndarray) -> np.ndarray:
        values = maps.detach().cpu().numpy() if isinstance(maps, Tensor) else np.asarray(maps)
        ranked = rankdata(values.reshape(len(values), -1), axis=1)
        return ranked - ranked.mean(axis=1, keepdims=True)

    a, b = ranks(first), ranks(second)
    norms = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norms > 0, (a * b).sum(axis=1) / norms, np.nan)


def region_shares(maps: Tensor, masks: Tensor) -> Tensor:
    """The share of each map's mass inside each region, as :func:`~faceattr.explain.gradcam.region_share` gives it.

    Args:
        maps: ``(N, H, W)`` non-negative maps.
        masks: ``(N, R, H, W)`` region masks of each image (:func:`~faceattr.explain.gradcam.box_mask`).

    Returns:
        ``(N, R)`` float64 shares; 0 for an all-zero map.
    """
    values = maps.detach().to(torch.float64).cpu()
    total = values.sum(dim=(1, 2))
    inside = (values[:, None] * masks).sum(dim=(2, 3))
    return torch.where(total[:, None] > 0, inside / total.clamp_min(1e-300)[:, None], torch.zeros_like(inside))


def cascade_steps(model: nn.Module, stages: Sequence[str]) -> list[tuple[str, list[str]]]:
    """The cascading randomisation's steps: which state-dict entries each step has randomised, cumulatively.

    The heads (everything outside the backbone) first, then each stage from the deepest, then all
    (:data:`ALL_RANDOM`: the stem and whatever else is left).

    Args:
        model: A :class:`~faceattr.models.net.FaceAttrNet`.
        stages: Its stage names, shallowest first (:func:`~faceattr.explain.gradcam.stage_names`).

    Returns:
        ``(step name, randomised state-dict keys)`` per step.
    """
    keys = list(model.state_dict())
    randomised: list[str] = [key for key in keys if not key.startswith("backbone.")]
    steps = [("heads", list(randomised))]
    for stage in reversed(stages):
        owned = [key for key in keys if key.startswith(stage + ".")]
        if owned:
            randomised += owned
            steps.append((stage, list(randomised)))
    steps.append((ALL_RANDOM, keys))
    return steps


@dataclass
class LayerSanity:
    """The checks at one Grad-CAM layer.

    Attributes:
        map_side: The side of the layer's map before upsampling (2 for ResNet-18's layer4 at 64 px).
        shares: Attribute (of :data:`ATTRIBUTE_REGIONS`) -> ``(N, R)`` share of each region
            (:attr:`SanityResult.regions` order) in its maps.
        randomised: Randomisation step (:func:`cascade_steps`; :data:`ALL_RANDOM` alone without the cascade)
            -> attribute -> Spearman correlation of the trained map with the randomised network's, for
            the first faces (all of them for :data:`ALL_RANDOM`; NaN: a flat map).
    """

    map_side: int
    shares: dict[str, np.ndarray]
    randomised: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


@dataclass
class SanityResult:
    """The result of :func:`check_maps` on ``N`` labelled faces.

    Attributes:
        labels: ``(N, 40)`` 0/1 labels in :data:`~faceattr.attributes.ATTRIBUTES` order.
        regions: The region names, the ``R`` axis of the shares.
        uniform: ``(N, R)`` a uniform map's share of each region (its area share).
        layers: Layer name -> its checks.
    """

    labels: np.ndarray
    regions: list[str]
    uniform: np.ndarray
    layers: dict[str, LayerSanity]

    def region_rows(self) -> list[dict[str, Any]]:
        """One row per layer and attribute of :data:`ATTRIBUTE_REGIONS`, over the faces where it is present.

        Keys: ``layer``, ``attribute``, ``region``, ``faces``, ``own`` (mean share of the region in the
        attribute's maps), ``others`` (in the maps of the attributes of the other regions, on the same
        faces), ``uniform``, ``wins`` (the share of faces where the own share beats the others' mean there).
        """
        rows = []
        for layer, checks in self.layers.items():
            for attribute, region in ATTRIBUTE_REGIONS.items():
                present = self.labels[:, ATTRIBUTE_INDEX[attribute]] == 1
                column = self.regions.index(region)
                own = checks.shares[attribute][present, column]
                others = np.mean([checks.shares[name][present, column] for name in checks.shares
                                  if ATTRIBUTE_REGIONS[name] != region], axis=0)
                rows.append({"layer": layer, "attribute": attribute, "region": region, "faces": int(present.sum()),
                             "own": _mean(own), "others": _mean(others),
                             "uniform": _mean(self.uniform[present, column]), "wins": _mean(own > others)})
        return rows

    def randomisation_rows(self) -> list[dict[str, Any]]:
        """One row per layer and cascading step: Spearman of trained vs randomised maps, over :data:`ATTRIBUTE_REGIONS`.

        Keys: ``layer``, ``step``, ``faces`` (compared), ``mean`` and ``median`` (over attributes and the
        faces where each is present, flat maps left out), ``flat`` (the share of maps that were flat).
        """
        rows = []
        for layer, checks in self.layers.items():
            for step, by_attribute in checks.randomised.items():
                values = np.concatenate([scores[self.labels[:len(scores), ATTRIBUTE_INDEX[name]] == 1]
                                         for name, scores in by_attribute.items()])
                finite = values[np.isfinite(values)]
                rows.append({"layer": layer, "step": step, "faces": len(next(iter(by_attribute.values()))),
                             "mean": _mean(finite),
                             "median": float(np.median(finite)) if len(finite) else float("nan"),
                             "flat": _mean(~np.isfinite(values))})
        return rows


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


def check_maps(model: nn.Module, images: Tensor, labels: np.ndarray, landmarks: np.ndarray,
               layers: Sequence[str | int], cascade_faces: int = 0, batch_size: int = 64, seed: int = 0,
               progress: Callable[[str], None] | None = None) -> SanityResult:
    """Region shares and the randomisation test of a network's Grad-CAM maps at each layer.

    The maps of :data:`ATTRIBUTE_REGIONS`'s attributes are computed (one forward pass per batch
    serves them all; each costs a backward pass from the heads down to the layer, which at a shallow
    layer is most of the time, hence not all 40 attributes). Every face is compared with the untrained
    twin (:func:`~faceattr.explain.analysis.untrained_copy` with ``seed``); the first
    ``cascade_faces`` with each step of :func:`cascade_steps` too.

    Args:
        model: A :class:`~faceattr.models.net.FaceAttrNet` (trained).
        images: ``(N, 3, S, S)`` uint8 inputs, as the model's evaluation transform gives them.
        labels: ``(N, 40)`` 0/1 labels.
        landmarks: ``(N, 5, 2)`` landmarks in input pixels (:func:`frame_to_input`).
        layers: The Grad-CAM layers (names or stage indices, :func:`~faceattr.explain.gradcam.target_layer`).
        cascade_faces: How many faces (the first) the cascading randomisation runs on; 0: none.
        batch_size: Faces per forward pass.
        seed: Seed of the untrained twin.
        progress: Called with a line after each layer.

    Returns:
        The shares and correlations.

    Raises:
        ConfigError: If the shapes disagree or a layer names no layer.
    """
    count, side = len(images), images.shape[-1]
    if labels.shape != (count, len(ATTRIBUTES)) or np.shape(landmarks) != (count, 5, 2):
        raise ConfigError(f"check_maps: {count} images need labels ({count}, 40) and landmarks ({count}, 5, 2), "
                          f"got {labels.shape} and {np.shape(landmarks)}")
    names = [layer if isinstance(layer, str) else stage_names(model)[layer] for layer in layers]
    for layer in layers:  # refused before any map is computed
        target_layer(model, layer)
    regions = list(dict.fromkeys(ATTRIBUTE_REGIONS.values()))
    masks = torch.stack([torch.stack([box_mask(face_regions(points, side)[name], (side, side)) for name in regions])
                         for points in landmarks])
    uniform = region_shares(torch.ones(count, side, side), masks).numpy()
    trained_state, random_state = model.state_dict(), untrained_copy(model, seed).state_dict()
    twins = {}
    for step, keys in cascade_steps(model, stage_names(model)) if cascade_faces > 0 else [(ALL_RANDOM, [])]:
        twins[step], chosen = untrained_copy(model, seed), set(keys)
        if step != ALL_RANDOM:
            twins[step].load_state_dict({key: random_state[key] if key in chosen else value
                                         for key, value in trained_state.items()})
    probed = list(ATTRIBUTE_REGIONS)
    result = SanityResult(labels, regions, uniform, {})
    for layer, name in zip(layers, names):
        shares: dict[str, list[np.ndarray]] = {attribute: [] for attribute in probed}
        correlations: dict[str, dict[str, list[np.ndarray]]] = {step: {a: [] for a in probed} for step in twins}
        for start in range(0, count, batch_size):
            batch = images[start:start + batch_size]
            maps = grad_cam(model, batch, probed, layer)
            for attribute, cam in maps.items():
                shares[attribute].append(region_shares(cam, masks[start:start + batch_size]).numpy())
            for step, twin in twins.items():
                # The untrained twin sees every face; the cascade's partial steps the first cascade_faces.
                kept = len(batch) if step == ALL_RANDOM else max(0, min(len(batch), cascade_faces - start))
                if kept:
                    twin_maps = grad_cam(twin, batch[:kept], probed, layer)
                    for attribute in probed:
                        correlations[step][attribute].append(
                            rank_correlations(maps[attribute][:kept], twin_maps[attribute]))
        map_side = _map_side(model, images[:1], layer)
        result.layers[name] = LayerSanity(map_side, {a: np.concatenate(v) for a, v in shares.items()},
                                          {step: {a: np.concatenate(v) for a, v in by.items()}
                                           for step, by in correlations.items()})
        if progress is not None:
            progress(f"{name}: {map_side}x{map_side} maps of {count} faces")
    return result


def _map_side(model: nn.Module, image: Tensor, layer: str | int) -> int:
    """The side of ``layer``'s activation for ``image`` (the Grad-CAM map before upsampling)."""
    sides: list[int] = []
    handle = target_layer(model, layer).register_forward_hook(
        lambda _module, _inputs, output: sides.append(int(output.shape[-1])))
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(image)
    finally:
        handle.remove()
        model.train(was_training)
    return sides[0]


def report_markdown(result: SanityResult) -> str:
    """The two tables (region shares; randomisation) as Markdown.

    Args:
        result: What :func:`check_maps` gave.

    Returns:
        The Markdown text.
    """
    lines = ["| layer | map | attribute | region | faces | own share | others' share | uniform | own / uniform "
             "| faces own > others |", "|---|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for row in result.region_rows():
        side = result.layers[row["layer"]].map_side
        lines.append(f"| {row['layer']} | {side}x{side} | {row['attribute']} | {row['region']} | {row['faces']} "
                     f"| {row['own']:.3f} | {row['others']:.3f} | {row['uniform']:.3f} "
                     f"| {row['own'] / row['uniform']:.2f} | {row['wins']:.0%} |")
    lines += ["", "| layer | randomised up to | faces | Spearman mean | median | flat maps |",
              "|---|---|---:|---:|---:|---:|"]
    lines += [f"| {row['layer']} | {row['step']} | {row['faces']} | {row['mean']:.3f} | {row['median']:.3f} "
              f"| {row['flat']:.0%} |" for row in result.randomisation_rows()]
    return "\n".join(lines) + "\n"


def write_report(result: SanityResult, out: str | Path, name: str = "explanations",
                 extra: dict[str, Any] | None = None) -> list[Path]:
    """Saves ``NAME.md`` and ``NAME.json`` (:func:`~faceattr.files.save_table`) and ``NAME.png`` in ``out``.

    The figure: each attribute's own share of its region over the uniform share, and the others',
    per layer (left); the Spearman correlation of trained and randomised maps along the cascade (right).

    Args:
        result: What :func:`check_maps` gave.
        out: The folder (created).
        name: The files' name without suffix.
        extra: More figures for the JSON (the machine, the timing, the landmarks' source).

    Returns:
        The files written, each whole (a rerun replaces them; :func:`~faceattr.files.write_exclusive`).
    """
    import io

    import matplotlib

    matplotlib.use("Agg")  # files only; no display needed
    import matplotlib.pyplot as plt

    from faceattr.files import save_table, write_exclusive

    record = {**(extra or {}), "regions": result.region_rows(), "randomisation": result.randomisation_rows(),
              "map_sides": {layer: checks.map_side for layer, checks in result.layers.items()}}
    paths = list(save_table(out, name, report_markdown(result), record))
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    attributes, width = list(ATTRIBUTE_REGIONS), 0.8 / max(len(result.layers), 1)
    rows = result.region_rows()
    for number, layer in enumerate(result.layers):
        own = [row["own"] / row["uniform"] for row in rows if row["layer"] == layer]
        others = [row["others"] / row["uniform"] for row in rows if row["layer"] == layer]
        positions = np.arange(len(attributes)) + number * width
        side = result.layers[layer].map_side
        bars = left.bar(positions, own, width * 0.9, label=f"{layer} ({side}x{side} map)")
        left.scatter(positions, others, color=bars.patches[0].get_facecolor(), edgecolor="black", marker="v", zorder=3)
    left.axhline(1.0, color="grey", linestyle="--", label="uniform map")
    left.set_xticks(np.arange(len(attributes)) + 0.4 - width / 2,
                    [f"{a}\n({ATTRIBUTE_REGIONS[a]})" for a in attributes], fontsize=7)
    left.set_ylabel("region share / uniform share")
    left.set_title("bars: the attribute's own maps; triangles: other regions' attributes", fontsize=9)
    left.legend(fontsize=7)
    for layer in result.layers:
        steps = [row for row in result.randomisation_rows() if row["layer"] == layer]
        right.plot([row["step"].removeprefix("backbone.") for row in steps], [row["mean"] for row in steps],
                   marker="o", label=layer)
    right.axhline(0.0, color="grey", linestyle="--")
    right.set_xlabel("randomised from the top down to")
    right.set_ylabel("Spearman(trained map, randomised map), mean")
    right.legend(fontsize=7)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    paths.append(Path(out) / f"{name}.png")
    write_exclusive(paths[-1], lambda file: file.write(buffer.getvalue()))
    return paths
