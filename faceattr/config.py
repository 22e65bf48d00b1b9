"""Training configuration: nested dataclasses loaded from YAML with dotted overrides.

Every default lives here; a config file states only what differs. Unknown keys, wrong
types and bad values raise :class:`~faceattr.errors.ConfigError` naming the key.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from faceattr.errors import ConfigError

# The allowed values of the settings that name a kind of thing live here, the lowest layer that
# checks them; the modules that act on them import them from here. Where a module maps names to
# builders (faceattr.data.sources.READERS, faceattr.models.BACKBONES), a test keeps its keys equal
# to the list here, which lets a config be checked without importing torch or timm.

#: ``data.sources[].kind``: each has a reader in :data:`faceattr.data.sources.READERS`.
SOURCE_KINDS: tuple[str, ...] = ("celeba", "celebahq", "scut", "csv")
#: ``data.on_bad_sample``: what a corrupt image or label row does.
BAD_SAMPLE_CHOICES: tuple[str, ...] = ("error", "skip")
#: ``model.backbone``: each has a builder in :data:`faceattr.models.BACKBONES`.
BACKBONE_NAMES: tuple[str, ...] = (
    "resnet10t", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "se_resnet18", "se_resnet50", "se_resnet101", "gc_resnet18", "gc_resnet50", "gc_resnet101",
    "cbam_resnet50", "eca_resnet50", "sk_resnet18", "sk_resnet34", "sk_resnet50",
    "mobilenetv3_small_050", "mobilenetv3_small", "mobilenetv3_large", "efficientnet_b0",
)
#: The backbones that are timm ResNets: ``model.stem_stride`` and ``model.width`` apply to these.
RESNET_BACKBONES: tuple[str, ...] = tuple(name for name in BACKBONE_NAMES if "resnet" in name)
#: A standard ResNet stem's shrink factor: a stride-2 convolution, then a stride-2 max-pool.
STANDARD_STEM_STRIDE: int = 4
#: ``model.stem_stride``: how much a ResNet's stem shrinks the face (see :func:`faceattr.models.backbone.shrink_stem`).
STEM_STRIDES: tuple[int, ...] = (STANDARD_STEM_STRIDE, 2, 1)
#: ``model.beauty_head``: see :class:`faceattr.models.heads.BeautyHead`.
BEAUTY_HEAD_KINDS: tuple[str, ...] = ("regression", "distribution")
#: ``loss.attributes`` and ``loss.beauty``: see :class:`faceattr.training.losses.MultiTaskLoss`.
ATTRIBUTE_LOSSES: tuple[str, ...] = ("bce", "weighted_bce", "focal", "ohem")
BEAUTY_LOSSES: tuple[str, ...] = ("mse", "l1", "smooth_l1", "emd")
#: ``train.trainable``: which parts of the network a run trains (see :mod:`faceattr.training.finetune`).
TRAINABLE_PARTS: tuple[str, ...] = ("all", "heads", "beauty_head")
#: ``model.init_from`` naming the model installed with faceattr (``faceattr/weights/default.safetensors``).
DEFAULT_MODEL_NAME = "default"


@dataclass
class SourceConfig:
    """One dataset in the training mix.

    Attributes:
        kind: ``celeba``, ``celebahq``, ``scut`` or ``csv``.
        root: The dataset folder (for ``csv``: the CSV file).
        images: The image folder, relative to ``root`` or absolute (default: the dataset's
            official one, e.g. ``img_align_celeba``); CelebA's half-size
            ``img_align_celeba_89x109`` works too, and so does a folder of photos aligned by
            ``tools/align_dataset.py`` (e.g. CelebA's ``img_celeba``, which is refused as it is).
            For ``csv``: the folder the CSV's image paths are relative to, relative to the
            CSV's folder or absolute (default: the CSV's folder).
        weight: Relative share of this source in each training epoch.
        crop: ``[left, top, right, bottom]`` as fractions of the image, cut before resizing,
            so that crops of different datasets show the face at the same place and scale.
        celeba_root: For ``celebahq``: the CelebA folder whose partition and identity files
            give each HQ image its split and person.
        folds: For ``scut``, and ``csv`` files with a ``fold`` column: number of
            cross-validation folds (for ``scut``: when the official ones are absent).
        fold: For ``scut``, and ``csv`` files with a ``fold`` column: which fold is the
            validation part.
        val_fraction: For ``csv`` without a ``split`` column: share of groups held out.
        split: ``official``: the dataset's own train/val split. ``holdout``: its groups listed
            in ``data.holdout_groups`` are validation and the rest training, whatever the
            dataset says (its test split stays out); e.g. in-the-wild CelebA photos, which are
            all in CelebA's training partition, with some people held out.
    """

    kind: str = "celeba"
    root: str = ""
    images: str | None = None
    weight: float = 1.0
    crop: list[float] | None = None
    celeba_root: str | None = None
    folds: int = 5
    fold: int = 0
    val_fraction: float = 0.1
    split: str = "official"


@dataclass
class DataConfig:
    """Inputs: which datasets, at what size, how many workers.

    Attributes:
        sources: The datasets mixed in one run.
        image_size: Side of the square network input in pixels.
        batch_size: Per process.
        workers: DataLoader worker processes.
        epoch_size: Training samples per epoch (0: the total size of all sources).
        max_val_samples: Cap on validation images (0: all), for quick runs.
        on_bad_sample: ``error`` stops on a corrupt image or label row; ``skip`` skips and counts it.
        augment: Random crop jitter, flips and colour jitter while training.
        random_erasing: With ``augment``, the chance that a training image has a random
            rectangle (2-33% of its area) filled with the mean colour (Zhong et al. 2020), so
            that no single part of the face can carry an attribute alone.
        preload: Decode every image once (its evaluation crop) and keep them on the training
            device, where batches are drawn and augmented (:mod:`faceattr.data.preload`): for
            GPUs, which small faces would otherwise leave waiting on CPU decoding. ``workers``
            then only decode the preload.
        holdout_groups: A text file of groups (people) held out of training, one per line
            (``celeba-id:2880``; ``#`` starts a comment): their images are left out of every
            source's training split, and are the validation split of ``split: holdout``
            sources. ``tools/make_holdout.py`` picks them.
    """

    sources: list[SourceConfig] = field(default_factory=list)
    image_size: int = 128
    batch_size: int = 64
    workers: int = 4
    epoch_size: int = 0
    max_val_samples: int = 0
    on_bad_sample: str = "error"
    augment: bool = True
    random_erasing: float = 0.0
    preload: bool = False
    holdout_groups: str | None = None


@dataclass
class ModelConfig:
    """The network: a timm backbone and two heads.

    Attributes:
        backbone: A name from :data:`faceattr.models.BACKBONES`.
        weights: Optional local ``.safetensors``/``.pt`` file to initialise the backbone.
        init_from: A whole trained model to start from, backbone and both heads: ``default``
            (the model installed with faceattr), an exported ``.safetensors`` (its ``.json``
            beside it) or a ``best.pt``/``last.pt``. Its backbone, width, beauty head and crop
            must be this config's (``model.backbone``, ``model.width``, ``model.beauty_head``,
            ``model.beauty_bins``, the crop of the ``celeba`` sources); a difference is refused
            naming the key and both values. ``data.image_size`` and ``model.stem_stride`` may
            differ: a warm start at another scale (logged as a warning). Fine-tuning on labels
            without attributes keeps its attribute calibration and thresholds.
        beauty_head: ``regression`` (one score) or ``distribution`` (bins, EMD loss).
        beauty_bins: Number of bins over 1-5 for the distribution head.
        drop_rate: Dropout before the heads.
        stem_stride: For ResNet backbones: 4 (the standard stem: stride-2 convolution and
            max-pool), 2 (no max-pool) or 1 (no max-pool, stride-1 first convolution). At 64 px
            the standard stem leaves 16x16 maps for the first block and 2x2 for the last; 2
            keeps 32x32 and 4x4 for 4x the computation. A trained network's weights fit any
            stem stride, so ``init_from`` can start a stride-2 network from a stride-4 one,
            but the change of scale undoes most of what it learnt (docs/MODEL_CARD.md).
        width: For ResNet backbones: multiplies the channels (0.5 halves them, a quarter of
            the computation and parameters).
        drop_path_rate: Stochastic depth (timm's ``drop_path_rate``): the chance of skipping
            the last residual block while training, rising linearly from 0 at the first.
    """

    backbone: str = "resnet18"
    weights: str | None = None
    init_from: str | None = None
    beauty_head: str = "regression"
    beauty_bins: int = 9
    drop_rate: float = 0.0
    stem_stride: int = STANDARD_STEM_STRIDE
    width: float = 1.0
    drop_path_rate: float = 0.0


@dataclass
class LossConfig:
    """Losses and how they are weighted.

    Attributes:
        attributes: ``bce``, ``weighted_bce``, ``focal`` or ``ohem``.
        focal_gamma: Focusing parameter of the focal loss.
        focal_alpha: ``auto`` (per attribute, from label frequencies) or a number, or ``none``.
        ohem_ratio: Share of the hardest attribute terms kept by OHEM.
        beauty: ``mse``, ``l1``, ``smooth_l1`` or ``emd`` (distribution head only).
        beauty_weight: Weight of the beauty loss against the attribute loss. The default
            0.15 keeps the beauty term (a regression on 1-5) from drowning the attribute
            term: in a 3-epoch ResNet-18 run on the real data, 1.0 gave mean balanced
            accuracy 0.658 and beauty Pearson 0.555, 0.15 gave 0.727 and 0.593.
        adaptive_weights: Re-weight attributes after each validation (see :mod:`faceattr.training.losses`).
        adaptive_power: How strongly weak attributes are up-weighted.
        adaptive_momentum: Smoothing of the weights between epochs.
        label_smoothing: Pulls attribute targets towards 0.5 by this amount.
        beauty_ranking: Weight of a pairwise ranking term added to the beauty loss: every
            pair of rated faces in a batch is scored on whether the network orders them as
            the raters did (see :class:`faceattr.training.losses.MultiTaskLoss`); 0 turns it off.
    """

    attributes: str = "focal"
    focal_gamma: float = 2.0
    focal_alpha: str | float | None = "auto"
    ohem_ratio: float = 0.7
    beauty: str = "smooth_l1"
    beauty_weight: float = 0.15
    adaptive_weights: bool = True
    adaptive_power: float = 1.0
    adaptive_momentum: float = 0.5
    label_smoothing: float = 0.0
    beauty_ranking: float = 0.0


@dataclass
class OptimConfig:
    """Optimiser and schedule.

    Attributes:
        optimizer: ``adamw`` or ``sgd``.
        lr: Peak learning rate.
        weight_decay: Decoupled weight decay.
        momentum: SGD momentum.
        epochs: Training epochs.
        warmup_epochs: Linear warm-up length (fractions allowed).
        schedule: ``cosine`` or ``step``.
        milestones: Epochs at which the ``step`` schedule multiplies the rate by ``gamma``.
        gamma: Step schedule factor.
        min_lr: Floor of the cosine schedule.
        grad_clip: Max gradient norm (0: off).
    """

    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.05
    momentum: float = 0.9
    epochs: int = 30
    warmup_epochs: float = 1.0
    schedule: str = "cosine"
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1
    min_lr: float = 1e-6
    grad_clip: float = 0.0


@dataclass
class TrainConfig:
    """The run itself.

    Attributes:
        output_dir: Run folder (checkpoints, logs, resolved config, report).
        seed: Seeds everything; the same seed gives the same run.
        device: ``auto``, ``cpu`` or ``cuda``.
        amp: Mixed precision (bfloat16/float16) on GPU.
        channels_last: Channels-last memory format.
        ema_decay: EMA of weights (0: off); validation and the best checkpoint use the EMA.
        threshold_metric: ``balanced_accuracy`` or ``f1``: what per-attribute thresholds maximise.
        early_stopping: Stop after this many epochs without improvement (0: off).
        max_steps_per_epoch: Cap on steps per epoch (0: none), for smoke runs.
        log_every: Steps between progress-bar and TensorBoard updates.
        trainable: What the optimiser changes: ``all``, ``heads`` (backbone frozen) or
            ``beauty_head`` (backbone and attribute head frozen). Frozen parts keep their weights
            and their BatchNorm statistics (their BatchNorm layers stay in eval mode), so with
            ``beauty_head`` the attribute outputs stay bit-identical.
    """

    output_dir: str = "runs/default"
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    channels_last: bool = True
    ema_decay: float = 0.0
    threshold_metric: str = "balanced_accuracy"
    early_stopping: int = 0
    max_steps_per_epoch: int = 0
    log_every: int = 20
    trainable: str = "all"


@dataclass
class Config:
    """A whole training run."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


#: What per-attribute decision thresholds may maximise (:mod:`faceattr.evaluation.thresholds` fits
#: them). Its one home is here, in base, so that the config imports nothing from evaluation.
THRESHOLD_METRICS: tuple[str, ...] = ("balanced_accuracy", "f1")

#: The decision policies a deployed model may offer (:mod:`faceattr.evaluation.decision` fits and
#: applies them); here so that the deployed model checks them without importing evaluation.
DECISION_POLICIES: tuple[str, ...] = ("balanced", "f1", "probability")

#: What runs the network at prediction (:mod:`faceattr.inference.backends`): PyTorch or ONNX Runtime.
PREDICTION_BACKENDS: tuple[str, ...] = ("torch", "onnx")

#: Allowed values of each choice; a key through a list (``data.sources.kind``) is checked in every item.
CHOICES: dict[str, tuple[str, ...]] = {
    "data.sources.kind": SOURCE_KINDS,
    "data.sources.split": ("official", "holdout"),
    "data.on_bad_sample": BAD_SAMPLE_CHOICES,
    "model.backbone": BACKBONE_NAMES,
    "model.beauty_head": BEAUTY_HEAD_KINDS,
    "model.stem_stride": STEM_STRIDES,
    "loss.attributes": ATTRIBUTE_LOSSES,
    "loss.beauty": BEAUTY_LOSSES,
    "optim.optimizer": ("adamw", "sgd"),
    "optim.schedule": ("cosine", "step"),
    "train.device": ("auto", "cpu", "cuda"),
    "train.threshold_metric": THRESHOLD_METRICS,
    "train.trainable": TRAINABLE_PARTS,
}

#: Allowed range of each number: ``> x``, ``>= x`` or an interval such as ``(0, 1]``. A value
#: that is not a number (``loss.focal_alpha: auto``) is left to the other checks.
RANGES: dict[str, str] = {
    "data.sources.weight": ">= 0",
    "data.sources.folds": ">= 2",
    "data.sources.val_fraction": "[0, 1]",
    "data.image_size": "> 0",
    "data.batch_size": "> 0",
    "data.workers": ">= 0",
    "data.epoch_size": ">= 0",
    "data.max_val_samples": ">= 0",
    "data.random_erasing": "[0, 1]",
    "model.beauty_bins": ">= 2",
    "model.drop_rate": "[0, 1)",
    "model.width": "> 0",
    "model.drop_path_rate": "[0, 1)",
    "loss.focal_gamma": ">= 0",
    "loss.focal_alpha": "[0, 1]",
    "loss.ohem_ratio": "(0, 1]",
    "loss.label_smoothing": "[0, 1)",
    "loss.beauty_weight": ">= 0",
    "loss.beauty_ranking": ">= 0",
    "loss.adaptive_power": ">= 0",
    "loss.adaptive_momentum": "[0, 1)",
    "optim.lr": ">= 0",
    "optim.weight_decay": ">= 0",
    "optim.epochs": "> 0",
    "optim.warmup_epochs": ">= 0",
    "optim.grad_clip": ">= 0",
    "train.seed": ">= 0",
    "train.ema_decay": "[0, 1)",
    "train.early_stopping": ">= 0",
    "train.max_steps_per_epoch": ">= 0",
    "train.log_every": ">= 1",
}


def _convert(value: Any, hint: Any, key: str) -> Any:
    """Checks ``value`` against the type ``hint`` and converts it (YAML gives dicts and lists)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in options:
                return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(value, option, key)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}: {value!r} fits none of {hint}")
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return _build(hint, value, key)
    if origin is list:
        (item_hint,) = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_convert(item, item_hint, f"{key}[{i}]") for i, item in enumerate(value)]
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    raise AssertionError(f"unsupported config type {hint} at {key}")


def _build(cls: type, values: dict, prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for name, value in values.items():
        key = f"{prefix}.{name}" if prefix else str(name)
        if name not in hints:
            raise ConfigError(f"unknown key {key!r}; valid keys here: {', '.join(names)}")
        kwargs[name] = _convert(value, hints[name], key)
    return cls(**kwargs)


def _values(config: Config, dotted: str) -> list[tuple[str, Any]]:
    """Every value a dotted key names, each with the key as a message shows it.

    A list on the way gives one value per item: ``data.sources.weight`` gives
    ``("data.sources[0].weight", ...)``, ``("data.sources[1].weight", ...)`` and so on.
    """
    *path, name = dotted.split(".")
    holders: list[tuple[str, Any]] = [("", config)]
    for part in path:
        found = []
        for where, holder in holders:
            value = getattr(holder, part)
            if isinstance(value, list):
                found += [(f"{where}{part}[{i}].", item) for i, item in enumerate(value)]
            else:
                found.append((f"{where}{part}.", value))
        holders = found
    return [(where + name, getattr(holder, name)) for where, holder in holders]


def _in_range(value: float, allowed: str) -> bool:
    """Whether ``value`` is in ``allowed`` (see :data:`RANGES`); NaN never is.

    >>> _in_range(0.0, "(0, 1]"), _in_range(1.0, "(0, 1]"), _in_range(2, ">= 2"), _in_range(2, "> 2")
    (False, True, True, False)
    """
    if allowed.startswith(">"):
        bound = float(allowed.lstrip(">= "))
        return value >= bound if allowed.startswith(">=") else value > bound
    low, high = (float(bound) for bound in allowed[1:-1].split(","))
    above = value >= low if allowed[0] == "[" else value > low
    below = value <= high if allowed[-1] == "]" else value < high
    return above and below


def validate(config: Config) -> None:
    """Checks the values of a whole configuration: choices, ranges and combinations.

    :func:`load_config` and :func:`config_from_dict` call it, so a bad value (an unknown
    ``model.backbone`` included) is refused before any data is read or model built.

    Raises:
        ConfigError: Naming the first key whose value is not allowed.

    >>> validate(Config(loss=LossConfig(ohem_ratio=0.0)))
    Traceback (most recent call last):
    ...
    faceattr.errors.ConfigError: loss.ohem_ratio: must be in (0, 1], got 0.0
    """
    for dotted, choices in CHOICES.items():
        for key, value in _values(config, dotted):
            if value not in choices:
                raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(str, choices))}")
    alpha = config.loss.focal_alpha
    if isinstance(alpha, str) and alpha != "auto":
        raise ConfigError(f"loss.focal_alpha: {alpha!r} is not 'auto', a number or none")
    for dotted, allowed in RANGES.items():
        for key, value in _values(config, dotted):
            if isinstance(value, (int, float)) and not _in_range(value, allowed):
                bound = allowed if allowed.startswith(">") else f"in {allowed}"
                raise ConfigError(f"{key}: must be {bound}, got {value}")
    for i, source in enumerate(config.data.sources):
        crop = source.crop
        if crop is not None and not (len(crop) == 4 and 0 <= crop[0] < crop[2] <= 1 and 0 <= crop[1] < crop[3] <= 1):
            raise ConfigError(f"data.sources[{i}].crop: expected [left, top, right, bottom] "
                              f"fractions with left < right and top < bottom, got {crop}")
        if not 0 <= source.fold < source.folds:
            raise ConfigError(f"data.sources[{i}].fold: {source.fold} is outside 0..{source.folds - 1}")
        if source.split == "holdout" and not config.data.holdout_groups:
            raise ConfigError(f"data.sources[{i}].split: 'holdout' needs data.holdout_groups, "
                              "the file listing the held-out groups")
    if config.model.init_from and config.model.weights:
        raise ConfigError(f"model.weights: {config.model.weights!r} and model.init_from: {config.model.init_from!r} "
                          "both initialise the backbone; keep one (init_from loads the whole model)")
    model = config.model
    for key, value, default in (("stem_stride", model.stem_stride, STANDARD_STEM_STRIDE), ("width", model.width, 1.0)):
        if value != default and model.backbone not in RESNET_BACKBONES:
            raise ConfigError(f"model.{key}: applies to the ResNet backbones ({', '.join(RESNET_BACKBONES)}), "
                              f"not to model.backbone {model.backbone!r}; leave it at {default}")
    if config.model.beauty_head == "regression" and config.loss.beauty == "emd":
        raise ConfigError("loss.beauty: 'emd' needs model.beauty_head: distribution")


def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected key=value, e.g. optim.lr=0.01")
    key, raw = text.split("=", 1)
    return key.strip().split("."), yaml.safe_load(raw) if raw.strip() else ""


def _apply_override(tree: dict, path: list[str], value: Any, text: str) -> None:
    node: Any = tree
    for depth, part in enumerate(path[:-1]):
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"override {text!r}: {'.'.join(path[:depth])} has no item {part}")
            node = node[int(part)]
        else:
            node = node.setdefault(part, {})
        if not isinstance(node, (dict, list)):
            raise ConfigError(f"override {text!r}: {'.'.join(path[:depth + 1])} is not a section")
    last = path[-1]
    if isinstance(node, list):
        if not last.isdigit() or int(last) >= len(node):
            raise ConfigError(f"override {text!r}: no item {last}")
        node[int(last)] = value
    else:
        node[last] = value


def config_from_dict(values: dict, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Builds and validates a :class:`Config` from a plain dict plus ``key=value`` overrides.

    Args:
        values: Nested mapping, as read from YAML.
        overrides: Dotted assignments applied on top, e.g. ``["optim.lr=0.01"]``; list items
            are addressed by index (``data.sources.0.root=/data/celeba``).

    Returns:
        The validated configuration.

    Raises:
        ConfigError: On an unknown key, a wrong type or a value outside its choices.

    >>> config_from_dict({"model": {"backbone": "resnet34"}}, ["optim.lr=0.01"]).optim.lr
    0.01
    """
    tree = dataclasses.asdict(Config())
    # A deep copy: overrides of list items (data.sources.0.root) must not write into ``values``.
    for section, body in copy.deepcopy(values or {}).items():
        if section not in tree:
            raise ConfigError(f"unknown key {section!r}; valid keys here: {', '.join(tree)}")
        if not isinstance(body, dict):
            raise ConfigError(f"{section}: expected a mapping, got {body!r}")
        tree[section] = {**tree[section], **body}
    for text in overrides:
        path, value = _parse_override(text)
        _apply_override(tree, path, value, text)
    config = _build(Config, tree, "")
    _expand_paths(config)
    validate(config)
    return config


def _expand_paths(config: Config) -> None:
    """Expands ``~`` and environment variables (``$HOME``, ``${PWD}``) in the path settings.

    So a config can name folders outside the dataset roots portably, e.g. aligned photos
    under the repository: ``images: ${PWD}/data/aligned/img_celeba``.
    """
    expand = lambda path: path if path is None else os.path.expanduser(os.path.expandvars(path))
    for source in config.data.sources:
        source.root, source.images, source.celeba_root = map(expand, (source.root, source.images, source.celeba_root))
    config.data.holdout_groups = expand(config.data.holdout_groups)
    config.model.init_from = expand(config.model.init_from)
    config.train.output_dir = expand(config.train.output_dir)


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Reads a YAML config file and applies ``key=value`` overrides.

    A file may start with ``base: other.yaml`` (relative to it): its sections are read
    first and this file's keys replace theirs, key by key (lists are replaced whole).

    Args:
        path: The YAML file.
        overrides: Dotted assignments, e.g. ``["train.output_dir=runs/x", "optim.epochs=3"]``.

    Returns:
        The validated configuration.

    Raises:
        ConfigError: On a missing file, invalid YAML, or a bad key or value; the message
            names the file and the key.

    >>> import tempfile, os
    >>> f = os.path.join(tempfile.mkdtemp(), "c.yaml")
    >>> _ = open(f, "w").write("optim:\\n  epochs: 3\\n")
    >>> load_config(f, ["data.image_size=64"]).data.image_size
    64
    """
    path = Path(path)
    values = _read_yaml(path)
    base_name = values.pop("base", None)
    if base_name is not None:
        base_path = path.parent / str(base_name)
        base = _read_yaml(base_path)
        if "base" in base:
            raise ConfigError(f"{base_path}: a base config cannot name another base (one level only, "
                              "so that every default is visible in two files at most)")
        values = {section: {**base.get(section, {}), **values.get(section, {})} for section in {*base, *values}}
    try:
        return config_from_dict(values, overrides)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(values, dict) or not all(isinstance(v, dict) for k, v in values.items() if k != "base"):
        raise ConfigError(f"{path}: expected sections (data, model, loss, optim, train) mapping keys to values")
    return values


def config_to_dict(config: Config) -> dict:
    """The configuration as plain nested dicts (for YAML files and checkpoints)."""
    return dataclasses.asdict(config)


def save_config(config: Config, path: str | Path) -> None:
    """Writes the resolved configuration as YAML."""
    Path(path).write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))


def data_overrides(config_path: str | Path) -> list[str]:
    """Overrides that give a stored config the data sources and held-out people of another config.

    For evaluating or calibrating a model trained on a pack (``tools/pack_dataset.py``) on the
    original images its pack was made from; the images are streamed, not preloaded.

    Raises:
        ConfigError: If the config cannot be read.
    """
    data = config_to_dict(load_config(config_path))["data"]
    return [f"data.sources={json.dumps(data['sources'])}", f"data.holdout_groups={json.dumps(data['holdout_groups'])}",
            "data.preload=false"]
