"""faceattr.serve.loadtest: the load generator counts every request, stops by its bounds, stays on this machine,
and sees overload answered with 429; the real app with the shipped model, under uvicorn in a thread."""

import asyncio
import contextlib
import io
import os
from collections.abc import Iterator

import pytest
from conftest import app_in_thread
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from faceattr.errors import ConfigError  # noqa: E402
from faceattr.serve.app import create_app  # noqa: E402
from faceattr.localhost import check_loopback, free_port  # noqa: E402
from faceattr.serve.loadtest import (  # noqa: E402
    Server,
    cpu_seconds,
    memory_mib,
    run_load,
    soak,
)
from faceattr.serve.service import Service  # noqa: E402
from faceattr.serve.settings import ServeSettings  # noqa: E402


@pytest.fixture(scope="module")
def photo() -> bytes:
    """A 160x160 grey JPEG: an image the service accepts (no face in it, so it is quick)."""
    buffer = io.BytesIO()
    Image.new("RGB", (160, 160), (128, 128, 128)).save(buffer, "JPEG")
    return buffer.getvalue()


@contextlib.contextmanager
def serving(service: Service, **settings: object) -> Iterator[Server]:
    """``create_app`` around ``service`` under uvicorn in a thread on a free port of 127.0.0.1."""
    port = free_port()
    with app_in_thread(create_app(ServeSettings(port=port, **settings), service), port) as url:
        yield Server(url, os.getpid())


def sleeping_runner(seconds: float):
    """A runner that answers no faces after ``seconds``: requests stay in flight as long as the test needs."""
    async def run(array):
        await asyncio.sleep(seconds)
        return []
    return run


@pytest.fixture(scope="module")
def server(predictor) -> Iterator[Server]:
    """The real app with the default model and its micro-batcher."""
    settings = ServeSettings()
    with serving(Service(settings, predictor)) as running:
        yield running


def test_every_request_is_counted_with_its_status(server, photo):
    result = asyncio.run(run_load(server.predict_url, photo, requests=20, concurrency=4, max_seconds=120))
    assert result.requests == 20 and result.statuses == {200: 20} and len(result.latencies_s) == 20
    assert result.stopped_by == "count" and result.failures == {} and result.error_codes == {}
    summary = result.summary()
    assert summary["ok"] == 20 and summary["p50_ms"] <= summary["p95_ms"] <= summary["p99_ms"]


def test_refusals_are_counted_by_status_and_error_code(server):
    result = asyncio.run(run_load(server.predict_url, b"not an image", requests=6, concurrency=2, max_seconds=60,
                                  multipart=False))
    assert result.statuses == {415: 6} and result.error_codes == {"unsupported_media_type": 6}
    assert result.ok == 0 and result.latencies_s == []


def test_the_run_stops_by_its_duration_bound(predictor, photo):
    settings = ServeSettings(timeout_s=5)
    with serving(Service(settings, predictor, runner=sleeping_runner(3)), timeout_s=5) as slow:
        result = asyncio.run(run_load(slow.predict_url, photo, requests=10, concurrency=2, max_seconds=0.5))
    assert result.stopped_by == "duration" and result.unfinished == 2
    assert result.requests == 2 and result.statuses == {}  # the other 8 were never sent


def test_overload_is_answered_with_429_not_timeouts(predictor, photo):
    settings = ServeSettings(max_queue=1)
    with serving(Service(settings, predictor, runner=sleeping_runner(0.3)), max_queue=1) as small:
        result = asyncio.run(run_load(small.predict_url, photo, requests=12, concurrency=6, max_seconds=60))
    assert result.requests == 12 and result.failures == {}
    assert result.statuses[429] > 0 and result.error_codes == {"overloaded": result.statuses[429]}
    assert result.ok + result.statuses[429] == 12


@pytest.mark.parametrize("url", ["http://10.0.0.1:8000/v1/predict", "http://example.com/v1/predict",
                                 "http://[2001:db8::1]/v1/predict", "http://0.0.0.0:8000/"])
def test_a_host_off_this_machine_is_refused_before_anything_is_sent(url, photo):
    with pytest.raises(ConfigError, match="not a loopback address"):
        asyncio.run(run_load(url, photo, requests=1, concurrency=1, max_seconds=1))


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000/", "http://127.8.9.10/", "http://[::1]:8000/",
                                 "http://localhost:8000/v1/predict"])
def test_loopback_hosts_are_allowed(url):
    assert check_loopback(url) in url


def test_soak_reads_the_servers_memory_every_so_many_requests(server, photo):
    soaked = asyncio.run(soak(server, photo, requests=30, every=10, concurrency=2))
    assert [sample["requests"] for sample in soaked["samples"]] == [0, 10, 20, 30]
    assert all(sample["hwm_mib"] >= sample["rss_mib"] > 0 for sample in soaked["samples"])
    assert soaked["window"] == 15 and soaked["load"]["ok"] == 30
    assert soaked["last_peak_mib"] == max(s["rss_mib"] for s in soaked["samples"] if s["requests"] > 15)


def test_process_figures_are_read_from_proc():
    assert memory_mib(os.getpid())["rss_mib"] > 0 and cpu_seconds(os.getpid()) > 0
