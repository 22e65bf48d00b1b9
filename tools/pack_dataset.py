"""Pack a config's training data into small CSV sources: every face cut and resized once, to carry anywhere.

Reads the config's data section as training does (faceattr.data.loader.build_data: every
source, the holdout and split logic, the leak check) and writes, per source, OUT/NAME.csv and
OUT/NAME/ holding each training and validation image after the source's evaluation crop and
resize to data.image_size (no jitter), as WebP (default, quality 85: about 1.1 KB a 64 px
face), JPEG or lossless PNG. Test-split images and the training images of held-out groups
are left out: training never reads them. NAME is the source's index, kind and folder, e.g.
s0_celeba_img_align_celeba. Each CSV row holds the image, its split, its group (the
original group string), beauty score and 40 attributes (empty where unknown); the rows of a
scut source (or of a CSV with a fold column) hold their cross-validation fold instead of a
split, so its folds (--folds of tools/sweep.py, a source's fold:) work on the pack as on the
original.

OUT/sources.yaml lists the packed sources (kind csv, the original weights, crop null, and
folds and fold where rows have folds). To train on the pack, use that list as data.sources with the same
data.image_size and without data.holdout_groups (already applied): paste it into a config,
or give it on the command line (JSON is YAML):
    python tools/train.py configs/default_cpu.yaml data.holdout_groups=null "data.sources=$(python -c \\
        'import json, yaml; print(json.dumps(yaml.safe_load(open("packed64/sources.yaml"))["sources"]))')"
Packed groups are namespaced per CSV (csv:NAME:id:GROUP), so the packed run's leak check
sees each source alone; the pack itself was checked across sources, as training checks.

Running the same command again writes only the images not there yet (a killed run carries
on) and rewrites the CSVs; --overwrite re-encodes every image. OUT/pack.json records the
settings the images were made with: a folder packed with other settings, or a non-empty
folder that is not a pack, is refused unless --overwrite is given.

Exit status: 0 packed; 2 a config, dataset or image error, or a refused folder (on stderr).

Examples:
    python tools/pack_dataset.py configs/default_cpu.yaml packed64 --workers 2
    python tools/pack_dataset.py configs/gc_resnet101.yaml packed128 --format jpeg --quality 90
    python tools/pack_dataset.py configs/resnet18_cpu.yaml packed96 data.image_size=96
"""

from __future__ import annotations

import argparse
import sys

from faceattr.config import load_config
from faceattr.data.pack import FORMATS, pack, summary_lines
from faceattr.errors import FaceAttrError
from faceattr.runtime import configure_logging


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="YAML config file (see configs/); its data section is packed")
    parser.add_argument("out", metavar="OUT", help="the pack folder (created)")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. data.image_size=96")
    parser.add_argument("--format", choices=sorted(FORMATS), default="webp", help="image format (default webp)")
    parser.add_argument("--quality", type=int, default=85, help="webp and jpeg quality, 1-100 (default 85)")
    parser.add_argument("--workers", type=int, default=2, help="processes encoding images (default 2)")
    parser.add_argument("--overwrite", action="store_true",
                        help="re-encode every image; pack into a folder packed otherwise or holding other files")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = get_args_parser().parse_intermixed_args(argv)  # overrides may follow the options
    configure_logging()
    command = " ".join(["python tools/pack_dataset.py", *argv])
    try:
        config = load_config(args.config, args.overrides)
        summaries = pack(config.data, args.out, args.format, args.quality, args.workers, args.overwrite, command)
    except FaceAttrError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print("\n".join(summary_lines(summaries, args.out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
