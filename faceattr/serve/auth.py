"""The service's API key check, shared by the REST routes (:mod:`faceattr.serve.app`) and the webcam
WebSocket (:mod:`faceattr.serve.stream`), which the app includes: a module of its own, so the two
do not import each other."""

from __future__ import annotations

import hmac

from starlette.requests import HTTPConnection

from faceattr.serve.errors import ServiceError


def check_api_key(connection: HTTPConnection) -> None:
    """Refuses a request without the service's API key (when one is set).

    The key may come as ``X-API-Key: KEY``, ``Authorization: Bearer KEY``, or, for the WebSocket
    (browsers cannot set its headers), as the ``api_key`` query parameter. Compared in constant time.

    Raises:
        ServiceError: ``unauthorized`` (401).
    """
    expected = connection.app.state.settings.api_key
    if expected is None:
        return
    authorization = connection.headers.get("authorization", "")
    given = (connection.headers.get("x-api-key") or authorization.removeprefix("Bearer ").strip()
             or connection.query_params.get("api_key") or "")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise ServiceError(401, "unauthorized", "a valid API key is required (X-API-Key header)")
