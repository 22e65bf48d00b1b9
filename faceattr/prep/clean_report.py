"""The report of ``faceattr clean``: the problems a file can have, one file's findings as a CSV row, the
run's summary, and the report file written whole and read back.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from faceattr.errors import DatasetError
from faceattr.files import open_exclusive
from faceattr.inference.results import printable, spreadsheet_safe

#: The problems a file can have, in the order the report lists them.
PROBLEMS: tuple[str, ...] = (
    "unreadable", "too_small", "too_large", "extreme_aspect", "no_face", "several_faces", "small_face",
    "detection_failed", "duplicate", "near_duplicate")

#: The report's header. ``path``: relative to the folder; ``status``: ``ok``, ``flagged`` (problems, left
#: in place), ``would_move`` (dry run with a quarantine), ``moved`` or ``move_failed``; ``problems``: space-
#: separated :data:`PROBLEMS`; ``faces``: faces found (empty when not looked for); ``face_size``: the largest
#: face's shorter box side in the photo's pixels; ``width``, ``height``: the upright photo; ``phash``: 16 hex
#: digits; ``duplicate_of``: the kept copy; ``distance``: bits between its phash and this one's;
#: ``moved_to``: the file's place in the quarantine folder; ``error``: why it was unreadable or not moved.
REPORT_COLUMNS: tuple[str, ...] = (
    "path", "status", "problems", "faces", "face_size", "width", "height", "bytes", "sha256", "phash",
    "duplicate_of", "distance", "moved_to", "error")

@dataclass
class PhotoCheck:
    """One file's findings: a report row (see :data:`REPORT_COLUMNS`)."""

    path: str
    problems: list[str] = field(default_factory=list)
    faces: int | None = None
    face_size: float | None = None
    width: int | None = None
    height: int | None = None
    bytes: int | None = None
    sha256: str = ""
    phash: str = ""
    duplicate_of: str = ""
    distance: int | None = None
    moved_to: str = ""
    status: str = ""
    error: str = ""

    def row(self) -> list[str]:
        """The report's cells, in :data:`REPORT_COLUMNS` order; text cells made safe for spreadsheets."""
        values = dataclasses.asdict(self) | {
            "problems": " ".join(sorted(self.problems, key=PROBLEMS.index)),
            "face_size": "" if self.face_size is None else f"{self.face_size:.0f}"}
        return [spreadsheet_safe(printable("" if values[name] is None else str(values[name])))
                for name in REPORT_COLUMNS]


@dataclass
class CleanSummary:
    """What :func:`faceattr.prep.clean.clean_folder` found and did.

    Attributes:
        checks: One per file, in path order.
        report: The CSV report written.
        seconds: Wall time of the run.
        moved: Files moved to the quarantine folder.
        move_errors: Files that could not be moved, with why.

    >>> summary = CleanSummary([PhotoCheck("a.jpg", ["no_face"]), PhotoCheck("b.jpg")], Path("r.csv"), 2.0)
    >>> summary.counts, summary.photos_per_second
    ({'no_face': 1}, 1.0)
    """

    checks: list[PhotoCheck]
    report: Path
    seconds: float = 0.0
    moved: int = 0
    move_errors: list[str] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        """Files per problem, in :data:`PROBLEMS` order, problems no file has left out."""
        found = Counter(problem for check in self.checks for problem in check.problems)
        return {problem: found[problem] for problem in PROBLEMS if found[problem]}

    @property
    def flagged(self) -> int:
        """Files with at least one problem."""
        return sum(bool(check.problems) for check in self.checks)

    @property
    def photos_per_second(self) -> float:
        """Files checked per second (0 for an instant run)."""
        return len(self.checks) / self.seconds if self.seconds > 0 else 0.0


def write_report(path: Path, checks: Sequence[PhotoCheck]) -> None:
    """Writes the report whole: a row per check, through :func:`faceattr.files.open_exclusive` (no planted link)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open_exclusive(path) as binary:
        text = io.TextIOWrapper(binary, encoding="utf-8", newline="")
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(REPORT_COLUMNS)
        writer.writerows(check.row() for check in checks)
        text.detach()  # flushed into the binary file, which open_exclusive puts in place


def read_report(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a report written by :func:`faceattr.prep.clean.clean_folder`, keyed by :data:`REPORT_COLUMNS`.

    Cells are as written: a path that a spreadsheet would take for a formula keeps the ``'`` put in
    front of it (:func:`~faceattr.inference.results.spreadsheet_safe`).

    Raises:
        DatasetError: If the file's header is not :data:`REPORT_COLUMNS` (the message names the file).
    """
    with open(path, encoding="utf-8", newline="") as file:
        rows = list(csv.reader(file))
    if not rows or tuple(rows[0]) != REPORT_COLUMNS:
        raise DatasetError(f"not a report of faceattr clean (expected the header {','.join(REPORT_COLUMNS)})",
                           path, 1)
    return [dict(zip(REPORT_COLUMNS, row)) for row in rows[1:]]
