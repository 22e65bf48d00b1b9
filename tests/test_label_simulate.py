"""faceattr.label.simulate: the rater model, the metrics, reproducibility, model-seeded against the
seeds' scheme, and the CLI functions."""

import argparse
import io
import json

import numpy as np
import pytest

from faceattr.errors import ConfigError
from faceattr.label.benchmark import NOISE_GRID, BenchmarkSettings, run_labelling_benchmark
from faceattr.label.schedule import ScheduleSettings
from faceattr.label.simulate import (
    METRICS, RaterModel, add_simulate_arguments, model_prior, normal_truth, ranking_metrics, run_simulate, scut_truth,
    simulate, votes_to_reach,
)


def test_ranking_metrics_of_a_perfect_a_reversed_and_a_half_wrong_order():
    truth = np.arange(30.0)
    assert ranking_metrics(truth * 2, truth) == pytest.approx(
        {"spearman": 1, "kendall": 1, "pairwise_accuracy": 1, "top_third": 1, "high_rest_accuracy": 1})
    reversed_ = ranking_metrics(-truth, truth)
    assert reversed_["spearman"] == pytest.approx(-1) and reversed_["top_third"] == 0.0
    assert reversed_["high_rest_accuracy"] == pytest.approx(1 / 3)  # the middle third stays "rest"
    swapped = truth.copy()
    swapped[[0, 29]] = swapped[[29, 0]]
    assert ranking_metrics(swapped, truth)["top_third"] == pytest.approx(0.9)


def test_the_rater_model_follows_the_truth_with_noise_and_random_clicks():
    rng = np.random.default_rng(0)
    exact = RaterModel(judge_sd=0.0)
    assert all(exact.judge(2.0, 1.0, rng) == 1.0 for _ in range(20))
    noisy = [RaterModel(judge_sd=1.0).judge(1.0, 0.0, rng) for _ in range(4000)]
    assert np.mean(noisy) == pytest.approx(0.760, abs=0.03)  # Phi(1 / sqrt(2))
    clicking = [RaterModel(judge_sd=0.0, random_clicks=1.0).judge(9.0, 0.0, rng) for _ in range(2000)]
    assert np.mean(clicking) == pytest.approx(0.5, abs=0.05)
    with pytest.raises(ConfigError, match="random_clicks.*2"):
        RaterModel(random_clicks=2)


def test_a_model_prior_has_the_asked_correlation():
    rng = np.random.default_rng(1)
    truth = normal_truth(20000, rng)
    assert np.corrcoef(model_prior(truth, 0.82, rng), truth)[0, 1] == pytest.approx(0.82, abs=0.01)


def test_the_same_seed_gives_the_same_numbers():
    truth = normal_truth(120, np.random.default_rng(2))
    settings = ScheduleSettings(votes_per_image=4)
    runs = [simulate(truth, settings, seed=5, checkpoints=(2, 4)).rows for _ in range(2)]
    assert runs[0] == runs[1]
    assert runs[0] != simulate(truth, settings, seed=6, checkpoints=(2, 4)).rows
    assert [row["votes"] for row in runs[0]] == [240, 240, 480, 480]


def test_more_votes_give_a_better_order_and_the_cap_stops_the_project():
    truth = normal_truth(150, np.random.default_rng(3))
    result = simulate(truth, ScheduleSettings(votes_per_image=10), RaterModel(0.3), seed=0, checkpoints=(1, 10))
    _, spearman = result.metric("bt")
    assert spearman[0] + 0.2 < spearman[1] and spearman[1] > 0.9
    capped = simulate(truth, ScheduleSettings(votes_per_image=10, cap_per_image=4), seed=0, checkpoints=(10,))
    assert capped.rows[0]["votes"] <= 150 * 4 // 2


def test_model_seeded_scheduling_beats_the_seeds_on_a_small_project():
    rng = np.random.default_rng(4)
    truth = normal_truth(300, rng)
    prior = model_prior(truth, 0.82, rng)
    seeds = simulate(truth, ScheduleSettings(votes_per_image=4), estimators=("elo", "bt"), seed=1)
    model = simulate(truth, ScheduleSettings(scheme="model", votes_per_image=4), estimators=("elo", "bt"),
                     prior=prior, seed=1)
    for estimator in ("elo", "bt"):
        assert model.metric(estimator)[1][0] > seeds.metric(estimator)[1][0] + 0.03


def test_votes_to_reach_interpolates_between_checkpoints():
    assert votes_to_reach(np.array([5.0, 10.0]), np.array([0.8, 1.0])) == pytest.approx(7.5)
    assert votes_to_reach(np.array([5.0, 10.0]), np.array([0.95, 0.99])) == 5.0
    assert np.isnan(votes_to_reach(np.array([5.0, 10.0]), np.array([0.5, 0.6])))


def test_scut_truth_draws_real_mean_ratings(shared_data):
    rng = np.random.default_rng(5)
    labels = np.loadtxt(shared_data / "scut_fbp5500" / "train_test_files" / "All_labels.txt", usecols=1)
    few = scut_truth(shared_data, 100, rng)
    assert few.size == 100 and np.isin(few, labels).all()
    many = scut_truth(shared_data, 4000, rng)
    assert many.size == 4000 and many.std() == pytest.approx(0.69, abs=0.05)


def test_run_simulate_prints_a_table_and_writes_markdown_and_json(tmp_path):
    parser = argparse.ArgumentParser()
    add_simulate_arguments(parser)
    args = parser.parse_args(["--images", "60", "--scheme", "model", "--votes-per-image", "3", "--checkpoints",
                              "1", "3", "--out", str(tmp_path / "sim")])
    out = io.StringIO()
    assert run_simulate(args, out) == 0
    table = out.getvalue()
    assert "| votes/image | estimator | spearman" in table and "| 3 | bt_prior |" in table
    rows = json.loads((tmp_path / "sim" / "simulation.json").read_text())
    assert [(row["votes_per_image"], row["estimator"]) for row in rows][:3] == [(1, "elo"), (1, "bt"), (1, "bt_prior")]
    assert len(rows) == 6 and rows[-1]["votes"] == 180
    assert (tmp_path / "sim" / "simulation.md").read_text().startswith("| votes/image")


def test_the_labelling_benchmark_writes_its_tables_and_plots(tmp_path):
    settings = BenchmarkSettings(data=None, noise_images=40, images=(60,), curve_images=60, repeats=1, budgets=(1, 2))
    parts = run_labelling_benchmark(settings, tmp_path)
    assert len(parts["noise"]["rows"]) == len(NOISE_GRID) * len(METRICS)
    assert [row["rmse"] for row in parts["noise"]["rows"]] == sorted(row["rmse"] for row in parts["noise"]["rows"])
    assert "| 60 | 1,200 | 75% |" in parts["seeds_table"]["table"]
    assert set(parts["curves"]["needed"]) == {"seeds", "model"}
    for name in ("noise", "seeds_table", "curves"):
        assert (tmp_path / f"labelling_{name}.md").read_text() == parts[name]["table"] + "\n"
        assert (tmp_path / f"labelling_{name}.json").is_file()
    assert (tmp_path / "labelling_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "labelling_seeds_table.png").stat().st_size > 0
