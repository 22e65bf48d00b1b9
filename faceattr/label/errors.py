"""The labelling tool's refusals: an HTTP status, a stable machine-readable code, a message for people.

The store raises them and the web app answers them as JSON, ``{"error": {"code": ..., "message": ...}}``;
the CLI prints the message. The codes are part of the API: clients branch on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from faceattr.errors import FaceAttrError

#: Every code the labelling tool answers with, and what it means.
ERROR_CODES: dict[str, str] = {
    "bad_request": "the request is malformed (unreadable JSON, a missing field)",
    "unauthorized": "the token is missing or unknown",
    "forbidden": "the token is valid but may not do this (a rater token on an admin action)",
    "not_found": "no such project, image or endpoint (or not one this token may see)",
    "method_not_allowed": "the endpoint does not take this HTTP method",
    "pair_not_issued": "the vote names a pair that was never issued to this rater",
    "already_voted": "this pair already has this rater's vote (a replayed or double-sent vote)",
    "nothing_to_undo": "the rater has no vote left to undo",
    "project_exists": "a project of that name already exists",
    "image_exists": "the project already has an image of that name, or the same face",
    "invalid_parameter": "a field has a wrong value (an unknown choice, a negative time)",
    "payload_too_large": "the request body is over the upload limit",
    "unsupported_media_type": "an upload is not an image of a supported type",
    "invalid_image": "an uploaded image cannot be decoded, or holds no face to label",
    "internal": "an error the tool did not foresee (a bug; see the server's log)",
}


@dataclass
class LabelError(FaceAttrError):
    """A refusal, answered as JSON with ``status``.

    >>> LabelError(409, "already_voted", "pair 7: already voted").body()
    {'error': {'code': 'already_voted', 'message': 'pair 7: already voted'}}
    """

    status: int
    code: str
    message: str

    def __post_init__(self) -> None:
        if self.code not in ERROR_CODES:
            raise ValueError(f"code: {self.code!r} is not one of the labelling tool's error codes")
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message

    def body(self) -> dict[str, Any]:
        """The JSON body."""
        return {"error": {"code": self.code, "message": self.message}}
