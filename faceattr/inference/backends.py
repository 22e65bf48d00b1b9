"""The predictor's network backends: uint8 face crops to attribute logits and beauty, by PyTorch or ONNX Runtime.

A backend replaces only the network call; calibration and the decision stay in
:class:`~faceattr.inference.predictor.Predictor`, the same for both. ``torch`` runs
:class:`~faceattr.models.net.FaceAttrNet` on the predictor's device. ``onnx`` runs an ONNX graph with
ONNX Runtime (``pip install "faceattr[onnx]"``): an ``.onnx`` model's own, or, for a
``.safetensors``, ``best.pt`` or the default model, the network exported to ONNX in memory when
the model loads (a few seconds; see :func:`load_network`), so the default model runs on ONNX
Runtime without a second file shipped. Both give the same probabilities within
:data:`BACKEND_TOLERANCE`.

>>> backend, network = load_network(DeployedModel.load(), "onnx", torch.device("cpu"))  # doctest: +SKIP
>>> [a.shape for a in network(np.zeros((2, 64, 64, 3), np.uint8))]  # doctest: +SKIP
[(2, 40), (2,)]
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch

from faceattr.config import PREDICTION_BACKENDS
from faceattr.errors import ConfigError
from faceattr.models.deployed import DeployedModel
from faceattr.models.net import FaceAttrNet

#: The largest difference between the backends' calibrated probabilities that the tests accept
#: (measured: under 1e-6 on the default model; float32 arithmetic in another order).
BACKEND_TOLERANCE = 1e-4

class Network(Protocol):
    """What a backend runs: uint8 crops ``(B, S, S, 3)`` -> attribute logits ``(B, 40)`` and beauty ``(B,)``,
    float32 arrays; ``model_args`` are :attr:`FaceAttrNet.model_args` (the backbone...). :meth:`with_features`
    adds the pooled features ``(B, D)`` the heads read (the face embedding), from the same pass."""

    model_args: dict[str, Any]

    def __call__(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def with_features(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...


class TorchNetwork:
    """:class:`FaceAttrNet` on ``device`` as a :class:`Network`."""

    def __init__(self, network: FaceAttrNet, device: torch.device):
        self.network = network.to(device)
        self.device = device
        self.model_args = network.model_args

    def __call__(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self._outputs(crops, False)[:2]

    def with_features(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self._outputs(crops, True)

    def _outputs(self, crops: np.ndarray, with_features: bool) -> tuple[np.ndarray, ...]:
        images = torch.from_numpy(crops).permute(0, 3, 1, 2).to(self.device)
        with torch.inference_mode():
            output = self.network(images, with_features=with_features)
        keys = ("attributes", "beauty", "features") if with_features else ("attributes", "beauty")
        return tuple(output[key].float().cpu().numpy() for key in keys)


def choose_backend(backend: str | None, model: DeployedModel) -> str:
    """``backend`` checked; ``None``: ``onnx`` for an ONNX export, ``torch`` otherwise.

    Raises:
        ConfigError: ``backend`` is not one of :data:`~faceattr.config.PREDICTION_BACKENDS` (the message names ``backend``).

    >>> choose_backend("tensorflow", None)
    Traceback (most recent call last):
    ...
    faceattr.errors.ConfigError: backend: expected one of torch, onnx, got 'tensorflow'
    """
    if backend is None:
        return "onnx" if model.onnx is not None else "torch"
    if backend not in PREDICTION_BACKENDS:
        raise ConfigError(f"backend: expected one of {', '.join(PREDICTION_BACKENDS)}, got {backend!r}")
    return backend


def load_network(model: DeployedModel, backend: str | None, device: torch.device) -> tuple[str, Network]:
    """The chosen backend's name (:func:`choose_backend`) and the model's network run by it.

    With ``onnx``, a model that is not an ONNX export is exported to ONNX in memory (float32,
    the weights as loaded) with :func:`faceattr.models.onnx.network_to_onnx`. ONNX Runtime runs
    on the CPU with torch's thread count (CUDA with ``onnxruntime-gpu`` on a GPU device).

    Raises:
        ConfigError: An unknown backend, or ``onnx`` without its packages installed.
        CheckpointError: ``torch`` with an ONNX export (it has no PyTorch weights), or a network
            that does not build.
    """
    backend = choose_backend(backend, model)
    if backend == "torch":
        return backend, TorchNetwork(model.build_network(), device)
    from faceattr.models.onnx import OnnxNetwork, network_to_onnx

    graph = model.onnx or network_to_onnx(model.build_network(), model.image_size).SerializeToString()
    return backend, OnnxNetwork(graph, model.model_args, device=device.type, name=str(model.source))
