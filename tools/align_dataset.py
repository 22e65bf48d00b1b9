"""Align a folder of in-the-wild photos into CelebA-style crops plus a manifest, resumably.

Every photo under IN (recursively) is read, its largest face found with MTCNN and warped
onto CelebA's template; the crop is saved under OUT at the same relative path and name
(JPEG quality 95 for .jpg), so the labels written for the photos (CelebA's
list_attr_celeba.txt, a team's CSV) work on OUT unchanged: point a source's `images` at OUT.
OUT/manifest.csv has one row per photo (status aligned / no_face / unreadable, face count,
box, landmarks, error), written as results arrive; run the same command again after a crash
or Ctrl-C and it carries on where it stopped. Photos without a face and unreadable files are
listed there (the first few are printed).

Exit status: 0 the folder is done (whatever the faces found); 2 a missing or empty input
folder, or another usage error (message on stderr); 130 interrupted (run again to resume).

Examples:
    python tools/align_dataset.py ../shared/data/celeba/img_celeba /tmp/aligned_celeba/img_celeba --workers 2
    python tools/align_dataset.py my_team/photos my_team/aligned --size 89 109
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from faceattr.errors import FaceAttrError
from faceattr.inference.align import CELEBA_SIZE
from faceattr.prep.align_folder import align_folder

#: How many no-face and unreadable files are printed (the manifest lists them all).
SHOW = 5


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input_dir", type=Path, metavar="IN", help="folder of photos (searched recursively)")
    parser.add_argument("output_dir", type=Path, metavar="OUT", help="folder for the crops and manifest.csv")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="processes detecting in parallel (default: one per CPU core)")
    parser.add_argument("--size", type=int, nargs=2, default=CELEBA_SIZE, metavar=("W", "H"),
                        help="crop size in pixels (default 178 218, as img_align_celeba; 89 109 for half size)")
    parser.add_argument("--overwrite", action="store_true",
                        help="redo every photo and start a new manifest instead of resuming")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        summary = align_folder(args.input_dir, args.output_dir, workers=args.workers, size=tuple(args.size),
                               overwrite=args.overwrite)
    except FaceAttrError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return 130
    print(f"aligned {summary.aligned}, no face {summary.no_face}, unreadable {summary.unreadable}, "
          f"already done {summary.skipped_already_done}, in {summary.seconds:.1f} s "
          f"({summary.images_per_second:.2f} photos/s)")
    for title, files in (("no face", summary.no_face_files),
                         ("unreadable", [error for _, error in summary.unreadable_files])):
        if files:
            more = f" (first {SHOW})" if len(files) > SHOW else ""
            print(f"{title}: {len(files)}{more}\n  " + "\n  ".join(files[:SHOW]))
    print(f"manifest: {summary.manifest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
