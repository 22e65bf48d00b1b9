"""The live webcam: its per-connection logic (:class:`faceattr.serve.stream.StreamSession`) without a socket or a
model, then ``WS /v1/stream`` on the app with the default model."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from PIL import Image
from serve_client import ASTRONAUT, client_for

from faceattr.attributes import ATTRIBUTES
from faceattr.inference.predictor import Predictor
from faceattr.inference.results import FaceResult
from faceattr.inference.video import FaceTracker

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402  (after the skip: fastapi is an extra)
from starlette.websockets import WebSocketDisconnect  # noqa: E402

from faceattr.serve.app import create_app  # noqa: E402
from faceattr.serve.errors import ServiceError  # noqa: E402
from faceattr.serve.service import Service  # noqa: E402
from faceattr.serve.settings import ServeSettings  # noqa: E402
from faceattr.serve.stream import POLICY_VIOLATION, StreamSession  # noqa: E402


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


class TestWebSocket:
    def test_each_frame_is_answered_with_its_tracked_faces(self, predictor: Predictor) -> None:
        photo = ASTRONAUT.read_bytes()
        with client_for(predictor, True) as client, client.websocket_connect("/v1/stream?decision=probability") as socket:
            answers = []
            for _ in range(2):
                socket.send_bytes(photo)
                answers.append(socket.receive_json())
            metrics = client.get("/metrics").text
        expected = predictor.predict(photo)
        width, height = Image.open(ASTRONAUT).size
        for answer in answers:
            assert (answer["width"], answer["height"]) == (width, height) and answer["latency_ms"] > 0
            assert len(answer["faces"]) == len(expected) == 1
            assert answer["faces"][0]["box"] == pytest.approx(list(expected[0].box), abs=1.0)
        assert [face["id"] for face in answers[0]["faces"]] == [face["id"] for face in answers[1]["faces"]] == [1]
        assert 'faceattr_stream_frames_total{outcome="answered"} 2.0' in metrics

    def test_a_bad_frame_is_answered_with_an_error_and_the_stream_goes_on(self, predictor: Predictor) -> None:
        with client_for(predictor, True) as client, client.websocket_connect("/v1/stream") as socket:
            socket.send_bytes(b"not a photo")
            assert socket.receive_json()["error"]["code"] == "unsupported_media_type"
            socket.send_text("hello")
            assert socket.receive_json()["error"]["code"] == "bad_request"
            socket.send_bytes(ASTRONAUT.read_bytes())
            assert len(socket.receive_json()["faces"]) == 1

    def test_a_frame_over_the_timeout_is_answered_with_its_error(self, predictor: Predictor) -> None:
        import asyncio

        async def stuck(array):
            await asyncio.sleep(5)
            return []
        config = ServeSettings(timeout_s=0.2)
        with TestClient(create_app(config, Service(config, predictor, runner=stuck))) as client, \
                client.websocket_connect("/v1/stream") as socket:
            socket.send_bytes(ASTRONAUT.read_bytes())
            assert socket.receive_json()["error"]["code"] == "timeout"

    @pytest.mark.parametrize("query, code", [("decision=coin", "invalid_parameter"),
                                             ("threshold=high", "invalid_parameter"),
                                             ("", "unauthorized"), ("api_key=wrong-key", "unauthorized")])
    def test_a_refused_connection_is_told_why_then_closed(self, predictor: Predictor, query: str, code: str) -> None:
        with client_for(predictor, True, api_key="the-right-key") as client:
            query = query if code == "unauthorized" else f"{query}&api_key=the-right-key"
            with client.websocket_connect(f"/v1/stream?{query}") as socket:
                assert socket.receive_json()["error"]["code"] == code
                with pytest.raises(WebSocketDisconnect) as closed:
                    socket.receive_json()
        assert closed.value.code == POLICY_VIOLATION

    def test_the_api_key_may_come_in_the_query(self, predictor: Predictor) -> None:
        with client_for(predictor, True, api_key="the-right-key") as client, \
                client.websocket_connect("/v1/stream?api_key=the-right-key") as socket:
            socket.send_bytes(ASTRONAUT.read_bytes())
            assert len(socket.receive_json()["faces"]) == 1
