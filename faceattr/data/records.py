"""One labelled face image, as every dataset reader returns it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from faceattr.attributes import NUM_ATTRIBUTES

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class FaceRecord:
    """A face image and whatever labels its dataset has for it.

    Attributes:
        path: The image file.
        split: ``"train"``, ``"val"`` or ``"test"``.
        group: Records that share a group (a person, or one source photo) must stay on
            the same side of any split, e.g. ``"celeba-id:2880"``.
        source: Short name of the dataset it came from (``"celeba"``, ``"scut"``, ...).
        attributes: ``(40,)`` float32 of 1.0 (present) / 0.0 (absent) in
            :data:`faceattr.ATTRIBUTES` order, or ``None`` when the dataset has none.
        attribute_mask: ``(40,)`` bool, True where the label is known; ``None`` with
            ``attributes``.
        beauty: Mean beauty rating on the 1-5 scale, or ``None``.

    >>> r = FaceRecord(Path("AF1.jpg"), "train", "scut:AF1", "scut", beauty=3.2)
    >>> r.has_attributes, r.has_beauty
    (False, True)
    """

    path: Path
    split: str
    group: str
    source: str
    attributes: np.ndarray | None = field(default=None, compare=False)
    attribute_mask: np.ndarray | None = field(default=None, compare=False)
    beauty: float | None = None

    def __post_init__(self) -> None:
        assert self.split in SPLITS, self.split
        assert (self.attributes is None) == (self.attribute_mask is None)
        if self.attributes is not None:
            assert self.attributes.shape == (NUM_ATTRIBUTES,), self.attributes.shape
            assert self.attribute_mask.shape == (NUM_ATTRIBUTES,), self.attribute_mask.shape

    @property
    def has_attributes(self) -> bool:
        return self.attribute_mask is not None and bool(self.attribute_mask.any())

    @property
    def has_beauty(self) -> bool:
        return self.beauty is not None


@dataclass
class ReadResult:
    """What a reader found: the usable records and what it had to leave out.

    Attributes:
        source: The dataset's short name.
        records: Records whose image file exists.
        missing_images: Label rows whose image file is absent (the datasets here ship
            only part of their images).
        bad_rows: Label rows skipped because they did not parse (only when the reader
            was asked to skip rather than raise).
    """

    source: str
    records: list[FaceRecord]
    missing_images: int = 0
    bad_rows: int = 0

    def summary(self) -> str:
        """One line for logs, e.g. ``celeba: 5340 images (197259 rows without an image)``."""
        text = f"{self.source}: {len(self.records)} images ({self.missing_images} rows without an image"
        return text + (f", {self.bad_rows} unparseable rows skipped)" if self.bad_rows else ")")
