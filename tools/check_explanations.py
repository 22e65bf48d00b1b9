"""Checks that the Grad-CAM maps mean something, on CelebA validation faces (faceattr.explain.sanity).

Reads the validation split (partition 1) of a CelebA folder, finds each aligned face's landmarks with
MTCNN (CelebA's template points where it finds none), and at each --layer measures the share of each
located attribute's map in its region (eyes, mouth, upper frame) against the other regions' attributes
and a uniform map, and the Spearman correlation of the trained model's maps with an untrained twin's
(and, on the first --cascade faces, with the model randomised from the top block down). Saves
explanations.md, explanations.json and explanations.png in --out.

Example:
    python tools/check_explanations.py ../shared/data/celeba --out runs/explanations --cascade 120
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from faceattr.data.readers.celeba import read_celeba
from faceattr.errors import ConfigError
from faceattr.explain.gradcam import target_layer
from faceattr.explain.sanity import check_maps, load_faces, report_markdown, write_report
from faceattr.inference.detect import FaceDetector
from faceattr.models.deployed import DeployedModel

DEFAULT_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "celeba"
DEFAULT_LAYERS = "backbone.layer4,backbone.layer3,backbone.layer2"
#: MTCNN's smallest face: an aligned 178x218 CelebA face is about 100 px wide; fewer pyramid scales, faster.
FACE_PIXELS = 60


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("celeba_root", type=Path, nargs="?", default=DEFAULT_ROOT,
                        help=f"CelebA folder (default: {DEFAULT_ROOT})")
    parser.add_argument("--images", default=None, help="its aligned image folder (default: img_align_celeba)")
    parser.add_argument("--model", type=Path, default=None, help="model to check (default: the installed one)")
    parser.add_argument("--layers", default=DEFAULT_LAYERS,
                        help=f"Grad-CAM layers, comma-separated names or stage indices (default: {DEFAULT_LAYERS})")
    parser.add_argument("--limit", type=int, default=None, help="use the first N validation images (by name)")
    parser.add_argument("--cascade", type=int, default=0, help="faces for the cascading randomisation (default: 0)")
    parser.add_argument("--no-detector", action="store_true", help="use CelebA's template points, not MTCNN")
    parser.add_argument("--batch-size", type=int, default=64, help="faces per forward pass (default: 64)")
    parser.add_argument("--out", type=Path, default=Path("runs/explanations"), help="folder for the report")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    records = sorted((r for r in read_celeba(args.celeba_root, args.images).records if r.split == "val"),
                     key=lambda record: str(record.path))[:args.limit]
    if not records:
        sys.exit(f"{args.celeba_root}: no validation image (partition 1) found")
    model = DeployedModel.load(args.model)
    network = model.build_network()
    layers = [int(text) if text.lstrip("-").isdigit() else text for text in args.layers.split(",")]
    try:
        for layer in layers:  # refused before the faces are read
            target_layer(network, layer)
    except ConfigError as error:
        sys.exit(f"--layers: {error}")
    started = time.perf_counter()
    faces = load_faces([r.path for r in records], np.array([r.attributes for r in records]), model.image_size,
                       model.crop, None if args.no_detector else FaceDetector("mtcnn", min_face_size=FACE_PIXELS))
    loaded = time.perf_counter()
    print(f"{len(records)} faces read, MTCNN landmarks for {faces.detected.sum()} (median distance from the "
          f"template {np.nanmedian(faces.template_distance) if faces.detected.any() else float('nan'):.2f} "
          f"input px) in {loaded - started:.0f} s")
    result = check_maps(network, faces.images, faces.labels, faces.landmarks, layers,
                        cascade_faces=args.cascade, batch_size=args.batch_size, progress=print)
    seconds = time.perf_counter() - loaded
    extra = {"model": model.where, "image_size": model.image_size, "faces": len(records),
             "mtcnn_landmarks": int(faces.detected.sum()),
             "median_template_distance_px": float(np.nanmedian(faces.template_distance)) if faces.detected.any()
             else None, "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
             "read_seconds": round(loaded - started, 1), "check_seconds": round(seconds, 1)}
    print(report_markdown(result))
    for path in write_report(result, args.out, extra=extra):
        print(f"wrote {path}")
    print(f"{len(records)} faces: {loaded - started:.0f} s reading and detecting, {seconds:.0f} s checking")
    return 0


if __name__ == "__main__":
    sys.exit(main())
