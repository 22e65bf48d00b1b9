"""The service's REST API (faceattr.serve): every endpoint, every refusal as JSON with a stable code,
the bounded queue, timeouts, the API key, and concurrent requests answering as serial ones do."""

from __future__ import annotations

import asyncio
import io
import logging
import struct
import threading
import zlib

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from serve_client import ASTRONAUT, client_for, error_code, jpeg

from faceattr import cli
from faceattr.errors import ConfigError
from faceattr.inference.predictor import Predictor
from faceattr.serve.app import create_app
from faceattr.serve.batcher import MicroBatcher
from faceattr.serve.errors import ServiceError
from faceattr.serve.service import Service
from faceattr.serve.settings import ServeSettings

@pytest.fixture(scope="module")
def client(predictor: Predictor) -> TestClient:
    with client_for(predictor, max_upload_mb=1, max_wait_ms=50) as running:
        yield running


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` pixels in its header and holds almost no data: a bomb."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))


class TestPredict:
    def test_multipart_and_raw_body_give_the_in_process_answer(self, client: TestClient, predictor: Predictor,
                                                               photo: bytes) -> None:
        expected = predictor.predict(photo)
        for response in (client.post("/v1/predict", files={"file": ("any name.txt", photo)}),
                         client.post("/v1/predict", content=photo)):
            assert response.status_code == 200, response.text
            answer = response.json()
            assert (answer["width"], answer["height"]) == (512, 512)
            assert answer["decision"] == predictor.decision
            assert len(answer["faces"]) == len(expected) == 1
            face, reference = answer["faces"][0], expected[0]
            assert face["box"] == pytest.approx(list(reference.box), abs=1e-3)
            assert [face["probabilities"][name] for name in reference.probabilities] == pytest.approx(
                list(reference.probabilities.values()), abs=1e-6)
            assert face["attributes"] == list(reference.attributes)
            assert 1.0 <= face["beauty"] <= 5.0 and len(face["landmarks"]) == 5

    def test_the_decision_policy_is_chosen_per_request(self, client: TestClient, predictor: Predictor,
                                                       photo: bytes) -> None:
        probability = client.post("/v1/predict?decision=probability&threshold=0.9", content=photo).json()
        balanced = client.post("/v1/predict?decision=balanced", content=photo).json()
        strict, generous = probability["faces"][0], balanced["faces"][0]
        assert (probability["decision"], balanced["decision"]) == ("probability", "balanced")
        assert strict["probabilities"] == generous["probabilities"]
        assert strict["attributes"] == [n for n, p in sorted(strict["probabilities"].items(), key=lambda i: -i[1])
                                        if p >= 0.9][:len(strict["attributes"])]
        assert all(strict["probabilities"][name] >= 0.9 for name in strict["attributes"])
        assert len(generous["attributes"]) > len(strict["attributes"])
        assert generous["attributes"] == list(predictor.with_decision(predictor.predict(photo), "balanced")[0]
                                              .attributes)

    @pytest.mark.parametrize("query, named", [("decision=nope", "decision"), ("threshold=1.5", "threshold"),
                                              ("threshold=abc", "threshold"),
                                              ("decision=f1&threshold=0.5", "threshold")])
    def test_a_bad_parameter_is_named(self, client: TestClient, photo: bytes, query: str, named: str) -> None:
        response = client.post(f"/v1/predict?{query}", content=photo)
        assert response.status_code == 422 and error_code(response) == "invalid_parameter"
        assert named in response.json()["error"]["message"]

    def test_a_photo_without_faces_answers_an_empty_list(self, client: TestClient) -> None:
        answer = client.post("/v1/predict", content=jpeg(np.full((120, 160, 3), 128, np.uint8))).json()
        assert answer["faces"] == [] and (answer["width"], answer["height"]) == (160, 120)


class TestRefusals:
    def test_an_oversized_upload_is_refused_from_its_declared_length(self, client: TestClient) -> None:
        response = client.post("/v1/predict", content=b"\xff" * (2 * 2**20))
        assert response.status_code == 413 and error_code(response) == "payload_too_large"

    def test_an_oversized_upload_without_a_length_is_refused_while_streaming(self, client: TestClient) -> None:
        def chunks():
            for _ in range(20):
                yield b"\xff" * 2**17
        response = client.post("/v1/predict", content=chunks())
        assert response.status_code == 413 and error_code(response) == "payload_too_large"

    def test_a_text_file_named_like_a_jpeg_is_not_an_image(self, client: TestClient) -> None:
        response = client.post("/v1/predict", files={"file": ("photo.jpg", b"just some text\n", "image/jpeg")})
        assert response.status_code == 415 and error_code(response) == "unsupported_media_type"

    def test_a_truncated_jpeg(self, client: TestClient, photo: bytes) -> None:
        response = client.post("/v1/predict", content=photo[: len(photo) // 2])
        assert response.status_code == 422 and error_code(response) == "invalid_image"
        assert "truncated" in response.json()["error"]["message"]

    def test_a_one_pixel_image(self, client: TestClient) -> None:
        response = client.post("/v1/predict", content=jpeg(np.zeros((1, 1, 3), np.uint8)))
        assert response.status_code == 422 and error_code(response) == "image_too_small"

    @pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
    def test_a_decompression_bomb_is_refused_from_its_header(self, client: TestClient) -> None:
        response = client.post("/v1/predict", content=png_header(100_000, 100_000))
        assert response.status_code == 413 and error_code(response) == "image_too_large"
        assert "10000000000 pixels" in response.json()["error"]["message"]
        response = client.post("/v1/predict", content=png_header(10_000, 10_000))  # under PIL's, over ours
        assert response.status_code == 413 and "100,000,000 pixels" in response.json()["error"]["message"]

    def test_an_empty_body_and_a_form_without_the_file(self, client: TestClient) -> None:
        assert error_code(client.post("/v1/predict", content=b"")) == "bad_request"
        response = client.post("/v1/predict", files={"image": ("a.jpg", b"x")})
        assert response.status_code == 400 and "'file'" in response.json()["error"]["message"]

    def test_unknown_routes_and_methods_answer_json(self, client: TestClient) -> None:
        assert error_code(client.get("/v2/predict")) == "not_found"
        assert error_code(client.get("/v1/predict")) == "method_not_allowed"

    def test_the_error_codes_are_counted_in_the_metrics(self, client: TestClient) -> None:
        client.post("/v1/predict", content=b"not an image")
        text = client.get("/metrics").text
        assert 'faceattr_errors_total{code="unsupported_media_type"}' in text
        assert 'faceattr_requests_total{method="POST",route="/v1/predict",status="415"}' in text


class TestOtherEndpoints:
    def test_batch_answers_one_result_or_error_per_image(self, client: TestClient, photo: bytes) -> None:
        response = client.post("/v1/predict/batch?decision=f1", files=[
            ("files", ("a.jpg", photo)), ("files", ("b.txt", b"text")), ("files", ("c.jpg", photo))])
        results = response.json()["results"]
        assert response.status_code == 200 and len(results) == 3
        assert len(results[0]["faces"]) == len(results[2]["faces"]) == 1 and results[0]["decision"] == "f1"
        assert results[0]["faces"][0]["box"] == pytest.approx(results[2]["faces"][0]["box"], abs=1e-3)
        assert results[1]["error"]["code"] == "unsupported_media_type"

    def test_batch_needs_files(self, client: TestClient) -> None:
        assert error_code(client.post("/v1/predict/batch", content=b"x")) == "bad_request"

    def test_annotate_answers_the_photo_with_the_face_drawn(self, client: TestClient, photo: bytes) -> None:
        response = client.post("/v1/annotate?top=2", content=photo)
        assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
        drawn = np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"), np.int16)
        original = np.asarray(Image.open(ASTRONAUT).convert("RGB"), np.int16)
        assert drawn.shape == original.shape
        box = client.post("/v1/predict", content=photo).json()["faces"][0]["box"]
        changed = np.abs(drawn - original).max(axis=2) > 60
        rows, columns = np.nonzero(changed)
        assert changed.sum() > 500  # the box's outline and labels
        assert columns.min() <= box[0] + 3 and columns.max() >= box[2] - 3 and rows.max() >= box[3] - 3

    def test_model_describes_the_model(self, client: TestClient, predictor: Predictor) -> None:
        info = client.get("/v1/model").json()
        assert info["backbone"] == "resnet18" and info["input_size"] == predictor.image_size == 64
        assert info["model"] == "default.safetensors"  # a name, never the server's path
        assert set(info["decision_policies"]) == {"balanced", "f1", "probability"}
        assert info["default_decision"] == predictor.decision
        assert 0.5 < info["validation"]["balanced_accuracy"] < 1.0
        assert len(info["attributes"]) == 40 and info["limits"]["max_upload_mb"] == 1

    def test_health_readiness_and_openapi(self, client: TestClient) -> None:
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/readyz").json() == {"status": "ready"}
        paths = client.get("/openapi.json").json()["paths"]
        assert {"/v1/predict", "/v1/predict/batch", "/v1/annotate", "/v1/model"} <= set(paths)
        assert "multipart/form-data" in paths["/v1/predict"]["post"]["requestBody"]["content"]
        assert client.get("/docs").status_code == 200

    def test_not_ready_before_the_model_is_loaded(self, predictor: Predictor, photo: bytes) -> None:
        client = client_for(predictor)  # not entered: the app has not started
        response = client.get("/readyz")
        assert response.status_code == 503 and error_code(response) == "not_ready"
        response = client.post("/v1/predict", content=photo)
        assert response.status_code == 503 and response.headers["retry-after"] == "1"


class TestAccess:
    def test_the_api_key_is_required_when_set(self, predictor: Predictor, photo: bytes) -> None:
        with client_for(predictor, api_key="s3cret-key") as client:
            for headers in ({}, {"X-API-Key": "wrong-key"}):
                response = client.post("/v1/predict", content=photo, headers=headers)
                assert response.status_code == 401 and error_code(response) == "unauthorized"
            assert client.post("/v1/predict", content=photo, headers={"X-API-Key": "s3cret-key"}).status_code == 200
            assert client.get("/v1/model", headers={"Authorization": "Bearer s3cret-key"}).status_code == 200
            assert client.get("/healthz").status_code == 200  # probes need no key

    def test_cors_is_off_unless_origins_are_given(self, predictor: Predictor) -> None:
        origin = {"Origin": "https://app.example"}
        with client_for(predictor) as client:
            assert "access-control-allow-origin" not in client.get("/v1/model", headers=origin).headers
        with client_for(predictor, cors_origins=("https://app.example",)) as client:
            allowed = client.get("/v1/model", headers=origin).headers
            assert allowed["access-control-allow-origin"] == "https://app.example"

    def test_the_access_log_holds_no_query_and_no_content(self, predictor: Predictor, photo: bytes,
                                                          caplog: pytest.LogCaptureFixture) -> None:
        with client_for(predictor, api_key="s3cret-key") as client, caplog.at_level(
                logging.INFO, logger="faceattr.serve.access"):
            client.post("/v1/predict?api_key=s3cret-key&decision=f1", content=photo)
        lines = [r.getMessage() for r in caplog.records if r.name == "faceattr.serve.access"]
        assert len(lines) == 1 and " POST /v1/predict 200 " in lines[0] and f" {len(photo)}B" in lines[0]
        assert "s3cret" not in lines[0] and "decision" not in lines[0]

    def test_loopback_is_the_default_address(self) -> None:
        assert ServeSettings().host == "127.0.0.1"


class TestQueueAndTimeouts:
    @staticmethod
    def slow_service(predictor: Predictor, seconds: float, **settings: object) -> tuple[TestClient, list[int]]:
        config = ServeSettings(**settings)

        async def slow(array: np.ndarray) -> list:
            await asyncio.sleep(seconds)
            return []
        return TestClient(create_app(config, Service(config, predictor, runner=slow)),
                          raise_server_exceptions=False), []

    def test_a_full_queue_answers_429_with_retry_after(self, predictor: Predictor, photo: bytes) -> None:
        client, _ = self.slow_service(predictor, 0.5, max_queue=2)
        with client:
            async def burst() -> list:
                import httpx
                transport = httpx.ASGITransport(app=client.app)
                async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
                    return await asyncio.gather(*(http.post("/v1/predict", content=photo) for _ in range(6)))
            responses = client.portal.call(burst)
        statuses = sorted(response.status_code for response in responses)
        assert statuses == [200, 200, 429, 429, 429, 429]
        refused = [r for r in responses if r.status_code == 429]
        assert all(error_code(r) == "overloaded" and r.headers["retry-after"] == "1" for r in refused)

    def test_a_request_over_the_timeout_answers_504(self, predictor: Predictor, photo: bytes) -> None:
        client, _ = self.slow_service(predictor, 2.0, timeout_s=0.2)
        with client:
            response = client.post("/v1/predict", content=photo)
            assert response.status_code == 504 and error_code(response) == "timeout"
            assert client.get("/readyz").status_code == 200  # and the service goes on

    def test_concurrent_requests_answer_as_serial_ones(self, predictor: Predictor, photo: bytes) -> None:
        original = np.asarray(Image.open(ASTRONAUT).convert("RGB"))
        images = [jpeg(original), jpeg(original[:, ::-1]), jpeg(original[40:, 30:]), photo,
                  jpeg(np.full((200, 300, 3), 90, np.uint8)), jpeg(original[::2, ::2].copy())]
        with client_for(predictor, max_batch=8, max_wait_ms=300) as client:
            serial = [client.post("/v1/predict", content=image).json() for image in images]

            async def together() -> list:
                import httpx
                transport = httpx.ASGITransport(app=client.app)
                async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
                    return await asyncio.gather(*(http.post("/v1/predict", content=image) for image in images))
            concurrent = [response.json() for response in client.portal.call(together)]
            batches = client.app.state.service.metrics.batch_size.collect()[0].samples
        for alone, batched in zip(serial, concurrent):
            assert len(alone["faces"]) == len(batched["faces"])
            for a, b in zip(alone["faces"], batched["faces"]):
                assert b["box"] == pytest.approx(a["box"], abs=1e-3)
                assert list(b["probabilities"].values()) == pytest.approx(list(a["probabilities"].values()), abs=1e-5)
                assert b["attributes"] == a["attributes"]
        count = next(s.value for s in batches if s.name == "faceattr_batch_size_count")
        assert count < len(serial) + len(images)  # some of the concurrent images shared a batch


@pytest.mark.parametrize("runner", ["micro-batcher", "given"])
def test_the_service_builds_its_model_on_its_inference_thread(checkpoint, monkeypatch, runner: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    built_on: list[str] = []

    class Recorded(Predictor):
        def __init__(self, *args, **kwargs) -> None:
            built_on.append(threading.current_thread().name)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr("faceattr.serve.service.Predictor", Recorded)
    thread = ThreadPoolExecutor(1, thread_name_prefix="faceattr-inference")

    async def given(array: np.ndarray) -> list:  # as Ray Serve's @serve.batch runner: on its own thread
        return []

    async def run() -> None:
        settings = ServeSettings(model=str(checkpoint))
        service = (Service(settings) if runner == "micro-batcher"
                   else Service(settings, runner=given, runner_thread=thread))
        await service.start()
        await service.stop()
    asyncio.run(run())
    thread.shutdown()
    # torch runs a model fastest on the thread that built it
    assert [name.partition("_")[0] for name in built_on] == ["faceattr-inference"]


class TestMicroBatcher:
    def test_batches_are_at_most_max_batch_and_results_keep_their_order(self) -> None:
        sizes: list[int] = []

        async def run() -> list[int]:
            batcher = MicroBatcher(lambda items: [x * 10 for x in items], max_batch=3, max_wait_s=0.2,
                                   on_batch=sizes.append)
            batcher.start()
            try:
                return await asyncio.gather(*(batcher.run(x) for x in range(7)))
            finally:
                batcher.stop()
        assert asyncio.run(run()) == [x * 10 for x in range(7)]
        assert max(sizes) == 3 and sum(sizes) == 7

    def test_a_failing_item_fails_alone(self) -> None:
        def process(items: list[int]) -> list[int]:
            if 13 in items:
                raise ValueError("unlucky")
            return items

        async def run() -> list:
            batcher = MicroBatcher(process, max_batch=8, max_wait_s=0.2)
            batcher.start()
            try:
                return await asyncio.gather(*(batcher.run(x) for x in (1, 13, 2)), return_exceptions=True)
            finally:
                batcher.stop()
        first, bad, second = asyncio.run(run())
        assert (first, second) == (1, 2) and isinstance(bad, ValueError)

    def test_setup_runs_on_the_batchers_thread_before_its_first_batch(self) -> None:
        calls: list[tuple[str, int]] = []

        def setup() -> None:
            calls.append(("setup", threading.get_ident()))

        def process(items: list[int]) -> list[int]:
            calls.append(("batch", threading.get_ident()))
            return items

        async def run() -> list[int]:
            batcher = MicroBatcher(process, max_batch=8, max_wait_s=0.01, setup=setup)
            batcher.start()
            try:
                return await asyncio.gather(batcher.run(1), batcher.run(2))
            finally:
                batcher.stop()
        assert asyncio.run(run()) == [1, 2]
        assert calls[0][0] == "setup" and {thread for _, thread in calls} != {threading.get_ident()}
        assert len({thread for _, thread in calls}) == 1  # the model is built where it runs

    def test_a_failing_setup_answers_every_item_with_its_error(self) -> None:
        def setup() -> None:
            raise OSError("no model here")

        async def run() -> list:
            batcher = MicroBatcher(lambda items: items, max_batch=8, max_wait_s=0.01, setup=setup)
            batcher.start()
            try:
                return await asyncio.gather(batcher.run(1), batcher.run(2), return_exceptions=True)
            finally:
                batcher.stop()
        assert [str(error) for error in asyncio.run(run())] == ["no model here"] * 2

    def test_a_lone_item_does_not_wait_for_company(self) -> None:
        sizes: list[int] = []

        async def run() -> float:
            batcher = MicroBatcher(lambda items: items, max_batch=8, max_wait_s=5.0, incoming=lambda: 0,
                                   on_batch=sizes.append)
            batcher.start()
            try:
                loop = asyncio.get_running_loop()
                started = loop.time()
                await batcher.run(1)
                return loop.time() - started
            finally:
                batcher.stop()
        assert asyncio.run(run()) < 2.5 and sizes == [1]  # far below max_wait_s


class TestSettings:
    @pytest.mark.parametrize("field, value", [("max_batch", 0), ("max_queue", -1), ("timeout_s", 0.0),
                                              ("port", 70000), ("backend", "tensorflow"), ("decision", "mean"),
                                              ("api_key", "short"), ("max_wait_ms", 5000)])
    def test_a_bad_setting_is_named(self, field: str, value: object) -> None:
        with pytest.raises(ConfigError, match=f"^{field}:"):
            ServeSettings(**{field: value})

    def test_service_errors_have_known_codes(self) -> None:
        with pytest.raises(ValueError, match="code"):
            ServiceError(400, "oops", "unknown code")


class TestCommand:
    def test_serve_maps_its_flags_onto_the_settings(self, monkeypatch: pytest.MonkeyPatch) -> None:
        started: list[ServeSettings] = []
        monkeypatch.setattr("faceattr.serve.app.serve", started.append)
        monkeypatch.setenv("FACEATTR_API_KEY", "from-the-environment")
        status = cli.main(["serve", "--port", "9001", "--max-queue", "4", "--decision", "f1",
                           "--cors-origin", "https://a.example", "--timeout", "12"])
        assert status == cli.EXIT_OK and len(started) == 1
        settings = started[0]
        assert (settings.host, settings.port, settings.max_queue, settings.decision) == ("127.0.0.1", 9001, 4, "f1")
        assert settings.api_key == "from-the-environment" and settings.timeout_s == 12.0
        assert settings.cors_origins == ("https://a.example",)

    def test_a_bad_setting_is_a_usage_error(self, capsys: pytest.CaptureFixture) -> None:
        assert cli.main(["serve", "--api-key", "short"]) == cli.EXIT_USAGE
        assert "api_key: must be at least 8 characters" in capsys.readouterr().err


class TestSlowClients:
    def test_a_stalled_upload_neither_blocks_others_nor_holds_its_place_forever(self, predictor: Predictor,
                                                                                 photo: bytes) -> None:
        import socket

        import httpx
        from conftest import app_in_thread

        config = ServeSettings(timeout_s=2.0, max_queue=4)
        with app_in_thread(create_app(config, Service(config, predictor))) as url:
            port = int(url.rpartition(":")[2])
            stalled = socket.create_connection(("127.0.0.1", port))
            stalled.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + photo[:1000])
            answer = httpx.post(f"http://127.0.0.1:{port}/v1/predict", content=photo, timeout=30)
            assert answer.status_code == 200 and len(answer.json()["faces"]) == 1
            stalled.setblocking(False)
            with pytest.raises(BlockingIOError):  # answered while the stalled upload still waits
                stalled.recv(4096)
            stalled.settimeout(10)
            reply = stalled.recv(4096).decode()
            assert reply.startswith("HTTP/1.1 504") and '"timeout"' in reply
            stalled.close()


def test_the_onnx_backend_serves_the_torch_answers_within_the_backend_tolerance(predictor: Predictor,
                                                                                 photo: bytes) -> None:
    from faceattr.inference.backends import BACKEND_TOLERANCE

    settings = ServeSettings(backend="onnx")
    with TestClient(create_app(settings)) as client:  # the service loads the default model itself
        assert client.get("/v1/model").json()["backend"] == "onnx"
        served = client.post("/v1/predict", content=photo).json()["faces"]
    expected = predictor.predict(photo)
    assert len(served) == len(expected) == 1
    assert list(served[0]["probabilities"].values()) == pytest.approx(
        list(expected[0].probabilities.values()), abs=BACKEND_TOLERANCE)
    assert served[0]["beauty"] == pytest.approx(expected[0].beauty, abs=1e-3)
