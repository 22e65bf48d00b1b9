"""Checkpoints: plain-dict training state and safetensors deploy files, written atomically.

A training checkpoint is a plain dict (tensors, numbers, strings, lists, dicts) that loads with
``torch.load(weights_only=True)``; it holds the network as ``"model"`` (a state dict) and its
constructor arguments as ``"model_args"``, so :func:`model_from_checkpoint` needs nothing else.
A deploy file is a safetensors file of the network's tensors plus string metadata.

Every write goes to a temporary file in the destination folder which replaces the destination
only once complete, so an interrupted save leaves the previous file intact.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import torch
from torch import Tensor, nn

from faceattr.attributes import ATTRIBUTES
from faceattr.config import Config, config_to_dict
from faceattr.errors import CheckpointError
from faceattr.models.net import FaceAttrNet
from faceattr.version import __version__

logger = logging.getLogger(__name__)

#: Key prefixes added by DistributedDataParallel (``module.``) and torch.compile (``_orig_mod.``).
WRAPPER_PREFIXES: tuple[str, ...] = ("module.", "_orig_mod.")

# What torch.load(weights_only=True) accepts among the values a training loop stores. Exact
# types, not isinstance: numpy scalars subclass float but are refused by the weights-only loader.
_PLAIN_TYPES: tuple[type, ...] = (int, float, bool, str, bytes, type(None), torch.Size, torch.dtype, torch.device)
_CONTAINER_TYPES: tuple[type, ...] = (dict, OrderedDict, list, tuple)

_MAX_KEYS_SHOWN = 5


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Calls ``write(file)`` on a temporary file next to ``path``, then moves it onto ``path``.

    An interrupted write leaves any previous ``path`` intact; the folder is created if needed.

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "a.bin")
    >>> atomic_write(path, lambda file: file.write(b"ok"))
    >>> open(path, "rb").read()
    b'ok'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temporary, "xb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _check_plain(value: Any, where: str) -> None:
    """Raises CheckpointError unless ``value`` is made only of weights-only loadable types."""
    if isinstance(value, Tensor) or type(value) in _PLAIN_TYPES:
        return
    if type(value) not in _CONTAINER_TYPES:
        raise CheckpointError(
            f"checkpoint {where}: {type(value).__module__}.{type(value).__qualname__} cannot be "
            "loaded with weights_only=True; store plain dicts, lists, numbers, strings and tensors")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_plain(key, f"{where} key {key!r}")
            _check_plain(item, f"{where}[{key!r}]")
    else:
        for index, item in enumerate(value):
            _check_plain(item, f"{where}[{index}]")


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Writes a training checkpoint atomically.

    Args:
        state: A plain dict; nested values must be tensors, numbers, strings, lists, tuples,
            dicts or None, so that it loads with ``torch.load(weights_only=True)``.
        path: Destination file; its folder is created if needed.

    Raises:
        CheckpointError: ``state`` holds a value the weights-only loader would refuse (the
            message names its key); nothing is written then.

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "last.pt")
    >>> save_checkpoint({"epoch": 3, "model": {"w": torch.ones(2)}}, path)
    >>> load_checkpoint(path)["epoch"]
    3
    """
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: a checkpoint must be a dict, got {type(state).__name__}")
    _check_plain(state, "state")
    atomic_write(path, lambda file: torch.save(state, file))
    logger.debug("saved checkpoint %s", path)


def _describe_load_error(error: Exception) -> str:
    """The informative line of a torch.load error (the weights-only refusal is a long text)."""
    message = str(error)
    marker = "WeightsUnpickler error:"
    if marker in message:
        return message.split(marker, 1)[1].strip().splitlines()[0]
    lines = message.strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def deploy_state(model: nn.Module, thresholds: Sequence[float], config: Config, epoch: int,
                 metrics: dict[str, Any], temperatures: Sequence[float] | None = None,
                 offsets: Sequence[float] | None = None) -> dict[str, Any]:
    """What inference needs, as ``best.pt`` holds it: weights, constructor arguments, thresholds,
    per-attribute calibration, config (``config.data.image_size`` is the input size) and
    validation metrics. The thresholds apply to the calibrated probabilities
    ``sigmoid(logit / temperature + offset)``; ``None`` stores temperatures 1.0 and offsets 0.0
    (no calibration).

    >>> from faceattr.models.net import FaceAttrNet
    >>> state = deploy_state(FaceAttrNet("resnet10t"), [0.5] * 40, Config(), epoch=0, metrics={})
    >>> sorted(state)[:3], state["config"]["data"]["image_size"], state["temperatures"][0]
    (['attributes', 'config', 'epoch'], 128, 1.0)
    """
    temperatures = [1.0] * len(ATTRIBUTES) if temperatures is None else temperatures
    offsets = [0.0] * len(ATTRIBUTES) if offsets is None else offsets
    return {"model_args": dict(model.model_args), "model": model.state_dict(),
            "thresholds": [float(t) for t in thresholds], "temperatures": [float(t) for t in temperatures],
            "offsets": [float(o) for o in offsets],
            "attributes": list(ATTRIBUTES), "config": config_to_dict(config), "epoch": epoch, "metrics": metrics,
            "faceattr_version": __version__}


def stored_calibration(state: Mapping[str, Any], source: str | Path) -> tuple[list[float], list[float]]:
    """A deploy state's 40 temperatures and 40 logit offsets; 1.0 and 0.0 each where absent
    (a checkpoint written before calibration).

    Args:
        state: A checkpoint dict (or an exported model's description).
        source: Its file, for the error message.

    Raises:
        CheckpointError: ``temperatures`` is not 40 positive numbers, or ``offsets`` not 40 numbers.

    >>> [values[:2] for values in stored_calibration({}, "old.pt")]
    [[1.0, 1.0], [0.0, 0.0]]
    """
    found = []
    for key, default, positive in (("temperatures", 1.0, True), ("offsets", 0.0, False)):
        values = state.get(key, [default] * len(ATTRIBUTES))
        if (not isinstance(values, (list, tuple)) or len(values) != len(ATTRIBUTES)
                or not all(isinstance(v, (int, float)) and (v > 0 or not positive) for v in values)):
            raise CheckpointError(f"{source}: {key!r}: expected {len(ATTRIBUTES)} {'positive ' * positive}numbers")
        found.append([float(v) for v in values])
    return found[0], found[1]


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Reads a training checkpoint with ``torch.load(weights_only=True)``.

    Args:
        path: The checkpoint file.
        map_location: Where tensors are placed.

    Returns:
        The checkpoint dict.

    Raises:
        CheckpointError: The file is missing, corrupt, holds objects the weights-only loader
            refuses, or is not a dict; the message names the file.

    >>> load_checkpoint("no/such/file.pt")
    Traceback (most recent call last):
    ...
    faceattr.errors.CheckpointError: no/such/file.pt: checkpoint file not found
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    # torch.load fails with many exception types (RuntimeError, UnpicklingError, EOFError,
    # SafetensorError, ...) on truncated, foreign or unsafe files; all mean "unreadable".
    except Exception as error:
        raise CheckpointError(f"{path}: not a readable checkpoint ({_describe_load_error(error)})") from error
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path}: expected a dict checkpoint, got {type(checkpoint).__name__}")
    return checkpoint


def strip_wrapper_prefixes(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Removes the ``module.`` (DDP) and ``_orig_mod.`` (torch.compile) key prefixes.

    Args:
        state_dict: A state dict, possibly saved from a wrapped model.

    Returns:
        The same tensors under the unwrapped model's keys.

    >>> list(strip_wrapper_prefixes({"module._orig_mod.fc.weight": torch.ones(1)}))
    ['fc.weight']
    """
    stripped = {}
    for key, value in state_dict.items():
        while key.startswith(WRAPPER_PREFIXES):
            key = key.split(".", 1)[1]
        stripped[key] = value
    return stripped


def _listed(keys: list[str]) -> str:
    shown = ", ".join(keys[:_MAX_KEYS_SHOWN])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > _MAX_KEYS_SHOWN else "")


def load_state_dict_checked(module: nn.Module, state_dict: Mapping[str, Tensor], source: str,
                            ignored_prefixes: tuple[str, ...] = ()) -> None:
    """Loads ``state_dict`` into ``module``, or raises listing the keys that do not fit.

    Args:
        module: The module to fill.
        state_dict: Tensors by key (already unwrapped, see :func:`strip_wrapper_prefixes`).
        source: Where the state dict came from, for the error message (e.g. a file name).
        ignored_prefixes: Keys with these prefixes that ``module`` lacks are skipped (e.g. the
            classifier of a pretrained checkpoint).

    Raises:
        CheckpointError: Keys are missing or unexpected, or shapes differ; nothing is loaded.

    >>> load_state_dict_checked(nn.Linear(2, 1), {"weight": torch.ones(1, 2)}, "example")
    Traceback (most recent call last):
    ...
    faceattr.errors.CheckpointError: example: does not fit the model: missing keys: bias
    """
    expected = module.state_dict()
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected and not key.startswith(ignored_prefixes)]
    mismatched = [f"{key} {tuple(state_dict[key].shape)} vs {tuple(value.shape)}"
                  for key, value in expected.items() if key in state_dict and state_dict[key].shape != value.shape]
    problems = [f"{label}: {_listed(keys)}" for label, keys in (
        ("missing keys", missing), ("unexpected keys", unexpected),
        ("shapes differ (file vs model)", mismatched)) if keys]
    if problems:
        raise CheckpointError(f"{source}: does not fit the model: {'; '.join(problems)}")
    module.load_state_dict({key: state_dict[key] for key in expected})


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Reads a state dict from a ``.safetensors`` file or a torch file.

    Args:
        path: A safetensors file, or a torch file holding a state dict, possibly under a
            ``"model"`` or ``"state_dict"`` key (faceattr and timm training checkpoints).

    Returns:
        The tensors by key, with DDP/torch.compile prefixes removed.

    Raises:
        CheckpointError: The file is missing or unreadable, or holds no state dict.

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "w.pt")
    >>> save_checkpoint({"state_dict": {"module.w": torch.ones(2)}}, path)
    >>> list(read_state_dict(path))
    ['w']
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        state_dict, _ = load_weights(path)
    else:
        state_dict = load_checkpoint(path)
        for key in ("model", "state_dict"):
            if isinstance(state_dict.get(key), dict):
                state_dict = state_dict[key]
                break
    not_tensors = [str(key) for key, value in state_dict.items() if not isinstance(value, Tensor)]
    if not_tensors:
        raise CheckpointError(f"{path}: not a state dict; these entries are not tensors: "
                              f"{_listed(not_tensors)}")
    return strip_wrapper_prefixes(state_dict)


def model_from_checkpoint(checkpoint: Mapping[str, Any]) -> FaceAttrNet:
    """Rebuilds the network stored in a training checkpoint.

    The network is returned in training mode on the CPU; call ``.eval()`` for inference.

    Args:
        checkpoint: A dict with ``"model_args"`` (the :attr:`FaceAttrNet.model_args`) and
            ``"model"`` (its state dict, possibly from a DDP or torch.compile wrapper).

    Returns:
        The network with the stored weights.

    Raises:
        CheckpointError: A key is missing, ``model_args`` do not build a network, or the
            state dict does not fit it.

    >>> net = FaceAttrNet("resnet10t")
    >>> copy = model_from_checkpoint({"model_args": net.model_args, "model": net.state_dict()})
    >>> torch.equal(copy.attribute_head.fc.weight, net.attribute_head.fc.weight)
    True
    """
    for key in ("model_args", "model"):
        if key not in checkpoint:
            raise CheckpointError(
                f"checkpoint has no {key!r} key (it has: {', '.join(map(str, checkpoint)) or 'none'}); "
                "a faceattr checkpoint stores the network's constructor arguments as 'model_args' "
                "and its state dict as 'model'")
    model_args = checkpoint["model_args"]
    if not isinstance(model_args, dict):
        raise CheckpointError(f"checkpoint 'model_args': expected a dict, got {type(model_args).__name__}")
    try:
        model = FaceAttrNet(**model_args)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"checkpoint 'model_args' {model_args} do not build a FaceAttrNet: {error}") from error
    load_state_dict_checked(model, strip_wrapper_prefixes(checkpoint["model"]), source="checkpoint 'model'")
    return model


def save_weights(model: nn.Module, path: str | Path, metadata: dict[str, str]) -> None:
    """Writes a model's tensors and string metadata as a safetensors deploy file, atomically.

    Args:
        model: The network (DDP/torch.compile wrappers are unwrapped by key).
        path: Destination ``.safetensors`` file; its folder is created if needed.
        metadata: String key/value pairs stored in the file header (e.g. model arguments and
            thresholds as JSON).

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "model.safetensors")
    >>> save_weights(nn.Linear(2, 1), path, {"format": "example"})
    >>> load_weights(path)[1]
    {'format': 'example'}
    """
    from safetensors.torch import save

    tensors = {key: value.detach().cpu().contiguous()
               for key, value in strip_wrapper_prefixes(model.state_dict()).items()}
    atomic_write(path, lambda file: file.write(save(tensors, metadata)))
    logger.debug("saved weights %s", path)


def load_weights(path: str | Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Reads a safetensors file written by :func:`save_weights`.

    Args:
        path: The ``.safetensors`` file.

    Returns:
        The tensors by key (on the CPU) and the metadata.

    Raises:
        CheckpointError: The file is missing or not a valid safetensors file.

    >>> load_weights("missing.safetensors")
    Traceback (most recent call last):
    ...
    faceattr.errors.CheckpointError: missing.safetensors: weights file not found
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file not found")
    try:
        with safe_open(path, framework="pt", device="cpu") as file:
            metadata = file.metadata() or {}
            tensors = {key: file.get_tensor(key) for key in file.keys()}
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"{path}: not a readable safetensors file ({error})") from error
    return tensors, metadata
