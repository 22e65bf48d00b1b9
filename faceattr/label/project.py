"""A labelling project's images in (faces found and aligned) and its labels out (a training CSV).

Raters should compare faces, not backgrounds or framing: each photo's largest face (MTCNN) is
warped onto CelebA's template, the same crop as ``tools/align_dataset.py`` and the model's
training images, and that crop is what raters see and what the export writes. A photo without a
face is left out and named in the summary (``faceattr clean`` finds such photos beforehand).

The export is a folder that ``tools/train.py`` reads as a ``csv`` source with beauty labels:

- ``labels.csv``: :data:`EXPORT_COLUMNS`, one row per image, best first;
- ``images/``: the aligned crops the raters saw;
- ``votes.csv``: every raw vote (:data:`VOTE_COLUMNS`), the truth the scores come from.

>>> preparer = FacePreparer(prior="beauty")  # doctest: +SKIP
>>> summary = import_images(store, "selfies", "photos/", preparer)  # doctest: +SKIP
>>> write_export(store, "selfies", "label_export")  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
import shutil
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image as PILImage

from faceattr.attributes import ATTRIBUTES
from faceattr.errors import DatasetError, FaceAttrError, ImageError
from faceattr.files import temporary_name
from faceattr.image import PREDICTION_MAX_PIXELS, find_images, read_image
from faceattr.inference.align import CELEBA_SIZE, align_face
from faceattr.inference.predictor import Predictor
from faceattr.label.errors import LabelError
from faceattr.label.ratings import beauty_scale
from faceattr.label.schedule import ScheduleSettings
from faceattr.label.store import LabelStore

logger = logging.getLogger(__name__)

#: Height of the thumbnails on the leaderboard, in pixels.
THUMBNAIL_HEIGHT = 96

#: Longest side of a photo kept whole (``align=False``): raters see it at this size at most.
UNALIGNED_MAX_SIDE = 512

#: JPEG quality of the stored faces (as ``tools/align_dataset.py`` writes its crops).
JPEG_QUALITY = 95

#: What a model-seeded project may take as each image's prior: the beauty score or an attribute's probability.
PRIORS: tuple[str, ...] = ("beauty", *ATTRIBUTES)

#: ``labels.csv``'s header. ``image`` is relative to the CSV's folder; ``beauty`` is the
#: Bradley-Terry score on the 1-5 scale (:func:`~faceattr.label.ratings.beauty_scale`), empty for an
#: image with fewer than ``min_votes`` votes (an unknown label, not a middling one); ``split`` is
#: empty (the ``csv`` reader assigns train/val by a stable hash); ``bt_low``/``bt_high`` the 95%
#: interval; ``high`` 1 for the best ``high_share`` of the labelled images, else 0; ``source`` the
#: path the photo had when the project was made.
EXPORT_COLUMNS: tuple[str, ...] = ("image", "beauty", "split", "bt_score", "bt_se", "bt_low", "bt_high", "elo",
                                   "votes", "wins", "losses", "ties", "high", "source")

#: ``votes.csv``'s header: one row per vote, undone ones included, in the order they were cast.
VOTE_COLUMNS: tuple[str, ...] = ("vote_id", "rater", "pair_id", "left_id", "right_id", "choice", "response_ms",
                                 "voted_at", "undone_at")


@dataclass
class PreparedFace:
    """A photo made ready for raters: the face they compare, its thumbnail, and the model's prior."""

    face_jpeg: bytes
    thumbnail_jpeg: bytes
    faces_found: int
    prior: float | None = None


def _jpeg(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(array).save(buffer, "JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def _thumbnail(array: np.ndarray) -> bytes:
    image = PILImage.fromarray(array)
    width = max(1, round(image.width * THUMBNAIL_HEIGHT / image.height))
    buffer = io.BytesIO()
    image.resize((width, THUMBNAIL_HEIGHT), PILImage.Resampling.LANCZOS).save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


class FacePreparer:
    """Finds the largest face of a photo, aligns it, and scores it with the model when asked.

    Args:
        align: Warp the face onto CelebA's template (the default); ``False`` keeps the whole photo
            (shrunk to :data:`UNALIGNED_MAX_SIDE`), for images that are not faces.
        prior: ``beauty`` or an attribute name: the model's output kept as the image's prior for
            model-seeded scheduling; ``None`` for none.
        model: The model for the prior and the detector's host (default: the installed model).
        device: ``auto``, ``cpu`` or ``cuda``.
    """

    def __init__(self, align: bool = True, prior: str | None = None, model: str | Path | None = None,
                 device: str = "cpu"):
        if prior is not None and prior not in PRIORS:
            raise LabelError(422, "invalid_parameter",
                             f"prior: {prior!r} is not beauty or one of the 40 attribute names")
        if prior is not None and not align:
            raise LabelError(422, "invalid_parameter", "prior: the model scores faces; it needs aligned faces")
        self.align, self.prior = align, prior
        self._model, self._device = model, device
        self._predictor: Predictor | None = None

    @property
    def predictor(self) -> Predictor:
        """The detector and model, loaded on first use."""
        if self._predictor is None:
            self._predictor = Predictor(self._model, device=self._device)
        return self._predictor

    def prepare(self, source: str | Path | bytes, name: str) -> PreparedFace:
        """The face raters will see.

        Raises:
            LabelError: 422 ``invalid_image`` for a photo that cannot be read or has no face; the
                message names it.
        """
        try:
            array = read_image(source, max_pixels=PREDICTION_MAX_PIXELS)
        except ImageError as error:  # its message names a path; bytes are named here
            message = f"{name}: {error}" if isinstance(source, bytes) else str(error)
            raise LabelError(422, "invalid_image", message) from error
        if not self.align:
            image = PILImage.fromarray(array)
            image.thumbnail((UNALIGNED_MAX_SIDE, UNALIGNED_MAX_SIDE), PILImage.Resampling.LANCZOS)
            shown = np.asarray(image)
            return PreparedFace(_jpeg(shown), _thumbnail(shown), faces_found=0)
        faces = self.predictor.predict(array)
        if not faces:
            raise LabelError(422, "invalid_image", f"{name}: no face found")
        largest = max(faces, key=lambda face: (face.box[2] - face.box[0]) * (face.box[3] - face.box[1]))
        crop = align_face(array, np.array(largest.landmarks, dtype=np.float64), CELEBA_SIZE)
        prior = None
        if self.prior is not None:
            # The model saw the photo through the predictor's own crop; its score is the image's prior.
            prior = largest.beauty if self.prior == "beauty" else largest.probabilities[self.prior]
        return PreparedFace(_jpeg(crop), _thumbnail(crop), len(faces), prior)


@dataclass
class ImportSummary:
    """What :func:`import_images` did: images added, photos left out and why."""

    added: int = 0
    several_faces: list[str] = field(default_factory=list)  # added: the largest face was kept
    left_out: list[tuple[str, str]] = field(default_factory=list)  # (photo, why)


def list_sources(images: str | Path) -> list[tuple[str, Path, float | None]]:
    """(name, path, prior) of each photo in a folder (recursively) or a CSV.

    A CSV has an ``image`` column (paths relative to the CSV's folder, or absolute) and an optional
    ``prior`` column (a team's own prior scores, used instead of the model's).

    Raises:
        DatasetError: A missing folder or file, a CSV without an ``image`` column, a bad prior;
            the message names the file and line.
    """
    path = Path(images)
    if path.is_dir():
        photos, _ = find_images([path])
        return [(photo.relative_to(path).as_posix(), photo, None) for photo in photos]
    if not path.is_file():
        raise DatasetError("no such folder or CSV file", path)
    if path.suffix.lower() != ".csv":
        raise DatasetError("expected a folder of photos or a .csv file with an 'image' column", path)
    with path.open(newline="", encoding="utf-8-sig") as file:
        reader = csv.DictReader(file)
        if "image" not in (reader.fieldnames or ()):
            raise DatasetError(f"no 'image' column (header: {reader.fieldnames})", path, 1)
        sources = []
        for line, row in enumerate(reader, start=2):
            name = (row.get("image") or "").strip()
            if not name:
                raise DatasetError("empty 'image' cell", path, line)
            prior = None
            if (row.get("prior") or "").strip():
                try:
                    prior = float(row["prior"])
                except ValueError as error:
                    raise DatasetError(f"prior {row['prior']!r} is not a number", path, line) from error
                if not np.isfinite(prior):
                    raise DatasetError(f"prior {row['prior']!r} is not a finite number", path, line)
            photo = Path(name) if Path(name).is_absolute() else path.parent / name
            sources.append((name, photo, prior))
    return sources


def create_project(store: LabelStore, name: str, question: str, images: str | Path, preparer: FacePreparer,
                   settings: ScheduleSettings | None = None,
                   on_progress: Callable[[int, int], None] | None = None) -> ImportSummary:
    """A new project with the photos of a folder or CSV; the photos are listed (and their list
    checked) before the project is made, so a wrong path leaves no empty project behind."""
    sources = _sources(images)
    store.create_project(name, question, settings)
    return _import(store, name, sources, preparer, on_progress)


def import_images(store: LabelStore, project: str, images: str | Path, preparer: FacePreparer,
                  on_progress: Callable[[int, int], None] | None = None) -> ImportSummary:
    """Adds the photos of a folder or CSV to a project (see :func:`list_sources`).

    A photo that cannot be read, has no face or is already in the project is left out and named
    in the summary; the rest go in. In a model-seeded project the images' Elo is then started
    from their priors.
    """
    return _import(store, project, _sources(images), preparer, on_progress)


def _sources(images: str | Path) -> list[tuple[str, Path, float | None]]:
    sources = list_sources(images)
    if not sources:
        raise DatasetError("no photos found (jpg, png, webp, bmp, tif)", images)
    return sources


def _import(store: LabelStore, project: str, sources: list[tuple[str, Path, float | None]], preparer: FacePreparer,
            on_progress: Callable[[int, int], None] | None) -> ImportSummary:
    summary = ImportSummary()
    for done, (name, photo, prior) in enumerate(sources, start=1):
        try:
            prepared = preparer.prepare(photo, name)
            store.add_image(project, name, prepared.face_jpeg, prepared.thumbnail_jpeg,
                            prior if prior is not None else prepared.prior)
        except LabelError as error:
            if error.status >= 500:
                raise
            summary.left_out.append((name, error.message))
            logger.info("left out: %s", error.message)
        else:
            summary.added += 1
            if prepared.faces_found > 1:
                summary.several_faces.append(name)
        if on_progress is not None:
            on_progress(done, len(sources))
    store.recompute_elo(project)
    return summary


def _export_name(image_id: int, name: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).stem)[:60] or "image"
    return f"images/{image_id:06d}_{stem}.jpg"


def _csv_cell(value: Any) -> str:
    """A cell that a spreadsheet shows as text, never runs as a formula (OWASP "CSV injection")."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") and not _is_number(text) else text


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def export_files(store: LabelStore, project: str, high_share: float = 0.25, min_votes: int = 5
                 ) -> Iterator[tuple[str, bytes]]:
    """The export's files, ``(relative path, bytes)``: ``labels.csv``, ``votes.csv``, then the crops.

    Args:
        high_share: The share of the labelled images marked ``high`` (the seeds' threshold on the ranking).
        min_votes: Images with fewer decided votes get no score (``beauty`` and ``high`` empty).
    """
    if not 0 < high_share < 1:
        raise LabelError(422, "invalid_parameter", f"high_share: {high_share} is not between 0 and 1")
    if min_votes < 1:
        raise LabelError(422, "invalid_parameter", f"min_votes: {min_votes} is not 1 or more")
    ratings = store.ratings(project)
    rows = ratings.images
    labelled = [row for row in rows if row.votes >= min_votes]
    scaled = dict(zip((row.image_id for row in labelled),
                      beauty_scale(np.array([row.bt_score for row in labelled])) if labelled else []))
    high = {row.image_id for row in labelled[:round(high_share * len(labelled))]}  # rows are best first
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    for row in rows:
        known = row.image_id in scaled
        writer.writerow([
            _export_name(row.image_id, row.name), f"{scaled[row.image_id]:.3f}" if known else "", "",
            f"{row.bt_score:.4f}", f"{row.bt_se:.4f}", f"{row.bt_low:.4f}", f"{row.bt_high:.4f}", f"{row.elo:.2f}",
            row.votes, f"{row.wins:g}", f"{row.losses:g}", row.ties, (1 if row.image_id in high else 0) if known else "",
            _csv_cell(row.name)])
    yield "labels.csv", table.getvalue().encode("utf-8")
    votes = io.StringIO()
    writer = csv.writer(votes, lineterminator="\n")
    writer.writerow(VOTE_COLUMNS)
    for vote in store.raw_votes(project):
        writer.writerow([_csv_cell(vote[column]) for column in VOTE_COLUMNS])
    yield "votes.csv", votes.getvalue().encode("utf-8")
    for image_id, name, face in store.faces(project):
        yield _export_name(image_id, name), face


@dataclass
class ExportSummary:
    """What :func:`write_export` wrote."""

    folder: Path
    images: int
    labelled: int  # images with a score (at least min_votes votes)


def write_export(store: LabelStore, project: str, folder: str | Path, high_share: float = 0.25,
                 min_votes: int = 5) -> ExportSummary:
    """Writes the export into a new folder (see the module's docstring).

    The files are written into a temporary folder beside ``folder``, renamed into place when all
    are there: an interrupted export leaves no half-written labels behind.

    Raises:
        FaceAttrError: ``folder`` exists already (an export is never written over anything).
    """
    folder = Path(folder)
    if folder.exists():
        raise FaceAttrError(f"{folder}: already exists; export into a new folder (nothing is overwritten)")
    if not folder.parent.is_dir():
        raise FaceAttrError(f"{folder.parent}: no such folder")
    staging = folder.parent / temporary_name(folder.name)
    images = labelled = 0
    try:
        for relative, data in export_files(store, project, high_share, min_votes):
            target = staging / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            if relative == "labels.csv":
                labelled = sum(1 for row in csv.DictReader(io.StringIO(data.decode("utf-8"))) if row["beauty"])
            images += relative.startswith("images/")
        os.rename(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ExportSummary(folder, images, labelled)


def export_archive(store: LabelStore, project: str, high_share: float = 0.25, min_votes: int = 5) -> bytes:
    """The export as a zip archive (the web API's download), the same files as :func:`write_export`."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for relative, data in export_files(store, project, high_share, min_votes):
            archive.writestr(f"{project}/{relative}", data)
    return buffer.getvalue()
