"""Simulated raters against a known truth, to size a labelling project and compare schedules and
estimators (``faceattr label simulate``, docs/LABELLING_SIMULATION.md).

The rater model (Thurstone case V with random clicks): for each vote, a rater who clicks at
random (probability ``random_clicks``) picks a side by a coin toss; any other rater perceives each
image as its true score plus independent normal noise of standard deviation ``judge_sd`` (in the
truth's units, the 1-5 scale for SCUT truths) and prefers the higher. ``judge_sd`` is an
individual rater's scatter around the consensus: a rater whose single ratings scatter that much
around the image's mean rating judges pairs this way.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np
from scipy import stats

from faceattr.errors import ConfigError, DatasetError
from faceattr.files import save_table
from faceattr.label.ratings import (
    ELO_START, SCUT_MEAN, SCUT_SD, bradley_terry_scores, elo_update, model_prior_mean,
)
from faceattr.label.schedule import ScheduleSettings, choose_pair, prior_ratings

ESTIMATORS = ("elo", "bt", "bt_prior")
METRICS = ("spearman", "kendall", "pairwise_accuracy", "top_third", "high_rest_accuracy")
#: Jitter added to SCUT truths drawn more than once (more images than the 3,300 available), so that
#: copies are distinct images of nearly equal score rather than exact ties.
RESAMPLE_JITTER = 0.05


def scut_truth(data_root: str | Path, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` true scores from SCUT-FBP5500's mean ratings (``scut_fbp5500/train_test_files/All_labels.txt``
    under ``data_root``): drawn without replacement up to the images available, beyond that with
    replacement plus normal jitter of :data:`RESAMPLE_JITTER`."""
    path = Path(data_root) / "scut_fbp5500" / "train_test_files" / "All_labels.txt"
    if not path.is_file():
        raise DatasetError(f"SCUT-FBP5500 labels not found: {path}")
    scores = np.loadtxt(path, usecols=1, ndmin=1)
    if n <= scores.size:
        return rng.choice(scores, size=n, replace=False)
    return rng.choice(scores, size=n, replace=True) + rng.normal(0.0, RESAMPLE_JITTER, n)


def normal_truth(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` true scores drawn from a normal distribution with SCUT's mean and spread."""
    return rng.normal(SCUT_MEAN, SCUT_SD, n)


def model_prior(truth: np.ndarray, correlation: float, rng: np.random.Generator) -> np.ndarray:
    """A simulated model score: the standardised truth plus normal noise, with Pearson correlation
    ``correlation`` to the truth in expectation (faceattr's default model reaches about 0.82 on
    held-out SCUT images, docs/MODEL_CARD.md)."""
    if not 0.0 < correlation <= 1.0:
        raise ConfigError(f"prior correlation must be in (0, 1], got {correlation}")
    z = (truth - truth.mean()) / truth.std()
    return z + np.sqrt(1.0 / correlation**2 - 1.0) * rng.normal(size=truth.size)


@dataclass
class RaterModel:
    """Simulated raters (module docstring): Thurstone noise ``judge_sd`` plus ``random_clicks``."""

    judge_sd: float = 0.7
    random_clicks: float = 0.0

    def __post_init__(self) -> None:
        if self.judge_sd < 0:
            raise ConfigError(f"judge_sd must be at least 0, got {self.judge_sd}")
        if not 0.0 <= self.random_clicks <= 1.0:
            raise ConfigError(f"random_clicks must be between 0 and 1, got {self.random_clicks}")

    def judge(self, truth_first: float, truth_second: float, rng: np.random.Generator) -> float:
        """1.0 when the first image is preferred, 0.0 when the second is."""
        if rng.random() < self.random_clicks:
            return float(rng.random() < 0.5)
        first, second = rng.normal((truth_first, truth_second), self.judge_sd)
        return float(first > second)


def ranking_metrics(estimate: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """How well ``estimate`` orders the images against ``truth``.

    - ``spearman``, ``kendall`` (tau-b): rank correlations.
    - ``pairwise_accuracy``: ``(1 + kendall) / 2``, the share of all pairs put in the true order
      (exactly so when neither side has ties).
    - ``top_third``: share of the true top third found in the estimated top third.
    - ``high_rest_accuracy``: share of images put on the right side of a "top third / rest" split.
    """
    kendall = stats.kendalltau(estimate, truth).statistic
    top = truth.size // 3
    true_top = np.zeros(truth.size, dtype=bool)
    true_top[np.argsort(-truth, kind="stable")[:top]] = True
    found_top = np.zeros(truth.size, dtype=bool)
    # Ties in the estimate (Elo before any vote) are broken at random, not by index.
    order = np.lexsort((np.random.default_rng(0).random(truth.size), -estimate))
    found_top[order[:top]] = True
    return {"spearman": float(stats.spearmanr(estimate, truth).statistic), "kendall": float(kendall),
            "pairwise_accuracy": float((1 + kendall) / 2),
            "top_third": float((true_top & found_top).sum() / max(top, 1)),
            "high_rest_accuracy": float((true_top == found_top).mean())}


@dataclass
class SimulationResult:
    """Metrics per checkpoint: ``rows`` are dicts with ``votes_per_image``, ``estimator`` and
    :data:`METRICS`."""

    rows: list[dict[str, float | str]] = field(default_factory=list)

    def metric(self, estimator: str, name: str = "spearman") -> tuple[np.ndarray, np.ndarray]:
        """``(votes_per_image, values)`` of one estimator's metric, in checkpoint order."""
        chosen = [row for row in self.rows if row["estimator"] == estimator]
        return (np.array([row["votes_per_image"] for row in chosen], dtype=float),
                np.array([row[name] for row in chosen], dtype=float))


def simulate(truth: np.ndarray, settings: ScheduleSettings, rater: RaterModel | None = None,
             estimators: Sequence[str] | None = None, prior: np.ndarray | None = None,
             prior_correlation: float = 0.82, seed: int = 0,
             checkpoints: Sequence[float] | None = None) -> SimulationResult:
    """Runs a labelling project with simulated raters, one vote at a time, and measures it.

    The schedule sees the live Elo, as the store's would; a ``"model"`` project's Elo starts at
    :func:`~faceattr.label.schedule.prior_ratings` of ``prior``. At each checkpoint (votes per
    image, the seeds' convention) each estimator is measured: ``"elo"`` the live Elo, ``"bt"`` a
    Bradley-Terry fit over the votes so far, ``"bt_prior"`` the same with the prior as its Gaussian
    prior (:func:`~faceattr.label.ratings.model_prior_mean`).

    Args:
        truth: each image's true score.
        settings: the schedule.
        rater: the rater model (:class:`RaterModel` defaults).
        estimators: among :data:`ESTIMATORS`; ``elo`` and ``bt``, and ``bt_prior`` when a prior is given,
            by default.
        prior: the model's score per image; required for the ``"model"`` scheme and ``"bt_prior"``.
        prior_correlation: the prior's correlation with the truth, as ``"bt_prior"`` assumes it.
        seed: seeds the generator: the same seed gives the same numbers.
        checkpoints: votes per image at which to measure; ``(settings.votes_per_image,)`` by default.
    """
    truth = np.asarray(truth, dtype=np.float64)
    n, rater = truth.size, rater or RaterModel()
    if estimators is None:
        estimators = ESTIMATORS if prior is not None else ("elo", "bt")
    unknown = set(estimators) - set(ESTIMATORS)
    if unknown:
        raise ConfigError(f"unknown estimator {sorted(unknown)[0]!r}; choose from {', '.join(ESTIMATORS)}")
    if prior is None and (settings.scheme == "model" or "bt_prior" in estimators):
        raise ConfigError("the model scheme and the bt_prior estimator need a prior score per image")
    checkpoints = sorted(checkpoints or (settings.votes_per_image,))
    rng = np.random.default_rng(seed)
    elo = prior_ratings(prior) if settings.scheme == "model" else np.full(n, ELO_START)
    counts = np.zeros(n, dtype=np.int64)
    stops = [round(c * n) for c in checkpoints]
    first, second = np.zeros(stops[-1], dtype=np.int64), np.zeros(stops[-1], dtype=np.int64)
    outcome = np.zeros(stops[-1])
    result, done = SimulationResult(), 0
    for checkpoint, stop in zip(checkpoints, stops):
        while done < stop:
            pair = choose_pair(settings, elo, counts, done, rng)
            if pair is None:
                break
            a, b = pair
            s = rater.judge(truth[a], truth[b], rng)
            elo[a], elo[b] = elo_update(elo[a], elo[b], s)
            counts[a] += 1
            counts[b] += 1
            first[done], second[done], outcome[done] = a, b, s
            done += 1
        votes = first[:done], second[:done], outcome[:done]
        for estimator in estimators:
            if estimator == "elo":
                estimate = elo
            elif estimator == "bt":
                estimate = bradley_terry_scores(n, *votes)
            else:
                mean, alpha = model_prior_mean(n, *votes, prior, prior_correlation)
                estimate = bradley_terry_scores(n, *votes, alpha=alpha, prior_mean=mean)
            result.rows.append({"votes_per_image": checkpoint, "estimator": estimator, "votes": done,
                                **ranking_metrics(estimate, truth)})
    return result


def votes_to_reach(votes_per_image: np.ndarray, values: np.ndarray, target: float = 0.9) -> float:
    """The votes per image at which a curve first reaches ``target`` (linear between checkpoints),
    NaN when it never does."""
    above = np.flatnonzero(values >= target)
    if above.size == 0:
        return float("nan")
    i = above[0]
    if i == 0:
        return float(votes_per_image[0])
    x0, x1, y0, y1 = votes_per_image[i - 1], votes_per_image[i], values[i - 1], values[i]
    return float(x0 + (target - y0) / (y1 - y0) * (x1 - x0))


def add_simulate_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``faceattr label simulate``."""
    parser.add_argument("--images", type=int, default=1000, help="number of images (default 1000)")
    parser.add_argument("--truth", choices=("scut", "normal"), default="normal",
                        help="true scores: SCUT-FBP5500's mean ratings (needs --data) or normal draws")
    parser.add_argument("--data", type=Path, default=Path("../shared/data"),
                        help="folder holding scut_fbp5500/ (default ../shared/data)")
    parser.add_argument("--scheme", choices=("seeds", "model"), default="seeds")
    parser.add_argument("--random-share", type=float, default=0.75, help="seeds' random share (default 0.75)")
    parser.add_argument("--votes-per-image", type=float, default=20.0, help="planned votes per image (default 20)")
    parser.add_argument("--cap", type=int, default=None, help="votes an image takes part in at most")
    parser.add_argument("--checkpoints", type=float, nargs="+", default=None,
                        help="votes per image at which to measure (default: --votes-per-image)")
    parser.add_argument("--judge-sd", type=float, default=RaterModel.judge_sd,
                        help=f"rater noise in truth units (default {RaterModel.judge_sd})")
    parser.add_argument("--random-clicks", type=float, default=0.0, help="share of random clicks (default 0)")
    parser.add_argument("--prior-correlation", type=float, default=0.82,
                        help="the model prior's correlation with the truth, model scheme (default 0.82)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="folder for simulation.md and simulation.json")


def format_table(result: SimulationResult) -> str:
    """The result as a Markdown table."""
    lines = ["| votes/image | estimator | " + " | ".join(METRICS) + " |", "|---" * (len(METRICS) + 2) + "|"]
    for row in result.rows:
        lines.append(f"| {row['votes_per_image']:g} | {row['estimator']} | "
                     + " | ".join(f"{row[name]:.4f}" for name in METRICS) + " |")
    return "\n".join(lines)


def run_simulate(args: argparse.Namespace, stdout: TextIO) -> int:
    """Runs ``faceattr label simulate``: prints the table, writes it (``simulation.md``) and its rows
    (``simulation.json``) under ``--out``."""
    rng = np.random.default_rng(args.seed)
    truth = scut_truth(args.data, args.images, rng) if args.truth == "scut" else normal_truth(args.images, rng)
    settings = ScheduleSettings(scheme=args.scheme, random_share=args.random_share,
                                votes_per_image=args.votes_per_image, cap_per_image=args.cap)
    prior = model_prior(truth, args.prior_correlation, rng) if args.scheme == "model" else None
    result = simulate(truth, settings, RaterModel(args.judge_sd, args.random_clicks), prior=prior,
                      prior_correlation=args.prior_correlation, seed=args.seed, checkpoints=args.checkpoints)
    table = format_table(result)
    print(table, file=stdout)
    if args.out is not None:
        markdown, figures = save_table(args.out, "simulation", table + "\n", result.rows)
        print(f"wrote {markdown} and {figures}", file=stdout)
    return 0

