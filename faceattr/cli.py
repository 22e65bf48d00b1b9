"""The ``faceattr`` command: predicts attributes and beauty for photos and folders of photos.

``faceattr predict PATH... [--model MODEL]`` prints one line per face (or JSON with ``--json``),
and can also write a CSV (``--csv``) and annotated copies of the photos (``--save-annotated``).
Without ``--model`` it uses the default model installed with the package.
The exit status tells a script what happened (see :data:`EXIT_CODES`). The model, torch and
OpenCV are imported only when a command runs, so ``faceattr --help`` answers at once.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import io
import json
import logging
import os
import sys
import traceback
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, Any

from faceattr.config import DECISION_POLICIES, PREDICTION_BACKENDS
from faceattr.errors import ConfigError, FaceAttrError
from faceattr.files import fit_name, open_exclusive, write_exclusive
from faceattr.image import IMAGE_EXTENSIONS, find_images, read_reduced
from faceattr.inference.results import (  # the results table is shared with faceattr.bulk
    CSV_COLUMNS,
    OUTSIDE_NOTE,
    ImageResult,
    csv_rows,
    printable,
    ranked_attributes,
    spreadsheet_safe,
)
from faceattr.localhost import is_loopback
from faceattr.label.commands import add_label_parser, run_label  # sqlalchemy-free: the store loads on use
from faceattr.serve.settings import ServeSettings, api_key_from_environment  # torch- and fastapi-free
from faceattr.version import __version__

logger = logging.getLogger(__name__)

EXIT_OK = 0  # every input was read (with or without faces)
EXIT_UNREADABLE = 1  # some inputs could not be read, or their outputs not written; the others were processed
EXIT_USAGE = 2  # bad arguments, unreadable model file, refused outputs, or no images found
# sysexits.h's EX_SOFTWARE ("internal software error"): a status scripts and service managers
# know, and far from the small numbers a later version may give to ordinary outcomes.
EXIT_INTERNAL = 70  # an error faceattr did not foresee: a bug (traceback on stderr)
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT

EXIT_CODES = f"""exit status:
  {EXIT_OK}  every input was read (whether or not faces were found)
  {EXIT_UNREADABLE}  some inputs could not be read or their outputs not written (each error on stderr); the others
     were processed
  {EXIT_USAGE}  usage error, missing or unreadable model file, an output that would overwrite an input, or no
     images found (message on stderr)
  {EXIT_INTERNAL} internal error: a bug in faceattr (traceback on stderr)"""

#: Present attributes drawn per face by ``--save-annotated`` when ``--top`` is not given.
DRAWN_ATTRIBUTES = 3


def load_predictor(checkpoint: str | Path | None, device: str, batch_size: int, decision: str | None = None,
                   threshold: float | None = None, backend: str | None = None) -> Any:
    """Builds a :class:`faceattr.inference.predictor.Predictor` (imported here: it brings torch and the detector).

    Args:
        checkpoint: The model file (a ``best.pt`` or an exported ``.safetensors``); ``None``
            for the default model installed with the package.
        device: ``auto``, ``cpu`` or ``cuda``.
        batch_size: Faces per network batch.
        decision: The decision policy (``None``: the model's default).
        threshold: The probability policy's cut-off.
        backend: What runs the network, ``torch`` or ``onnx`` (``None``: ``onnx`` for an ``.onnx`` model).

    Returns:
        The predictor.

    Raises:
        CheckpointError: The model file is missing, corrupt or incompatible, or no default
            model is installed.
        ConfigError: The decision policy is unknown to the model, the threshold is bad, or the
            backend's packages are not installed.
    """
    from faceattr.inference.predictor import Predictor

    return Predictor(checkpoint, device=device, batch_size=batch_size, decision=decision, threshold=threshold,
                     backend=backend)


def _positive(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _probability(text: str) -> float:
    """argparse type: a number strictly between 0 and 1."""
    value = float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive), got {text}")
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
                    "one line per face (path, face number, box, beauty, present attributes with their "
                    "probabilities, most probable first), or 'no face'.",
        epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    predict.add_argument("paths", nargs="+", metavar="PATH",
                         help="image files, or folders searched recursively for "
                              + " ".join(sorted(IMAGE_EXTENSIONS)) + " files; links to files and links to folders "
                              "are followed, a link back to a folder already searched is skipped with a warning")
    predict.add_argument("--model", metavar="MODEL",
                         help="a best.pt written by tools/train.py or a .safetensors or .onnx written by "
                              "tools/export_model.py (default: the model installed with faceattr)")
    predict.add_argument("--aligned", action="store_true",
                         help="the images are faces already aligned as CelebA's img_align_celeba (178x218 or that "
                              "geometry at any size): no detection, one face per image")
    predict.add_argument("--json", action="store_true", help="print one JSON list of per-image results instead")
    predict.add_argument("--csv", type=Path, metavar="FILE",
                         help="also write one row per face: path, face, box, score, beauty, 40 probabilities, the "
                              "decision policy, and 40 NAME_present columns (1 present, 0 absent); a cell that a "
                              "spreadsheet would run as a formula (first character = + - @ tab or carriage return, "
                              "not a number) gets a ' in front; refused if FILE is an input")
    predict.add_argument("--save-annotated", type=Path, metavar="DIR",
                         help="also write each photo with boxes, landmarks, beauty and top attributes drawn, as "
                              "DIR/NAME.jpg (names too long for the file system are shortened with a hash); "
                              "refused if DIR is or holds an input; a DIR inside an input folder is not searched")
    predict.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: auto")
    predict.add_argument("--backend", choices=PREDICTION_BACKENDS, default=None,
                         help="what runs the network: torch, or onnx (ONNX Runtime: pip install 'faceattr[onnx]'; a "
                              "model that is not an .onnx is exported to ONNX in memory as it loads, a few seconds); "
                              "default: onnx for an .onnx model, torch otherwise")
    predict.add_argument("--batch-size", type=_positive, default=32, metavar="N", help="default: 32")
    predict.add_argument("--decision", choices=DECISION_POLICIES, default=None,
                         help="how attributes are judged present: f1 (thresholds maximising F1 on validation), "
                              "probability (calibrated probability >= --threshold) or balanced (thresholds "
                              "maximising balanced accuracy, the evaluation metric: long lists with many false "
                              "rare attributes); default: the model's (probability >= 0.5 for the installed model)")
    predict.add_argument("--threshold", type=_probability, metavar="P",
                         help="the probability policy's cut-off (default 0.5); implies --decision probability")
    predict.add_argument("--top", type=_non_negative, default=None, metavar="K",
                         help="list at most K present attributes per face, most probable first (default: all; "
                              "--save-annotated draws 3)")
    add_bulk_parser(commands)
    add_serve_parser(commands)
    add_label_parser(commands)
    add_clean_parser(commands)
    add_explain_parser(commands)
    add_embed_parsers(commands)
    add_analyze_parser(commands)
    return parser


def add_bulk_parser(commands: Any) -> None:
    """The ``bulk`` subcommand's arguments (:func:`faceattr.bulk.predict_collection`)."""
    bulk = commands.add_parser(
        "bulk", help="predict a whole collection with Ray: a table of faces, resumable",
        description="Predicts every photo of a folder (recursively), a text file of paths (one a line) or a "
                    "Parquet file's column of paths with Ray Data, and writes one row per face (the --csv "
                    "columns, the present attributes and an error column) to OUT.parquet or OUT.csv, a "
                    "folder of part files. Run again with the same OUT to go on where a run stopped.",
        epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    bulk.add_argument("input", metavar="INPUT", help="a folder, a .parquet file, or a text file of paths")
    bulk.add_argument("--output", required=True, type=Path, metavar="OUT", help="OUT.parquet or OUT.csv")
    bulk.add_argument("--column", default="path", help="the Parquet input's column of paths (default: path)")
    bulk.add_argument("--ray-address", metavar="ADDR",
                      help="join a running Ray cluster (auto: the cluster of this machine, after `ray start "
                           "--head`; see docs/RAY.md); default: start Ray here with --workers CPUs")
    bulk.add_argument("--workers", type=_positive, default=2, metavar="N", help="predictors, one CPU each (default: 2)")
    bulk.add_argument("--batch-size", type=_positive, default=16, metavar="N", help="photos per batch (default: 16)")
    bulk.add_argument("--model", metavar="MODEL", help="as for predict (default: the model installed with faceattr)")
    bulk.add_argument("--decision", choices=DECISION_POLICIES, default=None, help="as for predict (default: the model's)")


def add_serve_parser(commands: Any) -> None:
    """The ``serve`` subcommand's arguments (defaults: :class:`faceattr.serve.settings.ServeSettings`'s)."""
    serve = commands.add_parser(
        "serve", help="run the REST API and web page (pip install \"faceattr[serve]\")",
        description="Runs faceattr as a service: the REST API (OpenAPI docs at /docs), the web page with upload "
                    "and live webcam at /, health (/healthz, /readyz) and Prometheus metrics (/metrics). Binds "
                    "127.0.0.1 unless --host says otherwise. Needs: pip install \"faceattr[serve]\".")
    defaults = ServeSettings()
    serve.add_argument("--host", default=defaults.host,
                       help=f"address to bind (default: {defaults.host}, this machine only)")
    serve.add_argument("--port", type=int, default=defaults.port, help=f"default: {defaults.port}")
    serve.add_argument("--model", metavar="MODEL",
                       help="a best.pt, .safetensors or .onnx (default: the installed model)")
    serve.add_argument("--device", choices=("auto", "cpu", "cuda"), default=defaults.device,
                       help=f"default: {defaults.device}")
    serve.add_argument("--backend", choices=PREDICTION_BACKENDS, default=None,
                       help="what runs the network: torch, or onnx (ONNX Runtime, pip install \"faceattr[onnx]\"); "
                            "default: onnx for an .onnx model, else torch")
    serve.add_argument("--decision", choices=DECISION_POLICIES, default=None,
                       help="the policy when a request names none (default: the model's)")
    serve.add_argument("--max-batch", type=_positive, default=defaults.max_batch, metavar="N",
                       help=f"most images detected and classified together (default: {defaults.max_batch})")
    serve.add_argument("--max-wait-ms", type=float, default=defaults.max_wait_ms, metavar="MS",
                       help=f"longest an image waits for others to fill its batch (default: {defaults.max_wait_ms:g})")
    serve.add_argument("--max-queue", type=_positive, default=defaults.max_queue, metavar="N",
                       help=f"most requests in flight; more are answered 429 with Retry-After "
                            f"(default: {defaults.max_queue})")
    serve.add_argument("--max-upload-mb", type=float, default=defaults.max_upload_mb, metavar="MB",
                       help=f"default: {defaults.max_upload_mb:g}")
    serve.add_argument("--timeout", type=float, default=defaults.timeout_s, metavar="S", dest="timeout_s",
                       help=f"longest a request may take, else 504 (default: {defaults.timeout_s:g})")
    serve.add_argument("--api-key", metavar="KEY",
                       help="require this key on /v1 (X-API-Key header); better: the FACEATTR_API_KEY environment "
                            "variable, which stays out of process listings")
    serve.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN", dest="cors_origins",
                       help="allow browser pages from ORIGIN to call the API (repeatable; default: CORS off)")
    serve.add_argument("--ray", action="store_true",
                       help="run under Ray Serve: --replicas copies of the service behind Ray's proxy on --host:--port "
                            "(pip install \"faceattr[ray]\")")
    serve.add_argument("--replicas", type=_positive, default=2, metavar="N", help="with --ray (default: 2)")
    serve.add_argument("--ray-address", metavar="ADDR",
                       help="with --ray: join a running Ray cluster (auto after `ray start --head` on this machine); "
                            "default: start Ray here")


def run_serve(args: argparse.Namespace) -> int:
    """``faceattr serve``: builds the settings from the arguments and runs the service until interrupted."""
    try:
        from faceattr.serve.app import serve
    except ImportError as error:
        raise ConfigError(f"faceattr serve needs its extra: pip install \"faceattr[serve]\" ({error})") from error
    settings = ServeSettings(
        host=args.host, port=args.port, model=args.model, device=args.device, backend=args.backend,
        decision=args.decision,
        max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, max_queue=args.max_queue,
        max_upload_mb=args.max_upload_mb, timeout_s=args.timeout_s,
        api_key=args.api_key or api_key_from_environment(), cors_origins=tuple(args.cors_origins))
    if not is_loopback(settings.host) and settings.api_key is None:
        logger.warning("serving on %s without an API key: anyone who reaches this address can use it",
                       settings.host)
    if args.ray:
        from faceattr.serve.ray_serve import serve_on_ray

        try:
            serve_on_ray(settings, args.replicas, args.ray_address)
        except ImportError as error:  # Ray is missing: the message names the extra
            raise ConfigError(str(error)) from error
    else:
        serve(settings)
    return EXIT_OK


CLEAN_EXIT_CODES = f"""exit status:
  {EXIT_OK}  the folder was checked and the report written, whether or not problems were found (they are in
     the report: a script reads its problems column, not the status)
  {EXIT_UNREADABLE}  with --move: some problem files could not be moved (each error on stderr and in the report); the
     others were moved
  {EXIT_USAGE}  usage error, no images found, a report that exists (without --force), a file whose place in the
     quarantine folder is taken (nothing is moved), or imagehash missing (message on stderr)
  {EXIT_INTERNAL} internal error: a bug in faceattr (traceback on stderr)"""


def add_clean_parser(commands: Any) -> None:
    """The ``clean`` subcommand's arguments (:func:`faceattr.prep.clean.clean_folder`; defaults: ``CleanLimits``')."""
    from faceattr.prep.clean import CleanLimits  # numpy and PIL only: no torch
    from faceattr.prep.clean_report import PROBLEMS

    limits = CleanLimits()
    clean = commands.add_parser(
        "clean", help="check a folder of photos before labelling: a report, and an optional quarantine",
        description="Checks every image file under FOLDER (recursively) for: " + ", ".join(PROBLEMS) + ". Writes a "
                    "CSV report, one row per file (path, status, problems, faces, face size, width, height, bytes, "
                    "sha256, phash, duplicate_of, distance, moved_to, error). Of duplicates and near duplicates the "
                    "best copy is kept (fewest other problems, most pixels, largest file, first path) and the others "
                    "name it. With --quarantine DIR the report says where each problem file would go; with --move "
                    "too they are moved there at their relative paths. Nothing is ever deleted or overwritten. "
                    "Near duplicates need imagehash: pip install \"faceattr[label]\".",
        epilog=CLEAN_EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    clean.add_argument("folder", type=Path, metavar="FOLDER", help="the folder of photos")
    clean.add_argument("--report", type=Path, metavar="FILE",
                       help="the CSV report (default: FOLDER/clean-report.csv); an existing one is refused "
                            "unless --force")
    clean.add_argument("--force", action="store_true", help="replace an existing report")
    clean.add_argument("--quarantine", type=Path, metavar="DIR",
                       help="where problem files go, at their paths relative to FOLDER (a dry run without --move)")
    clean.add_argument("--move", action="store_true",
                       help="move the problem files to --quarantine DIR (refused as a whole if a place there is taken)")
    clean.add_argument("--skip-faces", action="store_true",
                       help="no face detection: only the file, size and duplicate checks (much faster)")
    clean.add_argument("--min-face", type=_positive, default=limits.min_face, metavar="PX",
                       help=f"smallest face: its box's shorter side in the photo's pixels (default: {limits.min_face})")
    clean.add_argument("--min-side", type=_positive, default=limits.min_side, metavar="PX",
                       help=f"smallest shorter side of a photo (default: {limits.min_side})")
    clean.add_argument("--max-side", type=_positive, default=limits.max_side, metavar="PX",
                       help=f"largest longer side of a photo (default: {limits.max_side})")
    clean.add_argument("--max-aspect", type=float, default=limits.max_aspect, metavar="R",
                       help=f"largest ratio of longer to shorter side (default: {limits.max_aspect:g})")
    clean.add_argument("--near-distance", type=int, default=limits.near_distance, metavar="BITS",
                       help=f"near duplicates: perceptual hashes (phash, 64 bits) at most BITS apart; 0 equal hashes "
                            f"only, -1 off (default: {limits.near_distance})")
    clean.add_argument("--workers", type=_positive, default=1, metavar="N",
                       help="processes checking photos in parallel (default: 1)")
    clean.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="the face detector's (default: cpu)")


def run_clean(args: argparse.Namespace, stdout: IO[str], stderr: IO[str]) -> int:
    """Runs ``faceattr clean`` with parsed arguments: prints the counts per problem and the report; the exit status.

    Raises:
        FaceAttrError: A usage error :func:`faceattr.prep.clean.clean_folder` refuses (the caller reports it, status 2).
    """
    from faceattr.inference.detect import FaceDetector
    from faceattr.prep.clean import CleanLimits, clean_folder

    limits = CleanLimits(min_face=args.min_face, min_side=args.min_side, max_side=args.max_side,
                         max_aspect=args.max_aspect, near_distance=args.near_distance)
    summary = clean_folder(args.folder, args.report or args.folder / "clean-report.csv", quarantine=args.quarantine,
                           move=args.move, limits=limits, detector=FaceDetector("mtcnn", device=args.device),
                           skip_faces=args.skip_faces, workers=args.workers, force=args.force)
    for error in summary.move_errors:
        stderr.write(f"faceattr: {printable(error)}\n")
    stdout.write(f"{len(summary.checks)} files checked in {summary.seconds:.1f} s ({summary.photos_per_second:.1f}/s): "
                 f"{len(summary.checks) - summary.flagged} ok, {summary.flagged} with problems\n")
    stdout.write("".join(f"  {problem:<17}{count}\n" for problem, count in summary.counts.items()))
    if args.quarantine is not None:
        if args.move:
            stdout.write(f"moved {summary.moved} files to {printable(str(args.quarantine))}\n")
        else:
            stdout.write(f"dry run: {summary.flagged} files would move to {printable(str(args.quarantine))} "
                         "(add --move to move them)\n")
    stdout.write(f"report: {printable(str(summary.report))}\n")
    return EXIT_UNREADABLE if summary.move_errors else EXIT_OK


def format_result(result: ImageResult, top: int | None = None) -> list[str]:
    """The default text lines of one image: one per face, or one ``no face`` line.

    Each face's present attributes come most probable first, each with its probability.

    Args:
        result: The image's result.
        top: List at most this many attributes per face; ``None``: all.

    >>> from faceattr.inference.results import FaceResult
    >>> face = FaceResult((10.4, 20.0, 50.0, 70.6), 0.99, None, {"Male": 0.96, "Young": 0.7}, ("Male", "Young"), 3.123)
    >>> format_result(ImageResult("a.jpg", [face]))
    ['a.jpg  face 1  box (10,20,50,71)  beauty 3.12  Male 0.96, Young 0.70']
    >>> format_result(ImageResult("a.jpg", [face]), top=1)
    ['a.jpg  face 1  box (10,20,50,71)  beauty 3.12  Male 0.96']
    >>> format_result(ImageResult("b.jpg", []))
    ['b.jpg  no face']
    """
    if not result.faces:
        return [f"{result.source}  no face"]
    lines = []
    for number, face in enumerate(result.faces, start=1):
        box = ",".join(str(round(float(v))) for v in face.box)
        listed = ranked_attributes(face)[:top]
        attributes = ", ".join(f"{name} {face.probabilities[name]:.2f}" for name in listed) or "-"
        note = f"  (crop {face.outside:.0%} outside the photo)" if face.outside > OUTSIDE_NOTE else ""
        lines.append(f"{result.source}  face {number}  box ({box})  beauty {face.beauty:.2f}  {attributes}{note}")
    return lines


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
        stem, number = relative.stem, 1
        target = self.folder / relative.parent / fit_name(stem + ".jpg")
        # Two inputs with one name (a.png and a.jpg, or two folders' 1.jpg) must not overwrite each other.
        while target in self.used:
            number += 1
            target = target.with_name(fit_name(f"{stem}_{number}.jpg"))
        self.used.add(target)
        return target

    def write(self, result: ImageResult, target: Path) -> None:
        """Draws ``result``'s faces on its photo and saves it as ``target``.

        Raises:
            OSError: The photo cannot be read again, or ``target`` cannot be written.
        """
        from PIL import Image

        from faceattr.inference.annotate import annotate
        from faceattr.inference.predictor import rescale_faces

        # The predictor's own reader, so the photo is turned and converted exactly as when its
        # faces were found; a large JPEG decoded reduced (not a second full-size decode, 48 MB for
        # 12 megapixels) down to a full-HD screen's width, and the faces moved into its pixels.
        image, (width, height) = read_reduced(Path(result.source), 1920)
        faces = rescale_faces(result.faces, image.shape[1] / width, image.shape[0] / height)
        drawn = Image.fromarray(annotate(image, faces, self.top))
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.parent.resolve().is_relative_to(self.folder.resolve()):
            raise OSError(f"{target.parent} links out of {self.folder}")
        write_exclusive(target, lambda file: drawn.save(file, format="JPEG", quality=92))


def _batches(items: Sequence[Path], size: int) -> Iterable[Sequence[Path]]:
    """``items`` in consecutive slices of ``size``."""
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _input_at_or_inside(folder: Path, paths: Iterable[str | Path]) -> Path | None:
    """The first of ``paths`` that is ``folder`` or lies inside it, links resolved; else ``None``."""
    resolved = folder.resolve()
    return next((Path(path) for path in paths if Path(path).resolve().is_relative_to(resolved)), None)


def _refused_output(args: argparse.Namespace, images: Sequence[Path]) -> str | None:
    """Why an output would overwrite or be read back as an input, or ``None`` if none would."""
    if args.save_annotated is not None:
        # The paths given too: an input folder that is the output folder was left out of ``images``.
        inside = _input_at_or_inside(args.save_annotated, [*args.paths, *images])
        if inside is not None:
            return (f"--save-annotated {args.save_annotated}: is or holds an input ({inside}); "
                    "annotated copies go to a folder outside the inputs or inside an input folder")
    if args.csv is not None:
        table = args.csv.resolve()
        if any(image.resolve() == table for image in images):
            return f"--csv {args.csv}: is one of the inputs; it would be overwritten"
    return None


def run_predict(args: argparse.Namespace, stdout: IO[str], stderr: IO[str]) -> int:
    """Runs ``faceattr predict`` with parsed arguments and returns the exit status.

    Raises:
        FaceAttrError: The model file cannot be used (the caller reports it, status 2).
    """
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    excluded = [] if args.save_annotated is None else [args.save_annotated]
    images, missing = find_images(args.paths, exclude=excluded)
    refusal = _refused_output(args, images)
    if refusal is not None:
        stderr.write(f"faceattr: {printable(refusal)}\n")
        return EXIT_USAGE
    for message in missing:
        stderr.write(f"faceattr: {printable(message)}\n")
    if not images:
        searched = [printable(str(path)) for path in args.paths if Path(path).exists()]
        if searched:  # a path that does not exist was named just above
            stderr.write("faceattr: no images found in " + ", ".join(searched) + "\n")
        return EXIT_USAGE
    if args.model is not None and not Path(args.model).is_file():
        stderr.write(f"faceattr: {args.model}: model file not found\n")
        return EXIT_USAGE
    predictor = load_predictor(args.model, args.device, args.batch_size, args.decision, args.threshold,
                               backend=args.backend)
    annotated = None
    outputs = contextlib.ExitStack()
    try:
        if args.save_annotated is not None:
            args.save_annotated.mkdir(parents=True, exist_ok=True)
            annotated = _AnnotatedWriter(args.save_annotated, [Path(p) for p in args.paths if Path(p).is_dir()],
                                         DRAWN_ATTRIBUTES if args.top is None else args.top)
        # Written beside its destination and put in place when the run ends: never through a link
        # planted at FILE, and a failed run leaves an earlier FILE as it was.
        csv_file = None if args.csv is None else io.TextIOWrapper(outputs.enter_context(open_exclusive(args.csv)),
                                                                 encoding="utf-8", newline="")
    except OSError as error:
        outputs.close()
        stderr.write(f"faceattr: cannot write output: {error}\n")
        return EXIT_USAGE
    writer = None if csv_file is None else csv.writer(csv_file)
    if writer is not None:
        writer.writerow(CSV_COLUMNS)
    failed = len(missing)
    documents = []
    with outputs:
        # Log records go through tqdm.write, so warnings do not break the progress bar's line.
        # No bar where stderr is a log file or a pipe: its redrawn lines would only clutter it.
        with logging_redirect_tqdm(), tqdm(total=len(images), unit="image", file=stderr,
                                           disable=len(images) < 2 or not stderr.isatty()) as progress:
            # Batches of the predictor's size: results (and the bar) move as the work does.
            for batch in _batches(images, args.batch_size):
                for result in predictor.predict_many([str(path) for path in batch], aligned=args.aligned):
                    shown = dataclasses.replace(result, source=printable(result.source),
                                                error=None if result.error is None else printable(result.error))
                    if args.json:
                        documents.append(shown.to_dict())
                    if shown.error is not None:
                        failed += 1
                        # The predictor's messages usually name the input already.
                        where = "" if shown.source in shown.error else f"{shown.source}: "
                        progress.write(f"faceattr: {where}{shown.error}", file=stderr)
                        continue
                    if not args.json:
                        stdout.write("".join(line + "\n" for line in format_result(shown, args.top)))
                    if writer is not None:
                        writer.writerows([[spreadsheet_safe(cell) for cell in row] for row in csv_rows(shown)])
                    if annotated is not None:
                        target = annotated.target(Path(result.source))
                        try:
                            annotated.write(result, target)
                        except OSError as error:  # this copy only: the other photos go on
                            failed += 1
                            progress.write(f"faceattr: {shown.source}: cannot write {printable(str(target))}: "
                                           f"{printable(error.strerror or str(error))}", file=stderr)
                progress.update(len(batch))
        if csv_file is not None:
            csv_file.detach()  # flushed into the binary file, which the stack closes and puts in place
    if args.json:
        json.dump(documents, stdout, indent=2)
        stdout.write("\n")
    return EXIT_UNREADABLE if failed else EXIT_OK


def run_bulk(args: argparse.Namespace, stdout: IO[str], stderr: IO[str]) -> int:
    """Runs ``faceattr bulk`` with parsed arguments (:func:`faceattr.bulk.predict_collection`); the exit status."""
    from faceattr.bulk import predict_collection

    try:
        summary = predict_collection(args.input, args.output, model=args.model, decision=args.decision,
                                     batch_size=args.batch_size, num_workers=args.workers,
                                     ray_address=args.ray_address, column=args.column)
    except ImportError as error:  # Ray is missing: the message names the extra
        raise ConfigError(str(error)) from error
    stdout.write(f"{printable(str(summary.output))}: {summary.images} photos predicted ({summary.faces} faces, "
                 f"{summary.errors} unreadable), {summary.skipped} already done\n")
    return EXIT_UNREADABLE if summary.errors else EXIT_OK


def _attribute_name(text: str) -> str:
    """argparse type: one of the 40 attribute names (the error lists them)."""
    from faceattr.attributes import ATTRIBUTE_INDEX

    if text not in ATTRIBUTE_INDEX:
        raise argparse.ArgumentTypeError(f"unknown attribute {text!r}; use one of: {', '.join(ATTRIBUTE_INDEX)}")
    return text


def add_explain_parser(commands: Any) -> None:
    """Adds ``faceattr explain``: Grad-CAM maps of what the model looks at, per face and target."""
    explain = commands.add_parser(
        "explain", help="show where the model looks (Grad-CAM) for an attribute or beauty, per face",
        description="Writes Grad-CAM heatmaps (red: where the model looked) for each face of each photo and each "
                    "target: OUT/NAME_faceN_TARGET_crop.png (the aligned face the model saw, with the map) and "
                    "OUT/NAME_faceN_TARGET_photo.png (the photo with the map warped back onto it). Prints one "
                    "line per face and target with the files written. Existing files are never overwritten. "
                    "Without --attribute or --beauty: each face's 3 most probable present attributes and beauty.",
        epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    explain.add_argument("paths", nargs="+", metavar="PHOTO", help="image files, or folders searched recursively")
    explain.add_argument("--attribute", action="append", type=_attribute_name, metavar="NAME",
                         help="an attribute to explain (e.g. Smiling); repeat for several")
    explain.add_argument("--beauty", action="store_true", help="explain the beauty score")
    explain.add_argument("--out", type=Path, default=Path("explained"), metavar="DIR",
                         help="folder the PNGs are written to (created; default: ./explained); refused if it is "
                              "or holds an input")
    explain.add_argument("--model", metavar="MODEL",
                         help="a best.pt or .safetensors (an .onnx has no gradients; default: the installed model)")
    explain.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: auto")
    explain.add_argument("--layer", type=_layer_choice, metavar="LAYER",
                         help="the layer explained: a module name (backbone.layer4) or a stage index (-1: the last "
                              "stage; -2 the one before, with a map twice as fine); default: the deepest stage whose "
                              "map is at least 4x4 (backbone.layer3 for the default model at 64 px)")


def _layer_choice(text: str) -> str | int:
    """``--layer``'s value: a stage index where it is a whole number, else a module name."""
    try:
        return int(text)
    except ValueError:
        return text


def _write_new_png(path: Path, image: Any) -> None:
    """Writes ``image`` (uint8 RGB) as a PNG at ``path``, which must not exist (no overwrite, no link followed).

    Raises:
        FileExistsError: ``path`` exists (a file or a link).
        OSError: It cannot be written.
    """
    from PIL import Image

    encoded = io.BytesIO()
    Image.fromarray(image).save(encoded, format="PNG")
    # "x": O_CREAT | O_EXCL, which fails on any existing name, a planted link included.
    with open(path, "xb") as file:
        file.write(encoded.getvalue())


#: Side of the crop PNGs of ``faceattr explain``: the model's input (64 px for the default model) is too small to see.
EXPLAIN_CROP_SIDE = 256


def _shown_crop(overlay: Any, crop: Any, cam: Any) -> Any:
    """The crop with its map drawn, enlarged (smoothly) to at least :data:`EXPLAIN_CROP_SIDE` pixels."""
    import cv2

    side = max(EXPLAIN_CROP_SIDE, crop.shape[0])
    return overlay(cv2.resize(crop, (side, side), interpolation=cv2.INTER_CUBIC),
                   cv2.resize(cam, (side, side), interpolation=cv2.INTER_LINEAR))


def run_explain(args: argparse.Namespace, stdout: IO[str], stderr: IO[str]) -> int:
    """Runs ``faceattr explain`` with parsed arguments and returns the exit status.

    Raises:
        FaceAttrError: The model cannot be used, e.g. an ``.onnx``, or ``--layer`` names no layer of it (the
            caller reports it, status 2).
    """
    from faceattr.explain.gradcam import BEAUTY_TARGET, target_layer
    from faceattr.explain.maps import explain_photo, overlay, torch_module

    images, missing = find_images(args.paths, exclude=[args.out])
    inside = _input_at_or_inside(args.out, [*args.paths, *images])
    if inside is not None:
        stderr.write(f"faceattr: --out {printable(str(args.out))}: is or holds an input ({printable(str(inside))})\n")
        return EXIT_USAGE
    for message in missing:
        stderr.write(f"faceattr: {printable(message)}\n")
    if not images:
        return EXIT_USAGE
    if args.model is not None and not Path(args.model).is_file():
        stderr.write(f"faceattr: {args.model}: model file not found\n")
        return EXIT_USAGE
    targets = [*(args.attribute or []), *([BEAUTY_TARGET] if args.beauty else [])] or None
    predictor = load_predictor(args.model, args.device, 32, backend="torch")
    target_layer(torch_module(predictor), args.layer)  # a bad --layer stops here, before any photo
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        stderr.write(f"faceattr: cannot write output: {error}\n")
        return EXIT_USAGE
    failed = len(missing)
    for path in images:
        shown = printable(str(path))
        try:
            faces = explain_photo(predictor, str(path), targets, layer=args.layer)
            photo = read_reduced(str(path), None, predictor.max_pixels)[0] if faces else None
        except FaceAttrError as error:  # this photo only (unreadable): the others go on
            failed += 1
            stderr.write(f"faceattr: {printable(str(error))}\n")
            continue
        if not faces:
            stdout.write(f"{shown}  no face\n")
            continue
        for number, face in enumerate(faces, start=1):
            for target in face.targets:
                stem = f"{path.stem}_face{number}_{target}"
                crop_file = args.out / fit_name(stem + "_crop.png")
                photo_file = args.out / fit_name(stem + "_photo.png")
                try:
                    _write_new_png(crop_file, _shown_crop(overlay, face.crop, face.crop_maps[target]))
                    _write_new_png(photo_file, overlay(photo, face.photo_maps[target]))
                except FileExistsError as error:
                    failed += 1
                    stderr.write(f"faceattr: {printable(str(error.filename))} exists; not overwritten (remove it or "
                                 "choose another --out)\n")
                    continue
                except OSError as error:
                    failed += 1
                    stderr.write(f"faceattr: cannot write {printable(str(error.filename))}: {error.strerror}\n")
                    continue
                stdout.write(f"{shown}  face {number}  {target}  {printable(str(crop_file))}  "
                             f"{printable(str(photo_file))}\n")
    return EXIT_UNREADABLE if failed else EXIT_OK


def add_embed_parsers(commands: Any) -> None:
    """Adds ``faceattr embed`` (a collection of face embeddings) and ``faceattr embeddings map|neighbours|probe``."""
    from faceattr.inference.results import NORMALISATIONS

    embed = commands.add_parser(
        "embed", help="write each face's embedding (the network's pooled features) with its prediction to a file",
        description="Finds the faces in photos (or reads aligned faces) and writes one row per face to FILE: "
                    "source, face, box, detector score, beauty, the 40 attribute probabilities and the embedding "
                    "(the pooled features both heads read), all from one forward pass. FILE.parquet: one Parquet "
                    "file (needs pyarrow); FILE.npy: the vectors, with the index as FILE.csv beside it. Never "
                    "overwrites.", epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    embed.add_argument("paths", nargs="+", metavar="PATH", help="image files, or folders searched recursively")
    embed.add_argument("--out", type=Path, required=True, metavar="FILE", help="a new .parquet or .npy file")
    embed.add_argument("--normalise", choices=NORMALISATIONS, default="none",
                       help="scale each vector: none (as the network gives it; probes can then compare all "
                            "three), l1 or l2 (unit norm); default: none")
    embed.add_argument("--aligned", action="store_true",
                       help="the images are faces aligned as CelebA's img_align_celeba: no detection, one face each")
    embed.add_argument("--model", metavar="MODEL", help="a best.pt, .safetensors or .onnx (default: the installed "
                                                        "model; an .onnx exported before embeddings is refused)")
    embed.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: auto")
    embed.add_argument("--batch-size", type=_positive, default=32, metavar="N", help="default: 32")

    embeddings = commands.add_parser(
        "embeddings", help="map, search or probe a file written by faceattr embed",
        description="Reads a collection written by faceattr embed. map: a 2-D picture of the faces coloured by an "
                    "attribute's probability or beauty; neighbours: the faces most like one of the collection or "
                    "like a new photo; probe: how well linear models read beauty (ridge, cross-validated R²) and "
                    "each attribute (logistic regression, cross-validated ROC AUC) from each normalisation.",
        epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = embeddings.add_subparsers(dest="action", metavar="ACTION", required=True)
    drawn = actions.add_parser("map", help="write a PNG of the collection in 2-D, coloured by an attribute or beauty")
    drawn.add_argument("file", type=Path, metavar="FILE")
    drawn.add_argument("--colour", default="beauty", metavar="NAME", help="beauty or an attribute (default: beauty)")
    drawn.add_argument("--method", choices=("pca", "umap"), default="pca",
                       help="pca, or umap (needs pip install umap-learn); default: pca")
    drawn.add_argument("--out", type=Path, required=True, metavar="PNG", help="a new PNG file")
    near = actions.add_parser("neighbours", help="the faces most like a face of the collection or of a new photo")
    near.add_argument("file", type=Path, metavar="FILE")
    query = near.add_mutually_exclusive_group(required=True)
    query.add_argument("--source", metavar="PATH", help="a source in the collection (its path or file name)")
    query.add_argument("--photo", type=Path, metavar="PHOTO", help="a new photo, embedded with the collection's model")
    near.add_argument("--face", type=_positive, default=1, metavar="N", help="which face of it (default: 1)")
    near.add_argument("-k", type=_positive, default=5, metavar="K", help="how many neighbours (default: 5)")
    near.add_argument("--metric", choices=("cosine", "euclidean"), default="cosine", help="default: cosine")
    near.add_argument("--aligned", action="store_true", help="--photo is an aligned face")
    near.add_argument("--model", metavar="MODEL", help="model for --photo (default: the collection's)")
    near.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: auto")
    probed = actions.add_parser("probe", help="cross-validated linear probes of beauty and the attributes")
    probed.add_argument("file", type=Path, metavar="FILE")
    labels = probed.add_mutually_exclusive_group(required=True)
    labels.add_argument("--labels", type=Path, metavar="CSV",
                        help="a CSV with a source column and beauty and/or attribute columns (1/0 or 1/-1)")
    labels.add_argument("--celeba", type=Path, metavar="ROOT", help="CelebA's folder: its list_attr_celeba.txt")
    labels.add_argument("--scut", type=Path, metavar="ROOT", help="SCUT-FBP5500's folder: its beauty ratings")
    probed.add_argument("--folds", type=_positive, default=5, metavar="K", help="default: 5")
    probed.add_argument("--repeats", type=_positive, default=2, metavar="R", help="default: 2")
    probed.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")


def run_embed(args: argparse.Namespace, stdout: IO[str], stderr: IO[str]) -> int:
    """Runs ``faceattr embed`` with parsed arguments and returns the exit status.

    Raises:
        FaceAttrError: The model or the output cannot be used (the caller reports it, status 2).
    """
    from faceattr.explain.embeddings import EmbeddingWriter, collection_format

    collection_format(args.out)  # a bad suffix is refused before the model loads
    images, missing = find_images(args.paths)
    for message in missing:
        stderr.write(f"faceattr: {printable(message)}\n")
    if not images:
        return EXIT_USAGE
    predictor = load_predictor(args.model, args.device, args.batch_size)
    unreadable = len(missing)
    with EmbeddingWriter(args.out, args.normalise, args.model or "default") as writer:
        for image in predictor.iter_embed([str(path) for path in images], args.aligned, args.normalise):
            if image.error is not None:
                unreadable += 1
                stderr.write(f"faceattr: {printable(image.error)}\n")
            writer.write([image])
    stdout.write(f"{writer.faces} faces of {len(images)} images ({args.normalise}) -> {printable(str(args.out))}\n")
    return EXIT_UNREADABLE if unreadable else EXIT_OK


def run_embeddings(args: argparse.Namespace, stdout: IO[str], stderr: IO[str]) -> int:
    """Runs ``faceattr embeddings map|neighbours|probe`` with parsed arguments and returns the exit status.

    Raises:
        FaceAttrError: The collection, the labels or an option cannot be used (the caller reports it, status 2).
    """
    from faceattr.explain import embeddings as collection

    found = collection.read_embeddings(args.file)
    if args.action == "map":
        points = collection.project_2d(found.vectors, args.method)
        path = collection.plot_map(points, found.values(args.colour), args.colour, args.out,
                                   f"{len(found)} faces ({args.method}, {found.normalise}) by {args.colour}")
        stdout.write(f"{printable(str(path))}\n")
        return EXIT_OK
    if args.action == "probe":
        labels = (collection.read_labels(args.labels) if args.labels is not None
                  else collection.dataset_labels("celeba" if args.celeba else "scut", args.celeba or args.scut))
        results = collection.probe(found, labels, args.folds, args.repeats)
        stdout.write(json.dumps([dataclasses.asdict(r) for r in results], indent=2) + "\n" if args.json
                     else collection.probe_table(results) + "\n")
        return EXIT_OK
    if args.source is not None:
        queries = [(f"{args.source} face {args.face}", found.vectors[found.rows_of(args.source, args.face)[0]])]
    else:
        model = args.model or (None if found.model == "default" else found.model)
        predictor = load_predictor(model, args.device, 32)
        image = next(predictor.iter_embed([str(args.photo)], args.aligned, found.normalise))
        if image.error is not None:
            stderr.write(f"faceattr: {printable(image.error)}\n")
            return EXIT_UNREADABLE
        queries = [(f"{args.photo} face {n}", face.vector) for n, face in enumerate(image.faces, start=1)]
        if not queries:
            stdout.write(f"{printable(str(args.photo))}  no face\n")
    for name, vector in queries:
        stdout.write(f"{printable(name)}:\n")
        for rank, (row, similarity) in enumerate(collection.nearest(found.vectors, vector, args.k, args.metric), 1):
            stdout.write(f"  {rank}  {similarity:.4f}  {printable(str(found.columns['source'][row]))}  face "
                         f"{found.columns['face'][row]}  beauty {found.columns['beauty'][row]:.2f}\n")
    return EXIT_OK


def _named_model(text: str) -> tuple[str, str]:
    """argparse type: ``NAME=MODEL`` (a name of letters, digits, ``_ . -``) as ``(NAME, MODEL)``."""
    name, _, model = text.partition("=")
    if not (name and model and all(char.isalnum() or char in "_.-" for char in name)):
        raise argparse.ArgumentTypeError(f"expected NAME=MODEL (NAME: letters, digits, _ . -), got {text!r}")
    return name, model


def add_analyze_parser(commands: Any) -> None:
    """Adds ``faceattr analyze sparsity``: Dibot et al. (2023)'s sparsity analysis of rated images."""
    analyze = commands.add_parser("analyze", help="analyse what a network's activations say about rated images",
                                  description="Analyses of a network's activations.")
    kinds = analyze.add_subparsers(dest="analysis", metavar="ANALYSIS", required=True)
    sparsity = kinds.add_parser(
        "sparsity", help="relate activation sparsity and embeddings to ratings (Dibot et al. 2023; docs/SPARSITY.md)",
        description="Streams rated images through the model, its untrained copy and any --compare models, measures "
                    "every block's activation sparsity (Gini, L0, L1, kurtosis, Hoyer, Treves-Rolls; mean "
                    "activation as the control) and the pooled embedding, and predicts the ratings from each "
                    "feature family by ridge regression with repeated k-fold cross-validation. Writes OUT/report.md, "
                    "report.json, depth.png, r2_per_layer.png and r2_families.png; refused if one exists.",
        epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sparsity.add_argument("root", type=Path, nargs="?", default=None, metavar="ROOT",
                          help="the SCUT-FBP5500 folder (default: ../shared/data/scut_fbp5500 beside the project), "
                               "or with --ratings the folder the CSV's image paths are relative to (default: the "
                               "CSV's folder)")
    sparsity.add_argument("--ratings", type=Path, metavar="CSV",
                          help="rate any images: a CSV with a header naming 'image' (path relative to ROOT) and "
                               "'rating' (a number) columns; images are read whole")
    sparsity.add_argument("--model", metavar="MODEL", help="the model analysed (default: the installed one)")
    sparsity.add_argument("--compare", action="append", type=_named_model, default=[], metavar="NAME=MODEL",
                          help="another faceattr model measured beside it (its own input size and SCUT crop); "
                               "repeat for several")
    sparsity.add_argument("--no-untrained", action="store_true", help="skip the untrained copy of the model")
    sparsity.add_argument("--limit", type=_positive, metavar="N", help="use N images drawn at random (seed 0)")
    sparsity.add_argument("--held-out", action="store_true",
                          help="SCUT only: just the faces of the model's SCUT validation fold (never trained on)")
    sparsity.add_argument("--folds", type=_positive, default=10, metavar="K", help="cross-validation folds (10)")
    sparsity.add_argument("--repeats", type=_positive, default=5, metavar="R", help="cross-validation repeats (5)")
    sparsity.add_argument("--batch-size", type=_positive, default=64, metavar="N", help="default: 64")
    sparsity.add_argument("--out", type=Path, default=Path("sparsity"), metavar="DIR",
                          help="folder of the report (created; default: ./sparsity)")


def run_analyze(args: argparse.Namespace, stdout: IO[str], stderr: IO[str]) -> int:
    """Runs ``faceattr analyze sparsity`` with parsed arguments and returns the exit status.

    Raises:
        FaceAttrError: Bad data, ratings or models (the caller reports it, status 2).
    """
    from faceattr.explain.analysis import REPORT_FILES, write_report
    from faceattr.explain.rated_images import run_sparsity_analysis

    names = [name for name, _ in args.compare]
    repeated = sorted({name for name in names if names.count(name) > 1} | {"trained", "untrained"} & set(names))
    if repeated:
        stderr.write(f"faceattr: --compare: names {repeated} are taken (trained, untrained) or repeated\n")
        return EXIT_USAGE
    existing = [name for name in REPORT_FILES if (args.out / name).exists()]
    if existing:
        stderr.write(f"faceattr: --out {printable(str(args.out))} already holds {existing}; not overwritten (remove "
                     "them or choose another --out)\n")
        return EXIT_USAGE
    analysis = run_sparsity_analysis(args.root, args.ratings, args.model, dict(args.compare), args.limit,
                                     args.held_out, not args.no_untrained, args.batch_size, args.folds, args.repeats,
                                     progress=lambda line: stdout.write(line + "\n"))
    for path in write_report(analysis, args.out):
        stdout.write(f"wrote {printable(str(path))}\n")
    stdout.write(f"{len(analysis.ratings)} images, {len(analysis.networks)} networks: "
                 f"{analysis.measure_seconds:.1f} s measuring, {analysis.seconds:.1f} s in all\n")
    return EXIT_OK


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
        if args.command == "serve":
            return run_serve(args)
        runners = {"predict": run_predict, "bulk": run_bulk, "label": run_label, "clean": run_clean,
                   "explain": run_explain, "embed": run_embed, "embeddings": run_embeddings,
                   "analyze": run_analyze}
        return runners[args.command](args, sys.stdout, sys.stderr)
    except FaceAttrError as error:
        sys.stderr.write(f"faceattr: {error}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        sys.stderr.write("faceattr: interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader of stdout went away (``faceattr predict ... | head``): stop quietly, as a shell
        # pipeline expects; stdout is pointed at devnull so that Python's flush at exit cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as error:  # noqa: BLE001 -- not foreseen, so a bug: its traceback, and its own status
        traceback.print_exc(file=sys.stderr)
        sys.stderr.write(f"faceattr: internal error (a bug in faceattr): {printable(str(error))}\n")
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
