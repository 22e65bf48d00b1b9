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
from faceattr.models.deployed import DeployedModel
from faceattr.models.weights_io import load_checkpoint, save_checkpoint
from faceattr.config import Config, OptimConfig, config_to_dict, save_config
from faceattr.errors import CheckpointError, ConfigError
from faceattr.evaluation.evaluate import calibrate_and_tune, predict_loader, summarize
from faceattr.evaluation.summary import headline, headline_figures
from faceattr.runtime import (World, all_ranks_have, autocast, broadcast_from_main, close_world, grad_scaler, init_world,
                              select_device, share_buffers_from_main)

logger = logging.getLogger(__name__)

LAST, BEST = "last.pt", "best.pt"


@dataclasses.dataclass
class RunState:
    """Progress that ``--resume`` restores besides the weights and optimiser."""

    epoch: int = -1
    step: int = 0
    best_score: float = -math.inf
    best_epoch: int = -1
    epochs_without_improvement: int = 0
    history: list[dict] = dataclasses.field(default_factory=list)


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


def build_optimizer(model: torch.nn.Module, optim: OptimConfig) -> torch.optim.Optimizer:
    """AdamW or SGD through timm's factory (no weight decay on biases and norm layers)."""
    from timm.optim import create_optimizer_v2

    return create_optimizer_v2(model, opt=optim.optimizer, lr=optim.lr, weight_decay=optim.weight_decay,
                               momentum=optim.momentum)


def build_scheduler(optimizer: torch.optim.Optimizer, optim: OptimConfig, steps_per_epoch: int):
    """timm's cosine or multi-step schedule with linear warm-up, stepped once per update."""
    from timm.scheduler import CosineLRScheduler, MultiStepLRScheduler

    warmup = round(optim.warmup_epochs * steps_per_epoch)
    common = dict(warmup_t=warmup, warmup_lr_init=optim.lr * 1e-3, t_in_epochs=False)
    if optim.schedule == "cosine":
        return CosineLRScheduler(optimizer, t_initial=optim.epochs * steps_per_epoch, lr_min=optim.min_lr, **common)
    return MultiStepLRScheduler(optimizer, decay_t=[m * steps_per_epoch for m in optim.milestones],
                                decay_rate=optim.gamma, **common)


def build_training(config: Config, positive_rate: np.ndarray, device: torch.device, steps_per_epoch: int) -> tuple:
    """The network, loss, optimiser, schedule and loss scaler of a run, on ``device``.

    Returns:
        ``(model, loss_fn, optimizer, scheduler, scaler)``.
    """
    from faceattr.training.losses import MultiTaskLoss
    from faceattr.models import build_model

    model = build_model(config.model).to(device)
    if config.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    loss_fn = MultiTaskLoss(config.loss, positive_rate, config.model.beauty_head, config.model.beauty_bins).to(device)
    optimizer = build_optimizer(model, config.optim)
    scheduler = build_scheduler(optimizer, config.optim, steps_per_epoch)
    return model, loss_fn, optimizer, scheduler, grad_scaler(device, config.train.amp)


def train_step(model, loss_fn, batch: dict, optimizer, scaler, device: torch.device, config: Config) -> dict:
    """One optimisation step on a batch already on ``device``; returns the detached losses."""
    memory_format = torch.channels_last if config.train.channels_last else torch.contiguous_format
    with autocast(device, config.train.amp):
        outputs = model(batch["image"].contiguous(memory_format=memory_format))
    losses = loss_fn(outputs, batch)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(losses["loss"]).backward()
    if config.optim.grad_clip > 0:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.optim.grad_clip)
    scaler.step(optimizer)
    scaler.update()
    return {key: value.detach() for key, value in losses.items()}


def steps_per_epoch(loader, config: Config) -> int:
    """Optimisation steps in one epoch (``train.max_steps_per_epoch`` caps them for smoke runs)."""
    cap = config.train.max_steps_per_epoch
    return min(len(loader), cap) if cap else len(loader)


def train_one_epoch(model, loss_fn, loader, optimizer, scheduler, scaler, ema, device: torch.device,
                    config: Config, epoch: int, step: int, world: World, writer) -> tuple[dict, int]:
    """One pass over the training loader, with a progress bar (images/s and ETA) on rank 0.

    Returns:
        Mean losses of the epoch and the global step after it.
    """
    model.train()
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
        losses = train_step(model, loss_fn, batch, optimizer, scaler, device, config)
        step += 1
        scheduler.step_update(step)
        if ema is not None:
            ema.update(model, step=step)
        batches += 1
        for key, value in losses.items():
            totals[key] += float(value)
        progress.update(len(batch["image"]) * world.size)
        if step % config.train.log_every == 0:
            lr = optimizer.param_groups[0]["lr"]
            progress.set_postfix(loss=f"{float(losses['loss']):.4f}", lr=f"{lr:.2e}")
            writer.add_scalar("train/loss", float(losses["loss"]), step)
            writer.add_scalar("train/lr", lr, step)
    progress.close()
    if batches == 0:
        raise RuntimeError(f"epoch {epoch + 1}: the training loader yielded no usable batch")
    return {key: value / batches for key, value in totals.items()}, step


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
        overwrite: Start afresh even if ``train.output_dir`` holds a run (its checkpoints
            are replaced as the new run writes its own).

    Returns:
        The evaluation dict of the best epoch (on rank 0; other ranks get an empty dict).

    Raises:
        ConfigError: If the run folder already holds a run and neither ``resume`` nor
            ``overwrite`` is set.
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
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite contradict each other")
    if (out / LAST).exists() and not (resume or overwrite):
        raise ConfigError(f"train.output_dir: {out} already holds a run ({LAST}); pass --resume to continue it, "
                          "--overwrite to start it again, or choose another train.output_dir")
    seed_everything(config.train.seed)

    bundle = build_data(config.data)
    if len(bundle.val) == 0:
        raise ConfigError("data.sources: no validation images in any source; runs are selected and their "
                          "thresholds tuned on validation (give a csv source a split column or a val_fraction)")
    train_loader, val_loader = build_loaders(bundle, config.data, config.train.seed, world.rank, world.size,
                                             device)
    model, loss_fn, optimizer, scheduler, scaler = build_training(config, bundle.positive_rate, device,
                                                                  steps_per_epoch(train_loader, config))
    ema = None
    if config.train.ema_decay > 0:
        from timm.utils import ModelEmaV3

        ema = ModelEmaV3(model, decay=config.train.ema_decay)

    state = RunState()
    # Rank 0 decides, so that every node agrees even without a shared filesystem.
    resuming = broadcast_from_main(resume and (out / LAST).exists(), world)
    if resuming:
        state = _restore(out / LAST, config, device, model, ema, optimizer, scaler, loss_fn)
        scheduler.step_update(state.step)
        logger.info("resuming %s after epoch %d (step %d)", out, state.epoch + 1, state.step)
    elif resume:
        logger.warning("--resume: %s has no %s yet, starting from scratch", out, LAST)
    if world.is_main:
        out.mkdir(parents=True, exist_ok=True)
        save_config(config, out / "config.yaml")

    train_model = model
    if world.is_distributed:
        train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    writer = NullWriter()
    if world.is_main:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tensorboard"), purge_step=state.step + 1 if state.step else None)
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
        train_stats, state.step = train_one_epoch(train_model, loss_fn, train_loader, optimizer, scheduler, scaler,
                                                  ema, device, config, epoch, state.step, world, writer)
        eval_model = ema.module if ema is not None else model
        # BatchNorm statistics and EMA weights drift apart per rank; score and save rank 0's.
        share_buffers_from_main(eval_model, world)
        predictions = predict_loader(eval_model, val_loader, device, world, config.train.amp, loss_fn)
        temperatures, offsets, thresholds = calibrate_and_tune(predictions, config.train.threshold_metric)
        evaluation = summarize(predictions, thresholds, {**meta, "epoch": epoch + 1}, config.train.threshold_metric,
                               temperatures=temperatures, offsets=offsets)
        if evaluation["attributes"] is not None:
            loss_fn.update_attribute_weights(np.array(
                [evaluation["attributes"][name]["balanced_accuracy"] for name in ATTRIBUTES]))
        score = headline(evaluation)
        improved = state.best_epoch < 0 or score > state.best_score or (
            math.isnan(state.best_score) and not math.isnan(score))
        if improved:
            state.best_score, state.best_epoch, state.epochs_without_improvement = score, epoch, 0
        else:
            state.epochs_without_improvement += 1
        state.epoch = epoch
        record = _epoch_record(epoch, state.step, train_stats, evaluation, optimizer.param_groups[0]["lr"],
                               time.time() - started)
        state.history.append(record)
        if world.is_main:
            deploy = DeployedModel.from_training(eval_model, thresholds, config, epoch + 1, evaluation, temperatures,
                                                 offsets).to_checkpoint()
            if improved:
                save_checkpoint(deploy, out / BEST)
            save_checkpoint({**deploy, "train": _train_state(model, ema, optimizer, scaler, loss_fn, state)},
                            out / LAST)
            _write_history(state.history, out / "metrics.jsonl")
            _log_epoch(writer, record, evaluation, loss_fn, state.step)
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


def _train_state(model, ema, optimizer, scaler, loss_fn, state: RunState) -> dict:
    """Everything besides the deploy part that an exact resume needs (the schedule is a
    function of the step, so it is rebuilt rather than stored)."""
    return {"model": model.state_dict(), "ema": ema.module.state_dict() if ema is not None else None,
            "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(), "loss": loss_fn.state_dict(),
            "state": dataclasses.asdict(state)}


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


def _restore(path: Path, config: Config, device: torch.device, model, ema, optimizer, scaler, loss_fn) -> RunState:
    """Loads a ``last.pt`` into the run's objects; refuses a config that differs where it matters."""
    checkpoint = load_checkpoint(path, map_location=device)
    if "train" not in checkpoint:
        raise CheckpointError(f"{path}: holds no training state (a deploy file such as best.pt?); cannot resume")
    changed = [key for key in changed_keys(checkpoint["config"], config_to_dict(config))
               if key not in RESUMABLE_CHANGES]
    if changed:
        raise ConfigError(f"--resume: the config differs from the run in {path.parent} at {', '.join(changed)}; "
                          f"only {', '.join(RESUMABLE_CHANGES)} may change when resuming")
    train = checkpoint["train"]
    try:
        model.load_state_dict(train["model"])
        if ema is not None:
            ema.module.load_state_dict(train["ema"])
        optimizer.load_state_dict(train["optimizer"])
        scaler.load_state_dict(train["scaler"])
        loss_fn.load_state_dict(train["loss"])
    except (KeyError, RuntimeError, ValueError) as error:
        raise CheckpointError(f"{path}: cannot restore the training state: {error}") from error
    return RunState(**train["state"])


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
