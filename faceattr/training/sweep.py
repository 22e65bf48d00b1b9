"""Sweeps: one training per variant of a config (and per SCUT fold), resumable, tabulated in sweep.md and sweep.json.

:func:`plan` resolves and checks every run's config before anything trains; :func:`execute`
trains the runs not finished yet (resuming interrupted ones), one after another in this
process or ``jobs`` at once, each in its own process (``python -m faceattr.training.sweep``,
which works wherever the package is installed); :func:`write_results` reads each run's
``best.pt`` and ``metrics.jsonl`` into one row per variant (mean and sample standard deviation
over folds). ``tools/sweep.py`` is the command line; its help describes the rules.

>>> summary = run_sweep("configs/resnet18_cpu.yaml", [["bce", "loss.attributes=bce"]], [], None,
...                     Path("runs/sweep/loss"))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceattr.config import Config, config_to_dict, load_config
from faceattr.errors import ConfigError, FaceAttrError
from faceattr.evaluation.summary import headline_figures

logger = logging.getLogger(__name__)

#: Table columns: key of a run's row (a figure of :func:`~faceattr.evaluation.summary.headline_figures`
#: or one of the run's own), title, number format, and whether folds get a spread.
COLUMNS: tuple[tuple[str, str, str, bool], ...] = (
    ("balanced_accuracy", "bal. acc. (tuned)", ".3f", True),
    ("balanced_accuracy_cross_fitted", "bal. acc. (cross-fitted)", ".3f", True),
    ("balanced_accuracy_at_0.5", "bal. acc. at 0.5", ".3f", True),
    ("accuracy", "accuracy", ".3f", True),
    ("f1", "F1", ".3f", True),
    ("beauty_pearson", "beauty Pearson", ".3f", True),
    ("beauty_mae", "beauty MAE", ".3f", True),
    ("beauty_rmse", "beauty RMSE", ".3f", True),
    ("epochs", "epochs", ".3g", True),
    ("seconds", "train s", ".0f", True),
    ("parameters", "parameters", ",.0f", False),
)
#: The columns read from the best epoch's evaluation rather than from the run.
_EVALUATION_COLUMNS = tuple(key for key, *_ in COLUMNS if key not in ("epochs", "seconds", "parameters"))

#: Settings a finished run may differ in and still count as the run asked for.
_IRRELEVANT = ("train.output_dir", "train.device", "train.log_every", "data.workers")


@dataclass
class Run:
    """One training of the sweep: a variant, its SCUT fold (None when not folded) and its config."""

    variant: str
    fold: int | None
    config: Config
    overrides: list[str]

    @property
    def folder(self) -> Path:
        return Path(self.config.train.output_dir)

    @property
    def name(self) -> str:
        return self.variant + ("" if self.fold is None else f" fold {self.fold}")


def plan(config_path: str | Path, variants: Sequence[Sequence[str]], common: Sequence[str], folds: int | None,
         out: Path) -> list[Run]:
    """Every run of the sweep with its resolved config, all checked before anything trains.

    Args:
        config_path: The YAML config.
        variants: Each a name followed by its ``key=value`` overrides.
        common: Overrides applied first, to every variant.
        folds: K for K-fold cross-validation on the ``scut`` and ``csv`` sources, or None.
        out: The sweep folder.

    Returns:
        The runs, variant by variant, fold by fold.

    Raises:
        ConfigError: A bad variant name, a duplicate, a bad key or value (naming the
            variant and the key), or ``folds`` with a variant that has no scut or csv source.

    >>> plan("configs/demo.yaml", [["bce", "loss.attributes=bce"]], [], 2, Path("runs/sweep/x"))[1].folder
    PosixPath('runs/sweep/x/bce/fold1')
    """
    if folds is not None and folds < 2:
        raise ConfigError(f"--folds: cross-validation needs 2 folds or more, got {folds}")
    names = [name for name, *_ in variants]
    for name in names:
        if not re.fullmatch(r"[A-Za-z0-9_][\w.+-]*", name):
            raise ConfigError(f"--variant {name!r}: the first word is the variant's name, used as its run "
                              "folder (letters, digits, _ . + -), e.g. --variant bce loss.attributes=bce")
        if names.count(name) > 1:
            raise ConfigError(f"--variant {name!r}: given twice; variant names must differ")
    runs = []
    for name, *overrides in variants:
        try:
            base = load_config(config_path, [*common, *overrides])
            folded = [i for i, source in enumerate(base.data.sources) if source.kind in ("scut", "csv")]
            if folds is not None and not folded:
                raise ConfigError(f"--folds {folds}: data.sources has no scut or csv source to cross-validate on")
            for fold in range(folds) if folds is not None else [None]:
                folder = out / name if fold is None else out / name / f"fold{fold}"
                extra = [f"train.output_dir={folder}"]
                if fold is not None:
                    extra += [f"data.sources.{i}.{key}" for i in folded for key in (f"folds={folds}", f"fold={fold}")]
                arguments = [*common, *overrides, *extra]
                runs.append(Run(name, fold, load_config(config_path, arguments), arguments))
        except ConfigError as error:
            raise ConfigError(f"variant {name!r}: {error}") from None
    return runs


def read_history(folder: Path) -> list[dict]:
    """A run's ``metrics.jsonl``, one dict per epoch (empty when absent)."""
    path = folder / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def is_finished(run: Run) -> bool:
    """Whether the run's folder holds the whole run its config asks for.

    Finished: ``best.pt`` and ``last.pt`` present and ``metrics.jsonl`` at the last epoch, or
    early stopped.

    Raises:
        ConfigError: The folder holds a finished run made with other settings (naming them),
            or one with more epochs than asked for.
    """
    from faceattr.models.weights_io import load_checkpoint
    from faceattr.training.engine import BEST, LAST, changed_keys

    history = read_history(run.folder)
    if not ((run.folder / LAST).is_file() and (run.folder / BEST).is_file() and history):
        return False
    last, best = history[-1]["epoch"], load_checkpoint(run.folder / BEST)["epoch"]
    stopped = run.config.train.early_stopping > 0 and last - best >= run.config.train.early_stopping
    if last < run.config.optim.epochs and not stopped:
        return False
    stored = load_config(run.folder / "config.yaml")
    changed = [key for key in changed_keys(config_to_dict(stored), config_to_dict(run.config))
               if key not in _IRRELEVANT and not (key == "optim.epochs" and stopped)]
    if changed or last > run.config.optim.epochs:
        differences = ", ".join(changed) or f"optim.epochs (it ran {last})"
        raise ConfigError(f"{run.folder}: holds a finished run made with other settings ({differences}); "
                          "use another --out, or remove the folder to train it again")
    return True


def execute(runs: Sequence[Run], config_path: str | Path, jobs: int = 1) -> None:
    """Trains every run not finished yet, resuming those a kill interrupted.

    With ``jobs`` > 1, up to ``jobs`` runs train at once, each in its own process
    (``python -m faceattr.training.sweep``) with its output in ``RUN/train.log``; a run that
    fails stops no other, and the failures are raised together at the end.

    Raises:
        ConfigError: ``jobs`` < 1, or a finished run made with other settings (:func:`is_finished`).
        FaceAttrError: Naming each failed run and its log (``jobs`` > 1).
    """
    from faceattr.training import engine

    if jobs < 1:
        raise ConfigError(f"--jobs: must be 1 or more, got {jobs}")
    waiting = []
    for number, run in enumerate(runs, 1):
        if is_finished(run):
            logger.info("[%d/%d] %s: finished, skipped (%s)", number, len(runs), run.name, run.folder)
            continue
        # A run killed before its first checkpoint has only config.yaml: --resume starts it again.
        resume = any((run.folder / name).exists() for name in engine.RUN_FILES)
        logger.info("[%d/%d] %s: %s in %s", number, len(runs), run.name, "resuming" if resume else "training",
                    run.folder)
        if jobs == 1:
            engine.fit(run.config, resume=resume)
        else:
            waiting.append((run, resume))
    running: list[tuple[Run, Path, subprocess.Popen]] = []
    failed = []
    while waiting or running:
        while waiting and len(running) < jobs:
            run, resume = waiting.pop(0)
            run.folder.mkdir(parents=True, exist_ok=True)
            log = run.folder / "train.log"
            # This module's own entry (_train_one): no path to tools/, which a wheel does not install.
            command = [sys.executable, "-m", __name__, str(config_path), *run.overrides,
                       *(["--resume"] if resume else [])]
            with open(log, "w") as output:
                running.append((run, log, subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)))
        time.sleep(1)
        for entry in [entry for entry in running if entry[2].poll() is not None]:
            running.remove(entry)
            run, log, process = entry
            outcome = "done" if process.returncode == 0 else f"FAILED (exit {process.returncode})"
            logger.info("%s: %s, log %s", run.name, outcome, log)
            if process.returncode != 0:
                failed.append(f"{run.name} (see {log})")
    if failed:
        raise FaceAttrError(f"{len(failed)} run(s) failed: {'; '.join(failed)}")


def run_row(folder: Path) -> dict:
    """The table's figures for one finished run, from its ``best.pt`` and ``metrics.jsonl``."""
    from faceattr.models.deployed import DeployedModel

    best = DeployedModel.load(folder / "best.pt")
    figures, history = headline_figures(best.metrics), read_history(folder)
    row = {key: None if figures[key] is None else float(figures[key]) for key in _EVALUATION_COLUMNS}
    row["epochs"] = len(history)
    row["best_epoch"] = int(best.epoch)
    row["seconds"] = float(sum(record["seconds"] for record in history))
    row["parameters"] = sum(p.numel() for p in best.build_network().parameters())
    return row


def aggregate(rows: Sequence[dict]) -> tuple[dict, dict | None]:
    """Mean and sample standard deviation (ddof 1) of each figure over folds; None where a figure is absent.

    >>> mean, std = aggregate([{"f1": 0.5}, {"f1": 0.7}])
    >>> round(mean["f1"], 3), round(std["f1"], 3)
    (0.6, 0.141)
    """
    mean, std = {}, {}
    for key in rows[0]:
        values = [row[key] for row in rows if row[key] is not None]
        mean[key] = float(np.mean(values)) if values else None
        std[key] = float(np.std(values, ddof=1)) if len(values) > 1 else None
    return mean, (std if len(rows) > 1 else None)


def table(variants: Sequence[dict]) -> list[str]:
    """The markdown table: one row per variant, mean ± std when folded.

    >>> table([{"name": "bce", "overrides": [], "mean": dict.fromkeys(k for k, *_ in COLUMNS), "std": None}])[2]
    '| bce | (config as is) | n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a |'
    """
    lines = ["| variant | overrides | " + " | ".join(title for _, title, _, _ in COLUMNS) + " |",
             "|---|---" + "|---:" * len(COLUMNS) + "|"]
    for variant in variants:
        cells = []
        for key, _, spec, spread in COLUMNS:
            mean, std = variant["mean"][key], (variant["std"] or {}).get(key)
            cell = "n/a" if mean is None else format(mean, spec)
            cells.append(cell + (f" ± {std:{spec}}" if spread and std is not None else ""))
        overrides = " ".join(f"`{text}`" for text in variant["overrides"]) or "(config as is)"
        lines.append(f"| {variant['name']} | {overrides} | " + " | ".join(cells) + " |")
    return lines


def write_results(runs: Sequence[Run], variants: Sequence[Sequence[str]], config_path: str | Path,
                  common: Sequence[str], folds: int | None, out: Path, command: str) -> dict:
    """Reads every run, writes ``sweep.json`` and ``sweep.md`` into ``out`` and returns the JSON dict."""
    results = []
    for name, *overrides in variants:
        own = [run for run in runs if run.variant == name]
        rows = [{"fold": run.fold, "run": str(run.folder), **run_row(run.folder)} for run in own]
        mean, std = aggregate([{k: v for k, v in row.items() if k not in ("fold", "run")} for row in rows])
        results.append({"name": name, "overrides": overrides, "runs": rows, "mean": mean, "std": std})
    summary = {"config": str(config_path), "common_overrides": list(common), "folds": folds,
               "command": command, "variants": results}
    (out / "sweep.json").write_text(json.dumps(summary, indent=2) + "\n")
    spread = f"; mean ± sample standard deviation over {folds} SCUT folds" if folds else ""
    lines = [f"# Sweep: {config_path}", "", f"Repeat: `{command}`", "",
             (f"Common overrides: {' '.join(f'`{o}`' for o in common) or 'none'}{spread}. "
              "Validation figures of each run's best epoch (best.pt). Balanced accuracy with thresholds tuned "
              "on the same validation images (in-sample, what runs are selected on), cross-fitted (tuned on one "
              "half, scored on the other) and at a fixed 0.5; accuracy and F1 with the tuned thresholds; "
              "train s: training and validation time of all epochs."), "", *table(results)]
    (out / "sweep.md").write_text("\n".join(lines) + "\n")
    return summary


def run_sweep(config_path: str | Path, variants: Sequence[Sequence[str]], common: Sequence[str], folds: int | None,
          out: Path, jobs: int = 1, command: str = "") -> dict:
    """Plans, trains (or skips, or resumes) every run, then writes ``out/sweep.md`` and ``out/sweep.json``.

    Args:
        config_path: The YAML config.
        variants: Each a name (its run folder) followed by its ``key=value`` overrides.
        common: Overrides applied first, to every variant.
        folds: K for K-fold cross-validation on the ``scut`` and ``csv`` sources, or None.
        out: The sweep folder; runs land in ``out/NAME`` (``out/NAME/foldK`` when folded).
        jobs: Runs training at once, each in its own process (1: one after another here).
        command: The command line that repeats the sweep, recorded in both files.

    Returns:
        The dict written to ``sweep.json``.

    Raises:
        ConfigError: A bad variant, key, value or ``folds`` (before anything trains), or a
            finished run made with other settings.
        FaceAttrError: Runs that failed in their own processes.

    >>> run_sweep("configs/resnet18_cpu.yaml", [["bce", "loss.attributes=bce"]], [], None,
    ...           Path("runs/sweep/loss"))["variants"][0]["name"]  # doctest: +SKIP
    'bce'
    """
    runs = plan(config_path, variants, common, folds, out)
    execute(runs, config_path, jobs)
    out.mkdir(parents=True, exist_ok=True)
    return write_results(runs, variants, config_path, common, folds, out, command)


def _train_one(argv: Sequence[str]) -> int:
    """A worker process of :func:`execute`: ``CONFIG [KEY=VALUE ...] [--resume]``, trained as tools/train.py does."""
    from faceattr.runtime import configure_logging
    from faceattr.training.engine import fit

    configure_logging()
    config_path, *overrides = [argument for argument in argv if argument != "--resume"]
    try:
        fit(load_config(config_path, overrides), resume="--resume" in argv)
    except FaceAttrError as error:
        logger.error("%s", error)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(_train_one(sys.argv[1:]))
