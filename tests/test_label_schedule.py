"""faceattr.label.schedule: the seeds' random-then-close scheme, the cap, model-seeded scheduling."""

import time

import numpy as np
import pytest

from faceattr.errors import ConfigError
from faceattr.label.schedule import ScheduleSettings, choose_pair, prior_ratings


@pytest.mark.parametrize("field, value", [("scheme", "elo"), ("random_share", 1.5), ("votes_per_image", 0),
                                          ("cap_per_image", 0), ("neighbours", 0)])
def test_settings_name_the_bad_field(field, value):
    with pytest.raises(ConfigError, match=f"{field}.*{value}"):
        ScheduleSettings(**{field: value})


def test_the_cap_is_respected_and_a_full_project_is_done():
    settings = ScheduleSettings(cap_per_image=3)
    rng = np.random.default_rng(0)
    counts = np.array([3, 3, 2, 3, 1])
    for votes_done in (0, 10**6):  # random and close phases
        for _ in range(50):
            assert set(choose_pair(settings, np.zeros(5), counts, votes_done, rng)) == {2, 4}
    assert choose_pair(settings, np.zeros(5), np.array([3, 3, 3, 3, 2]), 0, rng) is None


def test_the_random_phase_draws_every_image_evenly():
    n, settings, rng = 60, ScheduleSettings(), np.random.default_rng(1)
    counts = np.zeros(n, dtype=int)
    for votes_done in range(10 * n):
        for image in choose_pair(settings, np.zeros(n), counts, votes_done, rng):
            counts[image] += 1
    # Uniform draws would give a spread of about sqrt(20) = 4.5 around 20; favouring the least drawn, far less.
    assert counts.min() >= 17 and counts.max() <= 23


def test_the_close_phase_pairs_near_ratings():
    n, settings, rng = 500, ScheduleSettings(random_share=0.0, neighbours=5), np.random.default_rng(2)
    ratings = rng.permutation(n).astype(float)  # every gap between neighbours is 1
    gaps = [abs(np.subtract(*ratings[list(choose_pair(settings, ratings, np.zeros(n), 0, rng))]))
            for _ in range(200)]
    assert max(gaps) <= 5
    random_gaps = [abs(np.subtract(*ratings[list(choose_pair(ScheduleSettings(random_share=1.0), ratings,
                                                             np.zeros(n), 0, rng))])) for _ in range(200)]
    assert np.mean(random_gaps) > 100


def test_left_and_right_are_randomised():
    rng = np.random.default_rng(3)
    pairs = [choose_pair(ScheduleSettings(), np.zeros(2), np.zeros(2), 0, rng) for _ in range(400)]
    assert set(pairs) == {(0, 1), (1, 0)}
    assert 150 < pairs.count((0, 1)) < 250


def test_pairs_the_rater_has_seen_are_avoided_when_possible():
    rng, settings = np.random.default_rng(4), ScheduleSettings(random_share=0.0, neighbours=2)
    ratings = np.array([0.0, 1.0, 2.0, 50.0])
    pairs = [sorted(choose_pair(settings, ratings, np.array([0, 5, 5, 5]), 0, rng, avoid={(0, 1)}))
             for _ in range(100)]
    # Image 0 (least drawn) is nearly always first; its two nearest are 1 (seen) and 2.
    assert [0, 1] not in pairs and pairs.count([0, 2]) > 80
    # Nothing else left: the seen pair comes back rather than nothing.
    assert sorted(choose_pair(settings, ratings[:2], np.zeros(2), 0, rng, avoid={(0, 1)})) == [0, 1]


def test_the_model_scheme_pairs_close_priors_from_the_first_vote():
    n, rng = 300, np.random.default_rng(5)
    prior = rng.permutation(n).astype(float)
    start = prior_ratings(prior)
    assert start.mean() == pytest.approx(0.0) and start.std() == pytest.approx(50.0)
    settings = ScheduleSettings(scheme="model", neighbours=4)
    gaps = [abs(np.subtract(*prior[list(choose_pair(settings, start, np.zeros(n), 0, rng))])) for _ in range(100)]
    assert max(gaps) <= 4
    # Ratings that did not start at the prior: the prior is added.
    gaps = [abs(np.subtract(*prior[list(choose_pair(settings, np.zeros(n), np.zeros(n), 0, rng, prior=prior))]))
            for _ in range(100)]
    assert max(gaps) <= 4


def test_choosing_a_pair_among_5000_images_takes_about_a_millisecond():
    n, rng = 5000, np.random.default_rng(6)
    ratings, counts = rng.normal(0, 50, n), rng.integers(0, 40, n)
    start = time.perf_counter()
    for votes_done in (0, 10**6) * 100:
        choose_pair(ScheduleSettings(), ratings, counts, votes_done, rng)
    assert (time.perf_counter() - start) / 200 < 2e-3
