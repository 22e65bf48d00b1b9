"""Reads CelebA's official label files into FaceRecords.

CelebA-HQ takes each image's split and person from CelebA's partition and identity files,
so :func:`read_split_files` and :func:`celeba_group` are public here.
"""

from __future__ import annotations

import logging
from pathlib import Path

from faceattr.data.readers.labelfiles import (
    BadRows,
    list_images,
    read_attribute_file,
    read_pairs,
    require_file,
)
from faceattr.data.records import FaceRecord, ReadResult
from faceattr.errors import DatasetError

logger = logging.getLogger(__name__)

ATTRIBUTE_FILE = "list_attr_celeba.txt"
PARTITION_FILE = "list_eval_partition.txt"
IDENTITY_FILE = "identity_CelebA.txt"
DEFAULT_IMAGES = "img_align_celeba"
UNALIGNED_IMAGES = "img_celeba"

#: CelebA's partition codes.
PARTITION_SPLITS = {"0": "train", "1": "val", "2": "test"}

LAYOUT = f"""\
ROOT/
  {ATTRIBUTE_FILE}       line 1 the row count, line 2 attribute names, then NAME.jpg and one
                             1 / -1 (0: unknown) per name
  {PARTITION_FILE}    NAME.jpg 0|1|2  (train / val / test)
  {IDENTITY_FILE}        NAME.jpg PERSON_ID  (optional: keeps each person on one side)
  {DEFAULT_IMAGES}/          the official aligned 178x218 crops
                             (or img_align_celeba_89x109/, the same crops at half size)"""


def parse_partition(text: str) -> str:
    """CelebA's partition code as a split name.

    >>> parse_partition("1")
    'val'
    """
    if text not in PARTITION_SPLITS:
        raise ValueError(f"partition {text!r} is not 0 (train), 1 (val) or 2 (test)")
    return PARTITION_SPLITS[text]


def parse_identity(text: str) -> str:
    """A CelebA person id (a positive integer), as text.

    >>> parse_identity("2880")
    '2880'
    """
    if not text.isdigit():
        raise ValueError(f"identity {text!r} is not a positive integer")
    return text


def celeba_group(name: str, identities: dict[str, str] | None) -> str:
    """The split group of a CelebA image: its person, or the image itself without identities.

    >>> celeba_group("000001.jpg", {"000001.jpg": "2880"}), celeba_group("000001.jpg", None)
    ('celeba-id:2880', 'celeba-img:000001.jpg')
    """
    return f"celeba-img:{name}" if identities is None else f"celeba-id:{identities[name]}"


def read_split_files(root: Path, wanted: set[str], on_bad_row: str,
                     layout: str) -> tuple[dict[str, str], dict[str, str] | None, int]:
    """Reads CelebA's partition and (optional) identity files for the images in ``wanted``.

    Returns:
        Name to split, name to person id (``None`` without ``identity_CelebA.txt``), and
        the number of bad rows skipped in both files.
    """
    partition_rows = BadRows(require_file(root / PARTITION_FILE, layout), on_bad_row)
    splits = read_pairs(root / PARTITION_FILE, parse_partition, partition_rows, wanted)
    if not (root / IDENTITY_FILE).is_file():
        logger.warning("%s not found: each image is its own group, so one person's images may "
                       "fall on both sides of a split", root / IDENTITY_FILE)
        return splits, None, partition_rows.count
    identity_rows = BadRows(root / IDENTITY_FILE, on_bad_row)
    identities = read_pairs(root / IDENTITY_FILE, parse_identity, identity_rows, wanted)
    return splits, identities, partition_rows.count + identity_rows.count


def read_celeba(root: str | Path, images: str | None = None, on_bad_row: str = "error") -> ReadResult:
    """Reads CelebA (official layout) for the images that exist.

    Args:
        root: The CelebA folder (see :data:`LAYOUT`).
        images: The image folder, relative to ``root`` or absolute: ``img_align_celeba``
            (default), ``img_align_celeba_89x109``, or ``img_celeba`` aligned elsewhere by
            ``tools/align_dataset.py``. ``root``'s own in-the-wild ``img_celeba`` is refused.
        on_bad_row: ``"error"`` or ``"skip"`` (count in ``bad_rows``, log a warning).

    Returns:
        Records with 40 attributes, CelebA's official split, and the person as group.

    Raises:
        DatasetError: On missing files, a bad header, or a bad row in ``error`` mode.

    >>> import tempfile
    >>> from faceattr.synthetic.fixtures import make_celeba
    >>> root = make_celeba(tempfile.mkdtemp(), identities=3, images_per_identity=2)
    >>> result = read_celeba(root)
    >>> len(result.records), result.records[0].source
    (6, 'celeba')
    """
    root = Path(root)
    folder = root / (images or DEFAULT_IMAGES)  # an absolute ``images`` replaces ``root``
    if folder.resolve() == (root / UNALIGNED_IMAGES).resolve():
        raise DatasetError(f"{UNALIGNED_IMAGES}/ holds CelebA's unaligned in-the-wild photos, but faceattr "
                           "trains on aligned crops: align them first (python tools/align_dataset.py "
                           f"{folder} ALIGNED/{UNALIGNED_IMAGES}) and set images to the aligned folder, "
                           f"or use the official crops ({DEFAULT_IMAGES}/ or img_align_celeba_89x109/)",
                           folder)
    attribute_rows = BadRows(require_file(root / ATTRIBUTE_FILE, LAYOUT), on_bad_row)
    available = list_images(folder, LAYOUT)
    rows, missing = read_attribute_file(root / ATTRIBUTE_FILE, attribute_rows, available)
    splits, identities, split_bad_rows = read_split_files(root, {row.name for row in rows}, on_bad_row, LAYOUT)
    records = []
    for row in rows:
        absent = [file for file, table in ((PARTITION_FILE, splits), (IDENTITY_FILE, identities))
                  if table is not None and row.name not in table]
        if absent:
            attribute_rows.report(f"{row.name} has no row in {' or '.join(absent)}", row.line)
            continue
        records.append(FaceRecord(folder / row.name, splits[row.name], celeba_group(row.name, identities),
                                  "celeba", row.attributes, row.mask))
    result = ReadResult("celeba", records, missing, attribute_rows.count + split_bad_rows)
    logger.debug("%s (from %s)", result.summary(), folder)
    return result
