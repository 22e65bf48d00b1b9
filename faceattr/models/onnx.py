"""ONNX: the network exported as an ONNX graph, with the model's description in its metadata.

An exported ``.onnx`` file is a whole deployable model: the graph takes uint8 images
``images (B, 3, S, S)`` (the network normalises them itself, as :class:`FaceAttrNet` does) and
gives ``attributes (B, 40)`` logits, ``beauty (B,)`` and ``features (B, D)`` (the pooled features
both heads read: the face embedding; files exported before it have only the first two), the batch axis dynamic; the JSON
description that an export's ``.json`` holds (thresholds, calibration, crop, input size,
attribute names, metrics) is under :data:`DESCRIPTION_KEY` in its ``metadata_props``, its
``sha256`` that of the graph (:func:`graph_sha256`). Float16 weights are stored as float16
initializers each cast to float32 by a ``Cast`` node, so the file is half the size and the
network still computes in float32 (ONNX Runtime folds the casts when it loads the graph).
:meth:`faceattr.models.deployed.DeployedModel.load` reads such a file;
:class:`OnnxNetwork` runs one with ONNX Runtime. The ``onnx``, ``onnxscript`` and
``onnxruntime`` packages are optional: ``pip install "faceattr[onnx]"``.

>>> graph = network_to_onnx(FaceAttrNet("resnet10t").eval(), 64)  # doctest: +SKIP
>>> [output.name for output in graph.graph.output]  # doctest: +SKIP
['attributes', 'beauty', 'features']
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from faceattr.errors import CheckpointError, ConfigError
from faceattr.models.net import FaceAttrNet

logger = logging.getLogger(__name__)

#: The graph's input: uint8 RGB images ``(B, 3, S, S)``.
INPUT = "images"
#: The graph's outputs: attribute logits ``(B, 40)``, beauty scores ``(B,)`` and the pooled features ``(B, D)``.
OUTPUTS: tuple[str, str, str] = ("attributes", "beauty", "features")
#: The ``metadata_props`` key holding the model's JSON description.
DESCRIPTION_KEY = "faceattr.description"

_INSTALL = 'pip install "faceattr[onnx]"'


def require(package: str, purpose: str) -> ModuleType:
    """Imports an optional ONNX package, or raises ConfigError naming it and the extra that installs it.

    >>> require("json", "reading").__name__
    'json'
    """
    import importlib

    try:
        return importlib.import_module(package)
    except ImportError as error:
        raise ConfigError(f"{purpose} needs the {package} package: {_INSTALL}") from error


class _Outputs(nn.Module):
    """The network with a tuple of :data:`OUTPUTS` instead of a dict: the exporter's outputs are positional."""

    def __init__(self, network: FaceAttrNet):
        super().__init__()
        self.network = network

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        output = self.network(images, with_features=True)
        return output["attributes"], output["beauty"], output["features"]


def network_to_onnx(network: FaceAttrNet, image_size: int, dtype: str = "float32") -> Any:
    """The network as an ONNX graph (an ``onnx.ModelProto``), batch axis dynamic, no metadata.

    Exported with torch's dynamo exporter (``torch.onnx.export(..., dynamo=True)``; the
    TorchScript one is deprecated).

    Args:
        network: The network, in eval mode, on the CPU, float32.
        image_size: Side of the square input.
        dtype: ``float32``, or ``float16`` to store the weights as float16 (see the module's docstring).

    Raises:
        ConfigError: ``onnx`` or ``onnxscript`` is not installed.

    >>> network_to_onnx(FaceAttrNet("resnet10t").eval(), 64).graph.input[0].name  # doctest: +SKIP
    'images'
    """
    require("onnx", "exporting to ONNX")
    require("onnxscript", "exporting to ONNX")
    example = torch.zeros(2, 3, image_size, image_size, dtype=torch.uint8)
    program = torch.onnx.export(_Outputs(network).eval(), (example,), input_names=[INPUT], output_names=list(OUTPUTS),
                                dynamic_shapes=({0: torch.export.Dim("batch")},), dynamo=True, verbose=False,
                                # Unoptimised, the graph's weights are the network's own (not convolutions with
                                # batch norms folded in): float16 stores them as a float16 export does, exactly
                                # for weights trained or shipped in float16. ONNX Runtime fuses at load anyway.
                                optimize=False)
    graph = program.model_proto
    if dtype == "float16":
        _store_float16(graph, {f"network.{name}" for name in network.state_dict()})
    return graph


def _store_float16(model: Any, weights: set[str]) -> None:
    """Replaces each float32 initializer named in ``weights`` by a float16 one and a ``Cast`` back to float32
    under its name; constants (the normalisation's mean and standard deviation) stay float32."""
    import onnx
    from onnx import numpy_helper

    graph = model.graph
    casts, kept = [], []
    for initializer in graph.initializer:
        if initializer.data_type != onnx.TensorProto.FLOAT or initializer.name not in weights:
            kept.append(initializer)
            continue
        stored = f"{initializer.name}.float16"
        kept.append(numpy_helper.from_array(numpy_helper.to_array(initializer).astype(np.float16), stored))
        casts.append(onnx.helper.make_node("Cast", [stored], [initializer.name], to=onnx.TensorProto.FLOAT))
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = [*casts, *graph.node]
    del graph.node[:]
    graph.node.extend(nodes)


def graph_sha256(model: Any) -> str:
    """The sha256 of the serialized graph (weights and nodes, not the metadata): an ONNX model's checksum."""
    return hashlib.sha256(model.graph.SerializeToString()).hexdigest()


def with_description(model: Any, description: dict[str, Any]) -> bytes:
    """The serialized model with ``description`` as JSON under :data:`DESCRIPTION_KEY` in its metadata."""
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = DESCRIPTION_KEY, json.dumps(description, allow_nan=False)
    return model.SerializeToString()


def read_onnx(path: Path) -> tuple[bytes, dict[str, Any], str]:
    """An ONNX model file's bytes, its description and the sha256 of its graph.

    Raises:
        CheckpointError: The file is missing, not an ONNX model, or has no faceattr description
            (the message names the file).
        ConfigError: ``onnx`` is not installed.
    """
    onnx = require("onnx", f"reading {path}")
    from google.protobuf.message import DecodeError

    try:
        data = path.read_bytes()
    except OSError as error:
        raise CheckpointError(f"{path}: cannot read the ONNX model ({error.strerror or error})") from error
    try:
        model = onnx.load_from_string(data)
    except (DecodeError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{path}: not an ONNX model ({error})") from error
    texts = {entry.key: entry.value for entry in model.metadata_props}
    if DESCRIPTION_KEY not in texts:
        raise CheckpointError(f"{path}: an ONNX model without the {DESCRIPTION_KEY!r} metadata: not exported by "
                              "tools/export_model.py --format onnx")
    try:
        description = json.loads(texts[DESCRIPTION_KEY])
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path}: {DESCRIPTION_KEY!r}: not a JSON model description ({error})") from error
    if not isinstance(description, dict):
        raise CheckpointError(f"{path}: {DESCRIPTION_KEY!r}: expected a JSON object written by tools/export_model.py")
    return data, description, graph_sha256(model)


class OnnxNetwork:
    """The network run by ONNX Runtime: uint8 crops in, attribute logits and beauty out.

    Args:
        model: A serialized ONNX model with :data:`INPUT` and :data:`OUTPUTS`.
        model_args: The :attr:`FaceAttrNet.model_args` it was exported from (kept for callers that report them).
        threads: Intra-op threads; ``None``: torch's (``torch.get_num_threads()``), so one
            setting governs both backends. One inter-op thread: the graph is a chain. The
            threads do not spin waiting for work between runs.
        device: ``cpu`` or ``cuda``; CUDA needs ``onnxruntime-gpu`` (the CPU runs otherwise, with a warning).
        name: The model's file, named by the error of :meth:`with_features` on a graph without them.

    Raises:
        ConfigError: ``onnxruntime`` is not installed.
        CheckpointError: ONNX Runtime refuses the model.

    >>> network = OnnxNetwork(Path("team.onnx").read_bytes(), {"backbone": "resnet18"})  # doctest: +SKIP
    >>> [a.shape for a in network(np.zeros((2, 64, 64, 3), np.uint8))]  # doctest: +SKIP
    [(2, 40), (2,)]
    """

    def __init__(self, model: bytes, model_args: dict[str, Any], threads: int | None = None, device: str = "cpu",
                 name: str = "the ONNX model"):
        ort = require("onnxruntime", "backend 'onnx'")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Threads that spin between runs take the cores from MTCNN, which runs between the network's calls,
        # and from other processes on a small box; measured on 2 shared cores, not spinning lost nothing.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = ["CPUExecutionProvider"]
        if device == "cuda":
            if "CUDAExecutionProvider" in ort.get_available_providers():
                providers.insert(0, "CUDAExecutionProvider")
            else:
                logger.warning("backend 'onnx' runs on the CPU: this onnxruntime has no CUDA (install onnxruntime-gpu)")
        try:
            self.session = ort.InferenceSession(model, options, providers=providers)
        except Exception as error:  # onnxruntime raises its own unexported exception classes
            raise CheckpointError(f"ONNX Runtime cannot load the model: {error}") from error
        self.threads = options.intra_op_num_threads
        self.model_args = dict(model_args)
        self.name = name

    def __call__(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Attribute logits ``(B, 40)`` and beauty ``(B,)``, float32, for uint8 crops ``(B, S, S, 3)``."""
        logits, beauty = self.session.run(list(OUTPUTS[:2]), {INPUT: _channels_first(crops)})
        return logits, beauty

    def with_features(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Logits, beauty and the pooled features ``(B, D)`` of uint8 crops ``(B, S, S, 3)``, from one run.

        Raises:
            ConfigError: The graph has no ``features`` output: exported before embeddings (the message names
                :attr:`name` and says to export it again).
        """
        if OUTPUTS[2] not in {output.name for output in self.session.get_outputs()}:
            raise ConfigError(f"{self.name}: this ONNX model has no {OUTPUTS[2]!r} output (exported before "
                              "faceattr had embeddings): export it again with tools/export_model.py --format onnx")
        logits, beauty, features = self.session.run(list(OUTPUTS), {INPUT: _channels_first(crops)})
        return logits, beauty, features


def _channels_first(crops: np.ndarray) -> np.ndarray:
    """uint8 crops ``(B, S, S, 3)`` as the graph's contiguous ``(B, 3, S, S)`` input."""
    return np.ascontiguousarray(crops.transpose(0, 3, 1, 2))

