"""Measuring alignment against CelebA: its 5-point template, how closely ours match its crops, border filling.

:func:`derive_template` runs MTCNN on official aligned crops and takes each landmark's median
(:data:`faceattr.inference.align.CELEBA_TEMPLATE`). :func:`measure` aligns in-the-wild
img_celeba photos with :func:`faceattr.inference.align.align_face` and compares each with
CelebA's own crop: landmark error, normalised cross-correlation over the training square, and
the official crop's own spread around the template. tools/measure_alignment.py is the command.
:func:`measure_borders` scores each border mode of the warp (:data:`BORDER_MODES`) on CelebA
validation faces cut tight (:func:`tight_cut`); tools/measure_borders.py is its command.

>>> round(ncc(np.eye(3), np.eye(3)), 6)
1.0
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from faceattr.attributes import ATTRIBUTES
from faceattr.data.readers.celeba import read_celeba
from faceattr.evaluation.metrics import attribute_metrics, mean_metrics
from faceattr.image import crop_box
from faceattr.inference.align import (
    BORDER_MODES,
    CELEBA_CROP,
    CELEBA_SIZE,
    DEFAULT_BORDER,
    align_face,
    crop_outside,
    template,
)

#: Official crop folders and their size; the full-size one is preferred where both hold a photo.
FOLDERS = {"img_align_celeba": CELEBA_SIZE, "img_align_celeba_89x109": (89, 109)}


def make_detector() -> Any:
    """facenet-pytorch's MTCNN on the CPU (its bundled weights; nothing is downloaded)."""
    from facenet_pytorch import MTCNN

    return MTCNN(keep_all=False, device="cpu")


def detect_landmarks(detector: Any, image: np.ndarray) -> np.ndarray | None:
    """The ``(5, 2)`` landmarks of the largest face MTCNN finds in RGB ``image``, or None."""
    boxes, _, landmarks = detector.detect(Image.fromarray(image), landmarks=True)
    if boxes is None:
        return None
    # detect() returns every face (as object arrays under numpy 2) whatever keep_all says.
    boxes, landmarks = boxes.astype(np.float64), landmarks.astype(np.float64)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return landmarks[int(np.argmax(areas))]


def read_rgb(path: Path) -> np.ndarray:
    """The image at ``path`` as an RGB uint8 array, as stored (no EXIF turn, as CelebA's crops were made)."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def derive_template(detector: Any, folder: Path, count: int) -> tuple[np.ndarray, int, int]:
    """(median landmarks, faces found, images tried) over the first ``count`` crops of ``folder``."""
    paths = sorted(folder.glob("*.jpg"))[:count]
    found = [points for points in (detect_landmarks(detector, read_rgb(path)) for path in paths)
             if points is not None]
    return np.median(np.stack(found), axis=0), len(found), len(paths)


def ncc(first: np.ndarray, second: np.ndarray) -> float:
    """Normalised cross-correlation of two equal-size grayscale images (1 for identical).

    >>> ncc(np.array([[0.0, 1.0], [2.0, 3.0]]), np.array([[0.0, 2.0], [4.0, 6.0]]))
    1.0
    """
    first, second = first - first.mean(), second - second.mean()
    return float((first * second).sum() / np.sqrt((first**2).sum() * (second**2).sum()))


def grayscale(image: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma of an RGB image, as float64.

    >>> grayscale(np.full((1, 1, 3), 100, np.uint8)).round(6).tolist()
    [[100.0]]
    """
    return image.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def compare(detector: Any, photo: np.ndarray, official: np.ndarray, size: tuple[int, int]) -> dict | None:
    """Landmark error, NCC and template spread of ``photo`` aligned vs its ``official`` crop, or None.

    None when MTCNN finds no face in one of the three images.
    """
    import cv2

    wild = detect_landmarks(detector, photo)
    if wild is None:
        return None
    ours = align_face(photo, wild)
    if size != CELEBA_SIZE:  # compare at the official crop's size, ours shrunk as CelebA shrank its own
        ours = cv2.resize(ours, size, interpolation=cv2.INTER_AREA)
    ours_points, official_points = detect_landmarks(detector, ours), detect_landmarks(detector, official)
    if ours_points is None or official_points is None:
        return None
    to_full = CELEBA_SIZE[0] / size[0]
    left, top, right, bottom = crop_box(size, CELEBA_CROP)
    return {
        "landmark_error": float(np.linalg.norm(ours_points - official_points, axis=1).mean() * to_full),
        "ncc": ncc(grayscale(ours)[top:bottom, left:right], grayscale(official)[top:bottom, left:right]),
        "template_spread": float(np.linalg.norm(official_points - template(size), axis=1).mean() * to_full),
    }


def measure(detector: Any, root: Path, limit: int | None) -> dict[str, dict]:
    """Per-folder summary of :func:`compare` over the img_celeba photos with an official crop."""
    photos = sorted((root / "img_celeba").glob("*.jpg"))
    seen: set[str] = set()
    summary = {}
    for folder, size in FOLDERS.items():
        names = [path for path in photos if (root / folder / path.name).is_file() and path.name not in seen]
        names = names[:limit]
        seen.update(path.name for path in names)
        results = [compare(detector, read_rgb(path), read_rgb(root / folder / path.name), size) for path in names]
        good = [result for result in results if result is not None]
        summary[folder] = {"size": list(size), "photos": len(names), "compared": len(good)} | {
            key: {"mean": float(np.mean(values)), "median": float(np.median(values))}
            for key in ("landmark_error", "ncc", "template_spread")
            for values in [[result[key] for result in good]] if good}
    return summary


def markdown(summary: dict[str, dict]) -> str:
    """The summary as a markdown table."""
    lines = ["# Alignment onto CelebA's template vs CelebA's own crops", "",
             "Landmark errors in 178x218 pixels; NCC of grayscale crops over the training square.", "",
             "| official crops | compared | landmark error mean / median (px) | NCC mean / median "
             "| template spread mean (px) |",
             "|---|---|---|---|---|"]
    for folder, row in summary.items():
        if "ncc" not in row:
            lines.append(f"| {folder} | 0 of {row['photos']} | - | - | - |")
            continue
        lines.append(f"| {folder} ({row['size'][0]}x{row['size'][1]}) | {row['compared']} of {row['photos']} "
                     f"| {row['landmark_error']['mean']:.2f} / {row['landmark_error']['median']:.2f} "
                     f"| {row['ncc']['mean']:.3f} / {row['ncc']['median']:.3f} "
                     f"| {row['template_spread']['mean']:.2f} |")
    return "\n".join(lines) + "\n"


def tight_cut(image: np.ndarray, keep: float) -> np.ndarray:
    """The central ``keep`` share of ``image``'s width and height (all of it for ``keep`` 1).

    >>> tight_cut(np.zeros((218, 178, 3), np.uint8), 0.65).shape
    (142, 116, 3)
    """
    height, width = image.shape[:2]
    top, left = round(height * (1 - keep) / 2), round(width * (1 - keep) / 2)
    return image[top:top + round(height * keep), left:left + round(width * keep)]


def measure_borders(predictor: Any, root: Path, keeps: Sequence[float] = (1.0, 0.8, 0.65),
                    limit: int | None = None) -> dict[str, Any]:
    """Mean balanced accuracy of ``predictor`` on CelebA validation faces cut tight, per border mode.

    Each validation image of ``root/img_align_celeba`` is cut to its central ``keep`` share
    (:func:`tight_cut`), so that the model's crop needs pixels from outside the photo; the
    predictor's detector finds the face, :func:`~faceattr.inference.align.align_face` warps it
    with each of :data:`BORDER_MODES` and the predictor classifies it as an aligned face
    (:meth:`~faceattr.inference.predictor.Predictor.predict_aligned`: the same crop, resize and
    calibration as its own path). ``"predictor"`` is the predictor's own path on the same cut
    images (detect, align, predict), to check it matches :data:`DEFAULT_BORDER`'s row. Scores use
    the model's balanced-accuracy thresholds, over the faces found at every ``keep``.

    Args:
        predictor: A :class:`~faceattr.inference.predictor.Predictor` deciding with the
            ``balanced`` policy (the thresholds balanced accuracy is scored with).
        root: CelebA's folder (official layout, ``img_align_celeba`` with validation images).
        keeps: Shares of each side kept; 1 is the untouched image.
        limit: Use at most this many validation images.

    Returns:
        ``{"images", "found", "official", "rows": {keep: {mode: mean balanced accuracy}},
        "outside": {keep: mean crop share outside the photo}}``; ``official`` is the score on
        the official crops themselves (no detection).

    >>> measure_borders(predictor, Path("../shared/data/celeba"), limit=100)  # doctest: +SKIP
    """
    if predictor.decision != "balanced":
        raise ValueError(f"measure_borders scores balanced accuracy: give a predictor with decision='balanced', "
                         f"not {predictor.decision!r}")
    records = [record for record in read_celeba(root).records if record.split == "val"][:limit]
    cut = {keep: [tight_cut(read_rgb(record.path), keep) for record in records] for keep in keeps}
    found = {keep: [predictor.detector.detect(image) for image in images] for keep, images in cut.items()}
    usable = [index for index in range(len(records)) if all(found[keep][index] for keep in keeps)]
    labels = np.stack([records[index].attributes for index in usable])
    mask = np.stack([records[index].attribute_mask for index in usable])

    def score(faces: Sequence[Any]) -> float:
        probabilities = np.array([[face.probabilities[name] for name in ATTRIBUTES] for face in faces])
        return mean_metrics(attribute_metrics(probabilities, labels, mask, predictor.thresholds))["balanced_accuracy"]

    rows, outside = {}, {}
    for keep in keeps:
        images = [cut[keep][index] for index in usable]
        points = [found[keep][index][0].landmarks for index in usable]
        rows[keep] = {mode: score(predictor.predict_aligned([align_face(image, landmarks, border=mode)
                                                              for image, landmarks in zip(images, points)]))
                      for mode in BORDER_MODES}
        own = predictor.classify(images, [found[keep][index][:1] for index in usable])
        rows[keep]["predictor"] = score([faces[0] for faces in own])
        outside[keep] = float(np.mean([crop_outside(image.shape, landmarks, predictor.image_size, predictor.crop)
                                       for image, landmarks in zip(images, points)]))
    official = score(predictor.predict_aligned([records[index].path for index in usable]))
    return {"images": len(records), "found": len(usable), "official": official, "rows": rows, "outside": outside}


def borders_markdown(summary: dict[str, Any]) -> str:
    """:func:`measure_borders`' summary as a markdown table, the best mode of each row in bold (none where all are equal)."""
    lines = [f"Mean balanced accuracy on {summary['found']} of {summary['images']} CelebA validation images "
             f"(official crops, no detection: {summary['official']:.4f}); default border {DEFAULT_BORDER}.", "",
             "| kept | crop outside | " + " | ".join(BORDER_MODES) + " | predictor |",
             "|---|---|" + "---|" * (len(BORDER_MODES) + 1)]
    for keep, row in summary["rows"].items():
        best = max(BORDER_MODES, key=row.get) if len({row[mode] for mode in BORDER_MODES}) > 1 else None
        cells = [f"**{row[mode]:.4f}**" if mode == best else f"{row[mode]:.4f}" for mode in BORDER_MODES]
        lines.append(f"| {float(keep):.0%} | {summary['outside'][keep]:.1%} | " + " | ".join(cells)
                     + f" | {row['predictor']:.4f} |")
    return "\n".join(lines) + "\n"
