"""Load benchmark of ``faceattr label serve``: raters voting at once, on SQLite and on PostgreSQL.

Makes a project of ``--images`` generated images in each empty database, starts ``faceattr label
serve`` on a free port of 127.0.0.1, and lets ``--raters`` simulated raters vote ``--votes-each``
times each at once (every fifth vote sent twice, as a retrying client would), then reports votes/s
and p50/p95/p99 vote latency. Writes ``label_serve.md`` and ``label_serve.json``.

Examples:
    python tools/benchmark_label_serve.py
    eval "$(bash .ci/postgres)"; python tools/benchmark_label_serve.py --postgres "$FACEATTR_TEST_POSTGRES_URL"
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from faceattr.files import save_table
from faceattr.label.loadtest import benchmark_serving


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Load-test faceattr label serve on this machine.", epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--raters", type=int, default=20, help="raters voting at once (default: 20)")
    parser.add_argument("--votes-each", type=int, default=50, help="votes per rater (default: 50)")
    parser.add_argument("--images", type=int, default=1500, help="images in the project (default: 1500)")
    parser.add_argument("--postgres", metavar="URL", help="an empty PostgreSQL database's URL, benchmarked too")
    parser.add_argument("--out", default="runs/benchmark_label_serve", help="folder for the table")
    return parser


def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as folder:
        databases = {"SQLite (WAL, synchronous=FULL)": str(Path(folder) / "labels.db")}
        if args.postgres:
            databases["PostgreSQL"] = args.postgres
        table, figures = benchmark_serving(databases, args.raters, args.votes_each, args.images)
    print(table, end="")
    markdown, _ = save_table(args.out, "label_serve", table, figures)
    print(f"saved {markdown}")


if __name__ == "__main__":
    main(get_args_parser().parse_args())
