"""Votes to scores: Elo (live, as the votes arrive), a Bradley-Terry fit over all votes with its
uncertainty, split-half reliability, per-rater statistics and the 1-5 beauty scale.

Votes are three parallel arrays: ``first`` and ``second`` (image indices ``0..n-1``, the pair as
shown, first = left) and ``outcome`` (1.0 first preferred, 0.0 second preferred, 0.5 tie).
Skips never reach this module.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats
from scipy.special import expit

from faceattr.errors import ConfigError

#: The seeds' Elo: every image starts at 0, K = 10, divisor 200 (issue 12).
ELO_START = 0.0
ELO_K = 10.0
ELO_DIVISOR = 200.0

#: Bradley-Terry regularisation: the penalty ``alpha * sum(score**2)`` (choix's convention), a
#: Gaussian prior of variance ``1 / (2 alpha)`` on each log-strength. 0.01 keeps an image that won
#: (or lost) every vote finite while leaving 20 votes an image to the data; an image without votes
#: gets score 0 and the prior's standard error, ``1 / sqrt(2 alpha)`` = 7.07.
BT_ALPHA = 0.01

#: Mean and standard deviation of SCUT-FBP5500's mean ratings (1-5), measured once on the 3,300
#: images of the official 60% training part in ../shared/data/scut_fbp5500 (All_Labels.txt):
#: mean 2.989, sample SD 0.695. The 40% test part is withheld there, so it is not in these figures.
SCUT_MEAN = 2.989
SCUT_SD = 0.695


def _vote_arrays(n: int, first, second, outcome) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The votes as int/int/float arrays, checked: same length, indices in range, outcomes 0/0.5/1."""
    first, second = np.asarray(first, dtype=np.int64), np.asarray(second, dtype=np.int64)
    outcome = np.asarray(outcome, dtype=np.float64)
    if not first.shape == second.shape == outcome.shape or first.ndim != 1:
        raise ConfigError(f"first, second and outcome must be 1-d arrays of one length, got shapes "
                          f"{first.shape}, {second.shape}, {outcome.shape}")
    for name, images in (("first", first), ("second", second)):
        bad = np.flatnonzero((images < 0) | (images >= n))
        if bad.size:
            raise ConfigError(f"{name}[{bad[0]}] = {images[bad[0]]} is not an image index 0..{n - 1}")
    bad = np.flatnonzero((outcome != 0.0) & (outcome != 0.5) & (outcome != 1.0))
    if bad.size:
        raise ConfigError(f"outcome[{bad[0]}] = {outcome[bad[0]]} is not 1.0, 0.0 or 0.5")
    same = np.flatnonzero(first == second)
    if same.size:
        raise ConfigError(f"vote {same[0]} compares image {first[same[0]]} with itself")
    return first, second, outcome


def elo_expected(r1: float, r2: float) -> float:
    """The expected score of an image rated ``r1`` against one rated ``r2``.

    >>> round(elo_expected(25.0, 12.0), 4)
    0.5373
    """
    return 1.0 / (1.0 + 10.0 ** ((r2 - r1) / ELO_DIVISOR))


def elo_update(r1: float, r2: float, outcome: float) -> tuple[float, float]:
    """Both ratings after one vote: ``R += K (S - E)``, S = ``outcome`` for the first, ``1 - outcome``
    for the second.

    >>> [round(r, 3) for r in elo_update(25.0, 12.0, 1.0)]
    [29.627, 7.373]
    """
    expected = elo_expected(r1, r2)
    change = ELO_K * (outcome - expected)
    return r1 + change, r2 - change


def elo_ratings(n: int, first, second, outcome, start: np.ndarray | None = None) -> np.ndarray:
    """Replays the votes in order from ``start`` (``ELO_START`` for every image by default).

    Args:
        n: number of images.
        first, second, outcome: the votes (module docstring).
        start: starting ratings, e.g. :func:`faceattr.label.schedule.prior_ratings` of a model's scores.

    Returns:
        The ratings after the last vote, shape ``(n,)``.
    """
    first, second, outcome = _vote_arrays(n, first, second, outcome)
    ratings = np.full(n, ELO_START) if start is None else np.array(start, dtype=np.float64)
    if ratings.shape != (n,):
        raise ConfigError(f"start has shape {ratings.shape}, expected ({n},)")
    # Each vote depends on the ratings the previous one left: a plain loop over Python floats.
    values = ratings.tolist()
    for a, b, s in zip(first.tolist(), second.tolist(), outcome.tolist()):
        values[a], values[b] = elo_update(values[a], values[b], s)
    return np.asarray(values)


@dataclass
class BradleyTerryFit:
    """A Bradley-Terry fit: ``P(i preferred to j) = 1 / (1 + exp(scores[j] - scores[i]))``.

    Attributes:
        scores: log-strengths, centred to mean 0.
        standard_errors: each score's standard error, from the inverse of the observed Fisher
            information of the regularised likelihood (the Hessian at the maximum), for the score
            measured against the mean score of the rated images. An image without votes gets
            ``sqrt((1 + 1 / r) / (2 alpha))`` with ``r`` rated images (about 7.07 at :data:`BT_ALPHA`).
    """

    scores: np.ndarray
    standard_errors: np.ndarray

    def interval(self, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """The normal-approximation interval ``scores -/+ z * standard_errors`` at ``level``."""
        if not 0.0 < level < 1.0:
            raise ConfigError(f"interval level must be between 0 and 1, got {level}")
        half = stats.norm.ppf(0.5 + level / 2) * self.standard_errors
        return self.scores - half, self.scores + half


def _bradley_terry_map(n: int, first: np.ndarray, second: np.ndarray, outcome: np.ndarray,
                       alpha: float, prior_mean: np.ndarray) -> np.ndarray:
    """The maximum of the penalised log-likelihood (MAP), uncentred; a tie is half a win each way."""

    def objective(scores: np.ndarray) -> tuple[float, np.ndarray]:
        diff = scores[first] - scores[second]
        # -log P(outcome) = outcome * log(1 + e^-d) + (1 - outcome) * log(1 + e^d)
        loss = outcome @ np.logaddexp(0.0, -diff) + (1.0 - outcome) @ np.logaddexp(0.0, diff)
        residual = expit(diff) - outcome
        offset = scores - prior_mean
        gradient = np.bincount(first, residual, n) - np.bincount(second, residual, n) + 2 * alpha * offset
        return loss + alpha * offset @ offset, gradient

    def hessian_times(scores: np.ndarray, vector: np.ndarray) -> np.ndarray:
        p = expit(scores[first] - scores[second])
        flow = p * (1 - p) * (vector[first] - vector[second])
        return np.bincount(first, flow, n) - np.bincount(second, flow, n) + 2 * alpha * vector

    # trust-ncg: trust-krylov failed (NaN steps) on sparse votes, where unbeaten images run far out.
    result = optimize.minimize(objective, prior_mean.copy(), jac=True, hessp=hessian_times, method="trust-ncg",
                               options={"gtol": 1e-6})
    return result.x


def _information(n: int, first: np.ndarray, second: np.ndarray, scores: np.ndarray, alpha: float) -> np.ndarray:
    """The observed Fisher information (Hessian of the penalised negative log-likelihood), dense."""
    p = expit(scores[first] - scores[second])
    weight = p * (1 - p)
    information = np.zeros((n, n))
    np.add.at(information, (first, second), -weight)
    information += information.T
    information[np.diag_indices(n)] = -information.sum(axis=1) + 2 * alpha
    return information


def bradley_terry_scores(n: int, first, second, outcome, alpha: float = BT_ALPHA,
                         prior_mean: np.ndarray | None = None) -> np.ndarray:
    """Bradley-Terry log-strengths (MAP, centred to mean 0), without standard errors: the fast part
    of :func:`fit_bradley_terry` (a quarter of a second for 5,000 images and 100,000 votes).

    Args:
        prior_mean: each image's prior log-strength (:func:`model_prior_mean`); the penalty is then
            ``alpha * sum((scores - prior_mean)**2)``. Zero by default.
    """
    if alpha <= 0:
        raise ConfigError(f"alpha must be positive (it keeps unbeaten images finite), got {alpha}")
    first, second, outcome = _vote_arrays(n, first, second, outcome)
    prior_mean = np.zeros(n) if prior_mean is None else np.asarray(prior_mean, dtype=np.float64)
    if prior_mean.shape != (n,):
        raise ConfigError(f"prior_mean has shape {prior_mean.shape}, expected ({n},)")
    scores = _bradley_terry_map(n, first, second, outcome, alpha, prior_mean)
    return scores - scores.mean()


def model_prior_mean(n: int, first, second, outcome, prior: np.ndarray, correlation: float) -> tuple[np.ndarray, float]:
    """A model's scores as a Bradley-Terry prior (empirical Bayes), for model-seeded projects.

    The votes-only fit ``s0`` is regressed on the standardised prior ``z``: the slope ``b`` puts the
    prior on the log-strength scale (the fit's noise is independent of the model, so ``b`` estimates
    ``correlation * sd(true scores)``). Given the model's ``correlation`` with the truth (the model
    card's held-out Pearson, e.g. 0.82 for faceattr's beauty score), the truth scatters around
    ``b z`` with variance ``b^2 (1 - correlation^2) / correlation^2``, whence the prior's strength.
    With few votes an image the votes-only fit spreads wider than the truth (maximum likelihood
    overfits), so ``b`` comes out larger and the prior weaker: it errs on the side of the votes.
    With close pairs (the model-seeded schedule) the votes barely fix the fit's scale along ``z``:
    in the simulation ``b`` came out about four times too large (the prior 15 times too weak), which
    cost 0.005-0.008 Spearman against the true ``b`` at 3-8 votes an image. A logistic regression
    of the outcomes on ``z_first - z_second`` is no cure: close pairs are chosen on an Elo that holds
    past outcomes, so within a pair the prior gap and the residuals are correlated.

    Returns:
        ``(prior_mean, alpha)`` for :func:`bradley_terry_scores`. With no informative votes yet
        (``b <= 0``), a zero mean and :data:`BT_ALPHA`.
    """
    if not 0.0 < correlation < 1.0:
        raise ConfigError(f"prior correlation must be between 0 and 1 (exclusive), got {correlation}")
    prior = np.asarray(prior, dtype=np.float64)
    if prior.shape != (n,) or not np.isfinite(prior).all():
        raise ConfigError(f"prior must hold one finite score per image ({n}), got shape {prior.shape}")
    z = (prior - prior.mean()) / prior.std() if prior.std() > 0 else np.zeros(n)
    rough = bradley_terry_scores(n, first, second, outcome)
    rated = np.bincount(np.asarray(first, dtype=np.int64), minlength=n) + np.bincount(
        np.asarray(second, dtype=np.int64), minlength=n) > 0
    slope = float(np.cov(rough[rated], z[rated])[0, 1] / z[rated].var(ddof=1)) if rated.sum() > 2 else 0.0
    if slope <= 0:
        return np.zeros(n), BT_ALPHA
    scatter = slope**2 * (1 - correlation**2) / correlation**2
    return slope * z, 1.0 / (2.0 * scatter)


def fit_bradley_terry(n: int, first, second, outcome, alpha: float = BT_ALPHA,
                      prior_mean: np.ndarray | None = None) -> BradleyTerryFit:
    """Fits Bradley-Terry by penalised maximum likelihood over all votes.

    The penalty ``alpha * sum(scores**2)`` is choix's (``choix.opt_pairwise`` gives the same scores
    on decisive votes; the tests check it), but the fit is vectorised (trust-region Newton-CG on
    Hessian-vector products): choix loops over the votes in Python (``choix.ilsr_pairwise`` took
    12 s for 5,000 images and 100,000 votes, this fit 0.25 s). A tie counts as half a win for each side (log-likelihood ``0.5 log p + 0.5 log(1 - p)``).

    Args:
        n: number of images.
        first, second, outcome: the votes (module docstring).
        alpha: regularisation (:data:`BT_ALPHA`).
        prior_mean: prior log-strengths (:func:`bradley_terry_scores`).

    Returns:
        The centred scores and their standard errors. The standard errors need the inverse of an
        ``n`` x ``n`` matrix: 200 MB and about 10 s at 5,000 images on 2 shared cores (0.1 s at
        1,000); :func:`bradley_terry_scores` alone is fast.
    """
    first, second, outcome = _vote_arrays(n, first, second, outcome)
    scores = bradley_terry_scores(n, first, second, outcome, alpha, prior_mean)
    covariance = np.linalg.inv(_information(n, first, second, scores, alpha))
    # The likelihood fixes differences only, so an error is measured against the mean of the rated
    # images m = w's (the scores' own centre: the penalty makes the rated scores sum to 0 and leaves
    # unrated ones at 0): Var(s_i - m) = Sigma_ii - 2 (Sigma w)_i + w' Sigma w.
    rated = np.bincount(first, minlength=n) + np.bincount(second, minlength=n) > 0
    weights = rated / rated.sum() if rated.any() else np.full(n, 1.0 / n)
    spread = covariance @ weights
    variance = np.diag(covariance) - 2 * spread + weights @ spread
    return BradleyTerryFit(scores=scores, standard_errors=np.sqrt(np.maximum(variance, 0.0)))


def split_half_reliability(n: int, first, second, outcome, seed: int = 0, alpha: float = BT_ALPHA) -> float:
    """The project's reliability: how well two independent halves of the votes agree.

    The votes are split at random into two halves, each half is fitted with Bradley-Terry, and the
    Spearman correlation ``r`` between the two score vectors (over the images with votes in both
    halves; unrated images would add tied zeros to both sides) is corrected to the full number of
    votes with Spearman-Brown, ``2 r / (1 + r)``. About 1 for consistent votes, about 0 for random ones.

    Returns:
        The corrected correlation, or NaN when fewer than three images have votes in both halves.
    """
    first, second, outcome = _vote_arrays(n, first, second, outcome)
    half = np.random.default_rng(seed).permutation(first.size) < first.size // 2
    fits, rated = [], np.ones(n, dtype=bool)
    for part in (half, ~half):
        fits.append(bradley_terry_scores(n, first[part], second[part], outcome[part], alpha))
        rated &= np.bincount(first[part], minlength=n) + np.bincount(second[part], minlength=n) > 0
    if rated.sum() < 3:
        return float("nan")
    r = stats.spearmanr(fits[0][rated], fits[1][rated]).statistic
    return float(2 * r / (1 + r))


@dataclass
class RaterStatistics:
    """One rater's votes and how they agree with the consensus.

    Attributes:
        rater: the rater's id or name.
        votes: votes cast (ties included, skips not).
        ties: votes that were ties.
        agreement: share of the rater's decided votes (not ties, between images of different
            consensus score) that prefer the image the consensus (Bradley-Terry over every rater)
            ranks higher; about 0.5 for a rater who clicks at random. NaN without such votes.
        median_response_ms: median time from showing the pair to the vote.
        skips: pairs the rater skipped; skips never reach this module, so the store fills it in.
    """

    rater: object
    votes: int
    ties: int
    agreement: float
    median_response_ms: float
    skips: int = 0


def rater_statistics(rater, first, second, outcome, response_ms, scores: np.ndarray) -> list[RaterStatistics]:
    """Per-rater statistics, to spot careless raters.

    Args:
        rater: each vote's rater id or name.
        first, second, outcome: the votes (module docstring).
        response_ms: each vote's response time in milliseconds.
        scores: the consensus scores (e.g. :func:`fit_bradley_terry` over all votes). The rater's own
            votes are part of that consensus, which flatters a rater slightly when few raters vote.

    Returns:
        One entry per rater, in order of first appearance.
    """
    scores = np.asarray(scores, dtype=np.float64)
    first, second, outcome = _vote_arrays(scores.size, first, second, outcome)
    rater, response_ms = np.asarray(rater), np.asarray(response_ms, dtype=np.float64)
    if rater.shape != first.shape or response_ms.shape != first.shape:
        raise ConfigError(f"rater and response_ms must have one entry per vote ({first.size}), got "
                          f"{rater.shape} and {response_ms.shape}")
    _, first_seen, which = np.unique(rater, return_index=True, return_inverse=True)
    gap = scores[first] - scores[second]
    decided = (outcome != 0.5) & (gap != 0)
    agrees = (outcome == 1.0) == (gap > 0)
    result = []
    for index in np.argsort(first_seen):
        mine = which == index
        mine_decided = mine & decided
        name = rater[first_seen[index]]
        result.append(RaterStatistics(
            rater=name.item() if isinstance(name, np.generic) else name, votes=int(mine.sum()), ties=int((mine & (outcome == 0.5)).sum()),
            agreement=float(agrees[mine_decided].mean()) if mine_decided.any() else float("nan"),
            median_response_ms=float(np.median(response_ms[mine]))))
    return result


def beauty_scale(scores: np.ndarray) -> np.ndarray:
    """Maps scores onto SCUT-FBP5500's 1-5 scale: ``clip(SCUT_MEAN + SCUT_SD * z, 1, 5)``.

    ``z`` is the scores standardised over the project (mean 0, SD 1), so a project's images get the
    spread of SCUT's mean ratings around SCUT's mean: the rule assumes the project's faces are as
    varied as SCUT's. It keeps the order and the relative distances of the scores. All-equal scores
    map to ``SCUT_MEAN``.

    >>> beauty_scale(np.array([-1.0, 0.0, 1.0])).round(2).tolist()
    [2.14, 2.99, 3.84]
    """
    scores = np.asarray(scores, dtype=np.float64)
    spread = scores.std()
    z = (scores - scores.mean()) / spread if spread > 0 else np.zeros_like(scores)
    return np.clip(SCUT_MEAN + SCUT_SD * z, 1.0, 5.0)
