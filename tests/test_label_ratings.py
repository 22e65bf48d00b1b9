"""faceattr.label.ratings: Elo as the seeds define it, the Bradley-Terry fit and its uncertainty,
split-half reliability, per-rater statistics and the 1-5 scale."""

import choix
import numpy as np
import pytest
from scipy import stats

from faceattr.errors import ConfigError
from faceattr.label.ratings import (
    SCUT_MEAN, beauty_scale, bradley_terry_scores, elo_expected, elo_ratings, elo_update, fit_bradley_terry,
    model_prior_mean, rater_statistics, split_half_reliability,
)


def truncate(value: float) -> float:
    return np.floor(value * 100) / 100


def test_the_seeds_worked_example():
    # The seeds print 29.62 / 7.37 and 19.62 / 17.37: the exact values are 29.6265 / 7.3735 and
    # 19.6265 / 17.3735, so the seeds truncated to two decimals (rounding gives 29.63 and 19.63).
    assert elo_expected(25.0, 12.0) == pytest.approx(0.537347, abs=1e-6)
    first_wins, second_wins = elo_update(25.0, 12.0, 1.0), elo_update(25.0, 12.0, 0.0)
    assert [truncate(r) for r in first_wins] == [29.62, 7.37]
    assert [truncate(r) for r in second_wins] == [19.62, 17.37]
    assert first_wins == pytest.approx((29.6265, 7.3735), abs=1e-4)
    tie = elo_update(25.0, 12.0, 0.5)
    assert tie == pytest.approx((25.0 + 10 * (0.5 - 0.537347), 12.0 - 10 * (0.5 - 0.537347)), abs=1e-5)


def test_elo_replays_the_votes_in_order():
    ratings = elo_ratings(3, [0, 1, 0], [1, 2, 2], [1.0, 0.0, 0.5])
    r0, r1 = elo_update(0.0, 0.0, 1.0)
    r1, r2 = elo_update(r1, 0.0, 0.0)
    r0, r2 = elo_update(r0, r2, 0.5)
    assert ratings == pytest.approx([r0, r1, r2])
    assert elo_ratings(2, [0], [1], [1.0], start=np.array([100.0, 0.0]))[0] == pytest.approx(
        elo_update(100.0, 0.0, 1.0)[0])


def test_votes_are_checked():
    with pytest.raises(ConfigError, match=r"second\[1\] = 7"):
        elo_ratings(3, [0, 1], [1, 7], [1.0, 1.0])
    with pytest.raises(ConfigError, match=r"outcome\[0\] = 2.0"):
        bradley_terry_scores(3, [0], [1], [2.0])
    with pytest.raises(ConfigError, match="itself"):
        bradley_terry_scores(3, [1], [1], [1.0])


def simulated_votes(strengths: np.ndarray, votes: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    n = strengths.size
    first = rng.integers(0, n, votes)
    second = (first + rng.integers(1, n, votes)) % n
    outcome = (rng.random(votes) < 1 / (1 + np.exp(strengths[second] - strengths[first]))).astype(float)
    return first, second, outcome


def test_bradley_terry_recovers_a_known_order_and_matches_choix():
    strengths = np.linspace(-2, 2, 8)
    first, second, outcome = simulated_votes(strengths, 4000)
    scores = bradley_terry_scores(8, first, second, outcome)
    assert np.all(np.diff(scores) > 0)
    assert scores.mean() == pytest.approx(0.0, abs=1e-9)
    wins = [(a, b) if s else (b, a) for a, b, s in zip(first, second, outcome)]
    reference = choix.opt_pairwise(8, wins, alpha=0.01)
    assert scores == pytest.approx(reference - reference.mean(), abs=1e-5)


def test_a_tie_is_half_a_win_each_way_and_unbeaten_images_stay_finite():
    tied = bradley_terry_scores(2, [0, 0], [1, 1], [0.5, 0.5])
    assert tied == pytest.approx([0.0, 0.0], abs=1e-9)
    unbeaten = bradley_terry_scores(2, [0] * 10, [1] * 10, [1.0] * 10)
    assert np.isfinite(unbeaten).all() and unbeaten[0] > unbeaten[1]
    # A win and a tie weigh as one and a half wins against half a loss: three wins to one, halved.
    with_tie = bradley_terry_scores(2, [0, 0], [1, 1], [1.0, 0.5], alpha=0.01)
    doubled = bradley_terry_scores(2, [0, 0, 0, 1], [1, 1, 1, 0], [1.0, 1.0, 1.0, 1.0], alpha=0.02)
    assert with_tie == pytest.approx(doubled, abs=1e-6)


def test_standard_errors_shrink_with_votes_and_unrated_images_get_the_prior():
    strengths = np.linspace(-1, 1, 6)
    few = fit_bradley_terry(7, *simulated_votes(strengths, 60))
    many = fit_bradley_terry(7, *simulated_votes(strengths, 2000))
    assert np.all(many.standard_errors[:6] < few.standard_errors[:6] / 3)
    assert few.scores[6] == pytest.approx(0.0, abs=1e-9) and few.standard_errors[6] == pytest.approx(np.sqrt((1 + 1 / 6) / (2 * 0.01)), rel=1e-3)
    low, high = many.interval(0.95)
    assert np.all(low < many.scores) and np.all(many.scores < high)
    assert (high - low) == pytest.approx(2 * 1.959964 * many.standard_errors)


def test_split_half_reliability_is_high_for_consistent_votes_and_near_zero_for_random_ones():
    strengths = np.linspace(-2, 2, 30)
    first, second, outcome = simulated_votes(strengths, 3000)
    assert split_half_reliability(30, first, second, outcome) > 0.9
    coin = np.random.default_rng(1).integers(0, 2, first.size).astype(float)
    assert abs(split_half_reliability(30, first, second, coin)) < 0.3


def test_a_careless_rater_agrees_with_the_consensus_about_half_the_time():
    strengths = np.linspace(-3, 3, 40)
    first, second, outcome = simulated_votes(strengths, 6000)
    rater = np.where(np.arange(first.size) % 3 == 0, "careless", "careful")
    rng = np.random.default_rng(2)
    outcome = np.where(rater == "careless", rng.integers(0, 2, first.size), outcome).astype(float)
    outcome[:4] = 0.5
    response_ms = np.where(rater == "careless", 300.0, 1500.0)
    scores = bradley_terry_scores(40, first, second, outcome)
    careless, careful = rater_statistics(rater, first, second, outcome, response_ms, scores)
    assert (careless.rater, careful.rater) == ("careless", "careful")
    assert careless.votes == 2000 and careful.votes == 4000
    assert careless.ties == 2 and careful.ties == 2
    assert careless.agreement == pytest.approx(0.5, abs=0.04)
    assert careful.agreement > 0.8
    assert (careless.median_response_ms, careful.median_response_ms) == (300.0, 1500.0)
    as_objects = rater_statistics(rater.astype(object), first, second, outcome, response_ms, scores)
    assert [statistics.rater for statistics in as_objects] == ["careless", "careful"]


def test_beauty_scale_standardises_onto_scut():
    mapped = beauty_scale(np.array([-10.0, -1.0, 0.0, 1.0, 10.0]))
    assert np.all(np.diff(mapped) >= 0)
    assert mapped.min() >= 1.0 and mapped.max() <= 5.0
    assert beauty_scale(np.array([-1.0, 1.0])).mean() == pytest.approx(SCUT_MEAN)
    assert beauty_scale(np.zeros(3)) == pytest.approx([SCUT_MEAN] * 3)


def test_a_model_prior_puts_the_model_on_the_score_scale_and_sharpens_a_few_votes():
    rng = np.random.default_rng(3)
    strengths = rng.normal(0, 1.5, 300)
    prior = strengths / 1.5 + np.sqrt(1 / 0.8**2 - 1) * rng.normal(size=300)  # correlation about 0.8
    first, second, outcome = simulated_votes(strengths, 600, seed=4)
    mean, alpha = model_prior_mean(300, first, second, outcome, prior, correlation=0.8)
    # mean = b z, b about correlation * sd(strengths) = 1.2; two votes an image overfit (b larger).
    assert 1.0 < np.std(mean) < 1.8
    assert alpha == pytest.approx(1 / (2 * np.var(mean) * (1 - 0.64) / 0.64), rel=1e-6)
    informed = bradley_terry_scores(300, first, second, outcome, alpha=alpha, prior_mean=mean)
    alone = bradley_terry_scores(300, first, second, outcome)
    rho = [stats.spearmanr(estimate, strengths).statistic for estimate in (alone, informed, prior)]
    assert rho[1] > max(rho[0], rho[2]) + 0.03
    with pytest.raises(ConfigError, match="correlation.*1.5"):
        model_prior_mean(300, first, second, outcome, prior, correlation=1.5)
