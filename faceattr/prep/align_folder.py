"""Aligns a folder of in-the-wild photos into CelebA-style crops, with a resumable manifest.

Each photo under ``input_dir`` (recursively) is read upright, its faces found with MTCNN,
and the largest face (the photo's main subject, the one CelebA labels) warped onto CelebA's
template by :func:`faceattr.inference.align.align_face`. The crop is saved under ``output_dir`` at the
same relative path and file name, in the format its extension names (JPEG quality 95 for
``.jpg``), so a labels file written for the photos (``list_attr_celeba.txt``, a team's CSV)
reads the aligned folder unchanged.

``output_dir/manifest.csv`` gets one row per photo (see :data:`MANIFEST_COLUMNS`), appended
and flushed as each result arrives: a killed run loses at most the photos in flight, and the
next run skips every photo already in the manifest. Photos without a face and files that
cannot be read are rows too (``no_face``, ``unreadable`` with the error), never crops.

>>> summary = align_folder("photos", "aligned", workers=2)  # doctest: +SKIP
>>> summary.aligned, summary.no_face_files  # doctest: +SKIP
(118, ['group/blurry.jpg'])
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from faceattr.errors import ConfigError, DatasetError, ImageError
from faceattr.files import remove_stale_temporaries, write_exclusive
from faceattr.image import IMAGE_EXTENSIONS, read_image
from faceattr.inference.align import CELEBA_SIZE, align_face
from faceattr.inference.detect import FaceDetector
from faceattr.runtime import one_torch_thread, spawn_pool

logger = logging.getLogger(__name__)

MANIFEST = "manifest.csv"

#: The five landmarks in MTCNN's order, named as in CelebA's ``list_landmarks_*.txt``
#: (``lefteye`` is the eye on the image's left).
LANDMARK_NAMES: tuple[str, ...] = ("lefteye", "righteye", "nose", "leftmouth", "rightmouth")

#: The manifest's header. ``source`` and ``output`` are paths relative to the input and output
#: folders (``output`` empty without a crop); ``status`` is one of :data:`STATUSES`; ``faces``
#: how many faces MTCNN found; ``score``, the box ``x1 y1 x2 y2`` and the landmarks are the
#: chosen face's, in pixels of the upright photo; ``error`` says why an unreadable file failed.
MANIFEST_COLUMNS: tuple[str, ...] = (
    "source", "output", "status", "faces", "score", "x1", "y1", "x2", "y2",
    *(f"{name}_{axis}" for name in LANDMARK_NAMES for axis in "xy"), "error")

STATUSES: tuple[str, ...] = ("aligned", "no_face", "unreadable")

#: Pillow save options per format: JPEG and WebP at quality 95, so that a crop loses little
#: more than its photo already did; the other formats are lossless.
_SAVE_OPTIONS: dict[str, dict[str, int]] = {"JPEG": {"quality": 95}, "WEBP": {"quality": 95}}

#: Seconds between progress lines in the log.
_PROGRESS_EVERY_S = 10.0

#: The detector of a pool worker process, set once by :func:`_init_worker`.
_worker_detector: FaceDetector | None = None


@dataclass
class AlignSummary:
    """What one :func:`align_folder` run did.

    Attributes:
        aligned: Photos aligned in this run.
        no_face: Photos of this run in which no face was found.
        unreadable: Files of this run that could not be read as images.
        skipped_already_done: Photos skipped because the manifest already had them.
        seconds: Wall time of the run.
        manifest: The manifest file (every photo of every run, with the reasons).
        no_face_files: This run's photos without a face, relative to the input folder.
        unreadable_files: This run's unreadable files and why, relative to the input folder.

    >>> AlignSummary(aligned=8, no_face=2, seconds=5.0).images_per_second
    2.0
    """

    aligned: int = 0
    no_face: int = 0
    unreadable: int = 0
    skipped_already_done: int = 0
    seconds: float = 0.0
    manifest: Path = Path(MANIFEST)
    no_face_files: list[str] = field(default_factory=list)
    unreadable_files: list[tuple[str, str]] = field(default_factory=list)

    @property
    def processed(self) -> int:
        """Photos handled in this run (aligned, no face or unreadable)."""
        return self.aligned + self.no_face + self.unreadable

    @property
    def images_per_second(self) -> float:
        """Photos handled per second of this run (0 for an instant run)."""
        return self.processed / self.seconds if self.seconds > 0 else 0.0


def list_photos(input_dir: str | Path, exclude: str | Path | None = None) -> list[str]:
    """The image files under ``input_dir``, recursively, as sorted relative POSIX paths.

    Args:
        input_dir: The folder of photos.
        exclude: A folder whose files are left out (the output folder, when it lies inside
            the input folder).

    Returns:
        Paths such as ``"ann/1.jpg"`` of the files whose extension is one of
        :data:`faceattr.image.IMAGE_EXTENSIONS` (any case).

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp()); (folder / "b").mkdir()
    >>> for name in ("b/2.JPG", "a.png", "notes.txt"): (folder / name).touch()
    >>> list_photos(folder)
    ['a.png', 'b/2.JPG']
    """
    input_dir = Path(input_dir)
    excluded = None if exclude is None else Path(exclude).resolve()
    photos = []
    for path in input_dir.rglob("*"):
        if path.suffix.lower() not in IMAGE_EXTENSIONS or not path.is_file():
            continue
        if excluded is not None and path.resolve().is_relative_to(excluded):
            continue
        photos.append(path.relative_to(input_dir).as_posix())
    return sorted(photos)


def read_manifest(path: str | Path) -> list[dict[str, str]]:
    """The complete rows of a manifest; a half-written last line (a killed run) is ignored.

    Args:
        path: A ``manifest.csv`` written by :func:`align_folder`.

    Returns:
        One dict per row, keyed by :data:`MANIFEST_COLUMNS`; ``[]`` if the file is absent.

    Raises:
        DatasetError: If the file's header is not :data:`MANIFEST_COLUMNS`.

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / MANIFEST
    >>> _ = path.write_text(",".join(MANIFEST_COLUMNS) + "\\na.jpg,,no_face,0" + "," * 16 + "\\nb.jp")
    >>> [(row["source"], row["status"]) for row in read_manifest(path)]
    [('a.jpg', 'no_face')]
    """
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, encoding="utf-8", newline="") as file:
        text = file.read()
    if (",".join(MANIFEST_COLUMNS) + "\n").startswith(text):  # empty, or killed while writing the header
        return []
    # newline="" and a csv reader over whole rows: a file name may hold a newline (quoted).
    rows = list(csv.reader(io.StringIO(_complete_rows(text), newline="")))
    if not rows or tuple(rows[0]) != MANIFEST_COLUMNS:
        raise DatasetError(f"not a manifest of faceattr.prep.align_folder (expected the header "
                           f"{','.join(MANIFEST_COLUMNS)}): remove it or choose another output folder", path, 1)
    return [dict(zip(MANIFEST_COLUMNS, row)) for row in rows[1:] if len(row) == len(MANIFEST_COLUMNS)]


def _complete_rows(text: str) -> str:
    """The start of a manifest's text up to its last complete row (a killed run can leave half of one).

    A row is complete at a newline outside quotes: the csv writer quotes a field that holds a
    newline or a quote and doubles its quotes, so a newline is outside quotes exactly where the
    text before it holds an even number of quote characters.
    """
    end = position = quotes = 0
    for line in text.split("\n")[:-1]:
        quotes += line.count('"')
        position += len(line) + 1
        if quotes % 2 == 0:
            end = position
    return text[:end]


def align_folder(input_dir: str | Path, output_dir: str | Path, workers: int = 1,
                 size: tuple[int, int] = CELEBA_SIZE, overwrite: bool = False,
                 detector: FaceDetector | None = None) -> AlignSummary:
    """Aligns every photo under ``input_dir`` into ``output_dir`` and records each in the manifest.

    Args:
        input_dir: The folder of in-the-wild photos (searched recursively).
        output_dir: Where the crops go, at the photos' relative paths, and ``manifest.csv``.
            It may lie inside ``input_dir`` (its files are then not inputs), but not be it.
        workers: Processes that detect and align in parallel, each with its own detector and
            one torch thread; ``1`` works in this process, also on one torch thread.
        size: ``(width, height)`` of the crops: CelebA's 178x218 by default, (89, 109) for
            its half-size set; the template scales with it.
        overwrite: Redo every photo and start a new manifest, instead of skipping the photos
            the manifest already has.
        detector: The MTCNN detector to use (default: ``FaceDetector("mtcnn")``); with several
            workers each gets a copy.

    Returns:
        What this run did; the manifest lists every photo of every run.

    Raises:
        DatasetError: If ``input_dir`` is missing or holds no image files, ``output_dir`` is
            ``input_dir``, or ``output_dir`` holds a file named ``manifest.csv`` that is not one.
        ConfigError: If ``workers`` or ``size`` is not positive, or ``detector`` gives no
            landmarks (Haar).

    >>> align_folder("celeba/img_celeba", "aligned/img_celeba", workers=2)  # doctest: +SKIP
    AlignSummary(aligned=395, no_face=2, unreadable=0, ...)
    """
    started = time.monotonic()
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    detector = detector or FaceDetector("mtcnn")
    _check_arguments(input_dir, output_dir, workers, size, detector)
    photos = list_photos(input_dir, exclude=output_dir)
    if not photos:
        raise DatasetError(f"no image files ({' '.join(sorted(IMAGE_EXTENSIONS))}) found", input_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    manifest = output_dir / MANIFEST
    done = set() if overwrite else {row["source"] for row in read_manifest(manifest)}
    todo = [photo for photo in photos if photo not in done]
    _remove_stale_crops(output_dir, todo)
    summary = AlignSummary(skipped_already_done=len(photos) - len(todo), manifest=manifest)
    logger.info("%s: %d photos, %d already in %s, %d to align with %d worker(s)", input_dir, len(photos),
                summary.skipped_already_done, manifest, len(todo), workers)
    next_log = started + _PROGRESS_EVERY_S
    with _manifest_writer(manifest, fresh=overwrite) as write:
        for row in _results(todo, input_dir, output_dir, size, detector, workers):
            write(row)
            _count(summary, row)
            if time.monotonic() >= next_log:
                next_log = time.monotonic() + _PROGRESS_EVERY_S
                logger.info("%d of %d photos (%.2f photos/s)", summary.processed, len(todo),
                            summary.processed / (time.monotonic() - started))
    summary.seconds = time.monotonic() - started
    logger.info("aligned %d, no face %d, unreadable %d, already done %d, in %.1f s (%.2f photos/s)",
                summary.aligned, summary.no_face, summary.unreadable, summary.skipped_already_done,
                summary.seconds, summary.images_per_second)
    return summary


def _check_arguments(input_dir: Path, output_dir: Path, workers: int, size: tuple[int, int],
                     detector: FaceDetector) -> None:
    """Raises the error :func:`align_folder` documents for a bad argument."""
    if not input_dir.is_dir():
        raise DatasetError("input folder not found", input_dir)
    if output_dir.resolve() == input_dir.resolve():
        raise DatasetError("the output folder is the input folder: the crops would replace the photos; "
                           "choose another output folder", output_dir)
    if workers < 1:
        raise ConfigError(f"workers: {workers} must be at least 1")
    if len(size) != 2 or any(int(side) != side or side < 1 for side in size):
        raise ConfigError(f"size: expected two positive whole numbers (width, height), got {tuple(size)}")
    if detector.kind != "mtcnn":
        raise ConfigError(f"detector: kind {detector.kind!r} gives no landmarks, which alignment needs; "
                          "use kind 'mtcnn'")


def _remove_stale_crops(output_dir: Path, todo: list[str]) -> None:
    """Removes the temporary crops of ``todo``'s photos that a killed run left in ``output_dir``."""
    names_by_folder: dict[Path, list[str]] = defaultdict(list)
    for photo in todo:
        names_by_folder[Path(photo).parent].append(Path(photo).name)
    for folder, names in names_by_folder.items():
        remove_stale_temporaries(output_dir / folder, names)


@contextlib.contextmanager
def _manifest_writer(path: Path, fresh: bool) -> Iterator[Callable[[dict[str, str]], None]]:
    """A function appending one row to the manifest as one flushed line.

    ``fresh`` starts a new file; otherwise the existing one (already checked by
    :func:`read_manifest`) is continued after dropping a row cut short, or created.
    """
    if not fresh and path.is_file():
        with open(path, "r+", encoding="utf-8", newline="") as file:
            # A killed run can leave half a row: cut the file back to its last complete row.
            file.truncate(len(_complete_rows(file.read()).encode("utf-8")))
    fresh = fresh or not path.is_file() or path.stat().st_size == 0
    with open(path, "w" if fresh else "a", encoding="utf-8", newline="") as file:
        writer = csv.DictWriter(file, MANIFEST_COLUMNS, lineterminator="\n")
        if fresh:
            writer.writeheader()

        def write(row: dict[str, str]) -> None:
            writer.writerow(row)
            file.flush()

        yield write


def _results(todo: list[str], input_dir: Path, output_dir: Path, size: tuple[int, int],
             detector: FaceDetector, workers: int) -> Iterator[dict[str, str]]:
    """The manifest row of each photo in ``todo``, in input order, from this process or a pool."""
    task = functools.partial(_align_photo, input_dir=input_dir, output_dir=output_dir, size=size)
    if workers == 1 or len(todo) <= 1:
        with one_torch_thread():
            yield from (task(photo, detector=detector) for photo in todo)
        return
    with spawn_pool(min(workers, len(todo)), initializer=_init_worker, initargs=(detector,)) as pool:
        yield from pool.imap(task, todo)


def _init_worker(detector: FaceDetector) -> None:
    """Pool initializer: the worker's detector (:func:`spawn_pool` has set one torch thread)."""
    global _worker_detector
    _worker_detector = detector


def _align_photo(relative: str, input_dir: Path, output_dir: Path, size: tuple[int, int],
                 detector: FaceDetector | None = None) -> dict[str, str]:
    """Reads, detects and aligns one photo, saves its crop, and returns its manifest row."""
    # Imported here: the predictor module brings torch, which a worker needs anyway but an
    # import of this module should not.

    detector = detector or _worker_detector
    row = dict.fromkeys(MANIFEST_COLUMNS, "") | {"source": relative}
    target = output_dir / relative
    try:
        image = read_image(input_dir / relative)
    except ImageError as error:
        target.unlink(missing_ok=True)  # no stale crop from an earlier run beside an "unreadable" row
        # On one line: the manifest stays readable in an editor or a spreadsheet.
        return row | {"status": "unreadable", "faces": "0", "error": " ".join(str(error).split())}
    faces = detector.detect(image)
    row["faces"] = str(len(faces))
    if not faces:
        target.unlink(missing_ok=True)
        return row | {"status": "no_face"}
    face = max(faces, key=lambda found: (found.box[2] - found.box[0]) * (found.box[3] - found.box[1]))
    _save(align_face(image, face.landmarks, size), target)
    row |= {"output": relative, "status": "aligned", "score": f"{face.score:.4f}"}
    row |= {key: f"{value:.2f}" for key, value in zip(("x1", "y1", "x2", "y2"), face.box)}
    row |= {f"{name}_{axis}": f"{value:.2f}" for name, point in zip(LANDMARK_NAMES, face.landmarks)
            for axis, value in zip("xy", point)}
    return row


def _save(crop: np.ndarray, target: Path) -> None:
    """Saves ``crop`` at ``target`` in the format of its extension, whole (no half-written crop).

    Through :func:`faceattr.files.write_exclusive`: a symlink planted at ``target`` or at the
    temporary file's name is never followed.
    """
    image_format = Image.registered_extensions()[target.suffix.lower()]
    target.parent.mkdir(parents=True, exist_ok=True)
    picture = Image.fromarray(crop)
    write_exclusive(target, lambda file: picture.save(file, format=image_format,
                                                      **_SAVE_OPTIONS.get(image_format, {})))


def _count(summary: AlignSummary, row: dict[str, str]) -> None:
    """Adds one manifest row to the summary's counts and lists."""
    if row["status"] == "aligned":
        summary.aligned += 1
    elif row["status"] == "no_face":
        summary.no_face += 1
        summary.no_face_files.append(row["source"])
    else:
        summary.unreadable += 1
        summary.unreadable_files.append((row["source"], row["error"]))
