"""Fine-tuning: starting a run from a whole trained model, and training only part of the network.

``model.init_from`` names the model to start from (``default``: the one installed with
faceattr; or an exported ``.safetensors``, or a ``best.pt``), whose backbone and both heads
are loaded before the first step. ``train.trainable`` says what the optimiser may change:
``all``, ``heads`` or ``beauty_head``. Frozen parts get ``requires_grad = False`` (so the
optimiser leaves them out and no gradient flows through them) and are put back in eval mode
after every ``model.train()`` (:meth:`faceattr.training.parts.TrainingParts.train`), so their
BatchNorm layers normalise with the stored statistics and never update them: with
``beauty_head``, the attribute logits are bit-identical to the initial model's.

A team's labels usually hold beauty scores only: nothing to fit attribute calibration or
thresholds on. The initial model's decision (temperatures, offsets, thresholds, policies) is
then carried over to the fine-tuned model, and always with ``beauty_head``, where the
attribute outputs cannot have changed (:func:`keeps_initial_decision`).
"""

from __future__ import annotations

import logging

import numpy as np
from torch import nn

from faceattr.config import DEFAULT_MODEL_NAME, STANDARD_STEM_STRIDE, Config
from faceattr.errors import ConfigError
from faceattr.models.deployed import DeployedModel, training_crop
from faceattr.models.weights_io import load_state_dict_checked

logger = logging.getLogger(__name__)

#: The network's parts that each ``train.trainable`` value freezes (attribute names of FaceAttrNet).
FROZEN_PARTS: dict[str, tuple[str, ...]] = {
    "all": (),
    "heads": ("backbone",),
    "beauty_head": ("backbone", "attribute_head"),
}


def load_initial_model(config: Config) -> DeployedModel | None:
    """The model ``model.init_from`` names, checked against ``config``; ``None`` when it names none.

    Raises:
        ConfigError: The model's backbone, width, beauty head or crop differs from the
            config's (naming the key and both values).
        CheckpointError: The file is missing, unreadable or fails its checksums.

    >>> load_initial_model(Config()) is None
    True
    """
    init_from = config.model.init_from
    if not init_from:
        return None
    initial = DeployedModel.load(None if init_from == DEFAULT_MODEL_NAME else init_from)
    check_compatible(initial, config)
    if config.train.trainable != "beauty_head":
        # Measured on the SCUT demonstration (docs): trainable=all on beauty labels only took CelebA's
        # mean balanced accuracy from 0.849 to 0.814 under the kept thresholds.
        logger.warning("train.trainable=%s changes the attribute outputs of %s: without attribute labels to refit "
                       "them on, its attribute thresholds are kept although they no longer fit; train.trainable="
                       "beauty_head keeps the attribute answers exact", config.train.trainable, initial.where)
    return initial


def check_compatible(initial: DeployedModel, config: Config) -> None:
    """Refuses a config whose network or crop differs from the model it starts from.

    The config states them rather than taking them from the model, so that the run's
    ``config.yaml`` says what was trained, and a config written for another model fails at
    once. The input size and the stem stride may differ: the weights fit any, so a model
    trained at 64 px can warm-start one at 128 px or with a finer stem (logged as a warning,
    since the thresholds and calibration it brings were fitted at its own scale).

    Raises:
        ConfigError: Naming the first key that differs, its value and the model's.
    """
    where = f"model.init_from ({initial.where})"
    expected = {
        "model.backbone": (config.model.backbone, initial.model_args["backbone"]),
        "model.beauty_head": (config.model.beauty_head, initial.model_args.get("beauty_head", "regression")),
        "model.width": (config.model.width, initial.model_args.get("width", 1.0)),
        "data.sources[kind=celeba].crop": (tuple(training_crop(config)), tuple(initial.crop)),
    }
    if config.model.beauty_head == "distribution":
        expected["model.beauty_bins"] = (config.model.beauty_bins, initial.model_args.get("beauty_bins"))
    # The weights fit any input size and stem (faceattr.models.backbone.shrink_stem), so these only warn:
    # measured on the default model, a finer stem's warm start first loses 11 points (docs/MODEL_CARD.md).
    scale = {"data.image_size": (config.data.image_size, initial.image_size),
             "model.stem_stride": (config.model.stem_stride, initial.model_args.get("stem_stride", STANDARD_STEM_STRIDE))}
    for key, (configured, model_value) in scale.items():
        if configured != model_value:
            logger.warning("%s: %s warm-starts from %s, which has %s: the network sees faces at another scale "
                           "from its first step", key, configured, where, model_value)
    for key, (configured, model_value) in expected.items():
        if configured != model_value:
            raise ConfigError(f"{key}: the config says {configured!r}, but {where} has {model_value!r}; "
                              f"set {key} to the model's value to fine-tune it")


def initialise(model: nn.Module, initial: DeployedModel) -> None:
    """Loads every weight of ``initial`` (backbone and both heads) into ``model``.

    Raises:
        CheckpointError: The weights do not fit ``model`` (naming the keys).
    """
    load_state_dict_checked(model, initial.state_dict, source=f"model.init_from ({initial.where})")
    logger.info("starting from %s (epoch %s)", initial.where, initial.epoch)


def freeze(model: nn.Module, trainable: str) -> tuple[nn.Module, ...]:
    """Stops gradients into the parts ``trainable`` leaves out and returns those parts.

    Call it before building the optimiser (which then holds only the trainable parameters),
    and put the returned modules in eval mode after each ``model.train()``.

    >>> from faceattr.models.net import FaceAttrNet
    >>> net = FaceAttrNet("resnet10t")
    >>> frozen = freeze(net, "beauty_head")
    >>> [name for name, p in net.named_parameters() if p.requires_grad]
    ['beauty_head.fc.weight', 'beauty_head.fc.bias']
    """
    frozen = tuple(getattr(model, name) for name in FROZEN_PARTS[trainable])
    for part in frozen:
        part.requires_grad_(False)
    if frozen:
        logger.info("train.trainable=%s: %s frozen", trainable, ", ".join(FROZEN_PARTS[trainable]))
    return frozen


def keeps_initial_decision(initial: DeployedModel | None, trainable: str, attribute_labels: bool) -> bool:
    """Whether the fine-tuned model deploys the initial model's attribute decision unchanged.

    It does when its attribute outputs cannot have changed (``beauty_head``) and when the
    validation images have no attribute label to refit the decision on.

    >>> keeps_initial_decision(None, "beauty_head", False)
    False
    """
    return initial is not None and (trainable == "beauty_head" or not attribute_labels)


def initial_decision(initial: DeployedModel) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """``initial``'s temperatures, offsets, thresholds and other policies' thresholds, as
    :func:`faceattr.evaluation.evaluate.calibrate_and_tune` returns them."""
    return (np.asarray(initial.temperatures), np.asarray(initial.offsets), np.asarray(initial.thresholds),
            {name: np.asarray(values) for name, values in initial.policy_thresholds.items()})
