"""What a run trains with, built from its config: network, loss, optimiser, schedule, loss scaler, EMA."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from faceattr.config import Config, OptimConfig
from faceattr.models.deployed import DeployedModel
from faceattr.runtime import World, grad_scaler


@dataclasses.dataclass
class TrainingParts:
    """The objects one run trains with, built by :func:`build_training`.

    Attributes:
        model: The network.
        loss_fn: The :class:`~faceattr.training.losses.MultiTaskLoss` (its attribute weights adapt).
        optimizer: The optimiser.
        scheduler: timm's schedule, stepped once per update.
        scaler: The float16 loss scaler (inactive elsewhere).
        ema: timm's ``ModelEmaV3`` of the model when ``train.ema_decay > 0``, else None.
        train_model: What the steps run: ``model``, or its DistributedDataParallel wrapper
            after :meth:`distribute`.
        frozen: The parts of ``model`` that ``train.trainable`` leaves out
            (:func:`faceattr.training.finetune.freeze`); :meth:`train` keeps them in eval mode.
    """

    model: torch.nn.Module
    loss_fn: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    ema: Any = None
    train_model: torch.nn.Module | None = None
    frozen: tuple[torch.nn.Module, ...] = ()

    def __post_init__(self) -> None:
        if self.train_model is None:
            self.train_model = self.model

    @property
    def eval_model(self) -> torch.nn.Module:
        """The weights that are validated and deployed: the EMA's when there is one."""
        return self.ema.module if self.ema is not None else self.model

    def train(self) -> None:
        """Training mode, except for the frozen parts: their BatchNorm statistics must not move."""
        self.train_model.train()
        for part in self.frozen:
            part.eval()

    def distribute(self, world: World, device: torch.device) -> None:
        """Wraps the model for DistributedDataParallel when ``world`` has several processes."""
        if world.is_distributed:
            self.train_model = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[device.index] if device.type == "cuda" else None)

    def state_dict(self) -> dict:
        """Everything but the schedule (a function of the step, rebuilt rather than stored)."""
        return {"model": self.model.state_dict(), "ema": self.ema.module.state_dict() if self.ema is not None else None,
                "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
                "loss": self.loss_fn.state_dict()}

    def load_state_dict(self, train: dict) -> None:
        """Restores :meth:`state_dict`'s output (raises what torch raises on a mismatch)."""
        self.model.load_state_dict(train["model"])
        if self.ema is not None:
            self.ema.module.load_state_dict(train["ema"])
        self.optimizer.load_state_dict(train["optimizer"])
        self.scaler.load_state_dict(train["scaler"])
        self.loss_fn.load_state_dict(train["loss"])


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


def build_training(config: Config, positive_rate: np.ndarray, device: torch.device,
                   steps_per_epoch: int, initial: DeployedModel | None = None) -> TrainingParts:
    """The network, loss, optimiser, schedule, loss scaler and EMA of a run, on ``device``.

    Args:
        config: The run's configuration.
        positive_rate: ``(40,)`` positive rates of the training labels, for the class weights.
        device: Where the network and the loss go.
        steps_per_epoch: Updates per epoch, which the schedule counts in.
        initial: The model to start from (:func:`faceattr.training.finetune.load_initial_model`),
            or ``None`` for a fresh network.

    >>> from faceattr.config import ModelConfig
    >>> parts = build_training(Config(model=ModelConfig(backbone="resnet10t")), np.full(40, 0.5), torch.device("cpu"), 10)
    >>> parts.eval_model is parts.model and parts.train_model is parts.model
    True
    """
    from faceattr.models import build_model
    from faceattr.training.finetune import freeze, initialise
    from faceattr.training.losses import MultiTaskLoss

    model = build_model(config.model)
    if initial is not None:
        initialise(model, initial)
    frozen = freeze(model, config.train.trainable)
    model = model.to(device)
    if config.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    loss_fn = MultiTaskLoss(config.loss, positive_rate, config.model.beauty_head, config.model.beauty_bins).to(device)
    optimizer = build_optimizer(model, config.optim)
    parts = TrainingParts(model, loss_fn, optimizer, build_scheduler(optimizer, config.optim, steps_per_epoch),
                          grad_scaler(device, config.train.amp), frozen=frozen)
    if config.train.ema_decay > 0:
        from timm.utils import ModelEmaV3

        parts.ema = ModelEmaV3(model, decay=config.train.ema_decay)
    return parts
