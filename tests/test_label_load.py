"""The labelling app under load and under ``kill -9``: 20 raters voting at once over loopback lose no vote and count
none twice, the live Elo equals Elo replayed from the raw votes, and every vote the server acknowledged survives
the server's sudden death (SQLite), on SQLite and on a real PostgreSQL (``label_database``)."""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path

import numpy as np
import pytest
from conftest import app_in_thread
from label_web import bearer, make_project

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from faceattr.label.app import create_label_app  # noqa: E402  (after the skips: fastapi is an extra)
from faceattr.label.loadtest import label_server, vote_as_raters  # noqa: E402
from faceattr.localhost import free_port  # noqa: E402
from faceattr.label.ratings import elo_ratings  # noqa: E402
from faceattr.label.store import OUTCOMES, LabelStore  # noqa: E402

RATERS = 20
VOTES_EACH = 20
#: Every fifth vote is sent twice, as a client retrying after a lost answer would: the copy must get 409.
REPLAY_EVERY = 5
#: The whole run must end within this (a hung server or a deadlock fails the test rather than the suite).
DEADLINE_S = 240


def test_twenty_raters_voting_at_once_lose_no_vote_and_count_none_twice(label_database: str) -> None:
    store = LabelStore(label_database)
    project = make_project(store, name=f"load-{uuid.uuid4().hex[:8]}", images=30, raters=RATERS)
    with app_in_thread(create_label_app(store)) as url:
        run = vote_as_raters(url, project.raters, VOTES_EACH, replay_every=REPLAY_EVERY, deadline_s=DEADLINE_S)
    backend = "PostgreSQL" if label_database.startswith("postgresql") else "SQLite"
    print(f"\n{backend}: {len(run.acknowledged)} votes by {RATERS} raters at once in {run.elapsed_s:.1f} s; "
          f"vote latency p50 {run.latency_ms(50):.1f} ms, p95 {run.latency_ms(95):.1f} ms")
    assert run.finished, f"raters still voting after {DEADLINE_S} s"
    assert run.problems == []
    assert len(run.acknowledged) == RATERS * VOTES_EACH
    assert run.replays_refused == RATERS * VOTES_EACH // REPLAY_EVERY

    # Every acknowledged vote is in the database exactly once, and nothing else is.
    votes = store.raw_votes(project.name)
    stored = sorted((vote["rater"], vote["pair_id"], vote["choice"]) for vote in votes)
    assert stored == sorted((f"rater-{number}", pair_id, choice) for number, pair_id, choice in run.acknowledged)
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


def test_every_acknowledged_vote_survives_kill_9(tmp_path: Path) -> None:
    database = tmp_path / "labels.db"
    store = LabelStore(database)
    project = make_project(store, images=8, raters=1)
    store.close()
    port = free_port()
    acknowledged = []
    with label_server(str(database), port) as process:
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
    assert process.returncode == -signal.SIGKILL
    reopened = LabelStore(database)
    assert [vote["vote_id"] for vote in reopened.raw_votes(project.name)] == acknowledged
    reopened.close()
