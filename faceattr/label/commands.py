"""``faceattr label``: the labelling tool's subcommands (init, rater, admin-token, serve, ratings, export, simulate).

The database is ``--db`` (a SQLite file, or any SQLAlchemy URL), else the ``FACEATTR_LABEL_DB``
environment variable (better for a URL with a password: it stays out of process listings), else
``labels.db`` in the current folder.
"""

from __future__ import annotations

import argparse
import os
from typing import IO, TYPE_CHECKING, Any

from faceattr.attributes import ATTRIBUTES
from faceattr.errors import ConfigError, FaceAttrError
from faceattr.label.schedule import ScheduleSettings

if TYPE_CHECKING:
    from faceattr.label.store import LabelStore

#: Where the database is when ``--db`` is not given.
DATABASE_VARIABLE, DEFAULT_DATABASE = "FACEATTR_LABEL_DB", "labels.db"

#: ``faceattr label serve``'s default port (``faceattr serve`` takes 8000).
DEFAULT_PORT = 8100


def _database(args: argparse.Namespace) -> LabelStore:
    try:
        from faceattr.label.store import LabelStore
    except ImportError as error:
        raise ConfigError(f"faceattr label needs its extra: pip install \"faceattr[label]\" ({error})") from error
    return LabelStore(_location(args))


def _location(args: argparse.Namespace) -> str:
    return args.db or os.environ.get(DATABASE_VARIABLE) or DEFAULT_DATABASE


def _share(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


def add_label_parser(commands: Any) -> None:
    """The ``label`` subcommand and its own subcommands."""
    label = commands.add_parser(
        "label", help="pairwise-vote labelling: raters pick the preferred of two faces (pip install \"faceattr[label]\")",
        description="Collects a team's judgements (\"Which face is more attractive?\", \"Who looks younger?\") as "
                    "pairwise votes in the browser, turns them into scores (Elo, Bradley-Terry) and exports a CSV "
                    "that tools/train.py reads. See docs/LABELLING.md.")
    label.add_argument("--db", metavar="DB", help=f"a SQLite file or SQLAlchemy URL (default: ${DATABASE_VARIABLE}, "
                                                  f"else {DEFAULT_DATABASE})")
    steps = label.add_subparsers(dest="label_command", metavar="STEP", required=True)

    init = steps.add_parser("init", help="create a project from a folder or CSV of photos",
                            description="Creates a project: finds and aligns the largest face of each photo, "
                                        "stores the crops in the database, and prints the admin token the first "
                                        "time. Clean the folder first: faceattr clean FOLDER.")
    init.add_argument("project", metavar="PROJECT", help="the project's name")
    init.add_argument("--images", required=True, metavar="FOLDER_OR_CSV",
                      help="a folder (recursively) or a CSV with an image column (and an optional prior column)")
    init.add_argument("--question", required=True, help="what raters answer, e.g. \"Which face is more attractive?\"")
    defaults = ScheduleSettings()
    init.add_argument("--scheme", choices=("seeds", "model"), default=defaults.scheme,
                      help="pair scheduling: seeds (random, then close scores) or model (the model's score as the "
                           f"prior, informative pairs from the first vote); default: {defaults.scheme}")
    init.add_argument("--prior", choices=("beauty", *ATTRIBUTES), default=None, metavar="PRIOR",
                      help="with --scheme model: beauty (default) or an attribute whose probability is the prior")
    init.add_argument("--random-share", type=_share, default=defaults.random_share, metavar="S",
                      help=f"seeds scheme: share of the planned votes drawn at random (default: {defaults.random_share})")
    init.add_argument("--votes-per-image", type=int, default=defaults.votes_per_image, metavar="N",
                      help=f"planned votes = N x images (default: {defaults.votes_per_image})")
    init.add_argument("--cap", type=int, default=defaults.cap_per_image, metavar="N", dest="cap_per_image",
                      help="never draw an image more than N times (default: no cap)")
    init.add_argument("--no-align", action="store_true", help="keep whole photos (not faces): no detection")
    init.add_argument("--model", metavar="MODEL", help="the model for detection and the prior (default: installed)")

    rater = steps.add_parser("rater", help="add a rater and print their personal link")
    rater.add_argument("project", metavar="PROJECT")
    rater.add_argument("name", metavar="NAME", help="the rater's name, as the statistics show it")
    rater.add_argument("--url", default=f"http://127.0.0.1:{DEFAULT_PORT}",
                       help="the address raters open (default: %(default)s)")

    steps.add_parser("admin-token", help="make a new admin token (creates projects, adds raters, exports)")

    serve = steps.add_parser("serve", help="run the voting page and its API",
                             description="Serves the voting page (/vote), the leaderboard (/leaderboard) and the "
                                         "API (docs at /docs). Binds 127.0.0.1 unless --host says otherwise.")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s, this machine only)")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help="default: %(default)s")

    ratings = steps.add_parser("ratings", help="print a project's ranking, reliability and raters")
    ratings.add_argument("project", metavar="PROJECT")
    ratings.add_argument("--top", type=int, default=20, metavar="K", help="rows to print (default: %(default)s)")

    export = steps.add_parser("export", help="write labels.csv, votes.csv and the crops for tools/train.py",
                              description="Writes a new folder: labels.csv (a csv source for tools/train.py with "
                                          "beauty labels on the 1-5 scale), votes.csv (every raw vote) and images/.")
    export.add_argument("project", metavar="PROJECT")
    export.add_argument("output", metavar="FOLDER", help="a new folder (never written over)")
    export.add_argument("--high-share", type=_share, default=0.25, metavar="S",
                        help="share of the scored images marked high (default: %(default)s)")
    export.add_argument("--min-votes", type=int, default=5, metavar="N",
                        help="images with fewer votes get no score (default: %(default)s)")

    from faceattr.label.simulate import add_simulate_arguments

    add_simulate_arguments(steps.add_parser(
        "simulate", help="simulate raters against a known truth, to size a labelling effort",
        description="Simulates votes by raters of a stated accuracy on images of known scores and reports how "
                    "well each scheduler and rating recovers them (docs/LABELLING_SIMULATION.md)."))


def run_label(args: argparse.Namespace, stdout: IO[str], stderr: IO[str]) -> int:
    """Runs a ``faceattr label`` step; the exit status."""
    if args.label_command == "simulate":
        from faceattr.label.simulate import run_simulate

        return run_simulate(args, stdout)
    if args.label_command == "serve":
        from faceattr.label.app import LabelServeSettings, serve_labels

        serve_labels(LabelServeSettings(host=args.host, port=args.port, database=_location(args)))
        return 0
    store = _database(args)
    try:
        return {"init": _init, "rater": _rater, "admin-token": _admin_token, "ratings": _ratings,
                "export": _export}[args.label_command](store, args, stdout)
    finally:
        store.close()


def _init(store: LabelStore, args: argparse.Namespace, stdout: IO[str]) -> int:
    from faceattr.label.project import FacePreparer, create_project

    settings = ScheduleSettings(scheme=args.scheme, random_share=args.random_share,
                                votes_per_image=args.votes_per_image, cap_per_image=args.cap_per_image)
    prior = args.prior or ("beauty" if args.scheme == "model" else None)
    preparer = FacePreparer(align=not args.no_align, prior=prior, model=args.model)
    summary = create_project(store, args.project, args.question, args.images, preparer, settings)
    stdout.write(f"project {args.project}: {summary.added} images added, {len(summary.left_out)} left out\n")
    for _, why in summary.left_out:  # each message names its photo
        stdout.write(f"  left out: {why}\n")
    if summary.several_faces:
        stdout.write(f"  {len(summary.several_faces)} photos hold several faces (the largest was kept), e.g. "
                     f"{summary.several_faces[0]}\n")
    if not store.has_admin_token():
        stdout.write(f"admin token (shown once; keep it secret): {store.create_admin_token()}\n")
    stdout.write(f"next: faceattr label rater {args.project} NAME, then faceattr label serve\n")
    return 0


def _rater(store: LabelStore, args: argparse.Namespace, stdout: IO[str]) -> int:
    token = store.add_rater(args.project, args.name)
    stdout.write(f"{args.name}'s personal link (give it to them only): {args.url.rstrip('/')}/vote#token={token}\n")
    return 0


def _admin_token(store: LabelStore, args: argparse.Namespace, stdout: IO[str]) -> int:
    stdout.write(f"admin token (shown once; keep it secret): {store.create_admin_token()}\n")
    return 0


def _ratings(store: LabelStore, args: argparse.Namespace, stdout: IO[str]) -> int:
    ratings = store.ratings(args.project)
    reliability = "n/a (too few votes)" if ratings.reliability is None else f"{ratings.reliability:.3f}"
    stdout.write(f"project {args.project}: {len(ratings.images)} images, {ratings.votes} decided votes, "
                 f"split-half reliability {reliability}\n")
    stdout.write(f"{'rank':>4}  {'BT score':>8}  {'95% interval':>17}  {'Elo':>7}  {'votes':>5}  image\n")
    for rank, row in enumerate(ratings.images[:args.top], start=1):
        stdout.write(f"{rank:>4}  {row.bt_score:>8.3f}  [{row.bt_low:>6.2f}, {row.bt_high:>6.2f}]  "
                     f"{row.elo:>7.1f}  {row.votes:>5}  {row.name}\n")
    for rater in ratings.raters:
        stdout.write(f"rater {rater.rater}: {rater.votes} votes, agreement with consensus {rater.agreement:.2f}, "
                     f"median response {rater.median_response_ms:.0f} ms\n")
    return 0


def _export(store: LabelStore, args: argparse.Namespace, stdout: IO[str]) -> int:
    if args.min_votes < 1:
        raise FaceAttrError(f"--min-votes: {args.min_votes} is not 1 or more")
    from faceattr.label.project import write_export

    summary = write_export(store, args.project, args.output, args.high_share, args.min_votes)
    stdout.write(f"{summary.folder}: labels.csv ({summary.labelled} of {summary.images} images scored), votes.csv, "
                 f"images/\n")
    return 0
