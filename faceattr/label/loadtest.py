"""Simulated raters voting at once against a running ``faceattr label serve``, over HTTP.

Each rater is a thread with its own HTTP client that asks for a pair, answers it and records the
vote's latency; a rater may send some votes twice, as a client retrying after a lost answer does
(the copy must be refused with 409). Used by the concurrency test, by the load benchmark
(``tools/benchmark_label_serve.py``) and to run a whole project with raters of a stated accuracy
(:func:`truth_voter`). Loopback only: the URL must be this machine's.

>>> run = vote_as_raters("http://127.0.0.1:8100", tokens, votes_each=20)  # doctest: +SKIP
>>> run.latency_ms(95)  # doctest: +SKIP
41.3
"""

from __future__ import annotations

import contextlib
import io
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from faceattr.localhost import check_loopback, free_port, server_process

#: A rater's answer to a pair: ``(rater number, pair as the API gives it, the rater's generator) -> choice``.
Voter = Callable[[int, Mapping[str, Any], np.random.Generator], str]

#: The random voter's choices: decided votes twice as often as ties and skips.
RANDOM_CHOICES: tuple[str, ...] = ("left", "right", "left", "right", "tie", "skip")


def random_voter(rater: int, pair: Mapping[str, Any], rng: np.random.Generator) -> str:
    """Left, right, tie or skip at random (:data:`RANDOM_CHOICES`)."""
    return RANDOM_CHOICES[rng.integers(len(RANDOM_CHOICES))]


def truth_voter(truth: Mapping[int, float], judge_sd: float) -> Voter:
    """Raters who perceive each image as its true score plus normal noise of SD ``judge_sd`` (Thurstone
    case V, :class:`faceattr.label.simulate.RaterModel`) and pick the higher."""

    def vote(rater: int, pair: Mapping[str, Any], rng: np.random.Generator) -> str:
        left, right = rng.normal((truth[pair["left_id"]], truth[pair["right_id"]]), judge_sd)
        return "left" if left > right else "right"

    return vote


@dataclass
class VotingRun:
    """What the raters did: each acknowledged vote ``(rater number, pair id, choice)``, each vote's latency,
    and every answer that was not what the protocol promises (a refused vote, a replay not refused)."""

    acknowledged: list[tuple[int, int, str]] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    replays_refused: int = 0
    elapsed_s: float = 0.0
    finished: bool = True  # every rater ended before the deadline

    def latency_ms(self, percentile: float) -> float:
        """A percentile of the vote latency, in milliseconds."""
        return float(np.percentile(self.latencies_s, percentile) * 1000) if self.latencies_s else float("nan")


def vote_as_raters(url: str, tokens: Sequence[str], votes_each: int, voter: Voter = random_voter,
                   replay_every: int = 0, deadline_s: float = 300.0, seed: int = 0) -> VotingRun:
    """All ``tokens``' raters vote at once, ``votes_each`` votes each (fewer if the project is done first).

    Args:
        url: The server, on this machine.
        tokens: One personal token per rater.
        voter: How a rater answers a pair.
        replay_every: Send every n-th vote of each rater a second time (0: never); the copy must get
            409 ``already_voted``, anything else is a problem.
        deadline_s: Raters still voting then are abandoned (``finished`` is False).
        seed: Rater ``i`` draws from ``default_rng([seed, i])``.
    """
    import httpx

    check_loopback(url)
    run, lock = VotingRun(), threading.Lock()

    def rater(number: int, token: str) -> None:
        try:
            votes(number, token)
        except httpx.HTTPError as error:  # a dropped connection, a timeout: the run reports it
            with lock:
                run.problems.append(f"rater {number}: {type(error).__name__}: {error}")

    def votes(number: int, token: str) -> None:
        rng = np.random.default_rng([seed, number])
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as client:
            for count in range(votes_each):
                pair = client.post("/api/next").json()["pair"]
                if pair is None:
                    return
                body = {"pair_id": pair["pair_id"], "choice": voter(number, pair, rng),
                        "response_ms": int(rng.integers(300, 3000))}
                started = time.perf_counter()
                answer = client.post("/api/votes", json=body)
                latency = time.perf_counter() - started
                replay = client.post("/api/votes", json=body) if replay_every and count % replay_every == 0 else None
                with lock:
                    run.latencies_s.append(latency)
                    if answer.status_code != 200:
                        run.problems.append(f"rater {number}: vote {body} answered {answer.status_code} {answer.text}")
                        continue
                    run.acknowledged.append((number, pair["pair_id"], body["choice"]))
                    if replay is not None:
                        if replay.status_code == 409 and replay.json()["error"]["code"] == "already_voted":
                            run.replays_refused += 1
                        else:
                            run.problems.append(f"rater {number}: replay of {body} answered {replay.status_code}")

    threads = [threading.Thread(target=rater, args=(number, token), daemon=True)
               for number, token in enumerate(tokens)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max(0.1, deadline_s - (time.monotonic() - started)))
    run.elapsed_s = time.monotonic() - started
    run.finished = not any(thread.is_alive() for thread in threads)
    return run


def label_server(database: str, port: int, timeout_s: float = 90.0) -> contextlib.AbstractContextManager:
    """``faceattr label serve`` on 127.0.0.1:``port`` over ``database``, as a subprocess once it answers,
    stopped on leaving the block (:func:`faceattr.localhost.server_process`)."""
    command = [sys.executable, "-m", "faceattr.cli", "label", "--db", database, "serve", "--port", str(port)]
    return server_process(command, f"http://127.0.0.1:{port}/healthz", "faceattr label serve", timeout_s)


def _plain_jpeg(index: int) -> bytes:
    buffer = io.BytesIO()
    image = Image.new("RGB", (178, 218), (index * 37 % 256, index * 91 % 256, 128))
    ImageDraw.Draw(image).text((70, 100), str(index), fill=(0, 0, 0))  # the store refuses two identical faces
    image.save(buffer, "JPEG")
    return buffer.getvalue()


def benchmark_serving(databases: Mapping[str, str], raters: int, votes_each: int, images: int,
                      replay_every: int = 5, deadline_s: float = 600.0) -> tuple[str, dict[str, Any]]:
    """``raters`` raters voting at once against ``faceattr label serve`` on each database: a Markdown table
    (votes, seconds, votes/s, p50/p95/p99 latency, problems) and its figures.

    Args:
        databases: Backend name -> an empty database's URL or SQLite path (a project ``bench`` is made in it).
        images: The project's size (plain generated JPEGs: the images' content plays no part here).
    """
    from faceattr.label.store import LabelStore

    figures: dict[str, Any] = {"raters": raters, "votes_each": votes_each, "images": images,
                               "replay_every": replay_every, "backends": {}}
    rows = ["| database | votes | seconds | votes/s | p50 ms | p95 ms | p99 ms | replays refused | problems |",
            "|---|---|---|---|---|---|---|---|---|"]
    for backend, database in databases.items():
        store = LabelStore(database)
        store.create_project("bench", "Which one?")
        for index in range(images):
            store.add_image("bench", f"image-{index:05d}.jpg", _plain_jpeg(index), _plain_jpeg(index))
        tokens = [store.add_rater("bench", f"rater-{number}") for number in range(raters)]
        store.close()
        port = free_port()
        with label_server(database, port):
            run = vote_as_raters(f"http://127.0.0.1:{port}", tokens, votes_each, replay_every=replay_every,
                                 deadline_s=deadline_s)
        votes = len(run.acknowledged)
        figures["backends"][backend] = {
            "votes": votes, "seconds": run.elapsed_s, "votes_per_s": votes / run.elapsed_s,
            **{f"p{p}_ms": run.latency_ms(p) for p in (50, 95, 99)},
            "replays_refused": run.replays_refused, "problems": run.problems, "finished": run.finished}
        rows.append(f"| {backend} | {votes} | {run.elapsed_s:.1f} | {votes / run.elapsed_s:.0f} | "
                    f"{run.latency_ms(50):.0f} | {run.latency_ms(95):.0f} | {run.latency_ms(99):.0f} | "
                    f"{run.replays_refused} | {len(run.problems)} |")
    return "\n".join(rows) + "\n", figures
