"""The service's settings: one frozen dataclass, every field checked and named in errors."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields

from faceattr.config import DECISION_POLICIES, PREDICTION_BACKENDS
from faceattr.errors import ConfigError
from faceattr.image import PREDICTION_MAX_PIXELS

#: The environment variable an API key may come from, so that it stays out of process listings.
API_KEY_VARIABLE = "FACEATTR_API_KEY"


@dataclass(frozen=True)
class ServeSettings:
    """How ``faceattr serve`` runs.

    Attributes:
        host: Address to bind; loopback by default, so nothing outside the machine reaches it
            unless asked for (``0.0.0.0``).
        port: TCP port.
        model: A model file (as :class:`~faceattr.inference.predictor.Predictor` takes), ``None``
            for the installed default.
        device: ``cpu``, ``cuda`` or ``auto``.
        backend: What runs the network (:mod:`faceattr.inference.backends`): ``torch`` or ``onnx``;
            ``None``: ``onnx`` for an ``.onnx`` model, else ``torch``.
        decision: The decision policy when a request names none; ``None``: the model's default.
        max_batch: Most images detected and classified together by the micro-batcher.
        max_wait_ms: Longest an image waits for others to fill its batch.
        max_queue: Most requests in flight (decoding, waiting or running); more get 429.
        max_upload_mb: Largest request body in MiB (a batch may hold ``max_batch_files`` such images).
        max_batch_files: Most images in one ``/v1/predict/batch`` request.
        max_pixels: Largest image (width x height), checked from its header before decoding.
        timeout_s: Longest a request may take, from its first byte read to its answer (504 past it).
        api_key: When set, every ``/v1`` request must send it (``X-API-Key`` header,
            ``Authorization: Bearer``, or ``api_key`` for the WebSocket).
        cors_origins: Origins allowed by CORS; none (CORS off) by default.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    model: str | None = None
    device: str = "cpu"
    backend: str | None = None
    decision: str | None = None
    max_batch: int = 8
    max_wait_ms: float = 5.0
    max_queue: int = 32
    max_upload_mb: float = 20.0
    max_batch_files: int = 16
    max_pixels: int = PREDICTION_MAX_PIXELS
    timeout_s: float = 30.0
    api_key: str | None = None
    cors_origins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        positive_ints = ("max_batch", "max_queue", "max_batch_files", "max_pixels")
        for name in positive_ints:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name}: must be an integer of at least 1, got {value!r}")
        for name in ("max_upload_mb", "timeout_s"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ConfigError(f"{name}: must be a positive number, got {value!r}")
        if not isinstance(self.max_wait_ms, (int, float)) or not 0 <= self.max_wait_ms <= 1000:
            raise ConfigError(f"max_wait_ms: must be between 0 and 1000, got {self.max_wait_ms!r}")
        if not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise ConfigError(f"port: must be an integer from 0 to 65535, got {self.port!r}")
        if self.backend is not None and self.backend not in PREDICTION_BACKENDS:
            raise ConfigError(f"backend: {self.backend!r} is not one of {', '.join(PREDICTION_BACKENDS)}")
        if self.decision is not None and self.decision not in DECISION_POLICIES:
            raise ConfigError(f"decision: {self.decision!r} is not one of {', '.join(DECISION_POLICIES)}")
        if self.api_key is not None and len(self.api_key) < 8:
            raise ConfigError("api_key: must be at least 8 characters")

    @property
    def max_upload_bytes(self) -> int:
        """:attr:`max_upload_mb` in bytes."""
        return int(self.max_upload_mb * 2**20)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The settings' names, in declaration order."""
        return tuple(field.name for field in fields(cls))


def api_key_from_environment() -> str | None:
    """The API key in :data:`API_KEY_VARIABLE`, ``None`` when unset or empty."""
    return os.environ.get(API_KEY_VARIABLE) or None
