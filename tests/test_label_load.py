"""The labelling app under load and under ``kill -9``: 20 raters voting at once over loopback lose no vote and count
none twice, the live Elo equals Elo replayed from the raw votes, and every vote the server acknowledged survives
the server's sudden death (SQLite), on SQLite and on a real PostgreSQL (``label_database``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, app_in_thread
from label_web import bearer, make_project

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from faceattr.label.app import create_label_app  # noqa: E402  (after the skips: fastapi is an extra)
from faceattr.label.ratings import elo_ratings  # noqa: E402
from faceattr.label.store import OUTCOMES, LabelStore  # noqa: E402

RATERS = 20
VOTES_EACH = 20
#: Every fifth vote is sent twice, as a client retrying after a lost answer would: the copy must get 409.
REPLAY_EVERY = 5
#: The whole run must end within this (a hung server or a deadlock fails the test rather than the suite).
DEADLINE_S = 240
CHOICES = ("left", "right", "left", "right", "tie", "skip")


def rater_session(url: str, token: str, seed: int, acknowledged: list, latencies: list, problems: list) -> None:
    """One rater: VOTES_EACH votes (next pair, vote), every REPLAY_EVERY-th sent a second time."""
    rng = np.random.default_rng(seed)
    with httpx.Client(base_url=url, headers=bearer(token), timeout=60) as client:
        for number in range(VOTES_EACH):
            pair = client.post("/api/next").json()["pair"]
            choice = CHOICES[rng.integers(len(CHOICES))]
            body = {"pair_id": pair["pair_id"], "choice": choice, "response_ms": int(rng.integers(300, 3000))}
            started = time.perf_counter()
            answer = client.post("/api/votes", json=body)
            latencies.append(time.perf_counter() - started)
            if answer.status_code != 200:
                problems.append((token, body, answer.status_code, answer.text))
                continue
            acknowledged.append((token, pair["pair_id"], choice))
            if number % REPLAY_EVERY == 0:
                replay = client.post("/api/votes", json=body)
                if replay.status_code != 409 or replay.json()["error"]["code"] != "already_voted":
                    problems.append((token, body, replay.status_code, replay.text))


def test_twenty_raters_voting_at_once_lose_no_vote_and_count_none_twice(label_database: str) -> None:
    store = LabelStore(label_database)
    project = make_project(store, name=f"load-{uuid.uuid4().hex[:8]}", images=30, raters=RATERS)
    acknowledged: list[tuple[str, int, str]] = []
    latencies: list[float] = []
    problems: list = []
    with app_in_thread(create_label_app(store)) as url:
        threads = [threading.Thread(target=rater_session, args=(url, token, seed, acknowledged, latencies, problems))
                   for seed, token in enumerate(project.raters)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=max(1.0, DEADLINE_S - (time.monotonic() - started)))
        elapsed = time.monotonic() - started
        assert not any(thread.is_alive() for thread in threads), f"raters still voting after {DEADLINE_S} s"
    p50, p95 = np.percentile(latencies, [50, 95]) * 1000
    backend = "PostgreSQL" if label_database.startswith("postgresql") else "SQLite"
    print(f"\n{backend}: {len(acknowledged)} votes by {RATERS} raters at once in {elapsed:.1f} s; "
          f"vote latency p50 {p50:.1f} ms, p95 {p95:.1f} ms")
    assert problems == []
    assert len(acknowledged) == RATERS * VOTES_EACH

    # Every acknowledged vote is in the database exactly once, and nothing else is.
    names = {token: f"rater-{index}" for index, token in enumerate(project.raters)}
    votes = store.raw_votes(project.name)
    stored = sorted((vote["rater"], vote["pair_id"], vote["choice"]) for vote in votes)
    assert stored == sorted((names[token], pair_id, choice) for token, pair_id, choice in acknowledged)
    assert len({vote["pair_id"] for vote in votes}) == len(votes)

    # The live Elo (updated vote by vote under the project's lock) equals Elo replayed from the raw votes.
    index = {image_id: i for i, image_id in enumerate(project.image_ids)}
    decided = [vote for vote in sorted(votes, key=lambda vote: vote["vote_id"]) if vote["choice"] in OUTCOMES]
    replayed = elo_ratings(len(index), np.array([index[vote["left_id"]] for vote in decided]),
                           np.array([index[vote["right_id"]] for vote in decided]),
                           np.array([OUTCOMES[vote["choice"]] for vote in decided]))
    live = np.zeros(len(index))
    for row in store.ratings(project.name).images:
        live[index[row.image_id]] = row.elo
    np.testing.assert_allclose(live, replayed, atol=1e-9)
    store.close()


def start_server(database: Path, port: int) -> subprocess.Popen:
    """``faceattr label serve`` as a subprocess on ``database``, once it answers."""
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    process = subprocess.Popen([sys.executable, "-m", "faceattr.cli", "label", "--db", str(database), "serve",
                                "--port", str(port)], env=environment, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"faceattr label serve did not start: {process.stderr.read().decode()[-2000:]}")
        time.sleep(0.1)


def test_every_acknowledged_vote_survives_kill_9(tmp_path: Path) -> None:
    from faceattr.serve.loadtest import free_port

    database = tmp_path / "labels.db"
    store = LabelStore(database)
    project = make_project(store, images=8, raters=1)
    store.close()
    port = free_port()
    process = start_server(database, port)
    acknowledged = []
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=bearer(project.raters[0])) as client:
            for _ in range(15):
                pair = client.post("/api/next").json()["pair"]
                answer = client.post("/api/votes", json={"pair_id": pair["pair_id"], "choice": "left",
                                                         "response_ms": 800})
                assert answer.status_code == 200, answer.text
                acknowledged.append(answer.json()["vote_id"])
    finally:
        os.kill(process.pid, signal.SIGKILL)  # no shutdown, no flush: only what was committed remains
        process.wait(10)
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    reopened = LabelStore(database)
    assert [vote["vote_id"] for vote in reopened.raw_votes(project.name)] == acknowledged
    reopened.close()
