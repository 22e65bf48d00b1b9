"""The results of a prediction: each face's box, attributes and beauty, each image's faces (torch-free).

Kept apart from :mod:`faceattr.inference.predictor` so that code which only reads or prints
results (the CLI's formatting, annotation, tests) needs neither torch nor a model.

>>> face = FaceResult((0.0, 0.0, 9.0, 9.0), 0.99, None, {"Male": 0.6, "Smiling": 0.8}, ("Male", "Smiling"), 3.2)
>>> ranked_attributes(face)
['Smiling', 'Male']
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from faceattr.attributes import ATTRIBUTES
from faceattr.errors import ConfigError

#: :attr:`FaceResult.outside` above which the CLI adds a note to the face: with 13% of the crop
#: outside the photo the default model scores as on whole photos, with 42% it loses 3 points of
#: mean balanced accuracy on CelebA validation (docs/MODEL_CARD.md, "Faces at the edge of the photo").
OUTSIDE_NOTE = 0.25

#: Columns of a results table (``faceattr predict --csv``, :mod:`faceattr.bulk`) before the 40 probabilities.
CSV_HEADER: tuple[str, ...] = ("path", "face", "x1", "y1", "x2", "y2", "score", "beauty")

#: Columns after the probabilities: the decision policy, then each attribute's decision (1 present, 0 absent).
CSV_DECISION_HEADER: tuple[str, ...] = ("decision", *(f"{name}_present" for name in ATTRIBUTES))

#: Every column of a results table, in order.
CSV_COLUMNS: tuple[str, ...] = (*CSV_HEADER, *ATTRIBUTES, *CSV_DECISION_HEADER)

#: First characters that make a spreadsheet take a cell as a formula (OWASP, "CSV Injection").
FORMULA_PREFIXES: frozenset[str] = frozenset("=+-@\t\r")


@dataclass(frozen=True)
class FaceResult:
    """One face and what the model says about it.

    Attributes:
        box: ``(x1, y1, x2, y2)`` in pixels of the (upright) input image at full size, even
            where it was decoded reduced.
        score: The detector's confidence, 0-1.
        landmarks: Five ``(x, y)`` points (eyes, nose, mouth corners, MTCNN order), or ``None``
            when the detector gives none.
        probabilities: Each attribute's probability, in :data:`faceattr.ATTRIBUTES` order.
        attributes: The present attributes, most probable first: those the decision policy
            lists (:mod:`faceattr.evaluation.decision`).
        beauty: The beauty score, clipped to 1-5.
        decision: The decision policy that chose ``attributes`` (``balanced``, ``f1`` or
            ``probability``), ``None`` where unknown.
        outside: The share (0-1) of the model's crop of this face that lies outside the photo,
            filled in by alignment's border mode rather than seen
            (:func:`~faceattr.inference.align.crop_outside`); 0 for aligned inputs.

    >>> face = FaceResult((0.0, 0.0, 9.0, 9.0), 0.99, None, {"Smiling": 0.8, "Male": 0.1}, ("Smiling",), 3.2, "f1")
    >>> face.to_dict()["attributes"], face.to_dict()["present"], face.to_dict()["decision"]
    (['Smiling'], {'Smiling': True, 'Male': False}, 'f1')
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: tuple[tuple[float, float], ...] | None
    probabilities: dict[str, float]
    attributes: tuple[str, ...]
    beauty: float
    decision: str | None = None
    outside: float = 0.0

    def present(self) -> dict[str, bool]:
        """Each attribute's decision, present (True) or absent, in :attr:`probabilities` order.

        >>> FaceResult((0, 0, 1, 1), 1.0, None, {"Male": 0.7, "Young": 0.2}, ("Male",), 3.0).present()
        {'Male': True, 'Young': False}
        """
        listed = set(self.attributes)
        return {name: name in listed for name in self.probabilities}

    def to_dict(self) -> dict[str, Any]:
        """The face as plain lists, dicts, strings and floats (JSON-ready).

        Keys: ``box``, ``score``, ``landmarks``, ``probabilities``, ``attributes`` (present, most
        probable first), ``present`` (each attribute's decision, :meth:`present`), ``decision``
        (the policy), ``beauty`` and ``outside``.
        """
        return {"box": list(self.box), "score": self.score,
                "landmarks": None if self.landmarks is None else [list(point) for point in self.landmarks],
                "probabilities": dict(self.probabilities), "attributes": list(self.attributes),
                "present": self.present(), "decision": self.decision, "beauty": self.beauty,
                "outside": self.outside}


@dataclass(frozen=True)
class ImageResult:
    """The faces of one input of :meth:`Predictor.predict_many`.

    Attributes:
        source: The input's path, or ``"<array>"``, ``"<bytes>"``, ``"<PIL image>"``.
        faces: The faces found, best detector score first; ``[]`` if none or unreadable.
        error: Why the input could not be read, else ``None``.
        width: Width of the upright image in pixels, at full size even where it was decoded
            reduced (``None`` if unreadable).
        height: Its height (``None`` if unreadable).

    >>> ImageResult("a.jpg", [], "a.jpg: cannot read image").to_dict()["error"]
    'a.jpg: cannot read image'
    """

    source: str
    faces: list[FaceResult] = field(default_factory=list)
    error: str | None = None
    width: int | None = None
    height: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The result as plain lists, dicts, strings and numbers (JSON-ready)."""
        return {"source": self.source, "width": self.width, "height": self.height, "error": self.error,
                "faces": [face.to_dict() for face in self.faces]}


#: How an embedding can be scaled: ``none`` (the network's pooled features as they are), ``l1`` (absolute
#: values summing to 1) or ``l2`` (unit Euclidean norm).
NORMALISATIONS: tuple[str, ...] = ("none", "l1", "l2")


def normalised(vectors: np.ndarray, normalise: str, dtype: type = np.float32) -> np.ndarray:
    """``vectors`` ``(N, D)`` scaled row by row as ``normalise`` (one of :data:`NORMALISATIONS`) says.

    A row of zeros stays zeros (it has no direction to keep). The scaling is computed in float64 and
    the result given as ``dtype``: float32, the network's precision, by default.

    Raises:
        ConfigError: An unknown ``normalise`` (the message lists the known ones).

    >>> normalised(np.array([[3.0, -4.0], [0.0, 0.0]]), "l2").tolist()
    [[0.6000000238418579, -0.800000011920929], [0.0, 0.0]]
    >>> normalised(np.array([[3.0, -1.0]]), "l1").tolist()
    [[0.75, -0.25]]
    """
    if normalise not in NORMALISATIONS:
        raise ConfigError(f"normalise: expected one of {', '.join(NORMALISATIONS)}, got {normalise!r}")
    vectors = np.asarray(vectors, dtype=np.float64)
    if normalise == "none":
        return vectors.astype(dtype)
    norms = np.linalg.norm(vectors, ord=1 if normalise == "l1" else 2, axis=1, keepdims=True)
    return (vectors / np.where(norms > 0, norms, 1.0)).astype(dtype)


@dataclass(frozen=True)
class FaceEmbedding:
    """One face's embedding beside its prediction, both from the same forward pass.

    Attributes:
        face: The face as :meth:`Predictor.predict <faceattr.inference.predictor.Predictor.predict>` gives it
            (box, detector score, probabilities, beauty...).
        vector: ``(D,)`` float32: the pooled features both heads read
            (:meth:`FaceAttrNet.features <faceattr.models.net.FaceAttrNet.features>`), scaled as ``normalise``.
        normalise: ``none``, ``l1`` or ``l2`` (:data:`NORMALISATIONS`).

    >>> face = FaceResult((0.0, 0.0, 9.0, 9.0), 0.99, None, {}, (), 3.2)
    >>> FaceEmbedding(face, np.array([0.6, 0.8], np.float32), "l2").to_dict()["vector"]
    [0.6000000238418579, 0.800000011920929]
    """

    face: FaceResult
    vector: np.ndarray
    normalise: str = "none"

    def to_dict(self) -> dict[str, Any]:
        """The face's :meth:`FaceResult.to_dict` with ``vector`` (a list of floats) and ``normalise`` added."""
        return {**self.face.to_dict(), "vector": [float(v) for v in self.vector], "normalise": self.normalise}


@dataclass(frozen=True)
class ImageEmbeddings:
    """The faces of one input of :meth:`Predictor.embed <faceattr.inference.predictor.Predictor.embed>`.

    Attributes:
        source: The input's path, or ``"<array>"``...; as :attr:`ImageResult.source`.
        faces: One :class:`FaceEmbedding` per face, best detector score first; ``[]`` if none or unreadable.
        error: Why the input could not be read, else ``None``.
    """

    source: str
    faces: list[FaceEmbedding] = field(default_factory=list)
    error: str | None = None


def ranked_attributes(face: Any) -> list[str]:
    """The face's present attributes, most probable first.

    Args:
        face: A :class:`FaceResult` (or anything with ``attributes`` and ``probabilities``).

    Returns:
        The names in ``face.attributes``, by decreasing probability (ties keep their order).

    >>> ranked_attributes(FaceResult((0, 0, 1, 1), 1.0, None, {"Male": 0.7, "Young": 0.9}, ("Male", "Young"), 3.0))
    ['Young', 'Male']
    """
    return sorted(face.attributes, key=lambda name: -face.probabilities.get(name, 0.0))


def face_rows(result: ImageResult) -> list[dict[str, Any]]:
    """One row per face of ``result``, keyed by :data:`CSV_COLUMNS`, with typed values.

    ``face`` counts from 1; box, score, beauty and probabilities are floats, ``decision`` a string
    (``None`` where unknown), the ``NAME_present`` columns booleans. An image without faces has no row.

    >>> face = FaceResult((1, 2, 3, 4), 0.9, None, dict.fromkeys(ATTRIBUTES, 0.2) | {"Male": 0.9}, ("Male",), 3.0)
    >>> row = face_rows(ImageResult("a.jpg", [face]))[0]
    >>> row["face"], row["x2"], row["Male"], row["Male_present"], row["Young_present"]
    (1, 3.0, 0.9, True, False)
    """
    rows = []
    for number, face in enumerate(result.faces, start=1):
        present = face.present()
        rows.append({"path": result.source, "face": number, **dict(zip(("x1", "y1", "x2", "y2"), map(float, face.box))),
                     "score": float(face.score), "beauty": float(face.beauty),
                     **{name: float(face.probabilities[name]) for name in ATTRIBUTES}, "decision": face.decision,
                     **{f"{name}_present": present[name] for name in ATTRIBUTES}})
    return rows


def csv_cells(row: dict[str, Any]) -> list[str]:
    """A :func:`face_rows` row as the results CSV writes it, in :data:`CSV_COLUMNS` order.

    Box to 0.1 pixel, score and probabilities to 4 decimals, beauty to 3, decisions as 1 or 0;
    ``None`` (a row without a face) as an empty cell. Cells are not yet :func:`spreadsheet_safe`.

    >>> cells = csv_cells(face_rows(ImageResult("a.jpg", [FaceResult((1, 2, 3, 4), 0.9, None,
    ...     dict.fromkeys(ATTRIBUTES, 0.2), (), 3.0, "f1")]))[0])
    >>> cells[:8], cells[8], cells[48], cells[49]
    (['a.jpg', '1', '1.0', '2.0', '3.0', '4.0', '0.9000', '3.000'], '0.2000', 'f1', '0')
    """
    def cell(column: str, value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, bool):
            return "1" if value else "0"
        if column in ("x1", "y1", "x2", "y2"):
            return f"{value:.1f}"
        if column == "beauty":
            return f"{value:.3f}"
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    return [cell(column, row.get(column)) for column in CSV_COLUMNS]


def csv_rows(result: ImageResult) -> list[list[str]]:
    """One CSV row per face of ``result``, in the columns of :data:`CSV_COLUMNS` (see :func:`csv_cells`).

    >>> face = FaceResult((1, 2, 3, 4), 0.9, None, dict.fromkeys(ATTRIBUTES, 0.2) | {"Male": 0.9}, ("Male",), 3.0, "f1")
    >>> row = dict(zip(CSV_COLUMNS, csv_rows(ImageResult("a.jpg", [face]))[0]))
    >>> row["Male"], row["decision"], row["Male_present"], row["Young_present"]
    ('0.9000', 'f1', '1', '0')
    """
    return [csv_cells(row) for row in face_rows(result)]


def printable(text: str) -> str:
    """``text`` with the bytes of a file name that are not UTF-8 shown as ``\\xNN`` escapes.

    On POSIX a file name is bytes; Python keeps the undecodable ones as lone surrogates, which
    no UTF-8 output (the terminal, the CSV, JSON parsers) accepts. Outputs name such a file
    ``caf\\xe9.jpg``: readable, valid UTF-8, and the bytes are still there to see.

    >>> import os
    >>> printable(os.fsdecode(b"caf\\xe9.jpg")), printable("café.jpg")
    ('caf\\\\xe9.jpg', 'café.jpg')
    """
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def spreadsheet_safe(cell: str) -> str:
    """``cell`` with a ``'`` in front if a spreadsheet would run it as a formula (CSV injection).

    Numbers stay as they are: a box's ``-3.5`` is a number to a spreadsheet, not a formula.

    >>> spreadsheet_safe("=HYPERLINK(1).jpg"), spreadsheet_safe("-3.5"), spreadsheet_safe("a.jpg")
    ("'=HYPERLINK(1).jpg", '-3.5', 'a.jpg')
    """
    if cell[:1] not in FORMULA_PREFIXES:
        return cell
    try:
        float(cell)
    except ValueError:
        return "'" + cell
    return cell
