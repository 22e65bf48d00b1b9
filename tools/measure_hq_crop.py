"""Where CelebA-HQ's frame lies inside CelebA's aligned crop, measured on photos in both.

Each HQ image comes from a CelebA photo (CelebA-HQ-to-CelebA-mapping.txt). For pairs whose
original is also in img_align_celeba, the face region of the aligned crop is searched for in
the HQ image over a range of scales (normalised cross-correlation); the median scale and
offset give the HQ frame in aligned-crop pixels, and the crop fractions that make CelebA
crops frame faces as HQ images do (configs/base_shared_data.yaml uses them).

Example:
    python tools/measure_hq_crop.py ../shared/data/celebahq ../shared/data/celeba --pairs 80
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

#: The face region of a 178x218 aligned crop searched for in the HQ image: x 19-159, y 40-180.
FACE = (19, 40, 159, 180)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("celebahq_root")
    parser.add_argument("celeba_root")
    parser.add_argument("--hq-images", default="CelebA-HQ-img-64")
    parser.add_argument("--pairs", type=int, default=80, help="photo pairs to match")
    parser.add_argument("--min-score", type=float, default=0.8, help="matches below this are ignored")
    return parser


def best_match(hq: np.ndarray, face: np.ndarray) -> tuple[float, int, int, int]:
    """(score, side, x, y) of the best placement of ``face``, resized to a square, inside ``hq``."""
    import cv2

    best = (-1.0, 0, 0, 0)
    for side in range(hq.shape[0] // 3, hq.shape[0] + 1):
        template = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
        _, score, _, (x, y) = cv2.minMaxLoc(cv2.matchTemplate(hq, template, cv2.TM_CCOEFF_NORMED))
        best = max(best, (score, side, x, y))
    return best


def main(argv: list[str] | None = None) -> int:
    import cv2

    args = get_args_parser().parse_args(argv)
    hq_root, celeba = Path(args.celebahq_root), Path(args.celeba_root) / "img_align_celeba"
    aligned = {path.name for path in celeba.iterdir()}
    rows = (line.split() for line in (hq_root / "CelebA-HQ-to-CelebA-mapping.txt").read_text().splitlines()[1:])
    pairs = [(row[0], row[2]) for row in rows if len(row) == 3 and row[2] in aligned][: args.pairs]
    matches = []
    for index, original in pairs:
        hq = cv2.imread(str(hq_root / args.hq_images / f"{index}.jpg"), cv2.IMREAD_GRAYSCALE)
        crop = cv2.imread(str(celeba / original), cv2.IMREAD_GRAYSCALE)
        left, top, right, bottom = FACE
        matches.append(best_match(hq, crop[top:bottom, left:right]))
    good = np.array([m for m in matches if m[0] >= args.min_score])
    if not len(good):
        print("no pair matched well enough", file=sys.stderr)
        return 1
    score, side, x, y = np.median(good, axis=0)
    scale = side / (FACE[2] - FACE[0])  # HQ pixels per aligned-crop pixel
    size = hq.shape[0]
    frame = (FACE[0] - x / scale, FACE[1] - y / scale, FACE[0] + (size - x) / scale, FACE[1] + (size - y) / scale)
    print(f"{len(good)} of {len(pairs)} pairs matched (median score {score:.3f})")
    print(f"HQ frame in the 178x218 aligned crop: x {frame[0]:.0f}-{frame[2]:.0f}, y {frame[1]:.0f}-{frame[3]:.0f}")
    print("celeba crop: [{:.3f}, {:.4f}, {:.3f}, {:.3f}]".format(
        frame[0] / 178, frame[1] / 218, frame[2] / 178, frame[3] / 218))
    return 0


if __name__ == "__main__":
    sys.exit(main())
