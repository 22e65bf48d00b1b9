"""Reads a team's own labels from a CSV file: image paths, any attributes, a beauty score.

The header names the columns: ``image`` (required), ``beauty``, ``split``, ``group``,
``fold`` and any of the 40 attribute names, in any order; other columns are ignored (a
labelling tool's scores and vote counts), except one whose name looks like a misspelt label
column, which is an error (a label silently dropped would be a wrong answer). A row with a cross-validation
fold is ``val`` when it is the source's ``fold`` and ``train`` otherwise; rows without a
split or fold are assigned one by a stable hash of their group (or image), so a person
never straddles train and val.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import logging
from pathlib import Path

import numpy as np

from faceattr.attributes import ATTRIBUTE_INDEX, ATTRIBUTES, NUM_ATTRIBUTES
from faceattr.data.readers.labelfiles import (
    BadRows,
    list_images,
    parse_score,
    require_file,
)
from faceattr.data.records import SPLITS, FaceRecord, ReadResult
from faceattr.errors import ConfigError, DatasetError

logger = logging.getLogger(__name__)

BASE_COLUMNS = ("image", "beauty", "split", "group", "fold")

#: Accepted attribute values (lower case); an empty cell is an unknown label.
PRESENT_VALUES = frozenset({"1", "true", "yes"})
ABSENT_VALUES = frozenset({"-1", "0", "false", "no"})

LAYOUT = """\
FILE.csv    a header, then one row per image, e.g.
              image,group,beauty,Male,Smiling,Eyeglasses
              photos/ann_1.jpg,ann,3.4,0,1,
              photos/bob_1.jpg,bob,,1,0,1
            image: path relative to the CSV's folder, or to the source's `images`
                   folder when set (e.g. the photos aligned by tools/align_dataset.py),
                   or absolute; required
            beauty: 1-5, empty if unknown; split: train / val / test (optional)
            group: e.g. a person id, kept on one side of the split (optional)
            fold: cross-validation fold 0, 1, ... (optional): rows of the source's `fold`
                  are val, rows of other folds train (the source's `folds`/`fold`
                  settings); a row with an empty fold keeps its split; never both
            any of the 40 attribute names: 1/-1, 1/0, true/false or yes/no; empty if unknown
            other columns (e.g. those of `faceattr label export`: bt_score, elo, votes)
                   are ignored, unless a name looks like a misspelt label column"""


def hashed_split(key: str, val_fraction: float) -> str:
    """``val`` for a stable share ``val_fraction`` of keys, else ``train`` (same on every run).

    >>> hashed_split("person-17", 0.0), hashed_split("person-17", 1.0)
    ('train', 'val')
    """
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return "val" if int.from_bytes(digest[:8], "big") / 2**64 < val_fraction else "train"


def parse_attribute(text: str) -> float | None:
    """An attribute cell as 1.0 (present), 0.0 (absent) or ``None`` (empty: unknown).

    >>> parse_attribute("yes"), parse_attribute("-1"), parse_attribute(" ")
    (1.0, 0.0, None)
    """
    value = text.strip().lower()
    if not value:
        return None
    if value in PRESENT_VALUES:
        return 1.0
    if value in ABSENT_VALUES:
        return 0.0
    raise ValueError(f"value {text!r} is not 1/-1, 1/0, true/false, yes/no or empty")


def parse_fold(text: str, split: str | None, folds: int) -> int | None:
    """A fold cell as a fold index, or ``None`` when empty; ``ValueError`` says what is wrong.

    Args:
        text: The cell.
        split: The row's ``split`` cell, if any: a row with both is ambiguous.
        folds: The source's number of folds; a fold must be below it.

    >>> parse_fold("2", None, 5), parse_fold(" ", "val", 5)
    (2, None)
    >>> parse_fold("5", None, 5)
    Traceback (most recent call last):
    ...
    ValueError: fold 5 is outside 0..4 (the source's folds setting is 5)
    """
    value = text.strip()
    if not value:
        return None
    if not value.isdecimal():
        raise ValueError(f"fold {text!r} is not a non-negative whole number")
    if int(value) >= folds:
        raise ValueError(f"fold {int(value)} is outside 0..{folds - 1} (the source's folds setting is {folds})")
    if split is not None:
        raise ValueError(f"the row has both a split ({split!r}) and a fold ({value}), which is ambiguous: "
                         "leave one of them empty")
    return int(value)


#: How close (difflib's ratio, case ignored) a column name must be to a known one to count as a misspelling of it.
MISSPELLING_CUTOFF = 0.65


def misspelt_column(name: str) -> str | None:
    """The base column or attribute that ``name`` looks like a misspelling of, or ``None``.

    Case is ignored, so ``male`` is taken for ``Male``: a column that was meant as a label but
    does not match exactly must stop the run, not be dropped as an extra column.

    >>> misspelt_column("Smilling"), misspelt_column("male"), misspelt_column("beuaty"), misspelt_column("bt_score")
    ('Smiling', 'Male', 'beauty', None)
    """
    known = {column.lower(): column for column in (*BASE_COLUMNS, *ATTRIBUTES)}
    close = difflib.get_close_matches(name.lower(), list(known), n=1, cutoff=MISSPELLING_CUTOFF)
    return known[close[0]] if close else None


def _check_header(path: Path, header: list[str]) -> list[str]:
    """The header's column names; other columns than the base ones and the attributes are
    ignored (logged), unless one looks like a misspelt base column or attribute."""
    columns = [name.strip() for name in header]
    valid = set(BASE_COLUMNS) | ATTRIBUTE_INDEX.keys()
    extra = []
    for position, name in enumerate(columns):
        if name in columns[:position]:
            raise DatasetError(f"column {name!r} appears twice", path, 1)
        if name in valid:
            continue
        meant = misspelt_column(name)
        if meant is not None:
            raise DatasetError(f"column {name!r} looks like a misspelt {meant!r} (line 1 must be the header; names "
                               f"are case-sensitive); rename it to {meant!r}, or to a name unlike any label column "
                               f"if it is not one. Label columns: {', '.join(BASE_COLUMNS)} and the attributes "
                               f"{', '.join(ATTRIBUTES)}", path, 1)
        extra.append(name)
    if "image" not in columns:
        raise DatasetError(f"no 'image' column; expected format:\n{LAYOUT}", path, 1)
    if extra:
        logger.info("%s: ignoring the columns %s (neither a label nor one of %s)", path, ", ".join(extra),
                    ", ".join(BASE_COLUMNS))
    return columns


def _parse_row(cells: dict[str, str], attribute_columns: list[str]) -> tuple[str | None, float | None,
                                                                                np.ndarray | None, np.ndarray | None]:
    """Split, beauty, attributes and mask of one row; ``ValueError`` says what is wrong."""
    split = cells.get("split", "").strip() or None
    if split is not None and split not in SPLITS:
        raise ValueError(f"split {split!r} is not one of {', '.join(SPLITS)}")
    beauty_text = cells.get("beauty", "").strip()
    beauty = parse_score(beauty_text) if beauty_text else None
    if not attribute_columns:
        return split, beauty, None, None
    attributes = np.zeros(NUM_ATTRIBUTES, dtype=np.float32)
    mask = np.zeros(NUM_ATTRIBUTES, dtype=bool)
    for name in attribute_columns:
        try:
            value = parse_attribute(cells[name])
        except ValueError as error:
            raise ValueError(f"{name}: {error}") from None
        if value is not None:
            attributes[ATTRIBUTE_INDEX[name]] = value
            mask[ATTRIBUTE_INDEX[name]] = True
    return split, beauty, attributes, mask


class _ImageIndex:
    """Says whether image files exist, listing each folder once."""

    def __init__(self) -> None:
        self.folders: dict[Path, set[str]] = {}

    def exists(self, path: Path) -> bool:
        if path.parent not in self.folders:
            if path.parent.is_dir():
                self.folders[path.parent] = list_images(path.parent, LAYOUT)
            else:
                logger.warning("image folder %s not found: its rows count as missing images", path.parent)
                self.folders[path.parent] = set()
        return path.name in self.folders[path.parent]


def read_csv(path: str | Path, val_fraction: float = 0.1, on_bad_row: str = "error",
             images: str | Path | None = None, folds: int = 5, fold: int = 0) -> ReadResult:
    """Reads a team's labels from a CSV file (see :data:`LAYOUT`).

    Args:
        path: The CSV file (UTF-8, with a header).
        val_fraction: For rows without a split: the share of groups (or images) made ``val``.
        on_bad_row: ``"error"`` or ``"skip"`` (count in ``bad_rows``, log a warning).
        images: The folder the ``image`` paths are relative to, itself relative to the CSV's
            folder or absolute (default: the CSV's folder). Point it at the aligned copy of
            the photos (``tools/align_dataset.py``) to train on the labels unchanged.
        folds: For a ``fold`` column: the number of folds; every fold cell must be below it.
        fold: For a ``fold`` column: the fold whose rows are ``val`` (``0..folds-1``); rows
            of the other folds are ``train``. Without a ``fold`` column both are unused.

    Returns:
        Records for the rows whose image exists; source ``csv:<file stem>``; group
        ``csv:<stem>:id:<group>`` or, without a group, ``csv:<stem>:img:<image>``.

    Raises:
        ConfigError: If ``val_fraction`` is outside 0-1 or ``fold`` outside ``0..folds-1``.
        DatasetError: On a missing file or ``images`` folder, a bad header, or a bad row in
            ``error`` mode.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp()); (folder / "a.jpg").touch()
    >>> _ = (folder / "team.csv").write_text("image,Male,beauty\\na.jpg,1,3.5\\nb.jpg,0,\\n")
    >>> result = read_csv(folder / "team.csv")
    >>> result.source, len(result.records), result.missing_images, result.records[0].beauty
    ('csv:team', 1, 1, 3.5)
    """
    if not 0.0 <= val_fraction <= 1.0:
        raise ConfigError(f"val_fraction: {val_fraction} is outside 0-1")
    if not 0 <= fold < folds:
        raise ConfigError(f"fold: {fold} is outside 0..{folds - 1}")
    path = Path(path)
    require_file(path, LAYOUT)
    base = path.parent / (images or "")  # an absolute ``images`` replaces the CSV's folder
    if not base.is_dir():
        raise DatasetError("images: folder not found (the CSV's image paths are relative to it)", base)
    source = f"csv:{path.stem}"
    bad_rows = BadRows(path, on_bad_row)
    images = _ImageIndex()
    records: list[FaceRecord] = []
    seen: dict[Path, int] = {}
    # Each group's side (a split or a fold) and first line: a group on two sides is a leak
    # in some fold even when this fold's splits agree, so sides are compared, not splits.
    group_sides: dict[str, tuple[str, int]] = {}
    missing = 0
    with open(path, encoding="utf-8-sig", newline="") as file:
        reader = csv.reader(file)
        header = next(reader, None)
        if header is None:
            raise DatasetError(f"the file is empty; expected format:\n{LAYOUT}", path)
        columns = _check_header(path, header)
        attribute_columns = [name for name in columns if name in ATTRIBUTE_INDEX]
        for row in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(columns):
                bad_rows.report(f"expected {len(columns)} fields, got {len(row)}", line)
                continue
            cells = dict(zip(columns, row))
            image_text = cells["image"].strip()
            try:
                if not image_text:
                    raise ValueError("the image cell is empty")
                split, beauty, attributes, mask = _parse_row(cells, attribute_columns)
                row_fold = parse_fold(cells.get("fold", ""), split, folds)
            except ValueError as error:
                bad_rows.report(str(error), line)
                continue
            image = base / image_text
            if image in seen:
                bad_rows.report(f"{image_text} appears again (first on line {seen[image]})", line)
                continue
            group_text = cells.get("group", "").strip()
            key = f"id:{group_text}" if group_text else f"img:{image_text}"
            if row_fold is None:
                split = split or hashed_split(group_text or image_text, val_fraction)
                side = f"split {split!r}"
            else:
                split, side = ("val" if row_fold == fold else "train"), f"in fold {row_fold}"
            if key in group_sides and group_sides[key][0] != side:
                first_side, first_line = group_sides[key]
                bad_rows.report(f"group {group_text!r} is {side} here but {first_side} on line "
                                f"{first_line}: a group must stay on one side", line)
                continue
            seen[image] = line
            group_sides.setdefault(key, (side, line))
            if not images.exists(image):
                missing += 1
                continue
            records.append(FaceRecord(image, split, f"{source}:{key}", source, attributes, mask, beauty))
    result = ReadResult(source, records, missing, bad_rows.count)
    logger.debug("%s (from %s)", result.summary(), path)
    return result
