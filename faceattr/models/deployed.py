"""The deployed model: everything inference needs, read and checked once from any model file.

A :class:`DeployedModel` is what the trainer deploys (``best.pt``), what an export writes (a
``.safetensors`` with its ``.json`` beside it) and what :class:`~faceattr.inference.predictor.Predictor`
and evaluation read: network arguments and weights, input size, the crop of CelebA's aligned
frame the model sees, and the decision fields (per-attribute thresholds on the calibrated
probabilities ``sigmoid(logit / temperature + offset)``). It is validated when built, so a
model file with impossible values is refused naming the file and the key. An export's
description carries the sha256 of its weights and a digest of its decision fields
(:func:`decision_digest`), so a hand-edited threshold is caught as replaced weights are.

>>> model = DeployedModel.load()  # doctest: +SKIP
>>> model.image_size, model.crop  # doctest: +SKIP
(64, (0.051, 0.1665, 0.942, 0.894))
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from faceattr.attributes import ATTRIBUTES
from faceattr.config import DECISION_POLICIES, Config, config_to_dict
from faceattr.errors import CheckpointError
from faceattr.geometry import CELEBA_CROP
from faceattr.models.net import FaceAttrNet
from faceattr.models.weights_io import (
    load_checkpoint,
    load_state_dict_checked,
    load_weights,
    sha256_of,
    strip_wrapper_prefixes,
)
from faceattr.version import __version__

logger = logging.getLogger(__name__)

#: The model that ``faceattr.predict(img)``, ``Predictor()`` and ``faceattr predict`` use when no
#: model is named. Read at each call, so a test can point it elsewhere.
DEFAULT_MODEL: Path = Path(__file__).resolve().parents[1] / "weights" / "default.safetensors"

#: The ``format`` of an export's JSON description, written by ``tools/export_model.py``.
FORMAT = "faceattr-exported-model/3"

#: The first format, still read: no ``crop`` (so :data:`~faceattr.geometry.CELEBA_CROP`) and no
#: digest of the decision fields, only of the weights.
FORMAT_1 = "faceattr-exported-model/1"

#: The format before decision policies: no ``policy_thresholds`` nor ``default_decision``, so
#: ``balanced`` only; still read, its ``decision_sha256`` over :data:`DECISION_FIELDS_2`.
FORMAT_2 = "faceattr-exported-model/2"

#: The input sizes accepted: the predictor allocates an ``image_size``-square batch when it loads.
IMAGE_SIZE_RANGE: tuple[int, int] = (16, 1024)

#: The largest logit offset accepted. Calibration fits offsets within +-15
#: (faceattr.evaluation.calibration.OFFSET_RANGE) and float32 sigmoid is exactly 0 or 1 beyond
#: about -104 and 17, so an offset past 20 pins an attribute's probability whatever the image:
#: a damaged file, not a calibration.
MAX_ABS_OFFSET = 20.0

#: The fields that decide a model's answers; an export's ``decision_sha256`` covers them.
DECISION_FIELDS_2: tuple[str, ...] = ("model_args", "image_size", "crop", "attributes", "thresholds",
                                      "temperatures", "offsets")
DECISION_FIELDS: tuple[str, ...] = (*DECISION_FIELDS_2, "policy_thresholds", "default_decision")

#: The policies whose thresholds a model stores beside its (balanced) ``thresholds``; ``probability``
#: needs none.
STORED_POLICIES: tuple[str, ...] = tuple(p for p in DECISION_POLICIES if p not in ("balanced", "probability"))

_CHECKPOINT_KEYS = ("model_args", "model", "thresholds", "config")
_DESCRIPTION_KEYS = ("format", "sha256", "model_args", "image_size", "attributes", "thresholds", "temperatures",
                     "offsets", "config")


def description_path(weights: str | Path) -> Path:
    """The JSON description that goes with an exported weights file.

    >>> description_path("faceattr/weights/default.safetensors").name
    'default.json'
    """
    return Path(weights).with_suffix(".json")


def decision_digest(fields: Mapping[str, Any], keys: Sequence[str] = DECISION_FIELDS) -> str:
    """The sha256 of the canonical JSON (sorted keys, no spaces) of the decision fields ``keys``.

    >>> decision_digest({"model_args": {}, "image_size": 64, "crop": [0, 0, 1, 1], "attributes": [],
    ...                  "thresholds": [], "temperatures": [], "offsets": []}, DECISION_FIELDS_2)[:12]
    'b09a7687fc54'
    """
    canonical = json.dumps({key: fields[key] for key in keys}, sort_keys=True,
                           separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def training_crop(config: Config) -> tuple[float, float, float, float]:
    """The crop of CelebA's aligned frame a model trained with ``config`` sees.

    That of the config's ``celeba`` sources (the whole frame where one has no crop);
    :data:`~faceattr.geometry.CELEBA_CROP` when it has none (e.g. packs cut beforehand).

    >>> from faceattr.config import SourceConfig
    >>> config = Config()
    >>> config.data.sources = [SourceConfig(kind="scut"), SourceConfig(kind="celeba", crop=[0.1, 0.1, 0.9, 0.9])]
    >>> training_crop(config)
    (0.1, 0.1, 0.9, 0.9)
    """
    crops = [(0.0, 0.0, 1.0, 1.0) if source.crop is None else tuple(float(v) for v in source.crop)
             for source in config.data.sources if source.kind == "celeba"]
    if len(set(crops)) > 1:
        logger.warning("the celeba sources have different crops %s; the model is deployed with the first", crops)
    return crops[0] if crops else CELEBA_CROP


@dataclass(frozen=True)
class DeployedModel:
    """A trained model as inference needs it, validated when built.

    Attributes:
        model_args: :attr:`FaceAttrNet.model_args`, its constructor arguments.
        state_dict: The network's tensors (float32 even for a float16 export).
        image_size: Side of the square network input, 16-1024 px.
        crop: ``(left, top, right, bottom)`` fractions of CelebA's aligned 178x218 frame that
            the model sees, resized to ``image_size``.
        thresholds: 40 decision thresholds on calibrated probabilities, each in (0, 1): the
            ``balanced`` policy's (balanced accuracy, the headline metric).
        temperatures: 40 positive calibration temperatures.
        offsets: 40 calibration logit offsets, within +-:data:`MAX_ABS_OFFSET`.
        attributes: The attribute names, :data:`faceattr.ATTRIBUTES`.
        policy_thresholds: The other fitted policies' 40 thresholds each, by name (of
            :data:`STORED_POLICIES`); ``{}`` for a model fitted before policies existed.
        default_decision: The policy users get when they name none (of
            :data:`~faceattr.config.DECISION_POLICIES`, with its thresholds stored).
        config: The training config, as a dict.
        metrics: The validation evaluation (an export keeps a summary of it).
        epoch: Epochs trained, if known.
        faceattr_version: The faceattr that wrote the model file.
        trained_with_faceattr: The faceattr it was trained with, if known.
        source: The file it was read from, ``None`` when built in memory.
        description: An export's JSON description, ``None`` for a checkpoint.
        onnx: An ONNX export's file (:mod:`faceattr.models.onnx`), the network it runs; its
            :attr:`state_dict` is empty then, so :meth:`build_network` refuses it.

    Raises:
        CheckpointError: A field is invalid; the message names the file and the key.

    >>> from faceattr.config import Config
    >>> model = DeployedModel.from_training(FaceAttrNet("resnet10t"), [0.5] * 40, Config(), epoch=0, metrics={})
    >>> model.image_size, model.temperatures[0], sorted(model.to_checkpoint())[:3]
    (128, 1.0, ['attributes', 'config', 'crop'])
    """

    model_args: dict[str, Any]
    state_dict: dict[str, Tensor] = field(repr=False)
    image_size: int
    crop: tuple[float, float, float, float]
    thresholds: tuple[float, ...] = field(repr=False)
    temperatures: tuple[float, ...] = field(repr=False)
    offsets: tuple[float, ...] = field(repr=False)
    attributes: tuple[str, ...] = field(default=ATTRIBUTES, repr=False)
    policy_thresholds: dict[str, tuple[float, ...]] = field(default_factory=dict, repr=False)
    default_decision: str = "balanced"
    config: dict[str, Any] = field(default_factory=dict, repr=False)
    metrics: dict[str, Any] = field(default_factory=dict, repr=False)
    epoch: int | None = None
    faceattr_version: str | None = __version__
    trained_with_faceattr: str | None = None
    source: Path | None = None
    description: dict[str, Any] | None = field(default=None, repr=False)
    onnx: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        where = self.where

        def fail(key: str, expected: str) -> CheckpointError:
            return CheckpointError(f"{where}: {key!r}: expected {expected}")

        def normalise(name: str, value: Any) -> None:  # the dataclass is frozen once built
            object.__setattr__(self, name, value)

        if not isinstance(self.model_args, Mapping) or "backbone" not in self.model_args:
            raise fail("model_args", f"a dict with a 'backbone' (FaceAttrNet's arguments), got {self.model_args!r}")
        normalise("model_args", dict(self.model_args))
        if not isinstance(self.state_dict, Mapping) or not all(isinstance(v, Tensor) for v in self.state_dict.values()):
            raise fail("model", "a state dict of tensors")
        normalise("state_dict", strip_wrapper_prefixes(self.state_dict))
        if not isinstance(self.attributes, Sequence) or list(self.attributes) != list(ATTRIBUTES):
            raise fail("attributes", f"the {len(ATTRIBUTES)} names of faceattr.ATTRIBUTES, in order")
        normalise("attributes", tuple(self.attributes))
        # Open interval: a threshold of 0 would list every attribute, 1 none.
        normalise("thresholds", _numbers(self.thresholds, lambda v: 0 < v < 1, "in (0, 1)", where, "thresholds"))
        if not isinstance(self.policy_thresholds, Mapping) or not set(self.policy_thresholds) <= set(STORED_POLICIES):
            raise fail("policy_thresholds", f"a dict with keys among {', '.join(STORED_POLICIES)}, "
                                            f"got {self.policy_thresholds!r}")
        normalise("policy_thresholds", {
            name: _numbers(values, lambda v: 0 < v < 1, "in (0, 1)", where, f"policy_thresholds.{name}")
            for name, values in sorted(self.policy_thresholds.items())})
        offered = ("balanced", "probability", *self.policy_thresholds)
        if self.default_decision not in offered:
            raise fail("default_decision", f"one of the policies the model offers ({', '.join(offered)}), "
                                           f"got {self.default_decision!r}")
        normalise("temperatures", _numbers(self.temperatures, lambda v: v > 0, "> 0", where, "temperatures"))
        normalise("offsets", _numbers(self.offsets, lambda v: abs(v) <= MAX_ABS_OFFSET,
                                      f"within +-{MAX_ABS_OFFSET:g}", where, "offsets"))
        low, high = IMAGE_SIZE_RANGE
        if isinstance(self.image_size, bool) or not isinstance(self.image_size, numbers.Integral) or not (
                low <= self.image_size <= high):
            raise fail("image_size", f"an integer from {low} to {high}, got {self.image_size!r}")
        normalise("image_size", int(self.image_size))
        crop = self.crop
        if not (isinstance(crop, Sequence) and len(crop) == 4 and all(_is_number(v) for v in crop)
                and 0 <= crop[0] < crop[2] <= 1 and 0 <= crop[1] < crop[3] <= 1):
            raise fail("crop", f"fractions (left, top, right, bottom) with 0 <= left < right <= 1 and "
                               f"0 <= top < bottom <= 1, got {crop!r}")
        normalise("crop", tuple(float(v) for v in crop))

    @property
    def where(self) -> str:
        """The file the fields come from (an export's JSON description), for messages."""
        if self.source is None:
            return "deployed model"
        return str(description_path(self.source) if self.source.suffix == ".safetensors" else self.source)

    @staticmethod
    def path_of(model: str | Path | None) -> Path:
        """``model`` as a path; ``None`` is the installed default model, which must exist.

        Raises:
            CheckpointError: ``model`` is ``None`` and no default model is installed; the
                message says how to name one.

        >>> DeployedModel.path_of("runs/r18/best.pt")
        PosixPath('runs/r18/best.pt')
        """
        if model is not None:
            return Path(model)
        if not DEFAULT_MODEL.is_file():
            raise CheckpointError(
                f"no default model is installed with faceattr ({DEFAULT_MODEL} is missing): name a model, "
                "model=PATH in Python or --model PATH on the command line (a best.pt written by tools/train.py, "
                "or a .safetensors written by tools/export_model.py)")
        return DEFAULT_MODEL

    @classmethod
    def load(cls, model: str | Path | None = None) -> DeployedModel:
        """Reads a model file: a ``best.pt``/``last.pt``, an exported ``.safetensors`` or ``.onnx``, or the default.

        Args:
            model: A training checkpoint, an exported weights file (its ``.json`` beside it,
                checksums verified), an ONNX export (its description inside it, checksums
                verified; needs ``pip install "faceattr[onnx]"``), or ``None`` for the installed
                default model.

        Raises:
            CheckpointError: A file is missing, unreadable or fails its checksum, a key is
                missing, or a field is invalid (the message names the file and the key).
            ConfigError: An ``.onnx`` file without the ``onnx`` package installed.

        >>> DeployedModel.load("no/such/best.pt")
        Traceback (most recent call last):
        ...
        faceattr.errors.CheckpointError: no/such/best.pt: checkpoint file not found
        """
        path = cls.path_of(model)
        if path.suffix == ".safetensors":
            return _read_export(path)
        if path.suffix == ".onnx":
            return _read_onnx_export(path)
        return cls.from_checkpoint(load_checkpoint(path), path)

    @classmethod
    def from_checkpoint(cls, state: Mapping[str, Any], source: Path | None = None) -> DeployedModel:
        """The model a checkpoint dict holds (as :meth:`to_checkpoint` writes it).

        Checkpoints written before calibration or crops were recorded get temperatures 1,
        offsets 0 and :data:`~faceattr.geometry.CELEBA_CROP`.

        Raises:
            CheckpointError: A key is missing or a field is invalid.

        >>> DeployedModel.from_checkpoint({"model": {}}, Path("old.pt"))
        Traceback (most recent call last):
        ...
        faceattr.errors.CheckpointError: old.pt: lacks 'model_args', 'thresholds', 'config'; expected a best.pt written by tools/train.py
        """
        missing = [key for key in _CHECKPOINT_KEYS if key not in state]
        if missing:
            raise CheckpointError(f"{source or 'checkpoint'}: lacks {', '.join(map(repr, missing))}; "
                                  "expected a best.pt written by tools/train.py")
        try:
            image_size = state["config"]["data"]["image_size"]
        except (KeyError, TypeError) as error:
            raise CheckpointError(f"{source or 'checkpoint'}: 'config': no data.image_size ({error!r}); "
                                  "expected a best.pt written by tools/train.py") from error
        return cls(model_args=state["model_args"], state_dict=state["model"], image_size=image_size,
                   crop=state.get("crop", CELEBA_CROP), thresholds=state["thresholds"],
                   policy_thresholds=state.get("policy_thresholds", {}),
                   default_decision=state.get("default_decision", "balanced"),
                   temperatures=state.get("temperatures", (1.0,) * len(ATTRIBUTES)),
                   offsets=state.get("offsets", (0.0,) * len(ATTRIBUTES)),
                   attributes=state.get("attributes", ATTRIBUTES), config=state["config"],
                   metrics=state.get("metrics") or {}, epoch=state.get("epoch"),
                   faceattr_version=state.get("faceattr_version"),
                   trained_with_faceattr=state.get("faceattr_version"), source=source)

    @classmethod
    def from_training(cls, model: nn.Module, thresholds: Sequence[float], config: Config, epoch: int,
                      metrics: dict[str, Any], temperatures: Sequence[float] | None = None,
                      offsets: Sequence[float] | None = None,
                      policy_thresholds: Mapping[str, Sequence[float]] | None = None,
                      default_decision: str = "balanced") -> DeployedModel:
        """The model a training run deploys: the network, its fitted decisions and config.

        Args:
            model: The trained :class:`FaceAttrNet` (or a module with its ``model_args``).
            thresholds: 40 thresholds on calibrated probabilities.
            config: The training config: ``data.image_size`` is the input size and its
                ``celeba`` sources give the crop (:func:`training_crop`).
            epoch: Epochs trained.
            metrics: The validation evaluation.
            temperatures: 40 temperatures; ``None``: 1.0 (no calibration).
            offsets: 40 logit offsets; ``None``: 0.0.
            policy_thresholds: The other fitted policies' thresholds (e.g. ``{"f1": ...}``).
            default_decision: The policy users get by default.

        >>> DeployedModel.from_training(FaceAttrNet("resnet10t"), [0.5] * 40, Config(), 0, {}).crop
        (0.051, 0.1665, 0.942, 0.894)
        """
        # The threshold tuner pads beyond the scores when calling every face positive (or
        # none) scores best, which may give exactly 0 (or above 1); the nearest value inside
        # (0, 1) makes the same decision on every probability but exactly 0 (or 1).
        def inside(values: Sequence[float]) -> list[float]:
            return [min(max(float(t), math.ulp(0.0)), math.nextafter(1.0, 0.0)) for t in values]

        return cls(model_args=model.model_args, state_dict=model.state_dict(), image_size=config.data.image_size,
                   crop=training_crop(config), thresholds=inside(thresholds),
                   policy_thresholds={name: inside(values) for name, values in (policy_thresholds or {}).items()},
                   default_decision=default_decision,
                   temperatures=[1.0] * len(ATTRIBUTES) if temperatures is None else [float(t) for t in temperatures],
                   offsets=[0.0] * len(ATTRIBUTES) if offsets is None else [float(o) for o in offsets],
                   config=config_to_dict(config), metrics=metrics, epoch=epoch,
                   trained_with_faceattr=__version__)

    def to_checkpoint(self) -> dict[str, Any]:
        """The plain dict ``best.pt`` holds (loadable with ``torch.load(weights_only=True)``).

        >>> checkpoint = DeployedModel.from_training(FaceAttrNet("resnet10t"), [0.5] * 40, Config(), 0, {}).to_checkpoint()
        >>> checkpoint["crop"], checkpoint["thresholds"][0], len(checkpoint["model"]) > 0
        ([0.051, 0.1665, 0.942, 0.894], 0.5, True)
        """
        return {"model_args": dict(self.model_args), "model": self.state_dict, "thresholds": list(self.thresholds),
                "temperatures": list(self.temperatures), "offsets": list(self.offsets),
                "attributes": list(self.attributes), "config": self.config, "epoch": self.epoch,
                "metrics": self.metrics, "faceattr_version": self.trained_with_faceattr, "crop": list(self.crop),
                "policy_thresholds": {name: list(values) for name, values in self.policy_thresholds.items()},
                "default_decision": self.default_decision}

    def fitted_thresholds(self) -> dict[str, tuple[float, ...]]:
        """Every fitted policy's thresholds by name: ``balanced`` (:attr:`thresholds`) and the stored ones.

        >>> sorted(DeployedModel.from_training(FaceAttrNet("resnet10t"), [0.5] * 40, Config(), 0, {}).fitted_thresholds())
        ['balanced']
        """
        return {"balanced": self.thresholds, **self.policy_thresholds}

    def decision_fields(self) -> dict[str, Any]:
        """The :data:`DECISION_FIELDS` as JSON values (lists, not tuples).

        >>> DeployedModel.from_training(FaceAttrNet("resnet10t"), [0.5] * 40, Config(), 0, {}).decision_fields()["crop"]
        [0.051, 0.1665, 0.942, 0.894]
        """
        return {"model_args": dict(self.model_args), "image_size": self.image_size, "crop": list(self.crop),
                "attributes": list(self.attributes), "thresholds": list(self.thresholds),
                "temperatures": list(self.temperatures), "offsets": list(self.offsets),
                "policy_thresholds": {name: list(values) for name, values in self.policy_thresholds.items()},
                "default_decision": self.default_decision}

    def build_network(self) -> FaceAttrNet:
        """The network with the stored weights, in eval mode on the CPU.

        Raises:
            CheckpointError: ``model_args`` do not build a network, the weights do not fit it,
                or the model is an ONNX export (it runs with ONNX Runtime only).

        >>> net = DeployedModel.from_training(FaceAttrNet("resnet10t"), [0.5] * 40, Config(), 0, {}).build_network()
        >>> net.training
        False
        """
        if self.onnx is not None:
            raise CheckpointError(f"{self.where}: an ONNX export has no PyTorch weights: run it with backend 'onnx', "
                                  "or load the .safetensors or best.pt it was exported from")
        try:
            network = FaceAttrNet(**self.model_args)
        except (TypeError, ValueError) as error:
            raise CheckpointError(f"{self.where}: 'model_args' {self.model_args} do not build a FaceAttrNet: "
                                  f"{error}") from error
        load_state_dict_checked(network, self.state_dict, source=f"{self.where} 'model'")
        return network.eval()


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _numbers(values: Any, accept: Callable[[float], bool], wanted: str, where: str, key: str) -> tuple[float, ...]:
    """``values`` as 40 floats; CheckpointError naming ``where``, ``key`` and the first bad value otherwise."""
    expected = f"{where}: {key!r}: expected {len(ATTRIBUTES)} finite numbers {wanted}"
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) != len(ATTRIBUTES):
        count = len(values) if isinstance(values, Sequence) else type(values).__name__
        raise CheckpointError(f"{expected}, got {count}")
    for name, value in zip(ATTRIBUTES, values):
        if not (_is_number(value) and accept(float(value))):
            raise CheckpointError(f"{expected}; {name} is {value!r}")
    return tuple(float(value) for value in values)


def _read_export(weights: Path) -> DeployedModel:
    """An exported model, its weights and decision fields verified against the description's digests."""
    described = description_path(weights)
    if not described.is_file():
        raise CheckpointError(f"{described}: model description not found (an exported model is a .safetensors "
                              "file with its .json beside it, as tools/export_model.py writes them)")
    if not weights.is_file():
        raise CheckpointError(f"{weights}: weights file not found (described by {described})")
    try:
        description = json.loads(described.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{described}: not a readable model description ({error})") from error
    digested = _check_description(description, described)
    actual = sha256_of(weights)
    if actual != description["sha256"]:
        raise CheckpointError(f"{weights}: checksum mismatch: {described} gives sha256 {description['sha256']}, "
                              f"the file has {actual}; the weights are corrupt or were replaced (or an export "
                              "was interrupted: export again)")
    tensors, _ = load_weights(weights)
    # A float16 export is computed in float32, as it was trained: only the stored precision changes.
    tensors = {key: value.float() if value.is_floating_point() else value for key, value in tensors.items()}
    return _described_model(description, digested, described, weights, tensors)


def _read_onnx_export(path: Path) -> DeployedModel:
    """An ONNX export, its graph and decision fields verified against its description's digests."""
    from faceattr.models.onnx import DESCRIPTION_KEY, read_onnx

    if not path.is_file():
        raise CheckpointError(f"{path}: ONNX model file not found")
    data, description, actual = read_onnx(path)
    where = f"{path} (metadata {DESCRIPTION_KEY!r})"
    digested = _check_description(description, where)
    if actual != description["sha256"]:
        raise CheckpointError(f"{path}: checksum mismatch: its description gives sha256 {description['sha256']}, "
                              f"the graph has {actual}; the graph was changed after export: export again")
    return _described_model(description, digested, where, path, {}, onnx=data)


def _check_description(description: Any, described: str | Path) -> Sequence[str] | None:
    """The decision fields ``description`` digests (``None`` for format 1), once its format and keys are checked."""
    if not isinstance(description, dict):
        raise CheckpointError(f"{described}: expected a JSON object written by tools/export_model.py")
    digested = {FORMAT: DECISION_FIELDS, FORMAT_2: DECISION_FIELDS_2}.get(description.get("format"))
    if description.get("format") != FORMAT_1 and digested is None:
        raise CheckpointError(f"{described}: 'format' {description.get('format')!r} is not {FORMAT!r} "
                              f"(nor the older {FORMAT_2!r} or {FORMAT_1!r})")
    required = _DESCRIPTION_KEYS + (() if digested is None else ("crop", "decision_sha256", *digested))
    missing = [key for key in required if key not in description]
    if missing:
        raise CheckpointError(f"{described}: lacks {', '.join(map(repr, missing))}; expected a file written by "
                              "tools/export_model.py")
    return digested


def _described_model(description: dict[str, Any], digested: Sequence[str] | None, described: str | Path,
                     source: Path, tensors: dict[str, Tensor], onnx: bytes | None = None) -> DeployedModel:
    """The model a checked description gives, its decision fields verified against their digest."""
    model = DeployedModel(
        model_args=description["model_args"], state_dict=tensors, image_size=description["image_size"],
        crop=description.get("crop", CELEBA_CROP), thresholds=description["thresholds"],
        policy_thresholds=description.get("policy_thresholds", {}),
        default_decision=description.get("default_decision", "balanced"), temperatures=description["temperatures"],
        offsets=description["offsets"], attributes=description["attributes"], config=description["config"],
        metrics=description.get("metrics") or {}, epoch=description.get("epoch"),
        faceattr_version=description.get("faceattr_version"),
        trained_with_faceattr=description.get("trained_with_faceattr"), source=source, description=description,
        onnx=onnx)
    # Validated first, so that a non-finite or impossible value is named rather than reported as a mismatch.
    if digested is not None and decision_digest(description, digested) != description["decision_sha256"]:
        raise CheckpointError(f"{described}: 'decision_sha256' does not match the decision fields "
                              f"({', '.join(digested)}): they were edited after export; export again")
    return model
