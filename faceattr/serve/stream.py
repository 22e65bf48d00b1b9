"""The live webcam over a WebSocket: JPEG frames in, tracked and smoothed faces out, one answer per frame.

``WS /v1/stream?decision=...&threshold=...`` (the page's Webcam tab). The client sends each frame
as a binary JPEG message and the server answers it with one text JSON message:

* ``{"faces": [{"id", "box", "attributes", "probabilities", "beauty"}], "width", "height",
  "latency_ms"}``: the faces followed by a per-connection
  :class:`~faceattr.inference.video.FaceTracker`, so each keeps its id from frame to frame and its
  attributes and beauty are smoothed (no flicker);
* ``{"dropped": true}`` when the service is busy (``overloaded``): the frame is dropped, not queued;
* ``{"error": {"code", "message"}}`` for a frame the service refuses (not an image, too large).

A client keeps one frame in flight (it sends the next only after the answer), so a slow server
lowers the frame rate instead of building a backlog. A connection the service refuses outright
(a wrong API key, an unknown decision policy) gets the error message, then a close with code 1008:
a browser cannot read the HTTP status of a refused WebSocket handshake, but it can read a message.

:class:`StreamSession` holds what one connection knows, apart from the socket, so it is tested
without a server.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from faceattr.inference.video import FaceTracker
from faceattr.serve.auth import check_api_key
from faceattr.serve.errors import ServiceError
from faceattr.serve.service import Prediction, Service

#: WebSocket close code for a connection refused by policy (RFC 6455).
POLICY_VIOLATION = 1008

router = APIRouter()


@dataclass(frozen=True)
class StreamAnswer:
    """The answer to one frame.

    Attributes:
        outcome: ``answered``, ``dropped`` (the service is overloaded) or ``error`` (a bad frame): the
            ``outcome`` label of the ``faceattr_stream_frames`` metric.
        body: The JSON message sent back.
    """

    outcome: str
    body: dict[str, Any]


class StreamSession:
    """One WebSocket connection's frames: each predicted, its faces tracked and smoothed across frames.

    Args:
        predict: Finds the faces of one encoded image (``Service.predict_bytes`` with the
            connection's decision policy); raises :class:`~faceattr.serve.errors.ServiceError`
            to refuse it.
        tracker: This connection's tracker (its thresholds those of the connection's policy).
        clock: Seconds, for ``latency_ms``.

    >>> import asyncio
    >>> async def busy(frame):
    ...     raise ServiceError(429, "overloaded", "the queue is full")
    >>> session = StreamSession(busy, FaceTracker([0.5] * 40))
    >>> asyncio.run(session.answer(b"jpeg")).body
    {'dropped': True}
    """

    def __init__(self, predict: Callable[[bytes], Awaitable[Prediction]], tracker: FaceTracker,
                 clock: Callable[[], float] = time.perf_counter):
        self.predict = predict
        self.tracker = tracker
        self.clock = clock

    async def answer(self, frame: bytes) -> StreamAnswer:
        """Predicts one frame and answers it with its tracked faces, ``dropped`` or the error."""
        start = self.clock()
        try:
            prediction = await self.predict(frame)
        except ServiceError as error:
            if error.code == "overloaded":
                return StreamAnswer("dropped", {"dropped": True})
            return StreamAnswer("error", error.body())
        faces = [{"id": tracked.track_id, "box": list(tracked.face.box), "attributes": list(tracked.face.attributes),
                  "probabilities": tracked.face.probabilities, "beauty": tracked.face.beauty}
                 for tracked in self.tracker.update(prediction.faces)]
        return StreamAnswer("answered", {"faces": faces, "width": prediction.width, "height": prediction.height,
                                         "latency_ms": round((self.clock() - start) * 1000.0, 1)})


def open_session(service: Service, decision: str | None, threshold: float | None) -> StreamSession:
    """A session on ``service`` whose tracker decides attributes with the policy the connection asked for.

    Raises:
        ServiceError: ``invalid_parameter`` for a wrong ``decision`` or ``threshold``, ``not_ready``.
    """
    service.check_decision(decision, threshold)
    assert service.predictor is not None, "check_decision refuses a service without a model"
    thresholds = service.predictor.resolve_decision(decision, threshold)[1]

    async def predict(frame: bytes) -> Prediction:
        return await service.within_timeout(service.predict_bytes(frame, decision, threshold))

    return StreamSession(predict, FaceTracker(thresholds))


def _threshold(text: str | None) -> float | None:
    """The ``threshold`` query parameter as a number (``None`` when absent)."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        raise ServiceError(422, "invalid_parameter", f"threshold: expected a number, got {text!r}") from None


@router.websocket("/v1/stream")
async def stream(websocket: WebSocket) -> None:
    """Answers each binary JPEG frame with its tracked faces, until the client leaves."""
    service: Service = websocket.app.state.service
    await websocket.accept()
    try:
        check_api_key(websocket)
        session = open_session(service, websocket.query_params.get("decision"),
                               _threshold(websocket.query_params.get("threshold")))
    except ServiceError as error:
        await websocket.send_json(error.body())
        await websocket.close(code=POLICY_VIOLATION, reason=error.code)
        return
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("bytes") is None:
                answer = StreamAnswer("error", ServiceError(400, "bad_request",
                                                            "stream: send each frame as a binary JPEG message").body())
            else:
                answer = await session.answer(message["bytes"])
            service.metrics.stream_frames.labels(outcome=answer.outcome).inc()
            await websocket.send_json(answer.body)
    except WebSocketDisconnect:
        return
