"""``POST /v1/explain``: one face's Grad-CAM map from the service, as compact as a page needs (the map over
the aligned crop and the warp onto the photo), with the service's refusals, key, limits and queue; and
:meth:`MicroBatcher.call`, which runs it between the network's batches."""

from __future__ import annotations

import asyncio
import base64
import copy
import io
import threading
import time

import numpy as np
import pytest
from PIL import Image
from serve_client import ASTRONAUT, client_for, error_code, jpeg

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402

from faceattr.explain.maps import explain_photo  # noqa: E402
from faceattr.inference.predictor import Predictor  # noqa: E402
from faceattr.serve.app import create_app  # noqa: E402
from faceattr.serve.batcher import MicroBatcher  # noqa: E402
from faceattr.serve.service import Service  # noqa: E402
from faceattr.serve.settings import ServeSettings  # noqa: E402


@pytest.fixture(scope="module")
def client(predictor: Predictor):
    with client_for(predictor, max_upload_mb=1) as running:
        yield running


def map_of(answer: dict) -> np.ndarray:
    """The answer's map as 0-1 floats."""
    image = Image.open(io.BytesIO(base64.b64decode(answer["map"]["png"])))
    assert image.mode == "L" and image.size == (answer["map"]["width"], answer["map"]["height"])
    return np.asarray(image, np.float32) / 255


def warped(matrix: list[list[float]], x: float, y: float) -> np.ndarray:
    return np.asarray(matrix) @ np.array([x, y, 1.0])


class TestExplain:
    def test_the_answer_is_the_crop_map_and_the_warp_onto_the_photo(self, client, predictor: Predictor,
                                                                    photo: bytes) -> None:
        response = client.post("/v1/explain?face=0&target=Smiling", files={"file": ("face.jpg", photo)})
        assert response.status_code == 200, response.text
        answer = response.json()
        assert len(response.content) < 4_000  # a page's answer, whatever the photo's size
        (expected,) = explain_photo(predictor, photo, ["Smiling"])
        (face,) = predictor.predict(photo)
        assert (answer["width"], answer["height"]) == Image.open(ASTRONAUT).size
        assert answer["face"] == 0 and answer["target"] == "Smiling"
        assert answer["score"] == pytest.approx(face.probabilities["Smiling"], abs=1e-5)
        assert answer["box"] == pytest.approx(list(face.box), abs=1e-3)
        cam = map_of(answer)
        assert cam.shape == (predictor.image_size, predictor.image_size) and cam.max() == 1.0
        np.testing.assert_allclose(cam, expected.crop_maps["Smiling"], atol=0.5 / 255 + 1e-6)
        np.testing.assert_allclose(answer["map"]["matrix"], expected.matrix, atol=1e-6)

    def test_a_large_photo_decoded_reduced_gets_a_warp_from_its_full_pixels(self, client, photo: bytes) -> None:
        small = client.post("/v1/explain?target=beauty", content=photo).json()
        original = Image.open(ASTRONAUT).convert("RGB")
        large = jpeg(np.asarray(original.resize((3 * original.width, 3 * original.height), Image.BICUBIC)))
        answer = client.post("/v1/explain?target=beauty", content=large).json()
        assert (answer["width"], answer["height"]) == (3 * original.width, 3 * original.height)
        assert answer["box"] == pytest.approx([3 * v for v in small["box"]], rel=0.05)
        # The face's centre lands on the same point of the crop from either photo's pixels.
        x1, y1, x2, y2 = small["box"]
        centre = warped(small["map"]["matrix"], (x1 + x2) / 2, (y1 + y2) / 2)
        assert 0 < centre.min() and centre.max() < small["map"]["width"]
        large_centre = warped(answer["map"]["matrix"], 3 * (x1 + x2) / 2 + 1, 3 * (y1 + y2) / 2 + 1)
        np.testing.assert_allclose(large_centre, centre, atol=0.05 * small["map"]["width"])

    @pytest.mark.parametrize("query, code, named", [
        ("target=Smilng", "unknown_target", "'Smilng'"), ("face=1&target=Smiling", "face_out_of_range", "face: 1"),
        ("face=-1&target=Smiling", "invalid_parameter", "face:"), ("face=0", "invalid_parameter", "target:")])
    def test_a_bad_target_or_face_is_refused_and_named(self, client, photo: bytes, query: str, code: str,
                                                       named: str) -> None:
        response = client.post("/v1/explain?" + query, content=photo)
        assert response.status_code == 422 and error_code(response) == code
        assert named in response.json()["error"]["message"]

    def test_a_photo_without_a_face_has_no_face_0(self, client) -> None:
        response = client.post("/v1/explain?target=beauty", content=jpeg(np.full((200, 300, 3), 90, np.uint8)))
        assert response.status_code == 422 and error_code(response) == "face_out_of_range"
        assert "it has 0" in response.json()["error"]["message"]

    def test_uploads_are_checked_as_for_predict(self, client, photo: bytes) -> None:
        assert error_code(client.post("/v1/explain?target=Smiling", content=b"not an image")) == \
            "unsupported_media_type"
        oversized = client.post("/v1/explain?target=Smiling", content=b"\xff" * (2 * 2**20))
        assert oversized.status_code == 413 and error_code(oversized) == "payload_too_large"
        assert error_code(client.post("/v1/explain?target=Smiling", content=photo[:2000])) == "invalid_image"

    def test_requests_are_counted_under_their_route(self, client, photo: bytes) -> None:
        client.post("/v1/explain?target=Smiling", content=photo)
        assert 'route="/v1/explain"' in client.get("/metrics").text
        assert "/v1/explain" in client.get("/openapi.json").json()["paths"]
        assert client.get("/v1/model").json()["explain"] is True

    def test_the_api_key_is_required_when_set(self, predictor: Predictor, photo: bytes) -> None:
        with client_for(predictor, api_key="s3cret-key") as client:
            refused = client.post("/v1/explain?target=Smiling", content=photo)
            assert refused.status_code == 401 and error_code(refused) == "unauthorized"
            allowed = client.post("/v1/explain?target=Smiling", content=photo, headers={"X-API-Key": "s3cret-key"})
            assert allowed.status_code == 200

    def test_a_model_without_gradients_answers_501(self, predictor: Predictor, photo: bytes) -> None:
        onnx = copy.copy(predictor)
        onnx.backend = "onnx"  # refused from the backend's name, before anything runs
        config = ServeSettings()
        with TestClient(create_app(config, Service(config, onnx)), raise_server_exceptions=False) as client:
            response = client.post("/v1/explain?target=Smiling", content=photo)
            assert response.status_code == 501 and error_code(response) == "explain_unavailable"
            assert "onnx" in response.json()["error"]["message"]
            assert client.get("/v1/model").json()["explain"] is False


@pytest.mark.parametrize("runner", ["micro-batcher", "given"])
def test_the_map_is_made_on_the_inference_thread(predictor: Predictor, photo: bytes, monkeypatch, runner: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from faceattr.serve import service as service_module

    made_on: list[str] = []

    def recorded(*args, **kwargs):
        made_on.append(threading.current_thread().name)
        return explain_photo(*args, **kwargs)
    monkeypatch.setattr(service_module, "explain_photo", recorded)
    thread = ThreadPoolExecutor(1, thread_name_prefix="faceattr-inference")
    config = ServeSettings()
    if runner == "micro-batcher":
        service = Service(config, predictor)
    else:  # as Ray Serve's replica: its @serve.batch runner on a thread of its own
        async def given(array: np.ndarray) -> list:
            return await asyncio.get_running_loop().run_in_executor(thread, lambda: service.faces_of([array])[0])
        service = Service(config, predictor, runner=given, runner_thread=thread)
    try:
        with TestClient(create_app(config, service), raise_server_exceptions=False) as client:
            assert client.post("/v1/explain?target=Smiling", content=photo).status_code == 200
    finally:
        thread.shutdown()
    assert [name.partition("_")[0] for name in made_on] == ["faceattr-inference"]


class TestCall:
    def test_a_call_runs_on_the_inference_thread_never_during_a_batch(self) -> None:
        spans: list[tuple[str, float, float, int]] = []

        def process(items: list[int]) -> list[int]:
            started = time.monotonic()
            time.sleep(0.02)
            spans.append(("batch", started, time.monotonic(), threading.get_ident()))
            return items

        def work(value: int) -> int:
            started = time.monotonic()
            time.sleep(0.02)
            spans.append(("call", started, time.monotonic(), threading.get_ident()))
            return -value

        async def run() -> list[int]:
            batcher = MicroBatcher(process, max_batch=4, max_wait_s=0.05)
            batcher.start()
            try:
                jobs = [batcher.call(lambda v=v: work(v)) if v % 3 == 0 else batcher.run(v) for v in range(1, 10)]
                return await asyncio.gather(*jobs)
            finally:
                batcher.stop()
        assert asyncio.run(run()) == [-v if v % 3 == 0 else v for v in range(1, 10)]
        assert [kind for kind, *_ in spans].count("call") == 3
        assert len({thread for *_, thread in spans}) == 1 and spans[0][3] != threading.get_ident()
        ordered = sorted(spans, key=lambda span: span[1])
        assert all(earlier[2] <= later[1] for earlier, later in zip(ordered, ordered[1:]))  # never overlapping

    def test_a_failing_call_fails_alone(self) -> None:
        def fail() -> None:
            raise ValueError("no map")

        async def run() -> list:
            batcher = MicroBatcher(lambda items: items, max_batch=8, max_wait_s=0.01)
            batcher.start()
            try:
                return await asyncio.gather(batcher.call(fail), batcher.run(1), return_exceptions=True)
            finally:
                batcher.stop()
        error, item = asyncio.run(run())
        assert isinstance(error, ValueError) and item == 1

    def test_a_call_whose_request_has_gone_is_skipped(self) -> None:
        ran: list[str] = []

        def process(items: list[int]) -> list[int]:
            time.sleep(0.2)
            return items

        async def run() -> int:
            batcher = MicroBatcher(process, max_batch=1, max_wait_s=0.0)
            batcher.start()
            try:
                busy = asyncio.ensure_future(batcher.run(1))
                await asyncio.sleep(0.05)  # the batch is running: the call waits its turn
                gone = asyncio.ensure_future(batcher.call(lambda: ran.append("call")))
                await asyncio.sleep(0.01)
                gone.cancel()  # as a request past its timeout
                return await busy
            finally:
                batcher.stop()
        assert asyncio.run(run()) == 1 and ran == []
