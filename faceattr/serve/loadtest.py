"""Load test of ``faceattr serve`` on this machine: a bounded async client loop, the server as a subprocess.

:func:`run_load` sends one photo ``requests`` times from ``concurrency`` workers (``httpx.AsyncClient``)
and stops by itself at ``max_seconds``; it counts every request by HTTP status, by the service's
error code and by transport failure (timeout, connection), and keeps the latency of each 200 answer.
It only talks to loopback addresses (:func:`faceattr.localhost.check_loopback`). :func:`running_server`
starts ``faceattr serve`` as a subprocess on a free port of 127.0.0.1 and stops it whatever happens;
:func:`soak` samples the server's memory (``/proc/PID/status``) as requests go by, and
:func:`cpu_seconds` reads a process's CPU time. :mod:`faceattr.serve.benchmark` puts them together.

>>> percentile([0.1, 0.2, 0.3, 0.4], 50)
0.25
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from faceattr.errors import ConfigError
from faceattr.localhost import check_loopback, free_port, server_process


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile of ``values`` (linear interpolation); NaN for none."""
    return float(np.percentile(values, q)) if len(values) else float("nan")


@dataclass
class LoadResult:
    """What one load run saw.

    Attributes:
        concurrency: Workers sending at once.
        seconds: From the first request to the last answer (or the duration bound).
        latencies_s: Seconds of each answer with status 200, in the order they ended.
        statuses: HTTP status -> answers.
        error_codes: The service's error code (``{"error": {"code"}}``) -> answers.
        failures: Requests without an answer: ``timeout`` (the client's), ``connection`` (refused,
            reset, closed) -> count.
        unfinished: Requests still in flight when the duration bound stopped the run.
        stopped_by: ``count`` (every request sent and answered) or ``duration``.
    """

    concurrency: int
    seconds: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    error_codes: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    unfinished: int = 0
    stopped_by: str = "count"

    @property
    def requests(self) -> int:
        """Requests sent: answered, failed, or cut off by the duration bound."""
        return sum(self.statuses.values()) + sum(self.failures.values()) + self.unfinished

    @property
    def ok(self) -> int:
        """Answers with status 200."""
        return self.statuses[200]

    @property
    def images_per_s(self) -> float:
        """Successful answers per second."""
        return self.ok / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        """The figures as JSON: counts, throughput, and p50/p95/p99 latency of the 200 answers in ms."""
        ok = self.latencies_s
        return {"concurrency": self.concurrency, "requests": self.requests, "ok": self.ok, "seconds": self.seconds,
                "images_per_s": self.images_per_s, "stopped_by": self.stopped_by, "unfinished": self.unfinished,
                "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
                "error_codes": dict(self.error_codes), "failures": dict(self.failures),
                **{f"p{q}_ms": 1000 * percentile(ok, q) for q in (50, 95, 99)}}


async def run_load(url: str, photo: bytes, requests: int, concurrency: int, max_seconds: float,
                   timeout_s: float = 60.0, multipart: bool = True) -> LoadResult:
    """Sends ``photo`` to ``url`` ``requests`` times from ``concurrency`` workers; stops at ``max_seconds``.

    Args:
        url: The endpoint (``http://127.0.0.1:PORT/v1/predict``); loopback only.
        photo: The image's bytes.
        requests: Requests to send in all.
        concurrency: Workers, each sending its next request when its last is answered.
        max_seconds: The run's duration bound: requests still in flight then are cancelled and
            counted as :attr:`LoadResult.unfinished`, none is started after it.
        timeout_s: The client's timeout for one request (counted as a ``timeout`` failure).
        multipart: Send a form field ``file`` (as browsers and ``curl -F`` do); else the raw body.

    Raises:
        ConfigError: ``url`` is not a loopback address, or a count is under 1.
    """
    httpx = _httpx()
    check_loopback(url)
    if requests < 1 or concurrency < 1 or max_seconds <= 0:
        raise ConfigError(f"requests ({requests}), concurrency ({concurrency}) and max_seconds ({max_seconds}) "
                          "must be positive")
    result = LoadResult(concurrency)
    remaining = requests
    in_flight = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    send = ({"files": {"file": ("photo.jpg", photo, "image/jpeg")}} if multipart
            else {"content": photo, "headers": {"Content-Type": "image/jpeg"}})

    async def one(client: httpx.AsyncClient) -> None:
        nonlocal in_flight
        started = time.perf_counter()
        in_flight += 1
        try:
            response = await client.post(url, **send)
        except httpx.TimeoutException:
            result.failures["timeout"] += 1
            return
        except httpx.TransportError:
            result.failures["connection"] += 1
            return
        finally:
            in_flight -= 1
        result.statuses[response.status_code] += 1
        if response.status_code == 200:
            result.latencies_s.append(time.perf_counter() - started)
        else:
            result.error_codes[_error_code(response)] += 1

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await one(client)

    async with httpx.AsyncClient(limits=limits, timeout=timeout_s, trust_env=False) as client:
        started = time.perf_counter()
        workers = [asyncio.create_task(worker(client)) for _ in range(concurrency)]
        _, pending = await asyncio.wait(workers, timeout=max_seconds)
        if pending:
            result.stopped_by = "duration"
            result.unfinished = in_flight
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        result.seconds = time.perf_counter() - started
    return result


def _httpx() -> Any:
    """The ``httpx`` module, or an error naming the extra that brings it."""
    try:
        import httpx
    except ImportError as error:
        raise ConfigError(f"the load test needs httpx: pip install \"faceattr[serve]\" ({error})") from error
    return httpx


def _error_code(response: Any) -> str:
    """The service's error code of a refusal, ``HTTP <status>`` when the body is not its JSON error."""
    try:
        return str(response.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}"


def memory_mib(pid: int) -> dict[str, float]:
    """The resident memory (``VmRSS``) and its peak so far (``VmHWM``) of process ``pid``, in MiB (Linux)."""
    figures = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            figures[key] = int(value.split()[0]) / 1024  # kB
    return {"rss_mib": figures["VmRSS"], "hwm_mib": figures["VmHWM"]}


@dataclass
class Server:
    """A ``faceattr serve`` subprocess on 127.0.0.1: its base URL and process id."""

    url: str
    pid: int

    @property
    def predict_url(self) -> str:
        """The URL of ``POST /v1/predict``."""
        return f"{self.url}/v1/predict"


@contextlib.contextmanager
def running_server(options: Sequence[str] = (), ready_timeout_s: float = 300.0) -> Iterator[Server]:
    """``faceattr serve OPTIONS`` on a free port of 127.0.0.1, ready (``/readyz``), stopped on leaving
    (:func:`faceattr.localhost.server_process`).

    Raises:
        RuntimeError: The server exits or is not ready within ``ready_timeout_s``; the message
            ends with the tail of its log.
    """
    _httpx()  # the extra's message before anything starts
    port = free_port()
    command = [sys.executable, "-m", "faceattr.cli", "serve", "--host", "127.0.0.1", "--port", str(port), *options]
    with server_process(command, f"http://127.0.0.1:{port}/readyz", "faceattr serve", ready_timeout_s) as process:
        yield Server(f"http://127.0.0.1:{port}", process.pid)


async def soak(server: Server, photo: bytes, requests: int, every: int, concurrency: int = 4) -> dict[str, Any]:
    """Sends ``photo`` ``requests`` times, reading the server's memory every ``every`` requests.

    Returns:
        ``samples`` (requests so far, RSS and peak RSS in MiB), the peak RSS over the first and
        over the last 1,000 requests, the least-squares slope of RSS in MiB per 1,000 requests
        after the first 1,000 (the warm-up), and the load's counts.
    """
    samples = [{"requests": 0, **memory_mib(server.pid)}]
    total = LoadResult(concurrency)
    while samples[-1]["requests"] < requests:
        count = min(every, requests - samples[-1]["requests"])
        part = await run_load(server.predict_url, photo, count, concurrency, max_seconds=3600)
        total.seconds += part.seconds
        total.statuses.update(part.statuses)
        total.error_codes.update(part.error_codes)
        total.failures.update(part.failures)
        samples.append({"requests": samples[-1]["requests"] + count, **memory_mib(server.pid)})
    window = min(1000, requests // 2)
    first = [s["rss_mib"] for s in samples if 0 < s["requests"] <= window]
    last = [s["rss_mib"] for s in samples if s["requests"] > requests - window]
    settled = [s for s in samples if s["requests"] >= window]
    slope = (float(np.polyfit([s["requests"] for s in settled], [s["rss_mib"] for s in settled], 1)[0]) * 1000
             if len(settled) >= 2 else float("nan"))
    return {"samples": samples, "window": window, "first_peak_mib": max(first), "last_peak_mib": max(last),
            "slope_mib_per_1000": slope, "load": total.summary()}


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) process ``pid`` has used so far, all its threads (Linux)."""
    # Fields 14 and 15 of /proc/PID/stat, counted after the command name (which may hold spaces).
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
