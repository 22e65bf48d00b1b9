"""Reads CelebA-HQ attributes (CelebAMask-HQ release), splitting each image as its CelebA original.

An HQ image is a re-processed CelebA photo, so it takes its split and person from the
CelebA image it comes from: an HQ image and its original, and all images of one person,
always land on the same side of a split, whichever of the two datasets they come from.
"""

from __future__ import annotations

import logging
from pathlib import Path

from faceattr.data.readers.celeba import (
    IDENTITY_FILE,
    PARTITION_FILE,
    celeba_group,
    read_split_files,
)
from faceattr.data.readers.labelfiles import (
    BadRows,
    list_images,
    read_attribute_file,
    require_file,
    text_rows,
)
from faceattr.data.records import FaceRecord, ReadResult
from faceattr.errors import DatasetError

logger = logging.getLogger(__name__)

ATTRIBUTE_FILE = "CelebAMask-HQ-attribute-anno.txt"
MAPPING_FILE = "CelebA-HQ-to-CelebA-mapping.txt"
DEFAULT_IMAGES = "CelebA-HQ-img"

LAYOUT = f"""\
ROOT/
  {ATTRIBUTE_FILE}   line 1 the row count, line 2 attribute names, then IDX.jpg
                                     and one 1 / -1 (0: unknown) per name
  {MAPPING_FILE}    header "idx orig_idx orig_file", then e.g. "0 119613 119614.jpg"
  {DEFAULT_IMAGES}/                     the HQ images IDX.jpg (or one resized copy such as
                                     CelebA-HQ-img-64/)
CELEBA_ROOT/                          the CelebA folder the HQ images come from
  {PARTITION_FILE}             gives each HQ image the split of its CelebA original
  {IDENTITY_FILE}                 (optional) gives it the person, as for CelebA"""


def read_mapping(path: Path, bad_rows: BadRows) -> dict[str, str]:
    """Reads ``CelebA-HQ-to-CelebA-mapping.txt``: HQ image name to CelebA image name.

    Args:
        path: The mapping file: an optional ``idx orig_idx orig_file`` header, then rows
            such as ``0 119613 119614.jpg`` (``orig_idx`` is 0-based, the file 1-based).
        bad_rows: Where rows that do not parse go.

    Returns:
        ``{"0.jpg": "119614.jpg", ...}``.

    >>> import tempfile
    >>> f = Path(tempfile.mkdtemp()) / "m.txt"
    >>> _ = f.write_text("idx orig_idx orig_file\\n0 119613 119614.jpg\\n")
    >>> read_mapping(f, BadRows(f, "error"))
    {'0.jpg': '119614.jpg'}
    """
    mapping: dict[str, str] = {}
    for line, fields in text_rows(path):
        if line == 1 and fields[0] == "idx":
            continue
        if len(fields) != 3:
            bad_rows.report(f"expected 3 fields (idx orig_idx orig_file), got {len(fields)}", line)
            continue
        index, original_index, original = fields
        if not (index.isdigit() and original_index.isdigit()):
            bad_rows.report(f"idx {index!r} and orig_idx {original_index!r} must be integers", line)
            continue
        if original != f"{int(original_index) + 1:06d}.jpg":
            bad_rows.report(f"orig_file {original} does not match orig_idx {original_index} "
                            f"(expected {int(original_index) + 1:06d}.jpg)", line)
            continue
        name = f"{index}.jpg"
        if name in mapping:
            bad_rows.report(f"idx {index} appears again", line)
            continue
        mapping[name] = original
    return mapping


def find_image_folder(root: Path, images: str | None) -> Path:
    """The HQ image folder: ``images`` (relative to ``root`` or absolute), else ``CelebA-HQ-img``,
    else the one ``CelebA-HQ-img*``.

    Raises:
        DatasetError: If the folder is absent, or several ``CelebA-HQ-img*`` folders leave
            the choice open.
    """
    if images is not None or (root / DEFAULT_IMAGES).is_dir():
        return root / (images or DEFAULT_IMAGES)
    candidates = sorted(path for path in root.glob(DEFAULT_IMAGES + "*") if path.is_dir())
    if len(candidates) == 1:
        logger.info("%s not found; using %s", root / DEFAULT_IMAGES, candidates[0])
        return candidates[0]
    if candidates:
        raise DatasetError(f"several image folders ({', '.join(path.name for path in candidates)}); "
                           "choose one with `images:`", root)
    raise DatasetError(f"no image folder {DEFAULT_IMAGES}/ (or {DEFAULT_IMAGES}-*/); expected layout:\n{LAYOUT}",
                       root)


def read_celebahq(root: str | Path, celeba_root: str | Path | None, images: str | None = None,
                  on_bad_row: str = "error") -> ReadResult:
    """Reads CelebA-HQ attributes for the images that exist.

    Args:
        root: The CelebA-HQ folder (see :data:`LAYOUT`).
        celeba_root: The CelebA folder: its partition (and identity) files give each HQ
            image the split (and person) of the CelebA image it comes from.
        images: The image folder, relative to ``root`` or absolute; default
            ``CelebA-HQ-img``, or the only ``CelebA-HQ-img*`` folder (e.g. ``CelebA-HQ-img-64``).
        on_bad_row: ``"error"`` or ``"skip"`` (count in ``bad_rows``, log a warning).

    Returns:
        Records with 40 attributes; split and group those of the CelebA original.

    Raises:
        DatasetError: On missing files (or ``celeba_root``), a bad header, or a bad row
            in ``error`` mode.

    >>> import tempfile
    >>> from faceattr.synthetic.fixtures import make_celeba, make_celebahq
    >>> celeba = make_celeba(tempfile.mkdtemp(), identities=3, images_per_identity=2)
    >>> hq = make_celebahq(tempfile.mkdtemp(), celeba, count=4)
    >>> [r.group.startswith("celeba-id:") for r in read_celebahq(hq, celeba).records]
    [True, True, True, True]
    """
    root = Path(root)
    if celeba_root is None:
        raise DatasetError("celeba_root is not set: each CelebA-HQ image takes its split and person from "
                           f"the CelebA image it comes from ({PARTITION_FILE} and {IDENTITY_FILE}), so that "
                           "no person is on both sides of a split; set celeba_root (--celeba-root in "
                           "tools/check_dataset.py) to the CelebA folder",
                           root)
    celeba_root = Path(celeba_root)
    attribute_rows = BadRows(require_file(root / ATTRIBUTE_FILE, LAYOUT), on_bad_row)
    mapping_rows = BadRows(require_file(root / MAPPING_FILE, LAYOUT), on_bad_row)
    folder = find_image_folder(root, images)
    rows, missing = read_attribute_file(root / ATTRIBUTE_FILE, attribute_rows, list_images(folder, LAYOUT))
    mapping = read_mapping(root / MAPPING_FILE, mapping_rows)
    originals = {mapping[row.name] for row in rows if row.name in mapping}
    splits, identities, split_bad_rows = read_split_files(celeba_root, originals, on_bad_row, LAYOUT)
    records = []
    for row in rows:
        original = mapping.get(row.name)
        if original is None:
            attribute_rows.report(f"{row.name} has no row in {MAPPING_FILE}", row.line)
        elif original not in splits or (identities is not None and original not in identities):
            attribute_rows.report(f"{row.name} comes from CelebA's {original}, which has no row in "
                                  f"{celeba_root / PARTITION_FILE} or {celeba_root / IDENTITY_FILE}", row.line)
        else:
            records.append(FaceRecord(folder / row.name, splits[original], celeba_group(original, identities),
                                      "celebahq", row.attributes, row.mask))
    bad = attribute_rows.count + mapping_rows.count + split_bad_rows
    result = ReadResult("celebahq", records, missing, bad)
    logger.debug("%s (from %s)", result.summary(), folder)
    return result
