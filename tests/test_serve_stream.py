"""The live webcam's per-connection logic (:class:`faceattr.serve.stream.StreamSession`), without a socket or a model."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from faceattr.attributes import ATTRIBUTES
from faceattr.inference.results import FaceResult
from faceattr.inference.video import FaceTracker

pytest.importorskip("fastapi")

from faceattr.serve.errors import ServiceError  # noqa: E402  (after the skip: fastapi is an extra)
from faceattr.serve.stream import StreamSession  # noqa: E402


@dataclass
class Prediction:
    """What ``Service.predict_bytes`` answers, as far as a session reads it."""

    faces: list[FaceResult]
    width: int = 320
    height: int = 240


def face(x: float, smiling: float, beauty: float) -> FaceResult:
    probabilities = dict.fromkeys(ATTRIBUTES, 0.1) | {"Smiling": smiling}
    return FaceResult((x, 50.0, x + 60.0, 130.0), 0.99, None, probabilities, (), beauty)


def session_of(answers: list[Prediction | ServiceError], clock: Iterator[float] | None = None) -> StreamSession:
    """A session whose service answers ``answers`` in turn (raising the errors)."""
    pending = iter(answers)

    async def predict(frame: bytes) -> Prediction:
        answer = next(pending)
        if isinstance(answer, ServiceError):
            raise answer
        return answer

    ticks = clock or iter(range(1000))
    return StreamSession(predict, FaceTracker([0.5] * 40, smoothing=0.5), clock=lambda: next(ticks))


def answers(session: StreamSession, frames: int) -> list:
    async def run() -> list:
        return [await session.answer(b"jpeg") for _ in range(frames)]
    return asyncio.run(run())


def test_a_moving_face_keeps_its_id_and_its_values_are_smoothed() -> None:
    session = session_of([Prediction([face(10, 0.9, 4.0)]), Prediction([face(20, 0.1, 2.0)])])
    first, second = (answer.body["faces"][0] for answer in answers(session, 2))
    assert first["id"] == second["id"] == 1
    assert second["box"] == [20.0, 50.0, 80.0, 130.0]  # the box is this frame's
    assert second["beauty"] == pytest.approx(3.0) and second["probabilities"]["Smiling"] == pytest.approx(0.5)
    assert first["attributes"] == ["Smiling"] and second["attributes"] == ["Smiling"]  # hysteresis: no flicker


def test_an_answer_has_the_frame_size_and_the_server_latency() -> None:
    session = session_of([Prediction([], 640, 480)], clock=iter([1.0, 1.25]))
    answer = answers(session, 1)[0]
    assert answer.outcome == "answered"
    assert answer.body == {"faces": [], "width": 640, "height": 480, "latency_ms": 250.0}


def test_a_busy_service_drops_the_frame_and_the_track_survives() -> None:
    session = session_of([Prediction([face(10, 0.9, 4.0)]), ServiceError(429, "overloaded", "queue full"),
                          Prediction([face(12, 0.9, 4.0)])])
    first, dropped, third = answers(session, 3)
    assert (dropped.outcome, dropped.body) == ("dropped", {"dropped": True})
    assert third.body["faces"][0]["id"] == first.body["faces"][0]["id"]


def test_a_bad_frame_gets_the_services_error_and_the_stream_goes_on() -> None:
    refusal = ServiceError(415, "unsupported_media_type", "upload: not an image")
    session = session_of([refusal, Prediction([face(10, 0.9, 4.0)])])
    bad, good = answers(session, 2)
    assert (bad.outcome, bad.body) == ("error", refusal.body())
    assert good.outcome == "answered" and len(good.body["faces"]) == 1
