"""What both web apps (``faceattr serve``, ``faceattr label serve``) put in front of their routes: a
request body held to a limit while it streams, the answer's status recorded for the access log, and
the image files of a multipart upload.

Plain ASGI callables, so that neither app depends on the other; the ASGI types are only named.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.datastructures import UploadFile
    from starlette.requests import Request

#: An ASGI message, ``receive`` and ``send`` (starlette.types names the same).
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def declared_length(scope: Message) -> int | None:
    """The request's ``Content-Length``, or None when it declares none (or not a number).

    >>> declared_length({"headers": [(b"content-length", b"512")]}), declared_length({"headers": []})
    (512, None)
    """
    value = dict(scope.get("headers", [])).get(b"content-length")
    return int(value) if value is not None and value.isdigit() else None


class CountedBody:
    """A request's ``receive`` that counts the body's bytes as they arrive and raises ``refuse(limit)``
    once they pass ``limit``: a body with no or a false ``Content-Length`` is cut off while streaming."""

    def __init__(self, receive: Receive, limit: int, refuse: Callable[[int], Exception]):
        self.receive, self.limit, self.refuse = receive, limit, refuse
        self.received = 0

    async def __call__(self) -> Message:
        message = await self.receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.limit:
                raise self.refuse(self.limit)
        return message


class RecordedSend:
    """A ``send`` that notes the answer's status (for the access log) and adds ``headers`` to it."""

    def __init__(self, send: Send, headers: Sequence[tuple[bytes, bytes]] = ()):
        self.send, self.headers = send, list(headers)
        self.status = 0

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            if self.headers:
                message = {**message, "headers": [*message.get("headers", []), *self.headers]}
        await self.send(message)


async def multipart_files(request: Request, max_files: int, refuse: Callable[[str], Exception]) -> list[UploadFile]:
    """The files of a multipart/form-data request's ``files`` fields (at most ``max_files``); anything
    else (another content type, no such field) raises ``refuse(message)``."""
    from starlette.datastructures import UploadFile

    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise refuse("send the images as multipart/form-data fields named 'files'")
    form = await request.form(max_files=max_files, max_fields=max_files + 8)
    uploads = [item for item in form.getlist("files") if isinstance(item, UploadFile)]
    if not uploads:
        raise refuse("form: no file fields named 'files'")
    return uploads
