"""The service under Ray Serve (faceattr.serve.ray_serve, ``faceattr serve --ray``) on a local single-node Ray:
replicas answer over HTTP as the plain service does, and everything stops cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from conftest import start_local_ray
from fastapi.testclient import TestClient
from ray import serve

from faceattr import cli
from faceattr.serve.app import create_app
from faceattr.localhost import free_port
from faceattr.serve.ray_serve import APP_NAME, start_on_ray, stop_on_ray
from faceattr.serve.service import Service
from faceattr.serve.settings import ServeSettings

REPO = Path(__file__).resolve().parents[1]
ASTRONAUT = REPO / "examples" / "astronaut.jpg"


def wait_ready(url: str, seconds: float) -> None:
    """Waits until ``url/readyz`` answers 200."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} not ready after {seconds} s")


def test_cli_serves_on_ray_and_stops_cleanly_on_ctrl_c(checkpoint) -> None:
    # First in the module: it runs its own Ray in a child process, before the module's Ray starts.
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    environment = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    child = subprocess.Popen([sys.executable, "-m", "faceattr.cli", "serve", "--ray", "--replicas", "1", "--port",
                              str(port), "--model", str(checkpoint)], env=environment, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        wait_ready(url, 180)
        answer = httpx.post(f"{url}/v1/predict", content=ASTRONAUT.read_bytes(), timeout=30)
        assert answer.status_code == 200 and answer.json()["width"] == 512
        child.send_signal(signal.SIGINT)
        output, _ = child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode == 0, output
    assert "stopped" in output
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/healthz", timeout=2)


@pytest.fixture(scope="module")
def served(checkpoint) -> str:
    """The service on two replicas of a local Ray (3 CPUs: the replicas, and the proxy and controller)."""
    port = free_port()
    start_local_ray(num_cpus=3)
    start_on_ray(ServeSettings(port=port, model=str(checkpoint), max_wait_ms=20), replicas=2)
    yield f"http://127.0.0.1:{port}"
    stop_on_ray(local=True)


def test_two_replicas_answer_as_the_plain_service(served, checkpoint) -> None:
    photo = ASTRONAUT.read_bytes()
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: httpx.post(f"{served}/v1/predict?decision=probability", content=photo,
                                                     timeout=60), range(6)))
    assert [answer.status_code for answer in answers] == [200] * 6
    deployment = serve.status().applications[APP_NAME].deployments[APP_NAME]
    assert deployment.replica_states == {"RUNNING": 2}
    settings = ServeSettings(model=str(checkpoint))
    with TestClient(create_app(settings, Service(settings))) as plain:
        expected = plain.post("/v1/predict?decision=probability", content=photo).json()
    for answer in answers:
        got = answer.json()
        assert (got["width"], got["height"], got["decision"], len(got["faces"])) == (
            expected["width"], expected["height"], expected["decision"], len(expected["faces"]))
        for face, want in zip(got["faces"], expected["faces"]):
            assert face["box"] == pytest.approx(want["box"], abs=1e-3)
            assert list(face["probabilities"].values()) == pytest.approx(list(want["probabilities"].values()),
                                                                         abs=1e-5)


def test_refusals_and_batches_are_the_services(served) -> None:
    refused = httpx.post(f"{served}/v1/predict", content=b"not an image", timeout=30)
    assert refused.status_code == 415 and refused.json()["error"]["code"] == "unsupported_media_type"
    unknown = httpx.post(f"{served}/v1/predict?decision=best", content=ASTRONAUT.read_bytes(), timeout=30)
    assert unknown.status_code == 422 and unknown.json()["error"]["code"] == "invalid_parameter"
    files = [("files", ("a.jpg", ASTRONAUT.read_bytes(), "image/jpeg")), ("files", ("b.txt", b"text", "text/plain"))]
    batch = httpx.post(f"{served}/v1/predict/batch", files=files, timeout=60).json()["results"]
    assert batch[0]["width"] == 512 and batch[1]["error"]["code"] == "unsupported_media_type"



def test_the_page_and_the_webcam_stream_pass_through_the_proxy(served) -> None:
    from websockets.sync.client import connect

    assert "<html" in httpx.get(f"{served}/", timeout=30).text.lower()
    with connect(f"{served.replace('http', 'ws', 1)}/v1/stream?decision=probability", open_timeout=30) as stream:
        stream.send(ASTRONAUT.read_bytes())
        answer = json.loads(stream.recv(timeout=60))
    assert (answer["width"], answer["height"]) == (512, 512) and "latency_ms" in answer


def test_without_ray_the_cli_names_the_extra_to_install(monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` finds where Ray is not installed
    assert cli.main(["serve", "--ray"]) == cli.EXIT_USAGE
    assert 'pip install "faceattr[ray]"' in capsys.readouterr().err
