"""Reads SCUT-FBP5500 beauty scores and splits them into cross-validation folds.

The official 60/40 test part (when present) is split ``test`` and kept out of the folds.
The rest is cut into folds: the official 5-fold files when they exist and 5 folds are
asked for, otherwise deterministic folds stratified by group (AF/AM/CF/CM) and by score.
"""

from __future__ import annotations

import logging
import random
import re
from pathlib import Path

from faceattr.data.readers.labelfiles import (
    BadRows,
    list_images,
    parse_score,
    read_pairs,
)
from faceattr.data.records import FaceRecord, ReadResult
from faceattr.errors import ConfigError, DatasetError

logger = logging.getLogger(__name__)

DEFAULT_IMAGES = "Images"
LABEL_FILE = "train_test_files/All_labels.txt"
SPLIT_FOLDER = "train_test_files/split_of_60%training and 40%testing"
OFFICIAL_FOLDS = 5
FOLD_FILE = "train_test_files/5_folders_cross_validations_files/cross_validation_{k}/test_{k}.txt"

LAYOUT = f"""\
ROOT/
  {DEFAULT_IMAGES}/                          AF1.jpg ... CM750.jpg
  train_test_files/
    All_labels.txt                 NAME.jpg SCORE  (mean rating, 1-5)
    split_of_60%training and 40%testing/
      train.txt                    NAME.jpg SCORE  (labels, when All_labels.txt is absent)
      test.txt                     (optional) its images are split "test", out of the folds
    5_folders_cross_validations_files/
      cross_validation_1/test_1.txt ... cross_validation_5/test_5.txt
                                   (optional) the official folds, used when folds is 5"""


def _read_score_file(path: Path, on_bad_row: str) -> tuple[dict[str, float], int]:
    """A ``NAME SCORE`` file's scores (empty when the file is absent) and its bad-row count."""
    if not path.is_file():
        return {}, 0
    bad_rows = BadRows(path, on_bad_row)
    return read_pairs(path, parse_score, bad_rows), bad_rows.count


def _read_scores(root: Path, on_bad_row: str) -> tuple[dict[str, float], set[str], int]:
    """Reads the scores and the official test part; returns them and the bad-row count."""
    train_file, test_file = (root / SPLIT_FOLDER / name for name in ("train.txt", "test.txt"))
    test_scores, bad = _read_score_file(test_file, on_bad_row)
    if (root / LABEL_FILE).is_file():
        scores, label_bad = _read_score_file(root / LABEL_FILE, on_bad_row)
        return scores, set(test_scores), bad + label_bad
    if not train_file.is_file() and not test_file.is_file():
        raise DatasetError(f"no label file ({LABEL_FILE} or {SPLIT_FOLDER}/train.txt); expected layout:\n{LAYOUT}",
                           root)
    scores, train_bad = _read_score_file(train_file, on_bad_row)
    both = scores.keys() & test_scores.keys()
    if both:
        raise DatasetError(f"{len(both)} images, e.g. {min(both)}, are in both train.txt and test.txt", test_file)
    return {**scores, **test_scores}, set(test_scores), bad + train_bad


def stratified_folds(scores: dict[str, float], folds: int, seed: int) -> dict[str, int]:
    """Deals images into ``folds`` folds that share the same mix of groups and scores.

    Images are grouped by the letters their name starts with (SCUT's AF, AM, CF, CM),
    sorted by score within a group, and each consecutive block of ``folds`` images goes
    one to each fold in a seeded random order. A block left short at a group's end goes to
    the folds that are smallest so far, so fold sizes differ by at most one.

    Args:
        scores: Image name to score.
        folds: Number of folds (at least 2).
        seed: Seeds the order within blocks; the same inputs give the same folds.

    Returns:
        Image name to fold index in ``0..folds-1``.

    >>> folds = stratified_folds({f"AF{i}.jpg": i / 4 + 1 for i in range(10)}, folds=5, seed=0)
    >>> sorted(list(folds.values()).count(k) for k in range(5))
    [2, 2, 2, 2, 2]
    """
    if folds < 2:
        raise ConfigError(f"folds: {folds} must be at least 2")
    strata: dict[str, list[str]] = {}
    for name in scores:
        strata.setdefault(re.match(r"[A-Za-z]*", name).group(), []).append(name)
    rng = random.Random(seed)
    assignment: dict[str, int] = {}
    sizes = [0] * folds
    for stratum in sorted(strata):
        ranked = sorted(strata[stratum], key=lambda name: (scores[name], name))
        for start in range(0, len(ranked), folds):
            block = ranked[start:start + folds]
            order = list(range(folds))
            rng.shuffle(order)
            if len(block) < folds:
                order.sort(key=sizes.__getitem__)
            for name, fold in zip(block, order):
                assignment[name] = fold
                sizes[fold] += 1
    return assignment


def _official_folds(root: Path, names: set[str], on_bad_row: str) -> tuple[dict[str, int], int]:
    """Fold of each image from the official ``test_{k}.txt`` files (fold k-1), and the bad-row count."""
    assignment: dict[str, int] = {}
    bad = 0
    for k in range(1, OFFICIAL_FOLDS + 1):
        path = root / FOLD_FILE.format(k=k)
        bad_rows = BadRows(path, on_bad_row)
        for name in read_pairs(path, parse_score, bad_rows, names):
            if name in assignment:
                raise DatasetError(f"{name} is also in test_{assignment[name] + 1}.txt", path)
            assignment[name] = k - 1
        bad += bad_rows.count
    uncovered = len(names) - len(assignment)
    if uncovered:
        logger.warning("%d images are in no official test_k.txt file: they are training images in every fold",
                       uncovered)
    return assignment, bad


def _assign_folds(root: Path, scores: dict[str, float], folds: int, seed: int,
                  on_bad_row: str) -> tuple[dict[str, int], int]:
    """The official folds when they exist and ``folds`` is 5, else :func:`stratified_folds`;
    and the number of bad rows skipped in the official files."""
    official = all((root / FOLD_FILE.format(k=k)).is_file() for k in range(1, OFFICIAL_FOLDS + 1))
    if official and folds == OFFICIAL_FOLDS:
        logger.info("%s: using the official 5-fold cross-validation files", root)
        return _official_folds(root, set(scores), on_bad_row)
    return stratified_folds(scores, folds, seed), 0


def _load(root: Path, images: str | None, on_bad_row: str) -> tuple[Path, dict[str, float], set[str], int, int]:
    """Scores of the images that exist, the test part, and the missing and bad-row counts."""
    scores, test, bad = _read_scores(root, on_bad_row)
    folder = root / (images or DEFAULT_IMAGES)  # an absolute ``images`` replaces ``root``
    available = list_images(folder, LAYOUT)
    present = {name: score for name, score in scores.items() if name in available}
    return folder, present, test, len(scores) - len(present), bad


def scut_folds(root: str | Path, folds: int = 5, seed: int = 0, images: str | None = None) -> dict[str, int]:
    """The cross-validation fold of every SCUT image that exists and is not in the test part.

    Args:
        root: The SCUT-FBP5500 folder (see :data:`LAYOUT`).
        folds: Number of folds.
        seed: Seeds the stratified folds (unused with the official ones).
        images: The image folder, relative to ``root`` or absolute (default ``Images``).

    Returns:
        Image name to fold index; :func:`read_scut` with ``fold=k`` makes fold ``k`` ``val``.

    >>> import tempfile
    >>> from faceattr.synthetic.fixtures import make_scut
    >>> folds = scut_folds(make_scut(tempfile.mkdtemp(), count=20), folds=4)
    >>> sorted(set(folds.values()))
    [0, 1, 2, 3]
    """
    root = Path(root)
    _, present, test, _, _ = _load(root, images, "error")
    return _assign_folds(root, {n: s for n, s in present.items() if n not in test}, folds, seed, "error")[0]


def read_scut(root: str | Path, folds: int = 5, fold: int = 0, seed: int = 0, images: str | None = None,
              on_bad_row: str = "error") -> ReadResult:
    """Reads SCUT-FBP5500 scores for the images that exist, with fold ``fold`` as ``val``.

    Args:
        root: The SCUT-FBP5500 folder (see :data:`LAYOUT`).
        folds: Number of cross-validation folds.
        fold: Which fold is the validation part (``0..folds-1``).
        seed: Seeds the stratified folds (unused with the official ones).
        images: The image folder, relative to ``root`` or absolute (default ``Images``).
        on_bad_row: ``"error"`` or ``"skip"`` (count in ``bad_rows``, log a warning).

    Returns:
        Records with a beauty score and no attributes; group ``scut:STEM``.

    Raises:
        ConfigError: If ``fold`` is not in ``0..folds-1``.
        DatasetError: On missing files, or a bad row in ``error`` mode.

    >>> import tempfile
    >>> from faceattr.synthetic.fixtures import make_scut
    >>> result = read_scut(make_scut(tempfile.mkdtemp(), count=20), folds=5, fold=0)
    >>> sum(r.split == "val" for r in result.records)
    4
    """
    if not 0 <= fold < folds:
        raise ConfigError(f"fold: {fold} is outside 0..{folds - 1}")
    root = Path(root)
    folder, present, test, missing, bad = _load(root, images, on_bad_row)
    assignment, fold_bad = _assign_folds(root, {n: s for n, s in present.items() if n not in test}, folds, seed,
                                         on_bad_row)
    records = []
    for name, score in present.items():
        split = "test" if name in test else "val" if assignment.get(name) == fold else "train"
        records.append(FaceRecord(folder / name, split, f"scut:{Path(name).stem}", "scut", beauty=score))
    result = ReadResult("scut", records, missing, bad + fold_bad)
    logger.debug("%s (from %s; fold %d of %d is val)", result.summary(), folder, fold, folds)
    return result
