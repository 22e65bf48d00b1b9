"""Cleaning a folder of photos before labelling: finds unreadable files, photos without one usable face, extreme
sizes and duplicates; reports them and can move them to a quarantine folder. Nothing is ever deleted.

Each image file under the folder (recursively, :func:`faceattr.image.find_images`) is checked:

* ``unreadable``: the file cannot be read or decoded. Every photo is decoded whole (a large
  JPEG at a reduced scale, which still reads all of its data), so a truncated JPEG is found.
* ``too_small``, ``too_large``, ``extreme_aspect``: its shorter side is under ``min_side``,
  its longer side over ``max_side`` (or its pixels over PIL's decompression-bomb limit: such
  a file is judged from its header and not decoded), or longer / shorter side over ``max_aspect``.
* ``no_face``, ``several_faces``, ``small_face``, ``detection_failed`` (unless faces are
  skipped): MTCNN read and run as ``faceattr predict`` does (:func:`faceattr.image.read_reduced`
  down to the detector's ``max_side``, :class:`~faceattr.inference.detect.FaceDetector`). Face
  sizes are the shorter side of the face's box in the photo's own pixels; ``small_face``: the
  largest face is under ``min_face``; ``several_faces``: two or more faces of at least ``min_face``
  (smaller faces in the background do not count).
* ``duplicate`` and ``near_duplicate``: the same bytes (SHA-256), or perceptual hashes
  (imagehash ``phash`` of the upright photo) at most ``near_distance`` bits apart. Of each
  group the best copy is kept (fewest other problems, then most pixels, then largest file, then
  first path) and the others name it in ``duplicate_of`` (see :mod:`faceattr.prep.duplicates`).

:func:`clean_folder` writes one report row per file (:mod:`faceattr.prep.clean_report`) and, with a
quarantine folder and ``move=True``, moves every file with a problem there at the same relative
path; without ``move`` it is a dry run whose report says where each file would go.

>>> summary = clean_folder("photos", "photos-report.csv", quarantine="rejected", move=True)  # doctest: +SKIP
>>> summary.counts  # doctest: +SKIP
{'no_face': 3, 'near_duplicate': 2, ...}
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
from PIL import Image

from faceattr.errors import ConfigError, DatasetError, ImageError
from faceattr.image import find_images, read_reduced
from faceattr.inference.detect import FaceDetector
from faceattr.prep.clean_report import CleanSummary, PhotoCheck, write_report
from faceattr.prep.duplicates import assign_duplicates, hash_distance, near_pairs
from faceattr.prep.quarantine import move_file, plan_moves

logger = logging.getLogger(__name__)

#: Longer side down to which a JPEG is decoded when faces are skipped: phash looks at 32x32 pixels, and a
#: decode at 1/8 of a photo's size still reads all of its data (a truncated file fails).
_HASH_SIDE = 256

#: Seconds between progress lines in the log.
_PROGRESS_EVERY_S = 10.0

#: The detector of a pool worker process, set by :func:`_init_worker`.
_worker_detector: FaceDetector | None = None


@dataclass(frozen=True)
class CleanLimits:
    """What a photo must meet to pass.

    Attributes:
        min_face: Smallest face, in pixels of the photo (shorter side of the detector's box).
        min_side: Smallest shorter side of the photo, in pixels.
        max_side: Largest longer side of the photo, in pixels.
        max_aspect: Largest ratio of the longer side to the shorter.
        near_distance: Largest Hamming distance (of 64 bits) between the phashes of near duplicates;
            0 finds only photos whose hashes are equal, -1 turns near duplicates off. Phash distances
            are even (each hash has 32 bits set). On the 15,737 CelebA faces of ../shared/data, all 277
            photos stored at two sizes were within 4 bits; pairs of distinct photos at 0-2 bits were
            CelebA's own duplicates, at 4 bits about a third were, at 6 bits few (453 pairs, mostly
            different people): aligned faces look alike, so 4 is the default.

    >>> CleanLimits(min_face=80).min_face
    80
    """

    min_face: int = 64
    min_side: int = 128
    max_side: int = 12000
    max_aspect: float = 3.0
    near_distance: int = 4

    def __post_init__(self) -> None:
        if self.min_face < 1 or self.min_side < 1 or self.max_side < self.min_side:
            raise ConfigError(f"min_face ({self.min_face}) and min_side ({self.min_side}) must be at least 1 and "
                              f"max_side ({self.max_side}) at least min_side")
        if self.max_aspect < 1:
            raise ConfigError(f"max_aspect: {self.max_aspect} must be at least 1 (longer side / shorter side)")
        if not -1 <= self.near_distance <= 64:
            raise ConfigError(f"near_distance: {self.near_distance} must be from -1 (off) to 64 bits")


def file_sha256(path: Path) -> tuple[str, int]:
    """The SHA-256 of a file's bytes (hex) and its size in bytes.

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "a.bin"; _ = path.write_bytes(b"abc")
    >>> file_sha256(path)[0][:16], file_sha256(path)[1]
    ('ba7816bf8f01cfea', 3)
    """
    with open(path, "rb") as file:
        digest = hashlib.file_digest(file, "sha256")
        return digest.hexdigest(), file.tell()


def imagehash_module() -> ModuleType:
    """imagehash, imported on first use (an optional dependency: the ``label`` extra).

    Raises:
        ConfigError: If it is not installed; the message names the extra to install.
    """
    try:
        import imagehash
    except ImportError as error:
        raise ConfigError(f"finding near duplicates needs imagehash: pip install \"faceattr[label]\" ({error})") \
            from error
    return imagehash


def phash_of(image: np.ndarray) -> str:
    """The perceptual hash (imagehash ``phash``, 64 bits) of an RGB array, as 16 hex digits.

    Raises:
        ConfigError: If imagehash is not installed (the message names the extra to install).

    >>> ramp = np.tile(np.arange(0, 256, 4, dtype=np.uint8)[:, None, None], (1, 64, 3))  # dark at the top
    >>> phash_of(ramp), phash_of(ramp[::2, ::2].copy()), phash_of(ramp[::-1].copy())
    ('8000000000000000', '8000000000000000', '8080008000800080')
    """
    return str(imagehash_module().phash(Image.fromarray(image)))


def check_photo(path: Path, relative: str, limits: CleanLimits, detector: FaceDetector | None) -> PhotoCheck:
    """Checks one file: readable, its size, its faces (when ``detector`` is given), its hashes.

    Args:
        path: The file.
        relative: How the report names it (its path relative to the folder).
        limits: The thresholds.
        detector: The face detector; ``None`` skips the face checks.

    Returns:
        Its findings, duplicates not yet known (:func:`mark_duplicates` adds them).
    """
    check = PhotoCheck(relative)
    try:
        check.sha256, check.bytes = file_sha256(path)
        with Image.open(path) as header:  # the stored size, before any decoding
            stored = header.size
    except Image.DecompressionBombError as error:  # over twice PIL's pixel limit: refused by Image.open itself
        check.problems.append("too_large")
        check.error = f"not decoded: {error}"
        return check
    except (OSError, ValueError, SyntaxError) as error:
        return _unreadable(check, f"{relative}: cannot read image: {error}")
    check.problems += _size_problems(stored, limits)
    if "too_large" in check.problems:
        check.width, check.height = stored
        check.error = f"not decoded: {stored[0]}x{stored[1]} is over the largest size"
        return check
    # Decoded as faceattr predict decodes: upright, a large JPEG reduced but not below what the detector sees.
    side = detector.max_side if detector is not None else _HASH_SIDE
    try:
        array, (check.width, check.height) = read_reduced(path, side)
    except ImageError as error:
        return _unreadable(check, str(error).replace(str(path), relative, 1))
    check.phash = phash_of(array)
    if detector is not None:
        _check_faces(check, array, limits, detector)
    return check


def _unreadable(check: PhotoCheck, error: str) -> PhotoCheck:
    check.problems.append("unreadable")
    check.error = " ".join(error.split())  # one line: the report stays readable in a spreadsheet
    return check


def _size_problems(size: tuple[int, int], limits: CleanLimits) -> list[str]:
    """The size problems of a ``(width, height)``; a turn (EXIF) changes none of them."""
    shorter, longer = sorted(size)
    problems = []
    if shorter < limits.min_side:
        problems.append("too_small")
    if longer > limits.max_side or shorter * longer > Image.MAX_IMAGE_PIXELS:
        problems.append("too_large")
    if longer > limits.max_aspect * max(shorter, 1):
        problems.append("extreme_aspect")
    return problems


def _check_faces(check: PhotoCheck, array: np.ndarray, limits: CleanLimits, detector: FaceDetector) -> None:
    """Adds the face problems of a decoded photo, its face count and largest face size."""
    try:
        found = detector.detect(array)
    except (RuntimeError, ValueError) as error:  # as the predictor: one photo's failure is reported, not fatal
        check.problems.append("detection_failed")
        check.error = " ".join(f"face detection failed: {error}".split())
        return
    # The array may be a reduced decode: sizes in the photo's own pixels.
    scale_x, scale_y = check.width / array.shape[1], check.height / array.shape[0]
    sizes = sorted((min((x2 - x1) * scale_x, (y2 - y1) * scale_y) for x1, y1, x2, y2 in (d.box for d in found)),
                   reverse=True)
    check.faces = len(sizes)
    check.face_size = sizes[0] if sizes else None
    if not sizes:
        check.problems.append("no_face")
    elif sizes[0] < limits.min_face:
        check.problems.append("small_face")
    if sum(size >= limits.min_face for size in sizes) >= 2:
        check.problems.append("several_faces")


def mark_duplicates(checks: Sequence[PhotoCheck], near_distance: int) -> None:
    """Adds ``duplicate`` and ``near_duplicate`` to the copies that are not kept, with the kept one's path.

    Files with equal SHA-256 are duplicates; readable photos whose phashes are at most
    ``near_distance`` bits apart are near duplicates (``-1``: none). Of each group the best copy
    is kept: fewest other problems, then most pixels, then largest file, then first path.

    Args:
        checks: Every file's findings (changed in place).
        near_distance: As :attr:`CleanLimits.near_distance`.

    >>> a, b = PhotoCheck("a.jpg", sha256="1", width=9, height=9), PhotoCheck("b.jpg", sha256="1", width=9, height=9)
    >>> mark_duplicates([a, b], -1)
    >>> b.problems, b.duplicate_of, a.problems
    (['duplicate'], 'a.jpg', [])
    """
    pairs: list[tuple[int, int]] = []
    by_content: dict[str, list[int]] = {}
    for index, check in enumerate(checks):
        if check.sha256:
            by_content.setdefault(check.sha256, []).append(index)
    pairs += [(same[0], other) for same in by_content.values() for other in same[1:]]
    if near_distance >= 0:
        hashed = [index for index, check in enumerate(checks) if check.phash]
        pairs += [(hashed[i], hashed[j]) for i, j, _ in near_pairs([checks[k].phash for k in hashed], near_distance)]
    order = sorted(range(len(checks)), key=lambda index: _keep_rank(checks[index]))
    for copy, kept in assign_duplicates(len(checks), pairs, order).items():
        check, original = checks[copy], checks[kept]
        check.problems.append("duplicate" if check.sha256 == original.sha256 else "near_duplicate")
        check.duplicate_of = original.path
        if check.phash and original.phash:
            check.distance = hash_distance(check.phash, original.phash)


def _keep_rank(check: PhotoCheck) -> tuple[int, int, int, str]:
    """Sorts the copy to keep first: fewest problems, most pixels, largest file, first path."""
    return len(check.problems), -(check.width or 0) * (check.height or 0), -(check.bytes or 0), check.path


def clean_folder(folder: str | Path, report: str | Path, quarantine: str | Path | None = None, move: bool = False,
                 limits: CleanLimits = CleanLimits(), detector: FaceDetector | None = None, skip_faces: bool = False,
                 workers: int = 1, force: bool = False) -> CleanSummary:
    """Checks every image file under ``folder``, writes the report and, with ``move``, quarantines the problem files.

    Args:
        folder: The folder of photos (searched recursively; a quarantine folder inside it is not searched).
        report: The CSV report to write: one row per file in path order
            (:data:`~faceattr.prep.clean_report.REPORT_COLUMNS`).
        quarantine: Where problem files go, at their path relative to ``folder``; ``None``: nowhere.
        move: Move them; otherwise (the default) a dry run: the report says where each would go.
        limits: The thresholds.
        detector: The face detector (default: MTCNN, as ``faceattr predict`` uses it).
        skip_faces: No face detection: only the file, size and duplicate checks (much faster).
        workers: Processes that check files in parallel, each with one torch thread.
        force: Replace an existing report (never a file that is one of the photos).

    Returns:
        The findings and what was moved.

    Raises:
        DatasetError: If ``folder`` is missing or holds no image files, the report exists (without
            ``force``) or is one of the photos, ``quarantine`` is ``folder``, or a file's place in the
            quarantine folder is taken (the message names both paths; nothing is moved then).
        ConfigError: If ``move`` is given without ``quarantine``, ``workers`` is under 1, or imagehash
            is not installed.
    """
    started = time.monotonic()
    folder, report = Path(folder), Path(report)
    quarantine = None if quarantine is None else Path(quarantine)
    _check_arguments(folder, report, quarantine, move, workers, force)
    paths, _ = find_images([folder], exclude=[] if quarantine is None else [quarantine])
    if not paths:
        raise DatasetError("no image files found", folder)
    if report.resolve() in {path.resolve() for path in paths}:
        raise DatasetError("the report would replace one of the photos; choose another report file", report)
    imagehash_module()  # missing: say so now, not after detecting every photo
    relatives = [path.relative_to(folder).as_posix() for path in paths]
    logger.info("%s: %d files to check with %d worker(s)", folder, len(paths), workers)
    detector = None if skip_faces else detector or FaceDetector("mtcnn")
    checks = list(_checked(paths, relatives, limits, detector, workers, started))
    mark_duplicates(checks, limits.near_distance)
    summary = CleanSummary(checks, report)
    flagged = [(path, check) for path, check in zip(paths, checks) if check.problems]
    moves = [] if quarantine is None else plan_moves(folder, quarantine, [path for path, _ in flagged])
    for check in checks:
        check.status = "flagged" if check.problems else "ok"
    for (_, check), target in zip(flagged, moves):
        check.moved_to, check.status = str(target), "would_move"
    if move and moves:
        # The report first: if the run is killed while moving, it still says where each file goes.
        write_report(report, checks)
        for (path, check), target in zip(flagged, moves):
            try:
                move_file(path, target)
                check.status, summary.moved = "moved", summary.moved + 1
            except OSError as error:  # this file only: the others are still moved
                check.status, check.error = "move_failed", " ".join(str(error).split())
                summary.move_errors.append(check.error)
    write_report(report, checks)
    summary.seconds = time.monotonic() - started
    logger.info("checked %d files in %.1f s (%.2f files/s): %s", len(checks), summary.seconds,
                summary.photos_per_second, summary.counts)
    return summary


def _check_arguments(folder: Path, report: Path, quarantine: Path | None, move: bool, workers: int,
                     force: bool) -> None:
    """Raises the error :func:`clean_folder` documents for a bad argument, before any file is read."""
    if not folder.is_dir():
        raise DatasetError("folder not found", folder)
    if report.exists() and not force:
        raise DatasetError("the report already exists: choose another file, or replace it with force "
                           "(--force)", report)
    if move and quarantine is None:
        raise ConfigError("move: files are moved to the quarantine folder, and none was given (--quarantine DIR)")
    if quarantine is not None and quarantine.resolve() == folder.resolve():
        raise DatasetError("the quarantine folder is the folder being cleaned; choose another", quarantine)
    if workers < 1:
        raise ConfigError(f"workers: {workers} must be at least 1")


def _checked(paths: list[Path], relatives: list[str], limits: CleanLimits, detector: FaceDetector | None,
             workers: int, started: float) -> Iterator[PhotoCheck]:
    """Each file's :func:`check_photo`, in order, from this process or a pool, with progress in the log."""
    tasks = list(zip(paths, relatives))
    if workers > 1 and len(tasks) > 1:
        from faceattr.runtime import spawn_pool  # brings torch: only when a pool is asked for

        with spawn_pool(min(workers, len(tasks)), initializer=_init_worker, initargs=(detector,)) as pool:
            results = pool.imap(_check_in_worker, [(path, relative, limits) for path, relative in tasks], chunksize=8)
            yield from _logging_progress(results, len(tasks), started)
        return
    if detector is None:
        threads: contextlib.AbstractContextManager = contextlib.nullcontext()  # no torch, nothing to set
    else:
        from faceattr.runtime import one_torch_thread

        threads = one_torch_thread()
    with threads:
        yield from _logging_progress((check_photo(path, relative, limits, detector) for path, relative in tasks),
                                     len(tasks), started)


def _logging_progress(results: Iterator[PhotoCheck], total: int, started: float) -> Iterator[PhotoCheck]:
    next_log = started + _PROGRESS_EVERY_S
    for done, check in enumerate(results, start=1):
        if time.monotonic() >= next_log:
            next_log = time.monotonic() + _PROGRESS_EVERY_S
            logger.info("%d of %d files (%.2f files/s)", done, total, done / (time.monotonic() - started))
        yield check


def _init_worker(detector: FaceDetector | None) -> None:
    """Pool initializer: the worker's detector (:func:`~faceattr.runtime.spawn_pool` set one torch thread)."""
    global _worker_detector
    _worker_detector = detector


def _check_in_worker(task: tuple[Path, str, CleanLimits]) -> PhotoCheck:
    return check_photo(*task, detector=_worker_detector)
