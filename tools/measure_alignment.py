"""Derives CelebA's 5-point template and measures how closely faceattr.inference.align reproduces CelebA's crops.

``--derive`` runs MTCNN on official aligned crops (img_align_celeba, 178x218) and prints the
median position of each landmark: :data:`faceattr.inference.align.CELEBA_TEMPLATE`.

Otherwise, for each in-the-wild photo in img_celeba whose official aligned crop is present,
MTCNN finds the face's landmarks, :func:`faceattr.inference.align.align_face` aligns it, and the result
is compared with CelebA's own crop: (a) landmark error, the mean distance between MTCNN's
landmarks on our crop and on the official one, in 178x218 pixels; (b) the normalised
cross-correlation (NCC) of the two grayscale crops over the training square
(:data:`faceattr.inference.align.CELEBA_CROP`). For reference, (c) the mean distance of the official
crop's own landmarks from the template (how much CelebA's crops vary). Crops that exist only
at half size (img_align_celeba_89x109) are compared at that size, ours shrunk the same way,
with errors scaled back to 178x218 pixels. Saves alignment.md and alignment.json in --out.

Example:
    python tools/measure_alignment.py ../shared/data/celeba --derive --count 500
    python tools/measure_alignment.py ../shared/data/celeba --out runs/bench
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from faceattr.inference.align import CELEBA_CROP, CELEBA_SIZE, align_face, template
from faceattr.data.transforms import crop_box

#: Official crop folders and their size; the full-size one is preferred where both hold a photo.
FOLDERS = {"img_align_celeba": CELEBA_SIZE, "img_align_celeba_89x109": (89, 109)}


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("celeba_root", type=Path, help="folder holding img_celeba and the aligned crops")
    parser.add_argument("--derive", action="store_true", help="print the template measured on aligned crops")
    parser.add_argument("--count", type=int, default=500, help="aligned crops to derive the template from")
    parser.add_argument("--limit", type=int, default=None, help="compare at most this many photos per folder")
    parser.add_argument("--out", type=Path, default=Path("runs/bench"), help="folder for alignment.md/.json")
    return parser


def make_detector():
    """facenet-pytorch's MTCNN on the CPU (its bundled weights; nothing is downloaded)."""
    from facenet_pytorch import MTCNN

    return MTCNN(keep_all=False, device="cpu")


def detect_landmarks(detector, image: np.ndarray) -> np.ndarray | None:
    """The ``(5, 2)`` landmarks of the largest face MTCNN finds in RGB ``image``, or None."""
    boxes, _, landmarks = detector.detect(Image.fromarray(image), landmarks=True)
    if boxes is None:
        return None
    # detect() returns every face (as object arrays under numpy 2) whatever keep_all says.
    boxes, landmarks = boxes.astype(np.float64), landmarks.astype(np.float64)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return landmarks[int(np.argmax(areas))]


def read_rgb(path: Path) -> np.ndarray:
    """The image at ``path`` as an RGB uint8 array."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def derive_template(detector, folder: Path, count: int) -> tuple[np.ndarray, int, int]:
    """(median landmarks, faces found, images tried) over the first ``count`` crops of ``folder``."""
    paths = sorted(folder.glob("*.jpg"))[:count]
    found = [points for points in (detect_landmarks(detector, read_rgb(path)) for path in paths)
             if points is not None]
    return np.median(np.stack(found), axis=0), len(found), len(paths)


def ncc(first: np.ndarray, second: np.ndarray) -> float:
    """Normalised cross-correlation of two equal-size grayscale images (1 for identical)."""
    first, second = first - first.mean(), second - second.mean()
    return float((first * second).sum() / np.sqrt((first**2).sum() * (second**2).sum()))


def grayscale(image: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma of an RGB image, as float64."""
    return image.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def compare(detector, photo: np.ndarray, official: np.ndarray, size: tuple[int, int]) -> dict | None:
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


def measure(detector, root: Path, limit: int | None) -> dict[str, dict]:
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


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    if not (args.celeba_root / "img_align_celeba").is_dir():
        print(f"{args.celeba_root / 'img_align_celeba'}: folder not found", file=sys.stderr)
        return 2
    detector = make_detector()
    if args.derive:
        median, found, tried = derive_template(detector, args.celeba_root / "img_align_celeba", args.count)
        print(f"template from {found} of {tried} aligned crops (x, y in 178x218 pixels):")
        print(np.array2string(median.round(2), separator=", "))
        return 0
    summary = measure(detector, args.celeba_root, args.limit)
    table = markdown(summary)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "alignment.md").write_text(table)
    (args.out / "alignment.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(table + f"\nsaved {args.out / 'alignment.md'} and alignment.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
