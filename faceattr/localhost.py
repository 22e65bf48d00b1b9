"""This machine's servers, for load tests and benchmarks: loopback checks, a free port, and a server
subprocess that is ready when its health URL answers and stopped whatever happens.

Both web apps' load generators (``faceattr serve``'s and ``faceattr label serve``'s) send traffic
only to addresses of this machine; this module is the one place that decides what those are.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from urllib.parse import urlsplit

from faceattr.errors import ConfigError


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine: 127.0.0.0/8, ``::1`` or ``localhost``.

    >>> is_loopback("127.0.0.2"), is_loopback("localhost"), is_loopback("0.0.0.0"), is_loopback("example.com")
    (True, True, False, False)
    """
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_loopback(url: str) -> str:
    """The host of ``url``, which must be this machine's.

    Raises:
        ConfigError: Any other host: load is never sent off the machine.

    >>> check_loopback("http://127.0.0.1:8000")
    '127.0.0.1'
    >>> check_loopback("http://example.com/")
    Traceback (most recent call last):
    ...
    faceattr.errors.ConfigError: url: 'example.com' is not a loopback address (127.0.0.0/8, ::1, localhost); \
load tests only run against this machine
    """
    host = urlsplit(url).hostname or ""
    if not is_loopback(host):
        raise ConfigError(f"url: {host!r} is not a loopback address (127.0.0.0/8, ::1, localhost); "
                          "load tests only run against this machine")
    return host


def free_port() -> int:
    """A TCP port of 127.0.0.1 free right now (the OS's choice)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def server_process(command: Sequence[str], ready_url: str, name: str, timeout_s: float = 300.0
                   ) -> Iterator[subprocess.Popen]:
    """``command`` (the server ``name``) as a subprocess, once ``ready_url`` answers 200; stopped on leaving.

    Its output goes to a temporary file (a pipe nobody read would fill and stall the server). On
    leaving, also on an error or an interrupt, it gets SIGTERM, then SIGKILL after 20 s.

    Raises:
        RuntimeError: The server exits or does not answer within ``timeout_s``; the message ends with
            the tail of its log.
    """
    import httpx

    check_loopback(ready_url)
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(list(command), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout_s
            while process.poll() is None and time.monotonic() < deadline:
                try:
                    if httpx.get(ready_url, timeout=2, trust_env=False).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.2)
            else:
                log.seek(0)
                tail = log.read().decode("utf-8", "replace")[-2000:]
                state = (f"exited with {process.returncode}" if process.poll() is not None
                         else f"not ready in {timeout_s:g} s")
                raise RuntimeError(f"{name} {state}; its log ends:\n{tail}")
            yield process
        finally:
            process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
