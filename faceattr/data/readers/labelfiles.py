"""Parses the plain-text label files of the official dataset layouts, under one bad-row policy.

Whitespace-separated ``NAME VALUE`` files (CelebA's partition and identities, SCUT's
scores), CelebA-format attribute files (CelebA and CelebA-HQ), beauty scores, and the
checks that a label file or image folder exists, each showing the expected layout.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from faceattr.attributes import ATTRIBUTE_INDEX, ATTRIBUTES, NUM_ATTRIBUTES
from faceattr.config import BAD_SAMPLE_CHOICES as ON_BAD_ROW
from faceattr.errors import DatasetError

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Warnings logged per file in ``skip`` mode; the rest only add to ``bad_rows``.
MAX_ROW_WARNINGS = 10

#: Attribute values: 1 present, -1 absent, 0 unknown (masked out).
ATTRIBUTE_VALUES = {"1": 1, "-1": -1, "0": 0}


class BadRows:
    """Applies the ``on_bad_row`` policy to one label file: raise, or skip, count and warn.

    Args:
        path: The label file the rows come from.
        policy: ``"error"`` raises :class:`DatasetError` on the first bad row; ``"skip"``
            counts it in :attr:`count` and logs a warning.

    >>> rows = BadRows(Path("labels.txt"), "skip")
    >>> rows.report("expected 2 fields, got 3", 7)
    >>> rows.count
    1
    """

    def __init__(self, path: Path, policy: str):
        if policy not in ON_BAD_ROW:
            raise ValueError(f"on_bad_row: {policy!r} is not one of {', '.join(ON_BAD_ROW)}")
        self.path = path
        self.policy = policy
        self.count = 0

    def report(self, message: str, line: int | None) -> None:
        """Raises, or records and warns about, one row that cannot be used.

        Raises:
            DatasetError: In ``error`` mode, naming the file and ``line``.
        """
        error = DatasetError(message, self.path, line)
        if self.policy == "error":
            raise error
        self.count += 1
        if self.count <= MAX_ROW_WARNINGS:
            logger.warning("skipping a bad row: %s", error)
        if self.count == MAX_ROW_WARNINGS:
            logger.warning("%s: further bad rows are skipped without a warning", self.path)


def require_file(path: Path, layout: str) -> Path:
    """Returns ``path`` if it is a file, else raises an error that shows the expected layout.

    >>> require_file(Path("/nonexistent/list_attr_celeba.txt"), "ROOT/ ...")
    Traceback (most recent call last):
    ...
    faceattr.errors.DatasetError: /nonexistent/list_attr_celeba.txt: file not found; expected layout:
    ROOT/ ...
    """
    if not path.is_file():
        raise DatasetError(f"file not found; expected layout:\n{layout}", path)
    return path


def list_images(folder: Path, layout: str) -> set[str]:
    """The file names in an image folder, listed once (checking each file would be slow).

    Raises:
        DatasetError: If the folder does not exist; the message shows ``layout``.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp()); (folder / "000001.jpg").touch()
    >>> list_images(folder, "ROOT/ ...")
    {'000001.jpg'}
    """
    if not folder.is_dir():
        raise DatasetError(f"image folder not found; expected layout:\n{layout}", folder)
    with os.scandir(folder) as entries:
        return {entry.name for entry in entries if entry.is_file()}


def text_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """Yields ``(line_number, fields)`` of a whitespace-separated text file.

    Line numbers are 1-based; blank lines are skipped; CRLF endings and runs of spaces
    (as in CelebA's official files) are tolerated.

    Raises:
        DatasetError: If the file is not UTF-8 text.
    """
    try:
        with open(path, encoding="utf-8-sig") as file:  # -sig: drops a byte-order mark left by an editor
            for number, line in enumerate(file, 1):
                fields = line.split()
                if fields:
                    yield number, fields
    except UnicodeDecodeError as error:
        raise DatasetError(f"not a UTF-8 text file ({error.reason} at byte {error.start})", path) from None


def read_pairs(path: Path, parse: Callable[[str], T], bad_rows: BadRows,
               wanted: set[str] | None = None) -> dict[str, T]:
    """Reads a ``NAME VALUE`` file (CelebA partition and identities, SCUT scores).

    Every row is checked; only rows whose name is in ``wanted`` (all when ``None``) are kept.

    Args:
        path: The file.
        parse: Turns the value field into its value; raises ``ValueError`` with a message
            saying what is wrong.
        bad_rows: Where rows that do not parse go.
        wanted: Names to keep.

    Returns:
        Name to parsed value, in file order.

    >>> import tempfile
    >>> f = Path(tempfile.mkdtemp()) / "p.txt"; _ = f.write_text("a.jpg 0\\r\\nb.jpg  1\\r\\n")
    >>> read_pairs(f, int, BadRows(f, "error"))
    {'a.jpg': 0, 'b.jpg': 1}
    """
    values: dict[str, T] = {}
    seen: dict[str, int] = {}
    for line, fields in text_rows(path):
        if len(fields) != 2:
            bad_rows.report(f"expected 2 fields (an image name and a value), got {len(fields)}", line)
            continue
        name, text = fields
        if name in seen:
            bad_rows.report(f"{name} appears again (first on line {seen[name]})", line)
            continue
        try:
            value = parse(text)
        except ValueError as error:
            bad_rows.report(f"{name}: {error}", line)
            continue
        seen[name] = line
        if wanted is None or name in wanted:
            values[name] = value
    return values


def parse_score(text: str) -> float:
    """A beauty score on the 1-5 scale.

    >>> parse_score("3.516667")
    3.516667
    """
    try:
        score = float(text)
    except ValueError:
        raise ValueError(f"score {text!r} is not a number") from None
    if not (math.isfinite(score) and 1.0 <= score <= 5.0):
        raise ValueError(f"score {text!r} is outside 1-5")
    return score


@dataclass(frozen=True)
class AttributeRow:
    """One kept row of an attribute file.

    Attributes:
        name: The image file name.
        line: Its 1-based line number.
        attributes: ``(40,)`` float32 of 1.0 / 0.0 in :data:`ATTRIBUTES` order.
        mask: ``(40,)`` bool, False for unknown values and for attributes the file lacks.
    """

    name: str
    line: int
    attributes: np.ndarray
    mask: np.ndarray


def _read_header(path: Path, rows: Iterator[tuple[int, list[str]]]) -> tuple[int, np.ndarray]:
    """Reads the count line and the names line; returns the count and each column's index."""
    first = next(rows, None)
    if first is None or len(first[1]) != 1 or not first[1][0].isdigit():
        raise DatasetError("line 1 must be the number of rows", path, 1 if first is None else first[0])
    second = next(rows, None)
    if second is None:
        raise DatasetError("line 2 must name the attributes; the file ends before it", path, 2)
    line, names = second
    for position, name in enumerate(names):
        if name not in ATTRIBUTE_INDEX:
            raise DatasetError(f"unknown attribute name {name!r}; the names are those of "
                               f"faceattr.ATTRIBUTES: {', '.join(ATTRIBUTES)}", path, line)
        if name in names[:position]:
            raise DatasetError(f"attribute name {name!r} appears twice", path, line)
    return int(first[1][0]), np.array([ATTRIBUTE_INDEX[name] for name in names], dtype=np.int64)


def read_attribute_file(path: Path, bad_rows: BadRows,
                        available: set[str] | None = None) -> tuple[list[AttributeRow], int]:
    """Reads a CelebA-format attribute file (``list_attr_celeba.txt`` and CelebA-HQ's).

    Columns map by name, so any order or subset of the 40 attributes works. Every row is
    checked; only rows whose image is in ``available`` (all when ``None``) are kept.

    Args:
        path: The file: line 1 the row count, line 2 the names, then ``NAME v1 v2 ...``
            with values 1, -1 or 0 (unknown).
        bad_rows: Where rows that do not parse go.
        available: Image names that exist.

    Returns:
        The kept rows in file order, and how many good rows had no image.

    Raises:
        DatasetError: On a bad count line or header (unknown or repeated name), and on a
            bad row in ``error`` mode.
    """
    rows = text_rows(path)
    expected, columns = _read_header(path, rows)
    kept: list[AttributeRow] = []
    seen: dict[str, int] = {}
    missing = 0
    for line, fields in rows:
        if len(fields) != len(columns) + 1:
            bad_rows.report(f"expected {len(columns) + 1} fields (an image name and {len(columns)} "
                            f"values), got {len(fields)}", line)
            continue
        name, values = fields[0], fields[1:]
        unknown = set(values) - ATTRIBUTE_VALUES.keys()
        if unknown:
            bad_rows.report(f"{name}: value {sorted(unknown)[0]!r} is not 1, -1 or 0", line)
            continue
        if name in seen:
            bad_rows.report(f"{name} appears again (first on line {seen[name]})", line)
            continue
        seen[name] = line
        if available is not None and name not in available:
            missing += 1
            continue
        codes = np.array([ATTRIBUTE_VALUES[value] for value in values])
        attributes = np.zeros(NUM_ATTRIBUTES, dtype=np.float32)
        mask = np.zeros(NUM_ATTRIBUTES, dtype=bool)
        attributes[columns] = codes == 1
        mask[columns] = codes != 0
        kept.append(AttributeRow(name, line, attributes, mask))
    if expected != len(seen) + bad_rows.count:
        logger.warning("%s: line 1 says %d rows, the file has %d", path, expected, len(seen) + bad_rows.count)
    return kept, missing
