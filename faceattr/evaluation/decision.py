"""Decision policies: which attributes a face is said to have, fitted on validation and measured.

A model's calibrated probabilities become a *present list* by a policy: ``balanced`` (the
thresholds that maximise balanced accuracy: the headline metric, but for a rare attribute they
sit near its base rate, so faces get long lists of false positives), ``f1`` (per-attribute
thresholds maximising F1) or ``probability`` (calibrated probability at least a cut-off, 0.5
unless given). Pairs that CelebA's own labels say almost never occur together (Bald with
Black_Hair, No_Beard with Goatee, Straight_Hair with Wavy_Hair) are never listed both: the more
probable is kept (:func:`decide`). :func:`measure_policies` gives each policy's precision and
recall of the present list with thresholds fitted on one half of a validation set and scored on
the other; :func:`exclusive_pairs` derives the pairs from a label matrix.

>>> probs = np.array([[0.9, 0.6, 0.2]])
>>> decide(probs, np.array([0.5, 0.5, 0.5]), ("A", "B", "C"), pairs=(("A", "B"),)).tolist()
[[True, False, False]]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from faceattr.attributes import ATTRIBUTES
from faceattr.config import DECISION_POLICIES
from faceattr.errors import ConfigError
from faceattr.evaluation.exclusive_pairs import EXCLUSIVE_PAIRS, MAX_CO_OCCURRENCE
from faceattr.evaluation.metrics import check_attribute_arrays, cross_fitting_halves
from faceattr.evaluation.thresholds import fit_thresholds

#: The cut-off of the ``probability`` policy when none is given.
DEFAULT_PROBABILITY_CUT = 0.5

#: The policy a model offers users by default, chosen by measurement (docs/MODEL_CARD.md,
#: ``tools/measure_decisions.py``): the present list's precision and recall on validation.
DEFAULT_DECISION = "probability"

#: The threshold metric each fitted policy maximises (``probability`` needs no fitting).
FITTED_POLICIES: dict[str, str] = {"balanced": "balanced_accuracy", "f1": "f1"}


def fit_policies(probs: np.ndarray, labels: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    """Each fitted policy's 40 thresholds on calibrated validation probabilities.

    Args:
        probs: ``(N, 40)`` calibrated probabilities.
        labels: ``(N, 40)`` labels, 0 or 1 where known.
        mask: ``(N, 40)`` bool, True where the label is known.

    Returns:
        ``{"balanced": (40,), "f1": (40,)}`` thresholds (:func:`~faceattr.evaluation.thresholds.fit_thresholds`).

    >>> probs = np.tile([[0.1], [0.2], [0.3], [0.4]], (1, 40))
    >>> labels = np.tile([[0], [0], [1], [1]], (1, 40))
    >>> fit_policies(probs, labels, np.ones((4, 40), bool))["f1"][0]
    np.float64(0.25)
    """
    return {policy: fit_thresholds(probs, labels, mask, metric=metric) for policy, metric in FITTED_POLICIES.items()}


def policy_thresholds(policy: str, fitted: Mapping[str, Sequence[float]], cut: float | None = None) -> np.ndarray:
    """The 40 thresholds a policy applies.

    Args:
        policy: One of :data:`~faceattr.config.DECISION_POLICIES`.
        fitted: The fitted policies' thresholds by name (a model's ``decision_thresholds``).
        cut: The ``probability`` policy's cut-off in (0, 1); ``None``: :data:`DEFAULT_PROBABILITY_CUT`.
            Only that policy takes one.

    Raises:
        ConfigError: An unknown policy, one the model was not fitted with, a cut-off outside
            (0, 1), or a cut-off given with another policy.

    >>> policy_thresholds("probability", {}, 0.7)[:2].tolist()
    [0.7, 0.7]
    """
    if policy not in DECISION_POLICIES:
        raise ConfigError(f"decision: {policy!r} is not one of {', '.join(DECISION_POLICIES)}")
    if policy != "probability":
        if cut is not None:
            raise ConfigError(f"threshold: a cut-off applies to the probability policy only, not {policy!r}")
        if policy not in fitted:
            raise ConfigError(f"decision: this model holds no {policy!r} thresholds (it was fitted before "
                              f"decision policies existed: it has {', '.join(sorted(fitted))}); refit it with "
                              "tools/calibrate.py or use balanced or probability")
        return np.asarray(fitted[policy], dtype=np.float64)
    cut = DEFAULT_PROBABILITY_CUT if cut is None else float(cut)
    if not 0.0 < cut < 1.0:
        raise ConfigError(f"threshold: the probability cut-off must be in (0, 1), got {cut}")
    return np.full(len(ATTRIBUTES), cut)


def decide(probs: np.ndarray, thresholds: np.ndarray, names: Sequence[str] = ATTRIBUTES,
           pairs: Sequence[tuple[str, str]] = EXCLUSIVE_PAIRS) -> np.ndarray:
    """Which attributes are present: probability at least the threshold, and no exclusive pair both.

    Going down each face's attributes from the most probable, one that forms an exclusive pair
    with an attribute already kept is dropped: of such a pair the more probable is shown.

    Args:
        probs: ``(N, A)`` calibrated probabilities.
        thresholds: ``(A,)`` thresholds.
        names: The ``A`` attribute names, in column order.
        pairs: Name pairs never listed together.

    Returns:
        ``(N, A)`` bool.

    >>> decide(np.array([[0.3, 0.8]]), np.array([0.2, 0.2]), ("A", "B"), (("B", "A"),)).tolist()
    [[False, True]]
    """
    probs = np.asarray(probs, dtype=np.float64)
    present = probs >= np.asarray(thresholds, dtype=np.float64)
    index = {name: i for i, name in enumerate(names)}
    excludes: dict[int, set[int]] = {}
    for first, second in pairs:
        if first in index and second in index:
            excludes.setdefault(index[first], set()).add(index[second])
            excludes.setdefault(index[second], set()).add(index[first])
    for row in np.flatnonzero(present.any(axis=1) if excludes else np.zeros(len(present), bool)):
        kept: set[int] = set()
        for column in sorted(np.flatnonzero(present[row]), key=lambda c: -probs[row, c]):
            if excludes.get(column, set()) & kept:
                present[row, column] = False
            else:
                kept.add(column)
    return present


def present_list_counts(present: np.ndarray, labels: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Counts behind the present list's precision and recall, over the known labels.

    Returns:
        ``{"faces", "true_positives", "listed", "truly_present"}``: listed counts only
        attributes whose label is known.
    """
    known_present = present & mask
    truth = (labels > 0.5) & mask
    return {"faces": float(len(present)), "true_positives": float((known_present & truth).sum()),
            "listed": float(known_present.sum()), "truly_present": float(truth.sum())}


def present_list_figures(counts: Mapping[str, float]) -> dict[str, float]:
    """Micro precision and recall of the present list, and attributes listed and true per face.

    >>> present_list_figures({"faces": 2, "true_positives": 6, "listed": 8, "truly_present": 10})
    {'precision': 0.75, 'recall': 0.6, 'listed_per_face': 4.0, 'true_per_face': 5.0}
    """
    return {"precision": counts["true_positives"] / counts["listed"] if counts["listed"] else float("nan"),
            "recall": counts["true_positives"] / counts["truly_present"] if counts["truly_present"] else float("nan"),
            "listed_per_face": counts["listed"] / counts["faces"], "true_per_face": counts["truly_present"] / counts["faces"]}


def measure_policies(probs: np.ndarray, labels: np.ndarray, mask: np.ndarray,
                     cuts: Sequence[float] = (DEFAULT_PROBABILITY_CUT,),
                     pairs: Sequence[tuple[str, str]] = EXCLUSIVE_PAIRS) -> list[dict[str, Any]]:
    """Each policy's present list on validation, cross-fitted: fitted on one half, scored on the other.

    The halves are :func:`~faceattr.evaluation.metrics.cross_fitting_halves`; each half's lists
    come from the other half's thresholds and the counts of both are pooled (micro figures).
    Every policy is scored with the exclusive ``pairs`` applied (what users see), and the
    ``balanced`` policy also without them (what evaluation scores).

    Args:
        probs: ``(N, 40)`` calibrated probabilities.
        labels: ``(N, 40)`` labels.
        mask: ``(N, 40)`` True where known.
        cuts: The ``probability`` policy's cut-offs to measure.
        pairs: The exclusive pairs.

    Returns:
        One row per policy (and cut-off): ``policy``, ``cut`` (or ``None``), ``pairs_applied``
        and :func:`present_list_figures`.

    >>> rng = np.random.default_rng(0)
    >>> labels = (rng.random((400, 40)) < 0.2).astype(np.float32)
    >>> rows = measure_policies(np.clip(labels * 0.6 + rng.random((400, 40)) * 0.4, 0, 1), labels, np.ones((400, 40), bool))
    >>> [row["policy"] for row in rows], round(rows[1]["precision"], 2)
    (['balanced', 'balanced', 'f1', 'probability'], 1.0)
    """
    probs, labels, mask = check_attribute_arrays(probs, labels, mask)
    variants = [("balanced", None, False), ("balanced", None, True), ("f1", None, True),
                *(("probability", cut, True) for cut in cuts)]
    totals = [dict.fromkeys(("faces", "true_positives", "listed", "truly_present"), 0.0) for _ in variants]
    for fit_rows, score_rows in cross_fitting_halves(len(probs)):
        fitted = fit_policies(probs[fit_rows], labels[fit_rows], mask[fit_rows])
        for total, (policy, cut, applied) in zip(totals, variants):
            present = decide(probs[score_rows], policy_thresholds(policy, fitted, cut), pairs=pairs if applied else ())
            for key, value in present_list_counts(present, labels[score_rows], mask[score_rows]).items():
                total[key] += value
    return [{"policy": policy, "cut": cut, "pairs_applied": applied, **present_list_figures(total)}
            for total, (policy, cut, applied) in zip(totals, variants)]


def co_occurrence_rates(labels: np.ndarray, names: Sequence[str] = ATTRIBUTES) -> list[tuple[str, str, float, int]]:
    """How often each pair of attributes is present together: ``P(both) / min(P(a), P(b))``.

    The rate is the share of the rarer attribute's faces that also have the other: 0 for a pair
    never seen together, 1 when the rarer always comes with the other.

    Args:
        labels: ``(N, A)`` 0/1 labels, all known.
        names: The ``A`` names.

    Returns:
        ``(a, b, rate, faces with both)`` for every pair whose two attributes occur, lowest rate first.

    >>> co_occurrence_rates(np.array([[1, 0, 1], [0, 1, 1], [1, 0, 0]]), ("A", "B", "C"))[0]
    ('A', 'B', 0.0, 0)
    """
    present = np.asarray(labels) > 0.5
    both = present.T.astype(np.int64) @ present.astype(np.int64)
    counts = np.diag(both)
    rows = [(names[a], names[b], float(both[a, b] / min(counts[a], counts[b])), int(both[a, b]))
            for a in range(len(names)) for b in range(a + 1, len(names)) if counts[a] and counts[b]]
    return sorted(rows, key=lambda row: (row[2], row[0], row[1]))


def exclusive_pairs(labels: np.ndarray, max_rate: float = MAX_CO_OCCURRENCE,
                    names: Sequence[str] = ATTRIBUTES) -> list[tuple[str, str, float, int]]:
    """The pairs whose :func:`co_occurrence_rates` is below ``max_rate``: never listed together.

    >>> exclusive_pairs(np.array([[1, 0, 1], [0, 1, 1], [1, 0, 0]]), 0.1, ("A", "B", "C"))
    [('A', 'B', 0.0, 0)]
    """
    return [row for row in co_occurrence_rates(labels, names) if row[2] < max_rate]


def policies_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """:func:`measure_policies`' rows as a Markdown table.

    >>> print(policies_table([{"policy": "f1", "cut": None, "pairs_applied": True, "precision": 0.8, "recall": 0.7,
    ...                        "listed_per_face": 6.0, "true_per_face": 7.0}]))
    | policy | exclusive pairs | precision | recall | listed per face | true per face |
    |---|---|---|---|---|---|
    | f1 | applied | 0.800 | 0.700 | 6.00 | 7.00 |
    """
    lines = ["| policy | exclusive pairs | precision | recall | listed per face | true per face |", "|---|---|---|---|---|---|"]
    for row in rows:
        name = row["policy"] if row["cut"] is None else f"{row['policy']} >= {row['cut']:g}"
        lines.append(f"| {name} | {'applied' if row['pairs_applied'] else 'not applied'} | {row['precision']:.3f} | "
                     f"{row['recall']:.3f} | {row['listed_per_face']:.2f} | {row['true_per_face']:.2f} |")
    return "\n".join(lines)


def exclusive_pairs_module(rows: Sequence[tuple[str, str, float, int]], max_rate: float, faces: int) -> str:
    """The source of :mod:`faceattr.evaluation.exclusive_pairs` for :func:`exclusive_pairs`' ``rows``.

    >>> "('A', 'B')" in exclusive_pairs_module([("A", "B", 0.001, 2)], 0.03, 1000)
    True
    """
    body = "".join(f"    ({a!r}, {b!r}),  # {rate:.4f} ({both} faces with both)\n" for a, b, rate, both in rows)
    return (f'"""Attribute pairs CelebA\'s training labels almost never show together (generated: do not edit).\n\n'
            f"Written by ``python tools/measure_decisions.py --pairs-from CELEBA_ROOT`` from the labels of\n"
            f"CelebA's training partition ({faces} faces): a pair is listed when the share of the rarer\n"
            f"attribute's faces that also have the other (``P(both) / min(P(a), P(b))``) is below\n"
            f":data:`MAX_CO_OCCURRENCE`.\n\"\"\"\n\n"
            f"#: Logically exclusive pairs co-occur in up to about 3% of CelebA's labels (label noise:\n"
            f"#: No_Beard with Mustache 3.0%, Straight_Hair with Wavy_Hair 2.8%, Black_Hair with Brown_Hair 2.8%,\n"
            f"#: No_Beard with Goatee 1.9%), so below this rate the data cannot tell a pair from an impossible one.\n"
            f"MAX_CO_OCCURRENCE = {max_rate!r}\n\n"
            f"#: ``(a, b)`` pairs never listed together; the comment gives the measured rate.\n"
            f"EXCLUSIVE_PAIRS: tuple[tuple[str, str], ...] = (\n{body})\n")


def celeba_split_labels(root: str | Path, split: str) -> np.ndarray:
    """The 40 labels of every row of CelebA's ``list_attr_celeba.txt`` in one partition, images present or not.

    Args:
        root: The CelebA folder (``list_attr_celeba.txt`` and ``list_eval_partition.txt``).
        split: ``train``, ``val`` or ``test``.

    Returns:
        ``(N, 40)`` float32 0/1 labels (unknown values count as absent).

    Raises:
        DatasetError: A label file is missing or malformed (naming the file and line).
    """
    from faceattr.data.readers.celeba import (
        ATTRIBUTE_FILE,
        PARTITION_FILE,
        parse_partition,
    )
    from faceattr.data.readers.labelfiles import (
        BadRows,
        read_attribute_file,
        read_pairs,
        require_file,
    )

    root = Path(root)
    path = require_file(root / ATTRIBUTE_FILE, "CelebA")
    rows, _ = read_attribute_file(path, BadRows(path, "error"))
    partition = require_file(root / PARTITION_FILE, "CelebA")
    splits = read_pairs(partition, parse_partition, BadRows(partition, "error"), {row.name for row in rows})
    return np.array([row.attributes for row in rows if splits.get(row.name) == split], dtype=np.float32)


def score_celeba_validation(predict_aligned: Callable[[list[Path]], Sequence[Any]], root: str | Path,
                            batch: int = 256) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A model's calibrated probabilities on CelebA's validation faces present in ``img_align_celeba``.

    Args:
        predict_aligned: :meth:`~faceattr.inference.predictor.Predictor.predict_aligned` of the model.
        root: The CelebA folder.
        batch: Images per call.

    Returns:
        ``(probs, labels, mask)``, each ``(N, 40)``.

    Raises:
        DatasetError: The folder is not CelebA's layout, or has no validation image.
    """
    from faceattr.data.readers.celeba import read_celeba
    from faceattr.errors import DatasetError

    records = [record for record in read_celeba(root).records if record.split == "val"]
    if not records:
        raise DatasetError("no validation (partition 1) image present", Path(root))
    probs = [[face.probabilities[name] for name in ATTRIBUTES]
             for start in range(0, len(records), batch)
             for face in predict_aligned([record.path for record in records[start:start + batch]])]
    return (np.array(probs), np.stack([record.attributes for record in records]),
            np.stack([record.attribute_mask for record in records]))
