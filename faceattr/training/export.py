"""Exported models: a safetensors weights file with a checksummed JSON description beside it, or one ONNX file.

``tools/export_model.py`` turns a ``best.pt`` into ``NAME.safetensors`` (the network's tensors,
float16 or float32) and ``NAME.json`` (constructor arguments, input size, crop, thresholds,
temperatures and offsets, attribute names, the training config, the validation metrics, versions, the
source checkpoint, the sha256 of the weights file and a digest of the decision fields). The
package's default model is such a pair installed under ``faceattr/weights/``; a team can ship its
own the same way. ``NAME.onnx`` (``tools/export_model.py --format onnx``) holds the network as an
ONNX graph and the same description in its metadata (:mod:`faceattr.models.onnx`), for ONNX
Runtime. :meth:`faceattr.models.deployed.DeployedModel.load` reads them back.

>>> export_model("runs/r18/best.pt", "dist/team.safetensors")["format"]  # doctest: +SKIP
'faceattr-exported-model/2'
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from faceattr.errors import CheckpointError
from faceattr.evaluation.summary import compact_evaluation
from faceattr.models.deployed import (
    FORMAT,
    DeployedModel,
    decision_digest,
    description_path,
)
from faceattr.models.weights_io import sha256_of, weights_bytes, write_temporary
from faceattr.version import __version__

logger = logging.getLogger(__name__)

#: The largest weights file an export may write (the package ships the default one).
MAX_WEIGHTS_BYTES = 30_000_000

DTYPES: dict[str, torch.dtype] = {"float16": torch.float16, "float32": torch.float32}


def export_model(checkpoint: str | Path, weights: str | Path, dtype: str = "float16") -> dict[str, Any]:
    """Writes a ``best.pt`` as an exported model: ``weights`` and its JSON description beside it, or an ``.onnx``.

    Both files are written under temporary names in the destination folder and moved into
    place only once the size is known to be within :data:`MAX_WEIGHTS_BYTES`, so a refused or
    interrupted export leaves an existing pair untouched. The weights are moved first, then
    the description: a crash between the two moves leaves new weights beside the old
    description, which loading refuses with a checksum mismatch (export again), never a model
    that silently answers with the wrong thresholds.

    Args:
        checkpoint: A deploy checkpoint written by the trainer (``best.pt``).
        weights: The ``.safetensors`` file to write (its folder is created if needed), or an
            ``.onnx`` file: the network and its description in one file (:mod:`faceattr.models.onnx`).
        dtype: ``float16`` (half the size) or ``float32``; integer buffers keep their type.

    Returns:
        The description written to :func:`~faceattr.models.deployed.description_path` ``(weights)``
        (into the ``.onnx`` file's metadata for ONNX).

    Raises:
        CheckpointError: The checkpoint is unusable, ``weights`` does not end in
            ``.safetensors`` or ``.onnx``, ``dtype`` is unknown, or the file would exceed
            :data:`MAX_WEIGHTS_BYTES` (nothing is left behind then).
        ConfigError: ONNX without ``pip install "faceattr[onnx]"``.

    >>> export_model("runs/r18/best.pt", "dist/team.safetensors")["dtype"]  # doctest: +SKIP
    'float16'
    """
    checkpoint = Path(checkpoint)
    return export_deployed(DeployedModel.load(checkpoint), weights, dtype, checkpoint.name)


def export_deployed(model: DeployedModel, weights: str | Path, dtype: str = "float16",
                    source_checkpoint: str | None = None) -> dict[str, Any]:
    """Writes a loaded :class:`DeployedModel` as an exported model, as :func:`export_model` does.

    For a model changed in memory, e.g. an export given new decision policies
    (``tools/measure_decisions.py --update``) without touching its weights.

    Args:
        model: The model.
        weights: The ``.safetensors`` or ``.onnx`` file to write.
        dtype: ``float16`` or ``float32``.
        source_checkpoint: The name of the ``best.pt`` it came from (``None``: the model's own record of it).

    Raises:
        CheckpointError: As :func:`export_model`.

    >>> export_deployed(DeployedModel.load(), "dist/copy.safetensors")["format"]  # doctest: +SKIP
    'faceattr-exported-model/3'
    """
    weights = Path(weights)
    if source_checkpoint is None:
        source_checkpoint = (model.description or {}).get("source_checkpoint") or (
            model.source.name if model.source else None)
    if weights.suffix not in (".safetensors", ".onnx"):
        raise CheckpointError(f"{weights}: an exported model's weights file must end in .safetensors or .onnx")
    if dtype not in DTYPES:
        raise CheckpointError(f"dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    if weights.suffix == ".onnx":
        description = _write_onnx(model, weights, dtype, source_checkpoint)
    else:
        description = _write_safetensors(model, weights, dtype, source_checkpoint)
    logger.info("exported %s to %s (%s, %.1f MB)", source_checkpoint, weights, dtype, weights.stat().st_size / 1e6)
    return description


def _describe(model: DeployedModel, weights: Path, sha256: str, size: int, dtype: str,
              source_checkpoint: str | None) -> dict[str, Any]:
    """The description of an export (JSON values): what the ``.json`` or the ONNX metadata holds."""
    from faceattr.evaluation.report.markdown import jsonable

    decisions = model.decision_fields()
    return jsonable({
        "format": FORMAT, "weights": weights.name, "sha256": sha256, "bytes": size,
        "dtype": dtype, **decisions, "decision_sha256": decision_digest(decisions),
        "config": model.config, "metrics": compact_evaluation(model.metrics), "epoch": model.epoch,
        "faceattr_version": __version__, "trained_with_faceattr": model.trained_with_faceattr,
        "source_checkpoint": source_checkpoint})


def _refuse_size(weights: Path, size: int, dtype: str) -> None:
    if size > MAX_WEIGHTS_BYTES:
        raise CheckpointError(f"{weights}: {size / 1e6:.1f} MB of {dtype} weights exceeds the "
                              f"{MAX_WEIGHTS_BYTES / 1e6:.0f} MB limit; export float16 or train a smaller "
                              "backbone (nothing was written)")


def _write_safetensors(model: DeployedModel, weights: Path, dtype: str, source_checkpoint: str | None
                       ) -> dict[str, Any]:
    """Writes the weights and the description beside them, as :func:`export_deployed` says."""
    network = model.build_network().to(DTYPES[dtype])
    metadata = {"format": FORMAT, "dtype": dtype}
    temporary_weights = write_temporary(weights, lambda file: file.write(weights_bytes(network, metadata)))
    temporary_description = None
    try:
        size = temporary_weights.stat().st_size
        _refuse_size(weights, size, dtype)
        description = _describe(model, weights, sha256_of(temporary_weights), size, dtype, source_checkpoint)
        text = json.dumps(description, indent=1, allow_nan=False) + "\n"
        temporary_description = write_temporary(description_path(weights),
                                                lambda file: file.write(text.encode("utf-8")))
        os.replace(temporary_weights, weights)
        os.replace(temporary_description, description_path(weights))
    finally:
        for temporary in (temporary_weights, temporary_description):
            if temporary is not None:
                temporary.unlink(missing_ok=True)
    return description


def _write_onnx(model: DeployedModel, weights: Path, dtype: str, source_checkpoint: str | None) -> dict[str, Any]:
    """Writes the network and its description as one ONNX file; ``sha256`` and ``bytes`` are the graph's."""
    from faceattr.models.onnx import graph_sha256, network_to_onnx, with_description

    graph = network_to_onnx(model.build_network(), model.image_size, dtype)
    description = _describe(model, weights, graph_sha256(graph), graph.graph.ByteSize(), dtype, source_checkpoint)
    data = with_description(graph, description)
    _refuse_size(weights, len(data), dtype)
    os.replace(write_temporary(weights, lambda file: file.write(data)), weights)
    return description


def half_precision_error(model: DeployedModel, images: Sequence[Image.Image]) -> dict[str, float]:
    """How far float16-stored weights move a model's outputs on aligned face images.

    Both networks compute in float32 (as a float16 export is loaded); only the weights are
    rounded to float16. The images are framed as CelebA's aligned crops, cut with the model's
    crop and prepared by the evaluation transform.

    Args:
        model: The deployed model (e.g. ``DeployedModel.load("runs/r18/best.pt")``).
        images: RGB face images in CelebA's aligned geometry.

    Returns:
        ``{"images", "max_probability_difference"`` (calibrated probabilities),
        ``"max_beauty_difference", "decisions_changed"`` (attribute decisions at the model's
        thresholds that differ, out of ``images`` x 40)``}``.

    >>> half_precision_error(DeployedModel.load("runs/r18/best.pt"), faces)["max_probability_difference"]  # doctest: +SKIP
    0.0007
    """
    from faceattr.data.transforms import eval_transform

    transform = eval_transform(model.image_size, model.crop)
    batch = torch.stack([transform(image) for image in images])
    temperatures, offsets = torch.tensor(model.temperatures), torch.tensor(model.offsets)
    thresholds = torch.tensor(model.thresholds)
    outputs = []
    for dtype in (torch.float32, torch.float16):
        network = model.build_network().to(dtype).float()
        with torch.inference_mode():
            output = network(batch)
        outputs.append((torch.sigmoid(output["attributes"] / temperatures + offsets), output["beauty"]))
    (p32, b32), (p16, b16) = outputs
    return {"images": len(images), "max_probability_difference": float((p32 - p16).abs().max()),
            "max_beauty_difference": float((b32 - b16).abs().max()),
            "decisions_changed": int(((p32 >= thresholds) != (p16 >= thresholds)).sum())}


def refit_decisions(weights: str | Path, probs: np.ndarray, labels: np.ndarray, mask: np.ndarray,
                    default_decision: str | None = None) -> DeployedModel:
    """Fits an export's decision policies on its validation predictions and rewrites it in place.

    The weights, calibration and balanced ``thresholds`` are kept; only the other policies'
    thresholds (:func:`~faceattr.evaluation.decision.fit_policies`) and, if given, the default
    policy change. The export is rewritten in its own dtype through :func:`export_deployed`.

    Args:
        weights: The export's ``.safetensors``.
        probs: ``(N, 40)`` its calibrated probabilities on validation faces.
        labels: ``(N, 40)`` their labels.
        mask: ``(N, 40)`` True where known.
        default_decision: The new default policy; ``None`` keeps the model's.

    Returns:
        The rewritten model, loaded back.

    Raises:
        CheckpointError: The export is unusable or the default policy is not one it offers.

    >>> refit_decisions("faceattr/weights/default.safetensors", probs, labels, mask, "f1")  # doctest: +SKIP
    """
    from faceattr.evaluation.decision import fit_policies

    weights = Path(weights)
    model = DeployedModel.load(weights)
    fitted = fit_policies(probs, labels, mask)
    refitted = replace(model, policy_thresholds={name: tuple(v) for name, v in fitted.items() if name != "balanced"},
                       default_decision=default_decision or model.default_decision)
    export_deployed(refitted, weights, (model.description or {}).get("dtype", "float16"))
    return DeployedModel.load(weights)
