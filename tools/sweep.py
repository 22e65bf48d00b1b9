"""Train one run per variant of a config (and per SCUT fold), resumably, and tabulate them.

Each ``--variant NAME KEY=VALUE ...`` is the config with those overrides on top of the common
ones (given right after CONFIG, before the first ``--variant``). Every run's config is checked
before any training starts, so a mistyped key stops the sweep at once, naming it. With
``--folds K``, each variant is trained K times, the ``scut`` and ``csv`` sources set to
``folds: K`` and ``fold: 0..K-1`` (K-fold cross-validation on SCUT-FBP5500, also when packed
into a CSV with a ``fold`` column by tools/pack_dataset.py; a CSV without a fold column
ignores them; CelebA keeps its own split).

With ``--jobs N``, N runs train at once, each in its own process (its log in
``RUN/train.log``): small models leave most of a GPU idle, so the folds of a
cross-validation can share one. Runs land in ``OUT/NAME`` (``OUT/NAME/foldK`` when folded). Running the same command again
skips finished runs (``best.pt`` present and ``metrics.jsonl`` at the last epoch, or early
stopped) and resumes unfinished ones exactly (``--resume``); a finished run made with other
settings stops the sweep, naming them. At the end ``OUT/sweep.md`` and ``OUT/sweep.json``
hold one row per variant, read from each run's ``best.pt`` and ``metrics.jsonl`` (mean ±
sample standard deviation over folds when folded): mean balanced accuracy with the thresholds
tuned on the validation images (what runs are selected on; in-sample), cross-fitted (tuned on
one half, scored on the other: what to expect on new images) and at a fixed 0.5 (so "tuned vs
fixed thresholds" needs no run of its own), mean accuracy and F1 (tuned), beauty Pearson, MAE
and RMSE, epochs, training seconds (training and validation of every epoch) and parameters.

A variant may replace a list whole with YAML flow syntax, quoted for the shell, e.g. the
sources: ``'data.sources=[{kind: scut, root: ../shared/data/scut_fbp5500}]'``.

Examples (the figures of the model card; equal budget: the same epochs and epoch_size):
    # attribute loss: BCE vs class-weighted BCE vs focal
    python tools/sweep.py configs/resnet18_cpu.yaml --out runs/sweep/loss \\
        --variant bce loss.attributes=bce --variant weighted loss.attributes=weighted_bce \\
        --variant focal loss.attributes=focal
    # adaptive per-attribute loss weights on/off
    python tools/sweep.py configs/resnet18_cpu.yaml --out runs/sweep/adaptive \\
        --variant adaptive loss.adaptive_weights=true --variant fixed loss.adaptive_weights=false
    # backbones at equal budget (names: faceattr.models.BACKBONES)
    python tools/sweep.py configs/resnet18_cpu.yaml optim.epochs=8 data.epoch_size=12000 \\
        --out runs/sweep/backbones --variant resnet18 model.backbone=resnet18 \\
        --variant resnet34 model.backbone=resnet34 --variant se_resnet50 model.backbone=se_resnet50
    # beauty head alone vs jointly with the attributes, SCUT 5-fold cross-validation
    python tools/sweep.py configs/resnet18_cpu.yaml --folds 5 --out runs/sweep/beauty --variant joint \\
        --variant alone 'data.sources=[{kind: scut, root: ../shared/data/scut_fbp5500}]'
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceattr.config import Config, config_to_dict, load_config
from faceattr.errors import ConfigError, FaceAttrError
from faceattr.runtime import configure_logging

#: Table columns: key of a run's row, title, number format, and whether folds get a spread.
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


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="YAML config file (see configs/)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides common to every variant")
    parser.add_argument("--variant", nargs="+", action="append", required=True, metavar=("NAME", "KEY=VALUE"),
                        help="a name (its run folder) and its overrides; repeat for each variant")
    parser.add_argument("--folds", type=int,
                        help="K-fold cross-validation on the scut sources and csv fold columns (K >= 2)")
    parser.add_argument("--out", help="sweep folder (default: runs/sweep/CONFIG_NAME)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="trainings at once, each in its own process logging to RUN/train.log (default 1: "
                             "one after another in this process); for small runs sharing a GPU")
    return parser


def plan(config_path: str | Path, variants: list[list[str]], common: list[str], folds: int | None,
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


def execute(runs: list[Run], config_path: str | Path, jobs: int = 1) -> None:
    """Trains every run not finished yet, resuming those a kill interrupted.

    With ``jobs`` > 1, up to ``jobs`` runs train at once, each as ``tools/train.py`` in its own
    process with its output in ``RUN/train.log``; a run that fails stops no other, and the
    failures are raised together at the end.

    Raises:
        FaceAttrError: Naming each failed run and its log (``jobs`` > 1).
    """
    from faceattr.training import engine

    if jobs < 1:
        raise ConfigError(f"--jobs: must be 1 or more, got {jobs}")
    waiting = []
    for number, run in enumerate(runs, 1):
        which = run.variant + ("" if run.fold is None else f" fold {run.fold}")
        if is_finished(run):
            print(f"[{number}/{len(runs)}] {which}: finished, skipped ({run.folder})")
            continue
        resume = (run.folder / engine.LAST).is_file()
        print(f"[{number}/{len(runs)}] {which}: {'resuming' if resume else 'training'} in {run.folder}", flush=True)
        if jobs == 1:
            engine.fit(run.config, resume=resume)
        else:
            waiting.append((which, run, resume))
    running: list[tuple[str, Path, subprocess.Popen]] = []
    failed = []
    while waiting or running:
        while waiting and len(running) < jobs:
            which, run, resume = waiting.pop(0)
            run.folder.mkdir(parents=True, exist_ok=True)
            log = run.folder / "train.log"
            command = [sys.executable, str(Path(__file__).with_name("train.py")), str(config_path), *run.overrides,
                       *(["--resume"] if resume else [])]
            with open(log, "w") as output:
                running.append((which, log, subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)))
        time.sleep(1)
        for entry in [entry for entry in running if entry[2].poll() is not None]:
            running.remove(entry)
            which, log, process = entry
            print(f"{which}: {'done' if process.returncode == 0 else f'FAILED (exit {process.returncode})'}, "
                  f"log {log}", flush=True)
            if process.returncode != 0:
                failed.append(f"{which} (see {log})")
    if failed:
        raise FaceAttrError(f"{len(failed)} run(s) failed: {'; '.join(failed)}")


def run_row(folder: Path) -> dict:
    """The table's figures for one finished run, from its ``best.pt`` and ``metrics.jsonl``."""
    from faceattr.models.deployed import DeployedModel
    from faceattr.models.weights_io import load_checkpoint

    best = load_checkpoint(folder / "best.pt")
    metrics, history = best["metrics"], read_history(folder)
    row = {}
    for key, section, name in (("balanced_accuracy", "attribute_means", "balanced_accuracy"),
                               ("balanced_accuracy_cross_fitted", "attribute_means_cross_fitted", "balanced_accuracy"),
                               ("balanced_accuracy_at_0.5", "attribute_means_at_0.5", "balanced_accuracy"),
                               ("accuracy", "attribute_means", "accuracy"), ("f1", "attribute_means", "f1"),
                               ("beauty_pearson", "beauty", "pearson"), ("beauty_mae", "beauty", "mae"),
                               ("beauty_rmse", "beauty", "rmse")):
        row[key] = None if metrics[section] is None else float(metrics[section][name])
    row["epochs"] = len(history)
    row["best_epoch"] = int(best["epoch"])
    row["seconds"] = float(sum(record["seconds"] for record in history))
    row["parameters"] = sum(p.numel() for p in DeployedModel.from_checkpoint(best).build_network().parameters())
    return row


def aggregate(rows: list[dict]) -> tuple[dict, dict | None]:
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


def table(variants: list[dict]) -> list[str]:
    """The markdown table: one row per variant, mean ± std when folded."""
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


def write_results(runs: list[Run], variants: list[list[str]], args: argparse.Namespace, out: Path,
                  command: str) -> dict:
    """Reads every run, writes ``sweep.json`` and ``sweep.md`` into ``out`` and returns the JSON dict."""
    results = []
    for name, *overrides in variants:
        own = [run for run in runs if run.variant == name]
        rows = [{"fold": run.fold, "run": str(run.folder), **run_row(run.folder)} for run in own]
        mean, std = aggregate([{k: v for k, v in row.items() if k not in ("fold", "run")} for row in rows])
        results.append({"name": name, "overrides": overrides, "runs": rows, "mean": mean, "std": std})
    summary = {"config": str(args.config), "common_overrides": args.overrides, "folds": args.folds,
               "command": command, "variants": results}
    (out / "sweep.json").write_text(json.dumps(summary, indent=2) + "\n")
    spread = f"; mean ± sample standard deviation over {args.folds} SCUT folds" if args.folds else ""
    lines = [f"# Sweep: {args.config}", "", f"Repeat: `{command}`", "",
             (f"Common overrides: {' '.join(f'`{o}`' for o in args.overrides) or 'none'}{spread}. "
              "Validation figures of each run's best epoch (best.pt). Balanced accuracy with thresholds tuned "
              "on the same validation images (in-sample, what runs are selected on), cross-fitted (tuned on one "
              "half, scored on the other) and at a fixed 0.5; accuracy and F1 with the tuned thresholds; "
              "train s: training and validation time of all epochs."), "", *table(results)]
    (out / "sweep.md").write_text("\n".join(lines) + "\n")
    return summary


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = get_args_parser().parse_args(argv)
    configure_logging()
    out = Path(args.out) if args.out else Path("runs/sweep") / Path(args.config).stem
    try:
        runs = plan(args.config, args.variant, args.overrides, args.folds, out)
        execute(runs, args.config, args.jobs)
        out.mkdir(parents=True, exist_ok=True)
        write_results(runs, args.variant, args, out, shlex.join(["python", "tools/sweep.py", *argv]))
    except FaceAttrError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print((out / "sweep.md").read_text(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
