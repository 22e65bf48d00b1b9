"""Exported models: a safetensors weights file with a checksummed JSON description beside it.

``tools/export_model.py`` turns a ``best.pt`` into ``NAME.safetensors`` (the network's tensors,
float16 or float32) and ``NAME.json`` (constructor arguments, input size, thresholds,
temperatures and offsets, attribute names, the training config, the validation metrics, versions, the
source checkpoint and the sha256 of the weights file); the calibration is per-attribute
temperatures and logit offsets. The package's default model is such a
pair installed under ``faceattr/weights/``; a team can ship its own the same way.
:func:`load_deploy_state` reads either kind of model file into the dict that ``best.pt`` holds,
verifying the checksum of an exported one.

>>> state = load_deploy_state("my_model.safetensors")  # doctest: +SKIP
>>> state["model_args"]["backbone"]  # doctest: +SKIP
'resnet18'
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from faceattr.attributes import ATTRIBUTES
from faceattr.models.checkpoint import (atomic_write, load_checkpoint, load_weights, model_from_checkpoint, save_weights,
                                 stored_calibration)
from faceattr.errors import CheckpointError
from faceattr.evaluation.summary import compact_evaluation
from faceattr.version import __version__

logger = logging.getLogger(__name__)

#: The model that ``faceattr.predict(img)``, ``Predictor()`` and ``faceattr predict`` use when no
#: model is named. Read at each call, so a test can point it elsewhere.
DEFAULT_MODEL: Path = Path(__file__).resolve().parents[1] / "weights" / "default.safetensors"

#: The ``format`` of the JSON description; a reader refuses any other.
FORMAT = "faceattr-exported-model/1"

#: The largest weights file an export may write (the package ships the default one).
MAX_WEIGHTS_BYTES = 30_000_000

DTYPES: dict[str, torch.dtype] = {"float16": torch.float16, "float32": torch.float32}

#: Keys of the description that loading needs.
_REQUIRED = ("format", "sha256", "model_args", "image_size", "attributes", "thresholds", "temperatures", "offsets",
             "config")


def description_path(weights: str | Path) -> Path:
    """The JSON description that goes with an exported weights file.

    >>> description_path("faceattr/weights/default.safetensors").name
    'default.json'
    """
    return Path(weights).with_suffix(".json")


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


def export_model(checkpoint: str | Path, weights: str | Path, dtype: str = "float16") -> dict[str, Any]:
    """Writes a ``best.pt`` as an exported model: ``weights`` and its JSON description beside it.

    Args:
        checkpoint: A deploy checkpoint written by the trainer (``best.pt``).
        weights: The ``.safetensors`` file to write; its folder is created if needed.
        dtype: ``float16`` (half the size) or ``float32``; integer buffers keep their type.

    Returns:
        The description written to :func:`description_path` ``(weights)``.

    Raises:
        CheckpointError: The checkpoint is unusable, ``weights`` does not end in
            ``.safetensors``, ``dtype`` is unknown, or the file would exceed
            :data:`MAX_WEIGHTS_BYTES` (nothing is left behind then).

    >>> export_model("runs/r18/best.pt", "faceattr/weights/default.safetensors")["dtype"]  # doctest: +SKIP
    'float16'
    """
    weights, checkpoint = Path(weights), Path(checkpoint)
    if weights.suffix != ".safetensors":
        raise CheckpointError(f"{weights}: an exported model's weights file must end in .safetensors")
    if dtype not in DTYPES:
        raise CheckpointError(f"dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    from faceattr.evaluation.report.markdown import jsonable

    state = load_checkpoint(checkpoint)
    try:
        image_size = int(state["config"]["data"]["image_size"])
        thresholds = [float(t) for t in state["thresholds"]]
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{checkpoint}: lacks thresholds or config.data.image_size ({error!r}); "
                              "expected a best.pt written by tools/train.py") from error
    temperatures, offsets = stored_calibration(state, checkpoint)
    model = model_from_checkpoint(state).to(DTYPES[dtype])
    save_weights(model, weights, {"format": FORMAT, "dtype": dtype})
    size = weights.stat().st_size
    if size > MAX_WEIGHTS_BYTES:
        weights.unlink()
        raise CheckpointError(f"{weights}: {size / 1e6:.1f} MB of {dtype} weights exceeds the "
                              f"{MAX_WEIGHTS_BYTES / 1e6:.0f} MB limit; export float16 or train a smaller backbone")
    description = {
        "format": FORMAT, "weights": weights.name, "sha256": sha256_of(weights), "bytes": size, "dtype": dtype,
        "model_args": dict(model.model_args), "image_size": image_size, "attributes": list(ATTRIBUTES),
        "thresholds": thresholds, "temperatures": temperatures, "offsets": offsets,
        "config": state["config"], "metrics": compact_evaluation(state.get("metrics") or {}),
        "epoch": state.get("epoch"), "faceattr_version": __version__,
        "trained_with_faceattr": state.get("faceattr_version"), "source_checkpoint": checkpoint.name}
    text = json.dumps(jsonable(description), indent=1, allow_nan=False) + "\n"
    atomic_write(description_path(weights), lambda file: file.write(text.encode("utf-8")))
    logger.info("exported %s to %s (%s, %.1f MB)", checkpoint, weights, dtype, size / 1e6)
    return description


def read_exported(weights: str | Path) -> dict[str, Any]:
    """Reads an exported model, verifying its weights against the description's sha256.

    Args:
        weights: The ``.safetensors`` file; its description is :func:`description_path` ``(weights)``.

    Returns:
        A dict shaped like a ``best.pt`` (``model_args``, ``model`` in float32, ``thresholds``,
        ``temperatures``, ``offsets``, ``attributes``, ``config``, ``metrics``, ``epoch``), plus
        ``description``.

    Raises:
        CheckpointError: Either file is missing (named), the description is not valid or lacks a
            key, or the weights' sha256 differs from the description's (both hashes named).

    >>> read_exported("missing.safetensors")
    Traceback (most recent call last):
    ...
    faceattr.errors.CheckpointError: missing.json: model description not found (an exported model is a .safetensors file with its .json beside it, as tools/export_model.py writes them)
    """
    weights = Path(weights)
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
    missing = [key for key in _REQUIRED if key not in description] if isinstance(description, dict) else _REQUIRED
    if missing:
        raise CheckpointError(f"{described}: lacks {', '.join(missing)}; expected a file written by "
                              "tools/export_model.py")
    if description["format"] != FORMAT:
        raise CheckpointError(f"{described}: format {description['format']!r} is not {FORMAT!r}")
    actual = sha256_of(weights)
    if actual != description["sha256"]:
        raise CheckpointError(f"{weights}: checksum mismatch: {described} gives sha256 {description['sha256']}, "
                              f"the file has {actual}; the weights are corrupt or were replaced")
    tensors, _ = load_weights(weights)
    # A float16 export is computed in float32, as it was trained: only the stored precision changes.
    tensors = {key: value.float() if value.is_floating_point() else value for key, value in tensors.items()}
    return {"model_args": description["model_args"], "model": tensors, "thresholds": description["thresholds"],
            "temperatures": description["temperatures"], "offsets": description["offsets"],
            "attributes": description["attributes"],
            "config": description["config"], "metrics": description.get("metrics", {}),
            "epoch": description.get("epoch"), "description": description}


def half_precision_error(state: Mapping[str, Any], images: Sequence[Image.Image]) -> dict[str, float]:
    """How far float16-stored weights move a model's outputs on aligned face images.

    Both networks compute in float32 (as a float16 export is loaded); only the weights are
    rounded to float16. The images are framed as CelebA's aligned crops and prepared by the
    evaluation transform.

    Args:
        state: A deploy state (``best.pt``'s dict).
        images: RGB face images in CelebA's aligned geometry.

    Returns:
        ``{"images", "max_probability_difference"`` (calibrated probabilities),
        ``"max_beauty_difference", "decisions_changed"`` (attribute decisions at the model's
        thresholds that differ, out of ``images`` x 40)``}``.

    >>> half_precision_error(load_checkpoint("runs/r18/best.pt"), faces)["max_probability_difference"]  # doctest: +SKIP
    0.0007
    """
    from faceattr.inference.align import CELEBA_CROP
    from faceattr.data.transforms import eval_transform

    transform = eval_transform(int(state["config"]["data"]["image_size"]), CELEBA_CROP)
    batch = torch.stack([transform(image) for image in images])
    temperatures, offsets = (torch.tensor(values) for values in stored_calibration(state, "checkpoint"))
    thresholds = torch.tensor([float(t) for t in state["thresholds"]])
    outputs = []
    for dtype in (torch.float32, torch.float16):
        model = model_from_checkpoint(state).to(dtype).float().eval()
        with torch.inference_mode():
            output = model(batch)
        outputs.append((torch.sigmoid(output["attributes"] / temperatures + offsets), output["beauty"]))
    (p32, b32), (p16, b16) = outputs
    return {"images": len(images), "max_probability_difference": float((p32 - p16).abs().max()),
            "max_beauty_difference": float((b32 - b16).abs().max()),
            "decisions_changed": int(((p32 >= thresholds) != (p16 >= thresholds)).sum())}


def default_model() -> Path:
    """The installed default model's weights file.

    Raises:
        CheckpointError: No default model is installed; the message says how to name one.
    """
    if not DEFAULT_MODEL.is_file():
        raise CheckpointError(
            f"no default model is installed with faceattr ({DEFAULT_MODEL} is missing): name a model, "
            "model=PATH in Python or --model PATH on the command line (a best.pt written by tools/train.py, "
            "or a .safetensors written by tools/export_model.py)")
    return DEFAULT_MODEL


def load_deploy_state(model: str | Path | None = None) -> tuple[dict[str, Any], Path]:
    """Reads a model file for inference: a ``best.pt``, an exported ``.safetensors``, or the default.

    Args:
        model: A checkpoint, an exported weights file (its ``.json`` beside it), or ``None``
            for the installed default model.

    Returns:
        The deploy state (as ``best.pt`` holds it) and the file it came from.

    Raises:
        CheckpointError: As :func:`load_checkpoint`, :func:`read_exported` and :func:`default_model`.

    >>> load_deploy_state("no/such/best.pt")
    Traceback (most recent call last):
    ...
    faceattr.errors.CheckpointError: no/such/best.pt: checkpoint file not found
    """
    path = default_model() if model is None else Path(model)
    if path.suffix == ".safetensors":
        return read_exported(path), path
    return load_checkpoint(path), path
