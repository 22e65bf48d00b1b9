"""Helpers of the service's tests: the example photo, an in-process client of the app, and its answers."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from faceattr.inference.predictor import Predictor

#: A public-domain portrait with one face (NASA), shipped in examples/.
ASTRONAUT = Path(__file__).resolve().parents[1] / "examples" / "astronaut.jpg"


def client_for(predictor: Predictor, raise_server_exceptions: bool = False, **settings: object) -> Any:
    """A ``TestClient`` of an app serving ``predictor``: ``with`` it to run the app's start-up and shut-down.

    Server exceptions become 500 answers unless ``raise_server_exceptions`` (the WebSocket tests want them raised).
    """
    from fastapi.testclient import TestClient

    from faceattr.serve.app import create_app
    from faceattr.serve.service import Service
    from faceattr.serve.settings import ServeSettings

    config = ServeSettings(**settings)
    return TestClient(create_app(config, Service(config, predictor)), raise_server_exceptions=raise_server_exceptions)


def jpeg(array: np.ndarray) -> bytes:
    """``array`` (RGB uint8) as JPEG bytes of quality 95."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def error_code(response: Any) -> str:
    """The stable code of a JSON error answer, after checking the answer has exactly the documented shape."""
    from faceattr.serve.errors import ERROR_CODES

    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] in ERROR_CODES
    return body["error"]["code"]
