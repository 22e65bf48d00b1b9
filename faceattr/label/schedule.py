"""Which pair to show next: the seeds' random-then-close scheme, a cap of votes per image, and
model-seeded scheduling (close pairs from the first vote, on ratings that start at a model's score).

"Votes per image" follows the seeds' convention: a project of ``n`` images plans
``votes_per_image * n`` votes, so an image takes part in about ``2 * votes_per_image`` of them.
``counts`` (and the cap) count an image's appearances in votes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from faceattr.errors import ConfigError

SCHEMES = ("seeds", "model")

#: The spread (standard deviation) :func:`prior_ratings` gives a prior on the Elo scale: about the
#: spread Elo ratings reach after a seeds'-scheme project of 20 votes an image (K = 10, measured in
#: the simulation, docs/LABELLING_SIMULATION.md), so a model-seeded project starts where a finished
#: one would be and the votes then correct it at Elo's own pace.
PRIOR_ELO_SD = 50.0


@dataclass
class ScheduleSettings:
    """How pairs are chosen.

    Attributes:
        scheme: ``"seeds"`` (random pairs first, then close scores) or ``"model"`` (close scores
            from the first vote; the ratings start at :func:`prior_ratings` of a model's scores).
        random_share: the share of the planned votes drawn at random before the seeds' scheme
            switches to close scores (the model scheme has no random phase).
        votes_per_image: planned votes per image; ``votes_per_image * n`` votes make the project.
        cap_per_image: an image in this many votes is never drawn again; None for no cap.
        neighbours: the close-score phase pairs an image with one of its ``neighbours`` nearest
            images by rating.
    """

    scheme: str = "seeds"
    random_share: float = 0.75
    votes_per_image: float = 20.0
    cap_per_image: int | None = None
    neighbours: int = 10

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise ConfigError(f"scheme must be one of {', '.join(SCHEMES)}, got {self.scheme!r}")
        if not 0.0 <= self.random_share <= 1.0:
            raise ConfigError(f"random_share must be between 0 and 1, got {self.random_share}")
        if not self.votes_per_image > 0:
            raise ConfigError(f"votes_per_image must be positive, got {self.votes_per_image}")
        if self.cap_per_image is not None and self.cap_per_image < 1:
            raise ConfigError(f"cap_per_image must be at least 1 or None, got {self.cap_per_image}")
        if self.neighbours < 1:
            raise ConfigError(f"neighbours must be at least 1, got {self.neighbours}")


def prior_ratings(prior: np.ndarray, spread: float = PRIOR_ELO_SD) -> np.ndarray:
    """A prior score per image (faceattr's beauty score, an attribute probability) on the Elo scale:
    standardised, times ``spread``. The store uses it as the Elo start of a ``"model"`` project, so
    both the schedule's close pairs and the live Elo begin from the model's order.

    >>> prior_ratings(np.array([1.0, 2.0, 3.0]), spread=10.0).round(2).tolist()
    [-12.25, 0.0, 12.25]
    """
    prior = np.asarray(prior, dtype=np.float64)
    if prior.ndim != 1 or not np.isfinite(prior).all():
        raise ConfigError(f"prior must be a 1-d array of finite scores, got shape {prior.shape}")
    deviation = prior.std()
    return (prior - prior.mean()) / deviation * spread if deviation > 0 else np.zeros_like(prior)


def draw_weights(counts: np.ndarray, open_: np.ndarray) -> np.ndarray:
    """The random phase's chance of each image, ``1 / (1 + c - min c)^2`` for an image in ``c``
    votes (0 for images at the cap): an image two votes ahead of the least-drawn has a ninth of its
    chance, so every image gets matches."""
    behind = counts - counts[open_].min()
    weights = np.where(open_, 1.0 / (1.0 + behind) ** 2, 0.0)
    return weights / weights.sum()


def _is_fresh(a: int, b: int, avoid: set[tuple[int, int]] | None) -> bool:
    return not avoid or (min(a, b), max(a, b)) not in avoid


def choose_pair(settings: ScheduleSettings, ratings: np.ndarray, counts: np.ndarray, votes_done: int,
                rng: np.random.Generator, prior: np.ndarray | None = None,
                avoid: set[tuple[int, int]] | None = None) -> tuple[int, int] | None:
    """The next pair to show.

    Args:
        settings: the scheme.
        ratings: each image's current Elo (for ``"model"``, the Elo that started at
            :func:`prior_ratings`; ``prior`` is then not needed).
        counts: votes each image has taken part in.
        votes_done: votes so far in the project (chooses the seeds' phase).
        rng: the random generator.
        prior: only for a ``"model"`` project whose ratings did not start at the prior: added to
            the ratings as :func:`prior_ratings` (``ratings + prior_ratings(prior)``).
        avoid: unordered pairs ``(low, high)`` this rater has already seen; avoided when another
            choice exists.

    Returns:
        The pair in display order (left, right; the side is random), or None when fewer than two
        images are below the cap (the project is done).
    """
    ratings, counts = np.asarray(ratings, dtype=np.float64), np.asarray(counts)
    n = ratings.size
    open_ = np.ones(n, dtype=bool) if settings.cap_per_image is None else counts < settings.cap_per_image
    if open_.sum() < 2:
        return None
    if settings.scheme == "model" and prior is not None:
        ratings = ratings + prior_ratings(prior)
    weights = draw_weights(counts, open_)
    first = int(rng.choice(n, p=weights))
    random_phase = settings.scheme == "seeds" and votes_done < settings.random_share * settings.votes_per_image * n
    if random_phase:
        weights[first] = 0.0
        candidates = rng.choice(n, size=min(5, int(open_.sum()) - 1), replace=False, p=weights / weights.sum())
    else:
        distance = np.where(open_, np.abs(ratings - ratings[first]), np.inf)
        distance[first] = np.inf
        k = min(settings.neighbours, int(open_.sum()) - 1)
        nearest = np.argpartition(distance, k - 1)[:k]
        candidates = rng.permutation(nearest)
    second = next((int(c) for c in candidates if _is_fresh(first, int(c), avoid)), int(candidates[0]))
    return (first, second) if rng.random() < 0.5 else (second, first)
