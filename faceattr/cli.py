"""The ``faceattr`` command: predicts attributes and beauty for photos and folders of photos.

``faceattr predict PATH... [--model MODEL]`` prints one line per face (or JSON with ``--json``),
and can also write a CSV (``--csv``) and annotated copies of the photos (``--save-annotated``).
Without ``--model`` it uses the default model installed with the package.
The exit status tells a script what happened (see :data:`EXIT_CODES`). The model, torch and
OpenCV are imported only when a command runs, so ``faceattr --help`` answers at once.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, Any

from faceattr.attributes import ATTRIBUTES
from faceattr.errors import FaceAttrError
from faceattr.image import IMAGE_EXTENSIONS, find_images, read_reduced
from faceattr.inference.results import ImageResult, ranked_attributes
from faceattr.version import __version__

logger = logging.getLogger(__name__)

EXIT_OK = 0  # every input was read (with or without faces)
EXIT_UNREADABLE = 1  # some inputs could not be read; the others were processed
EXIT_USAGE = 2  # bad arguments, unreadable model file, or no images found
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT

EXIT_CODES = f"""exit status:
  {EXIT_OK}  every input was read (whether or not faces were found)
  {EXIT_UNREADABLE}  some inputs could not be read (each error on stderr); the others were processed
  {EXIT_USAGE}  usage error, missing or unreadable model file, or no images found (message on stderr)"""

#: CSV columns before the 40 attribute probabilities.
CSV_HEADER: tuple[str, ...] = ("path", "face", "x1", "y1", "x2", "y2", "score", "beauty")


def load_predictor(checkpoint: str | Path | None, device: str, batch_size: int) -> Any:
    """Builds a :class:`faceattr.inference.predictor.Predictor` (imported here: it brings torch and the detector).

    Args:
        checkpoint: The model file (a ``best.pt`` or an exported ``.safetensors``); ``None``
            for the default model installed with the package.
        device: ``auto``, ``cpu`` or ``cuda``.
        batch_size: Faces per network batch.

    Returns:
        The predictor.

    Raises:
        CheckpointError: The model file is missing, corrupt or incompatible, or no default
            model is installed.
    """
    from faceattr.inference.predictor import Predictor

    return Predictor(checkpoint, device=device, batch_size=batch_size)


def _positive(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative(text: str) -> int:
    """argparse type: an integer >= 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The ``faceattr`` argument parser, with the ``predict`` subcommand.

    >>> build_parser().parse_args(["predict", "a.jpg"]).batch_size
    32
    """
    parser = argparse.ArgumentParser(
        prog="faceattr", description="Facial attributes (40 CelebA attributes) and beauty score (1-5) for photos.",
        epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"faceattr {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    predict = commands.add_parser(
        "predict", help="find the faces in photos and predict their attributes and beauty",
        description="Finds the faces in photos and predicts their attributes and beauty score. Default output: "
                    "one line per face (path, face number, box, beauty, present attributes), or 'no face'.",
        epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    predict.add_argument("paths", nargs="+", metavar="PATH",
                         help="image files, or folders searched recursively for "
                              + " ".join(sorted(IMAGE_EXTENSIONS)) + " files")
    predict.add_argument("--model", metavar="MODEL",
                         help="a best.pt written by tools/train.py or a .safetensors written by tools/export_model.py "
                              "(default: the model installed with faceattr)")
    predict.add_argument("--aligned", action="store_true",
                         help="the images are faces already aligned as CelebA's img_align_celeba (178x218 or that "
                              "geometry at any size): no detection, one face per image")
    predict.add_argument("--json", action="store_true", help="print one JSON list of per-image results instead")
    predict.add_argument("--csv", type=Path, metavar="FILE",
                         help="also write one row per face: path, face, box, score, beauty, 40 probabilities")
    predict.add_argument("--save-annotated", type=Path, metavar="DIR",
                         help="also write each photo with boxes, landmarks, beauty and top attributes drawn, as DIR/NAME.jpg")
    predict.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: auto")
    predict.add_argument("--batch-size", type=_positive, default=32, metavar="N", help="default: 32")
    predict.add_argument("--top", type=_non_negative, default=3, metavar="K",
                         help="present attributes drawn per face by --save-annotated, most probable first (default: 3)")
    return parser


def format_result(result: ImageResult) -> list[str]:
    """The default text lines of one image: one per face, or one ``no face`` line.

    >>> face = FaceResult((10.4, 20.0, 50.0, 70.6), 0.99, None, {"Male": 0.9}, ("Male",), 3.123)
    >>> format_result(ImageResult("a.jpg", [face]))
    ['a.jpg  face 1  box (10,20,50,71)  beauty 3.12  Male']
    >>> format_result(ImageResult("b.jpg", []))
    ['b.jpg  no face']
    """
    if not result.faces:
        return [f"{result.source}  no face"]
    lines = []
    for number, face in enumerate(result.faces, start=1):
        box = ",".join(str(round(float(v))) for v in face.box)
        attributes = ", ".join(ranked_attributes(face)) or "-"
        lines.append(f"{result.source}  face {number}  box ({box})  beauty {face.beauty:.2f}  {attributes}")
    return lines


def csv_rows(result: ImageResult) -> list[list[str]]:
    """One CSV row per face of ``result``, in the columns of :data:`CSV_HEADER` then :data:`ATTRIBUTES`."""
    rows = []
    for number, face in enumerate(result.faces, start=1):
        box = [f"{float(v):.1f}" for v in face.box]
        probabilities = [f"{face.probabilities[name]:.4f}" for name in ATTRIBUTES]
        rows.append([result.source, str(number), *box, f"{face.score:.4f}", f"{face.beauty:.3f}", *probabilities])
    return rows


class _AnnotatedWriter:
    """Writes annotated copies under one folder, keeping each folder input's subfolders, never overwriting a name twice."""

    def __init__(self, folder: Path, roots: Sequence[Path], top: int):
        self.folder, self.roots, self.top = folder, [root.resolve() for root in roots], top
        self.used: set[Path] = set()

    def target(self, source: Path) -> Path:
        """DIR/NAME.jpg, with the subfolders below the input folder it came from."""
        resolved = source.resolve()
        relative = Path(source.name)
        for root in self.roots:
            if resolved.is_relative_to(root):
                relative = resolved.relative_to(root)
                break
        target = self.folder / relative.with_suffix(".jpg")
        stem, number = target.stem, 1
        # Two inputs with one name (a.png and a.jpg, or two folders' 1.jpg) must not overwrite each other.
        while target in self.used:
            number += 1
            target = target.with_name(f"{stem}_{number}.jpg")
        self.used.add(target)
        return target

    def write(self, result: ImageResult) -> None:
        """Draws ``result``'s faces on its photo and saves it."""
        from PIL import Image

        from faceattr.inference.annotate import annotate

        from faceattr.inference.predictor import rescale_faces

        source = Path(result.source)
        # The predictor's own reader, so the photo is turned and converted exactly as when its
        # faces were found; a large JPEG decoded reduced (not a second full-size decode, 48 MB for
        # 12 megapixels) down to a full-HD screen's width, and the faces moved into its pixels.
        image, (width, height) = read_reduced(source, 1920)
        faces = rescale_faces(result.faces, image.shape[1] / width, image.shape[0] / height)
        drawn = annotate(image, faces, self.top)
        target = self.target(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(drawn).save(target, quality=92)


def _batches(items: Sequence[Path], size: int) -> Iterable[Sequence[Path]]:
    """``items`` in consecutive slices of ``size``."""
    for start in range(0, len(items), size):
        yield items[start:start + size]


def run_predict(args: argparse.Namespace, stdout: IO[str], stderr: IO[str]) -> int:
    """Runs ``faceattr predict`` with parsed arguments and returns the exit status.

    Raises:
        FaceAttrError: The model file cannot be used (the caller reports it, status 2).
    """
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    images, missing = find_images(args.paths)
    for message in missing:
        stderr.write(f"faceattr: {message}\n")
    if not images:
        stderr.write("faceattr: no images found in " + ", ".join(args.paths) + "\n")
        return EXIT_USAGE
    if args.model is not None and not Path(args.model).is_file():
        stderr.write(f"faceattr: {args.model}: model file not found\n")
        return EXIT_USAGE
    predictor = load_predictor(args.model, args.device, args.batch_size)
    annotated = None
    try:
        if args.save_annotated is not None:
            args.save_annotated.mkdir(parents=True, exist_ok=True)
            annotated = _AnnotatedWriter(args.save_annotated, [Path(p) for p in args.paths if Path(p).is_dir()],
                                         args.top)
        csv_file = None if args.csv is None else open(args.csv, "w", newline="", encoding="utf-8")
    except OSError as error:
        stderr.write(f"faceattr: cannot write output: {error}\n")
        return EXIT_USAGE
    writer = None if csv_file is None else csv.writer(csv_file)
    if writer is not None:
        writer.writerow([*CSV_HEADER, *ATTRIBUTES])
    unreadable = len(missing)
    documents = []
    try:
        # Log records go through tqdm.write, so warnings do not break the progress bar's line.
        with logging_redirect_tqdm(), tqdm(total=len(images), unit="image", file=stderr,
                                           disable=len(images) < 2) as progress:
            # Batches of the predictor's size: results (and the bar) move as the work does.
            for batch in _batches(images, args.batch_size):
                for result in predictor.predict_many([str(path) for path in batch], aligned=args.aligned):
                    if args.json:
                        documents.append(result.to_dict())
                    if result.error is not None:
                        unreadable += 1
                        # The predictor's messages usually name the input already.
                        where = "" if result.source in result.error else f"{result.source}: "
                        progress.write(f"faceattr: {where}{result.error}", file=stderr)
                        continue
                    if not args.json:
                        stdout.write("".join(line + "\n" for line in format_result(result)))
                    if writer is not None:
                        writer.writerows(csv_rows(result))
                    if annotated is not None:
                        annotated.write(result)
                progress.update(len(batch))
    finally:
        if csv_file is not None:
            csv_file.close()
    if args.json:
        json.dump(documents, stdout, indent=2)
        stdout.write("\n")
    return EXIT_UNREADABLE if unreadable else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """The ``faceattr`` console script.

    Args:
        argv: Arguments without the program name; ``None`` reads ``sys.argv``.

    Returns:
        The exit status (see :data:`EXIT_CODES`).

    >>> main(["--version"])  # doctest: +SKIP
    faceattr 0.1.0
    0
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # argparse exits on --help, --version and usage errors
        return int(stop.code or 0)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(level=logging.WARNING, format="faceattr: %(levelname)s: %(message)s")
    try:
        return run_predict(args, sys.stdout, sys.stderr)
    except FaceAttrError as error:
        sys.stderr.write(f"faceattr: {error}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        sys.stderr.write("faceattr: interrupted\n")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
