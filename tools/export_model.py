"""Export a trained model for shipping: python tools/export_model.py runs/X/best.pt --out dist/.

Writes OUT/NAME.safetensors (the weights) and OUT/NAME.json (model arguments, input size, crop,
thresholds, temperatures, attribute names, config, validation metrics, versions, source
checkpoint, the sha256 of the weights and a digest of the decision fields). With the default
--out and --name the pair is the package's default model, used by faceattr.predict(img) and
`faceattr predict` without --model: replacing it needs --into-package. Both files are written
under temporary names and moved into place only once complete and within the size limit, so a
refused export leaves the previous pair as it was.

--format onnx writes OUT/NAME.onnx instead: the network as an ONNX graph (input uint8 images
(B, 3, S, S), outputs attributes (B, 40) logits and beauty (B,), batch axis dynamic) with the same
description in its metadata, one file that `faceattr predict --model NAME.onnx` runs with ONNX
Runtime (needs pip install "faceattr[onnx]"). Its float16 weights are stored as float16 and cast
to float32 in the graph.

--dtype auto stores float16 weights when that moves no calibrated probability by more than
--tolerance on the check images, else float32; the weights file must stay under 30 MB.
Check images are CelebA-style aligned crops (files or folders, e.g.
../shared/data/celeba/img_align_celeba); without them, drawn faces are used.

Examples:
    python tools/export_model.py runs/r18/best.pt --into-package
    python tools/export_model.py runs/r18/best.pt --into-package --check-images ../shared/data/celeba/img_align_celeba
    python tools/export_model.py runs/r18/best.pt --out dist/ --name team_model --dtype float32
    python tools/export_model.py faceattr/weights/default.safetensors --out dist/ --format onnx
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from faceattr.errors import FaceAttrError

WEIGHTS = Path(__file__).resolve().parents[1] / "faceattr" / "weights"


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Export a trained model (best.pt) as safetensors + JSON, or ONNX.",
                                     epilog=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a best.pt written by tools/train.py (or an exported .safetensors)")
    parser.add_argument("--format", choices=("safetensors", "onnx"), default="safetensors",
                        help="NAME.safetensors + NAME.json, or one NAME.onnx (default: safetensors)")
    parser.add_argument("--out", type=Path, default=WEIGHTS,
                        help=f"output folder (default: {WEIGHTS}, which needs --into-package)")
    parser.add_argument("--into-package", action="store_true",
                        help="allow writing into the package's faceattr/weights (replacing the shipped default model)")
    parser.add_argument("--name", default="default", help="file stem (default: default)")
    parser.add_argument("--dtype", choices=("auto", "float16", "float32"), default="auto", help="default: auto")
    parser.add_argument("--tolerance", type=float, default=0.01,
                        help="largest probability change float16 may cause with --dtype auto (default: 0.01)")
    parser.add_argument("--check-images", nargs="+", default=(), metavar="PATH",
                        help="aligned face images or folders to measure float16 against float32 on")
    parser.add_argument("--check-count", type=int, default=64, metavar="N", help="images used (default: 64)")
    return parser


def check_images(paths: list[str], count: int) -> list:
    """Up to ``count`` RGB images from ``paths``, or drawn CelebA-style faces when none are given."""
    import numpy as np

    from faceattr.image import find_images, load_image
    from faceattr.synthetic.drawing import draw_face, random_labels

    if paths:
        files, missing = find_images(paths)
        if missing:
            raise FaceAttrError("; ".join(missing))
        return [load_image(path) for path in files[:count]]
    rng = np.random.default_rng(0)
    return [draw_face(random_labels(rng), rng=rng) for _ in range(count)]


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    from faceattr.models.deployed import DeployedModel
    from faceattr.training.export import export_model, half_precision_error

    if args.out.resolve() == WEIGHTS and not args.into_package:
        print(f"error: --out {args.out} is the package's own weights folder: the pair written there replaces the "
              "default model that faceattr ships; pass --into-package to do that, or --out another folder",
              file=sys.stderr)
        return 2
    try:
        model = DeployedModel.load(args.checkpoint)
        error = half_precision_error(model, check_images(args.check_images, args.check_count))
        print(f"float16 weights vs float32 on {error['images']} images: max probability difference "
              f"{error['max_probability_difference']:.2e}, max beauty difference {error['max_beauty_difference']:.2e}, "
              f"{error['decisions_changed']} of {error['images'] * 40} attribute decisions changed")
        dtype = args.dtype
        if dtype == "auto":
            dtype = "float16" if error["max_probability_difference"] <= args.tolerance else "float32"
        weights = args.out / f"{args.name}.{args.format}"
        description = export_model(args.checkpoint, weights, dtype)
        DeployedModel.load(weights)  # the pair just written loads and passes its checksums
    except FaceAttrError as problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    written = "" if args.format == "onnx" else f" and {weights.with_suffix('.json')}"
    print(f"wrote {weights} ({dtype}, {weights.stat().st_size / 1e6:.1f} MB, sha256 {description['sha256']}){written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
