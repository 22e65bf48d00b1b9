"""Simulated raters vote on a running ``faceattr label serve`` project, by a known truth (a demonstration).

Adds ``--raters`` raters to the project through the admin API, then lets them vote at once: each
perceives every image as its score in ``--truth`` (a CSV with ``image`` and ``beauty`` columns,
matched to the project's image names) plus normal noise of SD ``--judge-sd`` and picks the higher
(:func:`faceattr.label.loadtest.truth_voter`). Loopback only. Prints votes, time and p95 latency.

Example:
    python tools/simulate_raters.py http://127.0.0.1:8100 team --admin-token "$ADMIN" \\
        --truth runs/team/labels.csv --raters 5 --votes-each 1320
"""

from __future__ import annotations

import argparse
import csv
import os

import httpx

from faceattr.errors import DatasetError
from faceattr.label.loadtest import truth_voter, vote_as_raters


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Simulated raters vote on a local labelling project.",
                                     epilog=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", help="the server (this machine's), e.g. http://127.0.0.1:8100")
    parser.add_argument("project", help="the project's name")
    parser.add_argument("--admin-token", default=os.environ.get("FACEATTR_LABEL_ADMIN_TOKEN"),
                        help="an admin token (default: $FACEATTR_LABEL_ADMIN_TOKEN)")
    parser.add_argument("--truth", required=True, help="CSV with image and beauty columns")
    parser.add_argument("--raters", type=int, default=5, help="default: 5")
    parser.add_argument("--votes-each", type=int, default=100, help="default: 100")
    parser.add_argument("--judge-sd", type=float, default=0.7,
                        help="each rater's noise on the truth's scale (default: 0.7, docs/LABELLING_SIMULATION.md)")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def read_truth(path: str) -> dict[str, float]:
    with open(path, newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    if not rows or not {"image", "beauty"} <= rows[0].keys():
        raise DatasetError("expected image and beauty columns", path, 1)
    return {row["image"]: float(row["beauty"]) for row in rows if row["beauty"]}


def main(args: argparse.Namespace) -> None:
    truth = read_truth(args.truth)
    admin = {"Authorization": f"Bearer {args.admin_token}"}
    with httpx.Client(base_url=args.url, headers=admin, timeout=600) as client:
        images = client.get(f"/api/projects/{args.project}/ratings").raise_for_status().json()["images"]
        tokens = [client.post(f"/api/projects/{args.project}/raters", json={"name": f"simulated-{number}"})
                  .raise_for_status().json()["token"] for number in range(args.raters)]
    scores = {row["image_id"]: truth[row["name"]] for row in images if row["name"] in truth}
    if len(scores) < len(images):
        raise DatasetError(f"{len(images) - len(scores)} of the project's {len(images)} images have no score "
                           f"(e.g. {next(row['name'] for row in images if row['image_id'] not in scores)})",
                           args.truth)
    run = vote_as_raters(args.url, tokens, args.votes_each, truth_voter(scores, args.judge_sd), seed=args.seed,
                         deadline_s=3600)
    print(f"{len(run.acknowledged)} votes by {args.raters} raters in {run.elapsed_s:.0f} s "
          f"(p95 latency {run.latency_ms(95):.0f} ms), {len(run.problems)} problems")


if __name__ == "__main__":
    main(get_args_parser().parse_args())
