"""One attribute's error rate within labelled groups of validation faces (e.g. women by hair length).

CelebA labels no hair length, yet the model's worst visible mistake (a woman with short hair
called Male) lives there; ``datasets/celeba_val_hair.csv`` labels it by hand for the women of
CelebA validation. :func:`read_group_labels` reads such a file; :func:`group_error_rates` counts, per
source and group, how often the model's decision on one attribute disagrees with CelebA's label.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from faceattr.errors import DatasetError

#: The columns of a groups file: the image's file name, the source it is validated in (as
#: ``tools/eval.py --source`` names it) and its group.
GROUP_COLUMNS: tuple[str, ...] = ("image", "source", "group")


def read_group_labels(path: str | Path) -> dict[tuple[str, str], str]:
    """A groups file: ``(source, image) -> group``.

    The file is a CSV whose first non-comment line is the header ``image,source,group`` (any name
    for the third column, which is the grouping: ``hair``, say); lines starting with ``#`` are
    comments.

    Raises:
        DatasetError: Naming the file and line of a missing column, a short row or an image listed twice.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"cannot read the groups file: {error}", path) from error
    numbered = [(number, line) for number, line in enumerate(lines, 1) if line.strip() and not line.startswith("#")]
    if not numbered:
        raise DatasetError("no header line: expected image,source,GROUP", path)
    rows = list(csv.reader(line for _, line in numbered))
    header = [name.strip() for name in rows[0]]
    if len(header) != 3 or header[:2] != list(GROUP_COLUMNS[:2]):
        raise DatasetError(f"line {numbered[0][0]}: the header must be image,source,GROUP, got {','.join(header)}",
                           path)
    groups: dict[tuple[str, str], str] = {}
    for (number, _), row in zip(numbered[1:], rows[1:]):
        if len(row) != 3 or not all(field.strip() for field in row):
            raise DatasetError(f"line {number}: expected 3 non-empty fields (image,source,{header[2]}), got {row}",
                               path)
        image, source, group = (field.strip() for field in row)
        if (source, image) in groups:
            raise DatasetError(f"line {number}: {image} of {source} is listed twice", path)
        groups[(source, image)] = group
    return groups


def group_error_rates(decided: np.ndarray, probs: np.ndarray, labels: np.ndarray, mask: np.ndarray,
                      keys: Sequence[tuple[str, str]], groups: Mapping[tuple[str, str], str]) -> list[dict[str, Any]]:
    """Error rate of one attribute's decisions per (source, group), over the faces the groups file lists.

    Args:
        decided: ``(N,)`` the model's decision (True: present).
        probs: ``(N,)`` its calibrated probability.
        labels: ``(N,)`` the dataset's 0/1 label.
        mask: ``(N,)`` True where the label is known.
        keys: ``(source, image file name)`` of each row.
        groups: From :func:`read_group_labels`; rows it does not list are left out.

    Returns:
        One row per (source, group), sorted: ``source``, ``group``, ``faces``, ``errors``,
        ``error_rate``, ``mean_probability``, ``label_rate`` (share labelled present).

    >>> group_error_rates(np.array([True, False, True]), np.array([0.9, 0.2, 0.7]), np.array([0, 0, 1]),
    ...                   np.ones(3, bool), [("s", "a"), ("s", "b"), ("s", "c")], {("s", "a"): "x", ("s", "b"): "x"})
    [{'source': 's', 'group': 'x', 'faces': 2, 'errors': 1, 'error_rate': 0.5, 'mean_probability': 0.55, 'label_rate': 0.0}]
    """
    cells: dict[tuple[str, str], list[int]] = {}
    for row, key in enumerate(keys):
        if key in groups and mask[row]:
            cells.setdefault((key[0], groups[key]), []).append(row)
    result = []
    for (source, group), rows in sorted(cells.items()):
        wrong = int((decided[rows] != labels[rows].astype(bool)).sum())
        result.append({"source": source, "group": group, "faces": len(rows), "errors": wrong,
                       "error_rate": round(wrong / len(rows), 4),
                       "mean_probability": round(float(probs[rows].mean()), 4),
                       "label_rate": round(float(labels[rows].mean()), 4)})
    return result
