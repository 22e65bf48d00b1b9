"""The training loop: epochs, validation with calibration and tuned thresholds, checkpoints, resume, early stopping."""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import math
import os
import random
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from faceattr.attributes import ATTRIBUTES
from faceattr.config import Config, config_to_dict, save_config
from faceattr.errors import CheckpointError, ConfigError
from faceattr.evaluation.decision import DEFAULT_DECISION
from faceattr.evaluation.evaluate import calibrate_and_tune, predict_loader, summarize
from faceattr.evaluation.summary import headline, headline_figures
from faceattr.files import remove_stale_temporaries
from faceattr.models.deployed import DeployedModel
from faceattr.models.weights_io import load_checkpoint, save_checkpoint
from faceattr.runtime import (
    World,
    all_ranks_have,
    autocast,
    broadcast_from_main,
    close_world,
    init_world,
    select_device,
    share_buffers_from_main,
)
from faceattr.training.finetune import initial_decision, keeps_initial_decision, load_initial_model
from faceattr.training.parts import TrainingParts, build_training

logger = logging.getLogger(__name__)

LAST, BEST, CONFIG, HISTORY = "last.pt", "best.pt", "config.yaml", "metrics.jsonl"

#: Files whose presence means a folder holds a run: a new run there needs --resume or --overwrite.
RUN_FILES: tuple[str, ...] = (BEST, LAST, CONFIG, HISTORY)


@dataclasses.dataclass
class RunState:
    """Progress that ``--resume`` restores besides the weights and optimiser."""

    epoch: int = -1
    step: int = 0
    best_score: float = -math.inf
    best_epoch: int = -1
    epochs_without_improvement: int = 0
    history: list[dict] = dataclasses.field(default_factory=list)

    def record_score(self, score: float, epoch: int) -> bool:
        """Notes ``epoch``'s validation score; True when it is the best so far (a first NaN
        never blocks a later real score).

        >>> state = RunState()
        >>> [state.record_score(s, e) for e, s in enumerate([float("nan"), 0.6, 0.5])]
        [True, True, False]
        >>> state.best_epoch, state.epochs_without_improvement
        (1, 1)
        """
        improved = self.best_epoch < 0 or score > self.best_score or (
            math.isnan(self.best_score) and not math.isnan(score))
        if improved:
            self.best_score, self.best_epoch, self.epochs_without_improvement = score, epoch, 0
        else:
            self.epochs_without_improvement += 1
        self.epoch = epoch
        return improved


class NullWriter:
    """Stands in for TensorBoard's SummaryWriter on ranks that write nothing."""

    def add_scalar(self, *args, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass


def seed_everything(seed: int) -> None:
    """Seeds Python, NumPy and torch; called at every epoch start with ``seed + epoch``, so that
    a resumed run repeats exactly what the uninterrupted run would have done."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def train_step(parts: TrainingParts, batch: dict, config: Config, *, device: torch.device) -> dict:
    """One optimisation step on a batch already on ``device``; returns the detached losses."""
    memory_format = torch.channels_last if config.train.channels_last else torch.contiguous_format
    with autocast(device, config.train.amp):
        outputs = parts.train_model(batch["image"].contiguous(memory_format=memory_format))
    losses = parts.loss_fn(outputs, batch)
    parts.optimizer.zero_grad(set_to_none=True)
    parts.scaler.scale(losses["loss"]).backward()
    if config.optim.grad_clip > 0:
        parts.scaler.unscale_(parts.optimizer)
        torch.nn.utils.clip_grad_norm_(parts.train_model.parameters(), config.optim.grad_clip)
    parts.scaler.step(parts.optimizer)
    parts.scaler.update()
    return {key: value.detach() for key, value in losses.items()}


def steps_per_epoch(loader, config: Config) -> int:
    """Optimisation steps in one epoch (``train.max_steps_per_epoch`` caps them for smoke runs)."""
    cap = config.train.max_steps_per_epoch
    return min(len(loader), cap) if cap else len(loader)


def train_one_epoch(parts: TrainingParts, loader, config: Config, *, epoch: int, step: int, device: torch.device,
                    world: World = World(), writer=None) -> tuple[dict, int]:
    """One pass over the training loader, with a progress bar (images/s and ETA) on rank 0.

    ``epoch`` (0-based) names the epoch in the progress bar; ``step`` is the global step
    before it; ``writer`` (default: none) receives ``train/loss`` and ``train/lr`` every
    ``train.log_every`` steps.

    Returns:
        Mean losses of the epoch and the global step after it.
    """
    writer = writer or NullWriter()
    parts.train()
    steps = steps_per_epoch(loader, config)
    totals: dict[str, float] = defaultdict(float)
    batches = 0
    progress = tqdm(total=steps * config.data.batch_size * world.size, unit="img", unit_scale=True, leave=False,
                    desc=f"epoch {epoch + 1}/{config.optim.epochs}", disable=not world.is_main, dynamic_ncols=True)
    for batch in itertools.islice(loader, steps):
        present = batch is not None
        if config.data.on_bad_sample == "skip":
            # Only then can a batch be empty, and every rank must skip it together: a rank
            # stepping alone would pair its gradient all-reduce with another step's.
            present = all_ranks_have(present, world)
        if not present:
            continue
        batch = {key: value.to(device, non_blocking=True) for key, value in batch.items()}
        losses = train_step(parts, batch, config, device=device)
        step += 1
        parts.scheduler.step_update(step)
        if parts.ema is not None:
            parts.ema.update(parts.model, step=step)
        batches += 1
        for key, value in losses.items():
            totals[key] += float(value)
        progress.update(len(batch["image"]) * world.size)
        if step % config.train.log_every == 0:
            lr = parts.optimizer.param_groups[0]["lr"]
            progress.set_postfix(loss=f"{float(losses['loss']):.4f}", lr=f"{lr:.2e}")
            writer.add_scalar("train/loss", float(losses["loss"]), step)
            writer.add_scalar("train/lr", lr, step)
    progress.close()
    if batches == 0:
        raise RuntimeError(f"epoch {epoch + 1}: the training loader yielded no usable batch")
    return {key: value / batches for key, value in totals.items()}, step


def validate_epoch(parts: TrainingParts, loader, config: Config, meta: dict, *, device: torch.device,
                   world: World = World(), initial: DeployedModel | None = None
                   ) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Scores :attr:`TrainingParts.eval_model` on the validation loader, calibrates it and tunes
    its thresholds and decision policies on the same predictions.

    A run fine-tuned from ``initial`` keeps ``initial``'s calibration and thresholds instead when
    :func:`~faceattr.training.finetune.keeps_initial_decision` says so (beauty head only, or no
    attribute labels to fit them on).

    Returns:
        ``(evaluation, temperatures, offsets, thresholds, policies)``: the evaluation dict of
        :func:`faceattr.evaluation.evaluate.summarize`, the per-attribute calibration and
        thresholds it was computed with, and the other decision policies' thresholds by name
        (:func:`faceattr.evaluation.evaluate.calibrate_and_tune`).
    """
    # BatchNorm statistics and EMA weights drift apart per rank; score and save rank 0's.
    share_buffers_from_main(parts.eval_model, world)
    predictions = predict_loader(parts.eval_model, loader, device, world, config.train.amp, parts.loss_fn)
    if keeps_initial_decision(initial, config.train.trainable, bool(predictions.attribute_mask.any())):
        temperatures, offsets, thresholds, policies = initial_decision(initial)
    else:
        temperatures, offsets, thresholds, policies = calibrate_and_tune(predictions, config.train.threshold_metric)
    evaluation = summarize(predictions, thresholds, meta, config.train.threshold_metric,
                           temperatures=temperatures, offsets=offsets)
    return evaluation, temperatures, offsets, thresholds, policies


def _epoch_record(epoch: int, step: int, train_stats: dict, evaluation: dict, lr: float, seconds: float) -> dict:
    """One line of ``metrics.jsonl``: progress, training statistics and the validation's headline figures."""
    figures = headline_figures(evaluation)
    recorded = ("balanced_accuracy", "balanced_accuracy_at_0.5", "balanced_accuracy_cross_fitted", "accuracy",
                "beauty_pearson", "beauty_mae")
    return {"epoch": epoch + 1, "step": step, "lr": lr, "seconds": round(seconds, 2),
            **{f"train_{key}": value for key, value in train_stats.items()},
            "val_loss": figures["validation_loss"], **{f"val_{name}": figures[name] for name in recorded}}


def fit(config: Config, resume: bool = False, overwrite: bool = False) -> dict:
    """Trains a model as ``config`` says and returns the best epoch's evaluation.

    Works alone or under ``torchrun`` (DistributedDataParallel, NCCL on GPUs, gloo on CPUs).
    The run folder ``train.output_dir`` receives ``config.yaml``, ``last.pt`` (full resume
    state, every epoch), ``best.pt`` (the deployable model with the highest mean validation
    balanced accuracy, or beauty Pearson for beauty-only data), ``metrics.jsonl``,
    ``tensorboard/`` and, at the end, ``report/``.

    Args:
        config: The validated configuration.
        resume: Continue the run in ``train.output_dir`` from its ``last.pt``.
        overwrite: Start afresh even if ``train.output_dir`` holds a run (any of
            :data:`RUN_FILES`; its files are replaced as the new run writes its own).

    Returns:
        The evaluation dict of the best epoch (on rank 0; other ranks get an empty dict).

    Raises:
        ConfigError: If the run folder already holds a run and neither ``resume`` nor
            ``overwrite`` is set, or ``resume`` is set and the folder holds ``best.pt`` or
            ``metrics.jsonl`` but no ``last.pt``.
    """
    device = select_device(config.train.device, int(os.environ.get("LOCAL_RANK", "0")))
    world = init_world(device.type)
    try:
        return _fit(config, resume, overwrite, device, world)
    finally:
        close_world(world)


def _fit(config: Config, resume: bool, overwrite: bool, device: torch.device, world: World) -> dict:
    from faceattr.data.loader import build_data, build_loaders
    from faceattr.evaluation.report.markdown import write_report

    out = Path(config.train.output_dir)
    _check_run_folder(out, resume, overwrite)
    if world.is_main:
        # No write to them can be under way: this run is the folder's only writer.
        remove_stale_temporaries(out, (LAST, BEST))
    seed_everything(config.train.seed)
    initial = load_initial_model(config)  # before the data: a model that does not fit the config fails at once
    bundle = build_data(config.data)
    if len(bundle.val) == 0:
        raise ConfigError("data.sources: no validation images in any source; runs are selected and their "
                          "thresholds tuned on validation (give a csv source a split column or a val_fraction)")
    train_loader, val_loader = build_loaders(bundle, config.data, config.train.seed, world.rank, world.size,
                                             device)
    parts = build_training(config, bundle.positive_rate, device, steps_per_epoch(train_loader, config), initial)
    default_decision = DEFAULT_DECISION if initial is None else initial.default_decision
    state = _start_or_resume(out, config, parts, resume, device, world)
    if world.is_main:
        out.mkdir(parents=True, exist_ok=True)
        save_config(config, out / CONFIG)
    parts.distribute(world, device)
    writer = _open_writer(out, state, world)
    logger.info("training %s on %s: %d training images in %d steps/epoch, %d validation images, %d process(es)",
                config.model.backbone, device, len(bundle.train), steps_per_epoch(train_loader, config), len(bundle.val),
                world.size)

    meta = {"split": "val", "backbone": config.model.backbone, "image_size": config.data.image_size,
            "sources": ", ".join(bundle.source_names)}
    for epoch in range(state.epoch + 1, config.optim.epochs):
        if state.epochs_without_improvement >= config.train.early_stopping > 0:
            logger.info("early stopping: %d epochs without improvement", state.epochs_without_improvement)
            break
        started = time.time()
        seed_everything(config.train.seed + epoch)
        train_loader.sampler.set_epoch(epoch)
        train_stats, state.step = train_one_epoch(parts, train_loader, config, epoch=epoch, step=state.step,
                                                  device=device, world=world, writer=writer)
        evaluation, temperatures, offsets, thresholds, policies = validate_epoch(
            parts, val_loader, config, {**meta, "epoch": epoch + 1}, device=device, world=world, initial=initial)
        _adapt_attribute_weights(parts.loss_fn, evaluation)
        improved = state.record_score(headline(evaluation), epoch)
        record = _epoch_record(epoch, state.step, train_stats, evaluation, parts.optimizer.param_groups[0]["lr"],
                               time.time() - started)
        state.history.append(record)
        if world.is_main:
            deploy = DeployedModel.from_training(parts.eval_model, thresholds, config, epoch + 1, evaluation,
                                                 temperatures, offsets, policies, default_decision).to_checkpoint()
            if improved:
                save_checkpoint(deploy, out / BEST)
            save_checkpoint({**deploy, "train": {**parts.state_dict(), "state": dataclasses.asdict(state)}}, out / LAST)
            _write_history(state.history, out / HISTORY)
            _log_epoch(writer, record, evaluation, parts.loss_fn, state.step)
            logger.info("epoch %d/%d: %s%s", epoch + 1, config.optim.epochs,
                        ", ".join(f"{k}={v:.4f}" for k, v in record.items() if isinstance(v, float)),
                        " (best)" if improved else "")
    writer.close()

    if not world.is_main:
        return {}
    best = load_checkpoint(out / BEST)
    paths = write_report(best["metrics"], out / "report", title=f"faceattr validation report: {out.name}")
    logger.info("best epoch %d; report written to %s", best["epoch"], paths["markdown"])
    return best["metrics"]


def _check_run_folder(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuses contradictory flags, a folder that holds a run unless told what to do with it, and a
    ``--resume`` that would replace a run's files without a ``last.pt`` to continue from."""
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite contradict each other")
    present = [name for name in RUN_FILES if (out / name).exists()]
    if present and not (resume or overwrite):
        raise ConfigError(f"train.output_dir: {out} already holds a run ({', '.join(present)}); pass --resume to "
                          "continue it, --overwrite to start it again, or choose another train.output_dir")
    # Only config.yaml (a run stopped in its first epoch) has nothing to resume and nothing to lose.
    results = [name for name in present if name != CONFIG]
    if resume and results and LAST not in results:
        raise ConfigError(f"--resume: {out} has no {LAST} to continue from, and starting again would replace its "
                          f"{', '.join(results)}; pass --overwrite to start it again, or choose another "
                          "train.output_dir")


def _start_or_resume(out: Path, config: Config, parts: TrainingParts, resume: bool, device: torch.device,
                     world: World) -> RunState:
    """A fresh :class:`RunState`, or the one of ``out/last.pt`` with ``parts`` restored from it."""
    # Rank 0 decides, so that every node agrees even without a shared filesystem.
    if broadcast_from_main(resume and (out / LAST).exists(), world):
        state = _restore(out / LAST, config, device, parts)
        parts.scheduler.step_update(state.step)
        logger.info("resuming %s after epoch %d (step %d)", out, state.epoch + 1, state.step)
        return state
    if resume:
        logger.warning("--resume: %s has no %s yet, starting from scratch", out, LAST)
    return RunState()


def _open_writer(out: Path, state: RunState, world: World):
    """TensorBoard's writer on rank 0 (dropping events after ``state.step`` on resume), else a no-op."""
    if not world.is_main:
        return NullWriter()
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(out / "tensorboard"), purge_step=state.step + 1 if state.step else None)


def _adapt_attribute_weights(loss_fn, evaluation: dict) -> None:
    """Moves the loss towards the attributes that validated worst (when there are attribute labels)."""
    if evaluation["attributes"] is not None:
        loss_fn.update_attribute_weights(np.array(
            [evaluation["attributes"][name]["balanced_accuracy"] for name in ATTRIBUTES]))


#: Config keys that may change when a run is resumed; any other change would make the resumed
#: run a different one (or be silently overridden by the restored optimiser state).
RESUMABLE_CHANGES = ("optim.epochs", "train.early_stopping", "train.log_every", "train.output_dir", "train.device",
                     "data.workers")


def changed_keys(old: dict, new: dict, prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between two nested config dicts, sorted.

    >>> changed_keys({"optim": {"lr": 0.1, "epochs": 2}}, {"optim": {"lr": 0.2, "epochs": 2}})
    ['optim.lr']
    """
    if not isinstance(old, dict) or not isinstance(new, dict):
        return [] if old == new else [prefix]
    return [key for name in sorted({*old, *new})
            for key in changed_keys(old.get(name), new.get(name), f"{prefix}.{name}" if prefix else name)]


def _restore(path: Path, config: Config, device: torch.device, parts: TrainingParts) -> RunState:
    """Loads a ``last.pt`` into the run's objects; refuses a config that differs where it matters."""
    checkpoint = load_checkpoint(path, map_location=device)
    if "train" not in checkpoint:
        raise CheckpointError(f"{path}: holds no training state (a deploy file such as best.pt?); cannot resume")
    changed = [key for key in changed_keys(checkpoint["config"], config_to_dict(config))
               if key not in RESUMABLE_CHANGES]
    if changed:
        raise ConfigError(f"--resume: the config differs from the run in {path.parent} at {', '.join(changed)}; "
                          f"only {', '.join(RESUMABLE_CHANGES)} may change when resuming")
    try:
        parts.load_state_dict(checkpoint["train"])
    except (KeyError, RuntimeError, ValueError) as error:
        raise CheckpointError(f"{path}: cannot restore the training state: {error}") from error
    return RunState(**checkpoint["train"]["state"])


def _write_history(history: list[dict], path: Path) -> None:
    """Rewrites the whole per-epoch log, so that it always matches the checkpoint after a resume."""
    path.write_text("".join(json.dumps(record) + "\n" for record in history))


def _log_epoch(writer, record: dict, evaluation: dict, loss_fn, step: int) -> None:
    for key, value in record.items():
        if key.startswith("val_") and value is not None:
            writer.add_scalar(f"val/{key[4:]}", value, step)
    for name, values in (evaluation["attributes"] or {}).items():
        writer.add_scalar(f"balanced_accuracy/{name}", values["balanced_accuracy"], step)
    for name, weight in zip(ATTRIBUTES, loss_fn.attribute_weights.tolist()):
        writer.add_scalar(f"loss_weight/{name}", weight, step)
