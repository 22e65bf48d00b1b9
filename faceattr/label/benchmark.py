"""The labelling simulation benchmark behind ``tools/benchmark_labelling.py``: which rater noise
and metric come closest to the seeds' table, the seeds' table layout, and Elo against
Bradley-Terry, seeds' against model-seeded scheduling (docs/LABELLING_SIMULATION.md).

Truths are SCUT-FBP5500 mean ratings (:func:`~faceattr.label.simulate.scut_truth`) where the data
folder has them, normal draws with SCUT's spread otherwise; the folder used is recorded.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from faceattr.errors import DatasetError
from faceattr.files import save_table
from faceattr.label.schedule import ScheduleSettings
from faceattr.label.simulate import (
    METRICS, RaterModel, SimulationResult, model_prior, normal_truth, scut_truth, simulate, votes_to_reach,
)

log = logging.getLogger(__name__)

#: The seeds' table (issue 12): images -> accuracy at 100 / 75 / 50 / 25 % random pairs.
SEEDS_TABLE = {1000: (0.7455, 0.7842, 0.7516, 0.6445), 2000: (0.7510, 0.8011, 0.7387, 0.6621),
               3000: (0.7535, 0.7883, 0.7397, 0.6588), 4000: (0.7503, 0.7843, 0.7363, 0.6586),
               5000: (0.7485, 0.7800, 0.7374, 0.6501)}
RANDOM_SHARES = (1.0, 0.75, 0.5, 0.25)
#: Rater models tried against the seeds' 1,000-image row: judge_sd (truth units) x random clicks.
NOISE_GRID = ((0.35, 0.0), (0.7, 0.0), (1.4, 0.0), (2.8, 0.0), (0.7, 0.3), (1.4, 0.3))
#: Votes per image of the curves: each seeds' budget is a project of its own (its random phase is
#: 75 % of it); the model-seeded project has no phase, so one run is measured at every checkpoint.
BUDGETS = (2, 3, 5, 8, 10, 15, 20, 30, 40)
PRIOR_CORRELATION = 0.82
TARGET = 0.9


@dataclass
class BenchmarkSettings:
    """What the benchmark runs: ``noise_images`` for the noise calibration, ``images`` for the seeds'
    table, ``curve_images`` and ``repeats`` (seeds) for the curves, ``rater`` as the default rater
    model; ``predictions``, an evaluation report with a real model's beauty predictions of held-out
    images (``tools/eval.py``'s report.json), adds curves with those as the prior and truth."""

    data: Path | None
    noise_images: int = 1000
    images: Sequence[int] = tuple(SEEDS_TABLE)
    curve_images: int = 1000
    repeats: int = 3
    rater: RaterModel = field(default_factory=RaterModel)
    budgets: Sequence[int] = BUDGETS
    predictions: Path | None = None


def _truth(settings: BenchmarkSettings, n: int, rng: np.random.Generator) -> np.ndarray:
    if settings.data is not None and (settings.data / "scut_fbp5500").is_dir():
        return scut_truth(settings.data, n, rng)
    return normal_truth(n, rng)


def noise_calibration(settings: BenchmarkSettings) -> dict[str, Any]:
    """Each rater model of :data:`NOISE_GRID` and metric at 20 votes an image, Elo (the seeds'
    estimator), against the seeds' 1,000-image row: root mean square difference."""
    rows = []
    truth = _truth(settings, settings.noise_images, np.random.default_rng(0))
    for judge_sd, clicks in NOISE_GRID:
        rater = RaterModel(judge_sd, clicks)
        runs = [simulate(truth, ScheduleSettings(random_share=share), rater, estimators=("elo",), seed=1).rows[0]
                for share in RANDOM_SHARES]
        for metric in METRICS:
            values = [run[metric] for run in runs]
            rows.append({"judge_sd": judge_sd, "random_clicks": clicks, "metric": metric, "values": values,
                         "rmse": float(np.sqrt(np.mean((np.array(values) - SEEDS_TABLE[1000]) ** 2)))})
        log.info("noise calibration: judge_sd %g, %.0f%% random clicks done", judge_sd, clicks * 100)
    rows.sort(key=lambda row: row["rmse"])
    lines = ["| judge_sd | random clicks | metric | 100% | 75% | 50% | 25% | RMS difference from the seeds |",
             "|---|---|---|---|---|---|---|---|",
             "| | | seeds' \"precision\" | " + " | ".join(f"{v:.4f}" for v in SEEDS_TABLE[1000]) + " | |"]
    lines += [f"| {row['judge_sd']:g} | {row['random_clicks']:.0%} | {row['metric']} | "
              + " | ".join(f"{v:.4f}" for v in row["values"]) + f" | {row['rmse']:.4f} |" for row in rows[:12]]
    return {"rows": rows, "table": "\n".join(lines)}


def seeds_table(settings: BenchmarkSettings) -> dict[str, Any]:
    """The seeds' layout: images x random share at 20 votes an image, with every metric of Elo and
    Bradley-Terry side by side."""
    rows = []
    for n in settings.images:
        truth = _truth(settings, n, np.random.default_rng(n))
        for share in RANDOM_SHARES:
            started = time.perf_counter()
            result = simulate(truth, ScheduleSettings(random_share=share), settings.rater, seed=n)
            for row in result.rows:
                rows.append({"images": n, "random_share": share, **row})
            log.info("seeds' table: %d images, %.0f%% random: %.1f s", n, share * 100, time.perf_counter() - started)
    lines = ["| images | votes | random | seeds | Elo Spearman | Elo Kendall | Elo pairwise | Elo top third | "
             "Elo high/rest | BT Spearman | BT pairwise | BT top third |", "|---" * 12 + "|"]
    for n in settings.images:
        for index, share in enumerate(RANDOM_SHARES):
            elo, bt = (next(r for r in rows if r["images"] == n and r["random_share"] == share
                            and r["estimator"] == name) for name in ("elo", "bt"))
            lines.append(f"| {n:,} | {20 * n:,} | {share:.0%} | {SEEDS_TABLE.get(n, (np.nan,) * 4)[index]:.4f} | "
                         + " | ".join(f"{elo[m]:.4f}" for m in METRICS) + " | "
                         + " | ".join(f"{bt[m]:.4f}" for m in ("spearman", "pairwise_accuracy", "top_third")) + " |")
    return {"rows": rows, "table": "\n".join(lines)}


def _mean_curves(results: list[SimulationResult], estimators: Sequence[str]) -> dict[str, list[float]]:
    curves = {}
    for estimator in estimators:
        values = np.mean([result.metric(estimator)[1] for result in results], axis=0)
        curves[estimator] = values.tolist()
    return curves


def _simulated_prior(settings: BenchmarkSettings, repeat: int) -> tuple[np.ndarray, np.ndarray]:
    """A truth of ``curve_images`` and a simulated model score of :data:`PRIOR_CORRELATION` with it."""
    rng = np.random.default_rng(1000 + repeat)
    truth = _truth(settings, settings.curve_images, rng)
    return truth, model_prior(truth, PRIOR_CORRELATION, rng)


def read_predictions(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(target, predicted)`` beauty scores from an evaluation report (``tools/eval.py``'s report.json)."""
    try:
        found = json.loads(Path(path).read_text(encoding="utf-8"))["beauty_predictions"]
        return np.asarray(found["target"], dtype=float), np.asarray(found["predicted"], dtype=float)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DatasetError(f"{path}: no beauty_predictions with target and predicted ({error})") from error


def scheduling_curves(settings: BenchmarkSettings,
                      draw: Callable[[int], tuple[np.ndarray, np.ndarray]] | None = None) -> dict[str, Any]:
    """Spearman against votes per image for seeds' and model-seeded scheduling, each with Elo,
    Bradley-Terry and Bradley-Terry with the model prior, averaged over ``repeats`` projects; and
    the votes per image each needs to reach :data:`TARGET`.

    Args:
        draw: ``repeat -> (truth, prior)``; a simulated prior (:func:`_simulated_prior`) by default.
    """
    draw = draw or (lambda repeat: _simulated_prior(settings, repeat))
    budgets, seeds_runs, model_runs = list(settings.budgets), [], []
    for repeat in range(settings.repeats):
        truth, prior = draw(repeat)
        # bt_prior assumes the model card's correlation, as a project would; the measured one is reported.
        measured = float(np.corrcoef(truth, prior)[0, 1])
        per_budget = [simulate(truth, ScheduleSettings(votes_per_image=budget), settings.rater, prior=prior,
                               prior_correlation=PRIOR_CORRELATION, seed=repeat) for budget in budgets]
        seeds_runs.append(SimulationResult([row for result in per_budget for row in result.rows]))
        model_runs.append(simulate(truth, ScheduleSettings(scheme="model"), settings.rater, prior=prior,
                                   prior_correlation=PRIOR_CORRELATION, seed=repeat, checkpoints=budgets))
        log.info("curves: repeat %d of %d done", repeat + 1, settings.repeats)
    estimators = ("elo", "bt", "bt_prior")
    curves = {"seeds": _mean_curves(seeds_runs, estimators), "model": _mean_curves(model_runs, estimators)}
    needed = {scheme: {e: votes_to_reach(np.array(budgets, float), np.array(curves[scheme][e]), TARGET)
                       for e in estimators} for scheme in curves}
    names = {"elo": "Elo", "bt": "Bradley-Terry", "bt_prior": "Bradley-Terry + model prior"}
    lines = ["| scheduler | estimate | " + " | ".join(f"{b}" for b in budgets) + f" | votes/image to {TARGET} |",
             "|---" * (len(budgets) + 3) + "|"]
    for scheme in curves:
        for estimator in estimators:
            reach = needed[scheme][estimator]
            lines.append(f"| {scheme} | {names[estimator]} | "
                         + " | ".join(f"{v:.3f}" for v in curves[scheme][estimator])
                         + f" | {'not reached' if np.isnan(reach) else f'{reach:.1f}'} |")
    return {"images": truth.size, "repeats": settings.repeats, "budgets": budgets, "curves": curves,
            "needed": needed, "prior_correlation": measured, "table": "\n".join(lines)}


def _plot(draw: Callable[[Any], None], path: Path) -> None:
    """Draws onto a pyplot-free Agg figure and saves it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.5, 4.8), dpi=120, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.grid(alpha=0.3)
    draw(axes)
    figure.savefig(path)


def plot_curves(curves: dict[str, Any], path: Path) -> None:
    """Spearman against votes per image, one line per scheduler and estimate."""
    styles = {"elo": ":", "bt": "-", "bt_prior": "--"}
    colours = {"seeds": "#1f3b73", "model": "#b03a2e"}

    def draw(axes: Any) -> None:
        for scheme, by_estimator in curves["curves"].items():
            for estimator, values in by_estimator.items():
                axes.plot(curves["budgets"], values, styles[estimator], color=colours[scheme], marker="o",
                          markersize=3, label=f"{scheme} scheduler, {estimator}")
        axes.axhline(TARGET, color="#555555", linewidth=0.8)
        axes.set(xscale="log", xlabel="votes per image (total votes / images)", ylabel="Spearman with the truth",
                 title=f"{curves['images']:,} images, prior correlation {curves['prior_correlation']:.2f}, "
                       f"mean of {curves['repeats']} simulated projects")
        axes.set_xticks(curves["budgets"], [str(b) for b in curves["budgets"]])
        axes.minorticks_off()
        axes.legend(fontsize=8)

    _plot(draw, path)


def plot_seeds_table(table: dict[str, Any], path: Path, metric: str = "pairwise_accuracy") -> None:
    """The seeds' figures against ours (Elo, ``metric``) by random share, one line per image count."""

    def draw(axes: Any) -> None:
        shares = [s * 100 for s in RANDOM_SHARES]
        for n in dict.fromkeys(row["images"] for row in table["rows"]):
            ours = [r[metric] for r in table["rows"] if r["images"] == n and r["estimator"] == "elo"]
            line, = axes.plot(shares, ours, "-o", markersize=3, label=f"{n:,} images, simulated")
            if n in SEEDS_TABLE:
                axes.plot(shares, SEEDS_TABLE[n], ":x", color=line.get_color(), label=f"{n:,} images, seeds")
        axes.set(xlabel="share of votes drawn at random (%)", ylabel=metric.replace("_", " ") + " (Elo)",
                 title="The seeds' table and the simulation (20 votes per image)")
        axes.invert_xaxis()
        axes.legend(fontsize=7, ncols=2)

    _plot(draw, path)


def run_labelling_benchmark(settings: BenchmarkSettings, out: Path) -> dict[str, Any]:
    """Runs the parts and writes ``labelling_noise``, ``labelling_seeds_table``, ``labelling_curves``
    and, with ``settings.predictions``, ``labelling_real_prior`` (``.md`` + ``.json``) with their PNG
    plots into ``out``."""
    started = time.perf_counter()
    parts = {"noise": noise_calibration(settings), "seeds_table": seeds_table(settings),
             "curves": scheduling_curves(settings)}
    if settings.predictions is not None:
        truth, prior = read_predictions(settings.predictions)
        parts["real_prior"] = scheduling_curves(settings, lambda repeat: (truth, prior))
    out.mkdir(parents=True, exist_ok=True)
    for name, part in parts.items():
        record = {key: value for key, value in part.items() if key != "table"}
        save_table(out, f"labelling_{name}", part["table"] + "\n", record)
    plot_curves(parts["curves"], out / "labelling_curves.png")
    if "real_prior" in parts:
        plot_curves(parts["real_prior"], out / "labelling_real_prior.png")
    plot_seeds_table(parts["seeds_table"], out / "labelling_seeds_table.png")
    parts["seconds"] = time.perf_counter() - started
    return parts
