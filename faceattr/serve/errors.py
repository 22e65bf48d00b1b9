"""The service's refusals: an HTTP status, a stable machine-readable code and a message for people.

Every error the service answers is JSON: ``{"error": {"code": "...", "message": "..."}}``. The codes
are part of the API: clients branch on them, so they never change meaning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Every code the service answers with, and what it means.
ERROR_CODES: dict[str, str] = {
    "bad_request": "the request is malformed (a missing file field, an unreadable form)",
    "unauthorized": "the API key is missing or wrong",
    "not_found": "no such endpoint",
    "method_not_allowed": "the endpoint does not take this HTTP method",
    "payload_too_large": "the request body is over the upload limit",
    "image_too_large": "the image's header declares more pixels than the limit (a decompression bomb)",
    "unsupported_media_type": "the upload is not an image of a supported type (sniffed from its bytes)",
    "invalid_image": "the image cannot be decoded (truncated or corrupt)",
    "image_too_small": "the image is smaller than the smallest face the detector finds",
    "invalid_parameter": "a query parameter has a wrong value (an unknown decision policy, a threshold out of range)",
    "unknown_target": "the explained target is neither an attribute name nor 'beauty'",
    "face_out_of_range": "the face index is not one of the image's faces (or the image has none)",
    "explain_unavailable": "this service cannot draw Grad-CAM maps: it runs the model without gradients (ONNX)",
    "overloaded": "the request queue is full; retry after the Retry-After seconds",
    "not_ready": "the model is still loading or the service is stopping; retry after the Retry-After seconds",
    "timeout": "the request took longer than the per-request timeout",
    "internal": "an error the service did not foresee (a bug; see the server's log)",
}

#: Seconds a client is told to wait before retrying an ``overloaded`` or ``not_ready`` answer.
RETRY_AFTER_S = 1


@dataclass
class ServiceError(Exception):
    """A refusal, answered as JSON with ``status``.

    >>> ServiceError(415, "unsupported_media_type", "upload: not an image").body()
    {'error': {'code': 'unsupported_media_type', 'message': 'upload: not an image'}}
    """

    status: int
    code: str
    message: str

    def __post_init__(self) -> None:
        if self.code not in ERROR_CODES:
            raise ValueError(f"code: {self.code!r} is not one of the service's error codes")
        super().__init__(self.message)

    def body(self) -> dict[str, Any]:
        """The JSON body."""
        return {"error": {"code": self.code, "message": self.message}}

    def headers(self) -> dict[str, str]:
        """``Retry-After`` for the answers a client should retry."""
        return {"Retry-After": str(RETRY_AFTER_S)} if self.code in ("overloaded", "not_ready") else {}
