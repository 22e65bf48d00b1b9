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

#: :attr:`FaceResult.outside` above which the CLI adds a note to the face: with 13% of the crop
#: outside the photo the default model scores as on whole photos, with 42% it loses 3 points of
#: mean balanced accuracy on CelebA validation (docs/MODEL_CARD.md, "Faces at the edge of the photo").
OUTSIDE_NOTE = 0.25


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
