"""Load test of ``faceattr serve`` against ``Predictor.predict`` in process, on this machine only.

Starts ``faceattr serve`` on a free port of 127.0.0.1 and sends it, from an async httpx client
on the same machine, a 640x480 photo with one face and a 4000x3000 photo with two (made in
memory from the shared photos) at each ``--concurrency``: throughput and p50/p95/p99 latency,
next to ``Predictor.predict`` on the same bytes in this process (on its main thread, and on a
thread of its own as the service runs it; the service is compared with the faster). Then a memory soak (the
server's resident memory read every ``--soak-every`` of ``--soak`` requests of the small photo)
and an overload run (``--max-queue 2``, 16 clients), counting 429/503 answers against client
timeouts and dropped connections. Each load run stops at ``--max-seconds``. Writes
``serve.md`` and ``serve.json``.

Examples:
    python tools/benchmark_serve.py
    python tools/benchmark_serve.py --frame-requests 100 --large-requests 20 --soak 2000
    python tools/benchmark_serve.py --serve-option=--max-batch=4 --serve-option=--max-wait-ms=2
"""

from __future__ import annotations

import argparse
import functools
import signal
import sys
from pathlib import Path

from faceattr.inference.benchmark import photo_folder
from faceattr.serve.benchmark import (
    BASELINE_RUNS,
    CONCURRENCY,
    REQUESTS,
    SOAK_EVERY,
    SOAK_REQUESTS,
    run_serve_benchmark,
)

ROOT = Path(__file__).resolve().parents[1]


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Load-test faceattr serve on this machine.", epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=photo_folder, default=str(ROOT.parent / "shared" / "data"),
                        help="the shared data folder")
    parser.add_argument("--concurrency", type=int, nargs="+", default=list(CONCURRENCY),
                        help="clients sending at once (default: 1 4 16)")
    parser.add_argument("--frame-requests", type=int, default=REQUESTS["frame"],
                        help=f"requests of the 640x480 photo per run (default: {REQUESTS['frame']})")
    parser.add_argument("--large-requests", type=int, default=REQUESTS["large"],
                        help=f"requests of the 4000x3000 photo per run (default: {REQUESTS['large']})")
    parser.add_argument("--baseline-runs", type=int, default=BASELINE_RUNS,
                        help=f"Predictor.predict calls per photo in process, on the main thread and on a thread of "
                             f"its own (default: {BASELINE_RUNS})")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="duration bound of each run (default: 300)")
    parser.add_argument("--soak", type=int, default=SOAK_REQUESTS,
                        help=f"requests of the memory soak, 0 for none (default: {SOAK_REQUESTS})")
    parser.add_argument("--soak-every", type=int, default=SOAK_EVERY,
                        help=f"requests between memory readings (default: {SOAK_EVERY})")
    parser.add_argument("--serve-option", action="append", default=[], metavar="OPTION",
                        help="an option of faceattr serve for the measured server (repeatable), "
                             "e.g. --serve-option=--max-batch=4")
    parser.add_argument("--model", help="a model file (default: the installed model)")
    parser.add_argument("--out", default="runs/bench", help="folder for serve.md and serve.json")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    # SIGTERM (kill, a CI's cancel) ends the run through its finally blocks, so the server it started stops too.
    signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(128 + number))
    run_serve_benchmark(args.data, args.out, args.concurrency,
                        {"frame": args.frame_requests, "large": args.large_requests}, args.max_seconds,
                        args.soak, args.soak_every, args.serve_option, args.model, args.baseline_runs,
                        report=functools.partial(print, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
