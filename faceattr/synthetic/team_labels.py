"""A simulated team's beauty ratings of SCUT-FBP5500 faces, as a labels.csv like ``faceattr label export``'s.

For demonstrating the fine-tuning loop on real faces without a real team: SCUT-FBP5500 gives each
face the mean of 60 raters (its per-rater ratings are not available), and a team whose taste
differs from those raters' is simulated by a stated rule, :func:`team_scores`: each of SCUT's four
groups (Asian/Caucasian female/male) is shifted by :data:`TEAM_SHIFT`, and every face gets its
own seeded Gaussian disagreement of spread ``noise``, which no model can learn. The validation
rows are one SCUT fold (the default model's validation fold 0, on which it never trained); the
training rows are drawn from the other folds.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

from faceattr.attributes import BEAUTY_RANGE
from faceattr.data.readers.scut import read_scut

#: The columns of ``faceattr label export``'s labels.csv that a simulation without votes can fill;
#: the csv reader reads ``image``, ``beauty`` and ``split`` and ignores ``high``.
TEAM_COLUMNS: tuple[str, ...] = ("image", "beauty", "split", "high")

#: The simulated team's taste against SCUT's raters: a shift of the 1-5 score per SCUT group (the
#: image name's prefix: Asian/Caucasian, female/male).
TEAM_SHIFT: dict[str, float] = {"AF": -0.4, "AM": 0.5, "CF": 0.3, "CM": -0.3}


def team_scores(scores: dict[str, float], noise: float = 0.25, seed: int = 0,
                shift: dict[str, float] | None = None) -> dict[str, float]:
    """The team's score of each SCUT image: its SCUT mean, shifted by its group, plus seeded noise, within 1-5.

    Args:
        scores: SCUT mean score by image name (``AF1.jpg``).
        noise: Spread of each face's own disagreement (a Gaussian's standard deviation).
        seed: Seeds the disagreement; the same seed gives the same scores.
        shift: Shift by group (default :data:`TEAM_SHIFT`).

    >>> team_scores({"AM1.jpg": 3.0, "CM2.jpg": 1.1}, noise=0.0)
    {'AM1.jpg': 3.5, 'CM2.jpg': 1.0}
    """
    shift = TEAM_SHIFT if shift is None else shift
    rng = random.Random(seed)
    low, high = BEAUTY_RANGE
    return {name: round(min(max(score + shift[name[:2]] + rng.gauss(0.0, noise), low), high), 4)
            for name, score in sorted(scores.items())}


def write_team_labels(scut_root: str | Path, out_csv: str | Path, train_count: int = 1000, noise: float = 0.25,
                      seed: int = 0, folds: int = 5, fold: int = 0) -> dict[str, int]:
    """Writes a simulated team's labels.csv: ``train_count`` training faces and every face of SCUT fold ``fold``.

    The ``image`` column holds SCUT image names: train with the csv source's ``images`` set to
    SCUT's ``Images`` folder, so that no image is copied. ``split`` is filled (``val`` for the
    fold, ``train`` otherwise), so that the validation faces are the ones the default model did
    not train on; ``high`` marks the top third by team score. The export's Bradley-Terry, Elo
    and vote columns are left out: no votes are simulated.

    Returns:
        The number of ``train`` and ``val`` rows written.

    Raises:
        FileExistsError: ``out_csv`` exists.
    """
    records = read_scut(scut_root, folds=folds, fold=fold).records
    names = {record.path.name: record for record in records}
    team = team_scores({name: record.beauty for name, record in names.items()}, noise, seed)
    val = sorted(name for name, record in names.items() if record.split == "val")
    train_pool = sorted(name for name, record in names.items() if record.split == "train")
    train = sorted(random.Random(seed).sample(train_pool, min(train_count, len(train_pool))))
    cut = sorted(team.values(), reverse=True)[len(team) // 3]
    out_csv = Path(out_csv)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    with open(out_csv, "x", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(TEAM_COLUMNS)
        for split, chosen in (("train", train), ("val", val)):
            for name in chosen:
                writer.writerow([name, team[name], split, int(team[name] > cut)])
    return {"train": len(train), "val": len(val)}
