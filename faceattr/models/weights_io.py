"""Weights files on disk: plain-dict checkpoints, safetensors files and state dicts, written atomically.

Knows nothing of FaceAttrNet (what a checkpoint means is :mod:`faceattr.models.deployed`'s job), so
backbones load pretrained weights through it without an import circle.
A training checkpoint is a plain dict (tensors, numbers, strings, lists, dicts) that loads with
``torch.load(weights_only=True)``; a weights file is a safetensors file of tensors plus string
metadata.

Every write goes through :mod:`faceattr.files`: an exclusive temporary file in the destination
folder which replaces the destination only once complete, so an interrupted save leaves the
previous file intact.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import torch
from torch import Tensor, nn

from faceattr import files
from faceattr.errors import CheckpointError

logger = logging.getLogger(__name__)

#: Key prefixes added by DistributedDataParallel (``module.``) and torch.compile (``_orig_mod.``).
WRAPPER_PREFIXES: tuple[str, ...] = ("module.", "_orig_mod.")

# What torch.load(weights_only=True) accepts among the values a training loop stores. Exact
# types, not isinstance: numpy scalars subclass float but are refused by the weights-only loader.
_PLAIN_TYPES: tuple[type, ...] = (int, float, bool, str, bytes, type(None), torch.Size, torch.dtype, torch.device)
_CONTAINER_TYPES: tuple[type, ...] = (dict, OrderedDict, list, tuple)

_MAX_KEYS_SHOWN = 5


def write_temporary(path: str | Path, write: Callable[[IO[bytes]], Any]) -> Path:
    """:func:`faceattr.files.write_temporary` (exclusive, never through a symlink), creating the folder first.

    >>> import os, tempfile
    >>> temporary = write_temporary(os.path.join(tempfile.mkdtemp(), "new", "a.bin"), lambda file: file.write(b"ok"))
    >>> temporary.name.startswith(".a.bin."), temporary.read_bytes()
    (True, b'ok')
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return files.write_temporary(path, write)


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any]) -> None:
    """:func:`faceattr.files.write_exclusive`, creating the folder first.

    An interrupted write leaves any previous ``path`` intact, and its temporary file (which
    :func:`faceattr.files.remove_stale_temporaries` removes); a symlink at ``path`` is replaced,
    never followed.

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "new", "a.bin")
    >>> atomic_write(path, lambda file: file.write(b"ok"))
    >>> open(path, "rb").read()
    b'ok'
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    files.write_exclusive(path, write)


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
    """Why torch.load failed, in one line.

    A weights-only refusal names the blocked global (e.g. ``posix.system``, which is
    ``os.system``); torch's advice to load with weights_only disabled is left out, since that
    would run whatever code the file carries.
    """
    message = str(error)
    blocked = re.search(r"GLOBAL (\S+)", message)
    if blocked:
        return (f"it pickles the global {blocked.group(1)}, which safe loading refuses "
                "(unpickling it could run arbitrary code)")
    lines = [line.strip() for line in message.splitlines() if line.strip()
             and "weights_only" not in line and "Weights only load failed" not in line]
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


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


def weights_bytes(model: nn.Module, metadata: dict[str, str]) -> bytes:
    """A model's tensors and string metadata as the bytes of a safetensors file.

    Args:
        model: The network (DDP/torch.compile wrappers are unwrapped by key).
        metadata: String key/value pairs stored in the file header.

    >>> weights_bytes(nn.Linear(2, 1), {"format": "example"})[8:9]
    b'{'
    """
    from safetensors.torch import save

    tensors = {key: value.detach().cpu().contiguous()
               for key, value in strip_wrapper_prefixes(model.state_dict()).items()}
    return save(tensors, metadata)


def save_weights(model: nn.Module, path: str | Path, metadata: dict[str, str]) -> None:
    """Writes a model's tensors and string metadata as a safetensors file, atomically.

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
    atomic_write(path, lambda file: file.write(weights_bytes(model, metadata)))
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


def sha256_of(path: str | Path) -> str:
    """The hex sha256 of a file, read in 1 MiB blocks.

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "empty")
    >>> open(path, "wb").close()
    >>> sha256_of(path)[:16]
    'e3b0c44298fc1c14'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
