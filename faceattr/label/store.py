"""The labelling database: projects, images, raters, issued pairs and raw votes (SQLAlchemy).

Raw votes are the truth: who voted, on which issued pair, in which order the faces were shown,
the choice, the response time and when. Ratings are derived from them: each image's Elo is kept
live (updated in the vote's own transaction, so the page can schedule close pairs at once) and
can always be recomputed from the votes (:meth:`LabelStore.recompute_elo`); the Bradley-Terry fit
is computed over all votes on demand (:meth:`LabelStore.ratings`).

Any SQLAlchemy URL works: a plain path means a SQLite file, opened in WAL mode with
``synchronous=FULL`` and one transaction per vote, so a vote the server acknowledged survives a
``kill -9`` (and a power cut); ``postgresql+psycopg://...`` serves a team (``pip install
"faceattr[postgres]"``). Concurrent votes on one project are serialised by a lock on the
project's row (SQLite: one writer at a time, ``BEGIN IMMEDIATE``), so the live Elo equals a replay
of the votes in their order.

Tokens: an admin token (creates projects, adds raters, exports) and one personal token per rater
and project. Only their SHA-256 is stored; the token itself is shown once, when it is made.

>>> store = LabelStore("labels.db")  # doctest: +SKIP
>>> store.create_project("selfies", "Which face is more attractive?")  # doctest: +SKIP
>>> token = store.add_rater("selfies", "ann")  # doctest: +SKIP
>>> pair = store.next_pair(token)  # doctest: +SKIP
>>> store.vote(token, pair.pair_id, "left", response_ms=850)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import (
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    create_engine,
    event,
    func,
    select,
    text,
    update,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from faceattr.label.errors import LabelError
from faceattr.label.ratings import (
    ELO_START,
    RaterStatistics,
    elo_ratings,
    elo_update,
    fit_bradley_terry,
    rater_statistics,
    split_half_reliability,
)
from faceattr.label.schedule import ScheduleSettings, choose_pair, prior_ratings

#: What a rater may answer for a pair: the face shown left, the right one, a tie, or skip (no
#: judgement: recorded, but it counts for no rating).
CHOICES: tuple[str, ...] = ("left", "right", "tie", "skip")

#: A choice's outcome for the face shown left (Elo's S; Bradley-Terry counts a tie as half a win each).
OUTCOMES: dict[str, float] = {"left": 1.0, "right": 0.0, "tie": 0.5}

#: The longest response time a vote may report (a rater who left the page for a day is not timed).
MAX_RESPONSE_MS = 24 * 3600 * 1000

#: Token prefixes, so that a token pasted in the wrong place is recognised in the error.
ADMIN_PREFIX, RATER_PREFIX = "fa_admin_", "fa_rater_"


class Base(DeclarativeBase):
    """The tables' common base."""


def _now() -> datetime:
    return datetime.now(timezone.utc)


class Project(Base):
    """A question put to raters about one set of images, with its scheduling settings."""

    __tablename__ = "projects"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    question: Mapped[str] = mapped_column(Text)
    scheme: Mapped[str] = mapped_column(String(20))
    random_share: Mapped[float] = mapped_column(Float)
    votes_per_image: Mapped[int] = mapped_column(Integer)
    cap_per_image: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class Image(Base):
    """One face to compare: the JPEG raters see, its thumbnail, and its live Elo."""

    __tablename__ = "images"
    __table_args__ = (Index("ix_images_project_name", "project_id", "name", unique=True),
                      Index("ix_images_project_sha256", "project_id", "sha256", unique=True))
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    name: Mapped[str] = mapped_column(Text)  # where it came from: the path under the images folder
    sha256: Mapped[str] = mapped_column(String(64))  # of the face JPEG, so that a copy is refused
    # Deferred: a vote touches two images' Elo and must not read their pictures.
    face: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    thumbnail: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    prior: Mapped[float | None] = mapped_column(Float, nullable=True)  # the model's score, if seeded
    elo: Mapped[float] = mapped_column(Float)
    draws: Mapped[int] = mapped_column(Integer, default=0)  # pairs issued with this image


class Token(Base):
    """An admin token (``project_id`` empty) or a rater's personal token for one project."""

    __tablename__ = "tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id"), nullable=True, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class Pair(Base):
    """Two images issued to one rater, in the order shown (left, right)."""

    __tablename__ = "pairs"
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    rater_id: Mapped[int] = mapped_column(ForeignKey("tokens.id"), index=True)
    left_id: Mapped[int] = mapped_column(ForeignKey("images.id"))
    right_id: Mapped[int] = mapped_column(ForeignKey("images.id"))
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class Vote(Base):
    """A rater's answer to an issued pair. An undone vote stays, marked, and frees its pair."""

    __tablename__ = "votes"
    # One standing vote per pair: a replayed or double-sent vote is refused by the database
    # itself, whatever the race between two requests.
    __table_args__ = (Index("ix_votes_standing_pair", "pair_id", unique=True,
                            sqlite_where=text("undone_at IS NULL"), postgresql_where=text("undone_at IS NULL")),)
    id: Mapped[int] = mapped_column(primary_key=True)
    pair_id: Mapped[int] = mapped_column(ForeignKey("pairs.id"))
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    rater_id: Mapped[int] = mapped_column(ForeignKey("tokens.id"), index=True)
    choice: Mapped[str] = mapped_column(String(8))
    response_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    undone_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


@dataclass
class ProjectInfo:
    """A project as the API shows it."""

    name: str
    question: str
    settings: ScheduleSettings
    images: int
    raters: int
    votes: int  # standing votes, skips included
    planned_votes: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RaterInfo:
    """Whom a rater token belongs to."""

    id: int
    name: str
    project: str
    question: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Progress:
    """How far a rater and the project are: standing votes against the project's plan."""

    rater_votes: int
    project_votes: int
    planned_votes: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class IssuedPair:
    """A pair issued to a rater, in display order."""

    pair_id: int
    left_id: int
    right_id: int
    progress: Progress

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class VoteReceipt:
    """The acknowledgement of a stored vote: once returned, the vote is committed."""

    vote_id: int
    pair_id: int
    choice: str
    progress: Progress

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ImageRating:
    """One image's derived ratings (Bradley-Terry with its interval, live Elo) and vote counts."""

    image_id: int
    name: str
    bt_score: float
    bt_se: float
    bt_low: float
    bt_high: float
    elo: float
    votes: int
    wins: float  # a tie counts half
    losses: float
    ties: int


@dataclass
class ProjectRatings:
    """A project's ratings, best first, with its split-half reliability and its raters' statistics."""

    project: str
    images: list[ImageRating]
    reliability: float | None  # None until there are enough votes to split
    raters: list[RaterStatistics] = field(default_factory=list)
    votes: int = 0  # decided votes (left, right or tie) the fit used

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def database_url(location: str | Path) -> str:
    """A SQLAlchemy URL from a URL or a SQLite file path (``labels.db`` -> ``sqlite:///labels.db``)."""
    text = str(location)
    return text if "://" in text else f"sqlite:///{Path(text).expanduser()}"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _sqlite_pragmas(engine: Engine, begin_statement: str) -> None:
    """WAL, fsync on every commit, foreign keys, and the statement that starts each transaction.

    pysqlite's own transaction handling starts transactions lazily and deferred, so two writers can
    both read, then one fails to upgrade its lock. The writing engine starts with ``BEGIN IMMEDIATE``,
    taking the write lock first (SQLAlchemy's documented recipe), and ``busy_timeout`` makes another
    writer wait instead of failing; the reading engine starts with a plain ``BEGIN``: in WAL mode its
    snapshot never waits for, nor blocks, a writer.
    """

    @event.listens_for(engine, "connect")
    def connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON", "busy_timeout=30000"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def begin(connection: Any) -> None:
        connection.exec_driver_sql(begin_statement)


class LabelStore:
    """The labelling database, safe to share between threads (each call is its own transaction).

    Args:
        location: A SQLAlchemy URL, or a SQLite file path (created with its tables if missing).
    """

    def __init__(self, location: str | Path):
        self.url = database_url(location)
        url = make_url(self.url)
        self.is_sqlite = url.get_backend_name() == "sqlite"
        if self.is_sqlite and url.database not in (None, "", ":memory:"):
            folder = Path(url.database).expanduser().parent
            if not folder.is_dir():
                raise LabelError(404, "not_found", f"{location}: folder {folder} does not exist")
        try:
            self.engine = create_engine(self.url, pool_pre_ping=not self.is_sqlite)
        except ImportError as error:  # a PostgreSQL URL without its driver
            raise LabelError(400, "bad_request", f"{make_url(self.url).render_as_string()}: its database "
                             f"driver is missing (pip install \"faceattr[postgres]\"): {error}") from error
        self._reader = self.engine
        if self.is_sqlite:
            _sqlite_pragmas(self.engine, "BEGIN IMMEDIATE")
            self._reader = create_engine(self.url)
            _sqlite_pragmas(self._reader, "BEGIN")
        Base.metadata.create_all(self.engine)
        self._writes = sessionmaker(self.engine, expire_on_commit=False)
        self._sessions = sessionmaker(self._reader, expire_on_commit=False)
        self._rng = np.random.default_rng()
        self._rng_lock = threading.Lock()  # numpy Generators are not thread-safe

    def __repr__(self) -> str:
        return f"LabelStore({make_url(self.url).render_as_string()!r})"

    def close(self) -> None:
        """Closes the database connections."""
        self.engine.dispose()
        self._reader.dispose()

    @contextmanager
    def _transaction(self) -> Iterator[Session]:
        with self._writes() as session, session.begin():
            yield session

    # -- tokens ---------------------------------------------------------------------------------

    def create_admin_token(self, name: str = "admin") -> str:
        """A new admin token (shown only now: the database keeps its hash)."""
        token = ADMIN_PREFIX + secrets.token_urlsafe(24)
        with self._transaction() as session:
            session.add(Token(sha256=_hash(token), name=name, project_id=None))
        return token

    def has_admin_token(self) -> bool:
        """Whether any admin token exists (``faceattr label init`` makes the first)."""
        with self._sessions() as session:
            return session.scalar(select(Token.id).where(Token.project_id.is_(None)).limit(1)) is not None

    def check_admin(self, token: str | None) -> None:
        """Raises 401 ``unauthorized`` for a missing or unknown token, 403 ``forbidden`` for a rater's."""
        with self._sessions() as session:
            self._token(session, token, admin=True)

    def _token(self, session: Session, token: str | None, admin: bool | None) -> Token:
        """The token's row: 401 if unknown; 403 if it is not of the kind asked (``admin`` None: either)."""
        found = None if not token else session.scalar(select(Token).where(Token.sha256 == _hash(token)))
        if found is None:
            raise LabelError(401, "unauthorized", "the token is missing or unknown")
        if admin is True and found.project_id is not None:
            raise LabelError(403, "forbidden", "this is a rater's token; the action needs an admin token")
        if admin is False and found.project_id is None:
            raise LabelError(403, "forbidden", "this is an admin token; voting needs a rater's personal token")
        return found

    # -- projects, images, raters (admin) --------------------------------------------------------

    def create_project(self, name: str, question: str, settings: ScheduleSettings | None = None) -> ProjectInfo:
        """A new, empty project; 409 ``project_exists`` if the name is taken."""
        settings = settings or ScheduleSettings()
        name, question = name.strip(), question.strip()
        if not name or len(name) > 100 or "/" in name:
            raise LabelError(422, "invalid_parameter", f"project name {name!r}: 1-100 characters, no '/'")
        if not question:
            raise LabelError(422, "invalid_parameter", "question: empty; ask what raters should compare")
        try:
            with self._transaction() as session:
                session.add(Project(name=name, question=question, scheme=settings.scheme,
                                    random_share=settings.random_share, votes_per_image=settings.votes_per_image,
                                    cap_per_image=settings.cap_per_image))
        except IntegrityError as error:
            raise LabelError(409, "project_exists", f"project {name!r} already exists") from error
        return self.project(name)

    def projects(self) -> list[ProjectInfo]:
        """Every project, oldest first."""
        with self._sessions() as session:
            names = session.scalars(select(Project.name).order_by(Project.id)).all()
        return [self.project(name) for name in names]

    def project(self, name: str) -> ProjectInfo:
        """One project's settings and counts; 404 ``not_found`` if there is none of that name."""
        with self._sessions() as session:
            project = self._project(session, name)
            images = session.scalar(select(func.count()).where(Image.project_id == project.id)) or 0
            raters = session.scalar(select(func.count()).where(Token.project_id == project.id)) or 0
            votes = self._standing_votes(session, project.id)
            return ProjectInfo(project.name, project.question, _settings(project), images, raters, votes,
                               project.votes_per_image * images)

    @staticmethod
    def _project(session: Session, name: str) -> Project:
        project = session.scalar(select(Project).where(Project.name == name))
        if project is None:
            raise LabelError(404, "not_found", f"no project named {name!r}")
        return project

    def add_image(self, project: str, name: str, face_jpeg: bytes, thumbnail_jpeg: bytes,
                  prior: float | None = None) -> int:
        """Adds a face to a project (its id); 409 ``image_exists`` for a name or a face already in it.

        In a model-seeded project the images' Elo starts from their priors (see
        :func:`~faceattr.label.schedule.prior_ratings`, which standardises them over the project):
        call :meth:`recompute_elo` once the images are in.
        """
        digest = hashlib.sha256(face_jpeg).hexdigest()
        try:
            with self._transaction() as session:
                found = self._project(session, project)
                image = Image(project_id=found.id, name=name, sha256=digest, face=face_jpeg,
                              thumbnail=thumbnail_jpeg, prior=prior, elo=ELO_START, draws=0)
                session.add(image)
                session.flush()
                return image.id
        except IntegrityError as error:
            raise LabelError(409, "image_exists",
                             f"{name}: already in project {project!r} (the same name or the same face)") from error

    def add_rater(self, project: str, name: str) -> str:
        """A rater's personal token for ``project`` (shown only now)."""
        name = name.strip()
        if not name or len(name) > 100:
            raise LabelError(422, "invalid_parameter", f"rater name {name!r}: 1-100 characters")
        token = RATER_PREFIX + secrets.token_urlsafe(24)
        with self._transaction() as session:
            found = self._project(session, project)
            session.add(Token(sha256=_hash(token), name=name, project_id=found.id))
        return token

    # -- voting (raters) ---------------------------------------------------------------------------

    def rater(self, token: str | None) -> RaterInfo:
        """Whom a rater token belongs to; 401 if unknown."""
        with self._sessions() as session:
            rater = self._token(session, token, admin=False)
            project = session.get(Project, rater.project_id)
            return RaterInfo(rater.id, rater.name, project.name, project.question)

    def progress(self, token: str | None) -> Progress:
        """The rater's and the project's standing votes, and the project's planned votes."""
        with self._sessions() as session:
            rater = self._token(session, token, admin=False)
            return self._progress(session, rater)

    def _read_progress(self, rater: Token) -> Progress:
        with self._sessions() as session:
            return self._progress(session, rater)

    def _progress(self, session: Session, rater: Token) -> Progress:
        project = session.get(Project, rater.project_id)
        images = session.scalar(select(func.count()).where(Image.project_id == project.id)) or 0
        mine = session.scalar(select(func.count()).select_from(Vote).where(
            Vote.rater_id == rater.id, Vote.undone_at.is_(None))) or 0
        return Progress(mine, self._standing_votes(session, project.id), project.votes_per_image * images)

    @staticmethod
    def _standing_votes(session: Session, project_id: int) -> int:
        return session.scalar(select(func.count()).select_from(Vote).where(
            Vote.project_id == project_id, Vote.undone_at.is_(None))) or 0

    def next_pair(self, token: str | None) -> IssuedPair | None:
        """The rater's open pair (issued, not yet voted) or a newly scheduled one; None when the project is done."""
        with self._sessions() as session:  # a reloaded page: no lock needed to find the open pair
            rater = self._token(session, token, admin=False)
            open_pair = self._open_pair(session, rater)
        if open_pair is None:
            with self._transaction() as session:
                # Checked again under the lock: the same rater's other tab may have been issued one meanwhile.
                open_pair = self._open_pair(session, rater) or self._issue_pair(session, rater)
        if open_pair is None:
            return None
        return IssuedPair(open_pair.id, open_pair.left_id, open_pair.right_id, self._read_progress(rater))

    @staticmethod
    def _open_pair(session: Session, rater: Token) -> Pair | None:
        return session.scalar(
            select(Pair).where(Pair.rater_id == rater.id,
                               ~select(Vote.id).where(Vote.pair_id == Pair.id, Vote.undone_at.is_(None)).exists())
            .order_by(Pair.id.desc()).limit(1))

    def _issue_pair(self, session: Session, rater: Token) -> Pair | None:
        """A new pair for ``rater`` from the project's scheduler, under the project's lock; None when it is done."""
        project = self._lock_project(session, rater.project_id)
        rows = session.execute(select(Image.id, Image.elo, Image.draws)
                               .where(Image.project_id == project.id).order_by(Image.id)).all()
        if len(rows) < 2:
            return None
        ids = np.array([row.id for row in rows])
        index = {int(image_id): i for i, image_id in enumerate(ids)}
        seen = session.execute(select(Pair.left_id, Pair.right_id).where(Pair.rater_id == rater.id)).all()
        avoid = {tuple(sorted((index[left], index[right]))) for left, right in seen}
        with self._rng_lock:  # a model-seeded project's Elo started at its priors (_start_ratings)
            chosen = choose_pair(
                _settings(project), np.array([row.elo for row in rows], dtype=float),
                np.array([row.draws for row in rows], dtype=int), self._standing_votes(session, project.id),
                self._rng, avoid=avoid)
        if chosen is None:
            return None
        left, right = int(ids[chosen[0]]), int(ids[chosen[1]])
        pair = Pair(project_id=project.id, rater_id=rater.id, left_id=left, right_id=right)
        session.add(pair)
        session.execute(update(Image).where(Image.id.in_((left, right))).values(draws=Image.draws + 1))
        session.flush()
        return pair

    @staticmethod
    def _lock_project(session: Session, project_id: int) -> Project:
        # Serialises a project's votes (and pair choices) so that the live Elo follows the votes'
        # order; on SQLite the BEGIN IMMEDIATE lock already does, and FOR UPDATE is not emitted.
        return session.scalar(select(Project).where(Project.id == project_id).with_for_update())

    def vote(self, token: str | None, pair_id: int, choice: str, response_ms: int | None = None) -> VoteReceipt:
        """Records a vote on a pair issued to this rater, once, and updates both images' Elo.

        Raises:
            LabelError: 401/403 for a bad token, 404 ``pair_not_issued`` for a pair that was not issued
                to this rater, 409 ``already_voted`` for a pair already voted, 422 for a bad choice or time.
        """
        if choice not in CHOICES:
            raise LabelError(422, "invalid_parameter", f"choice: {choice!r} is not one of {', '.join(CHOICES)}")
        if response_ms is not None and not 0 <= response_ms <= MAX_RESPONSE_MS:
            raise LabelError(422, "invalid_parameter", f"response_ms: {response_ms} is not 0-{MAX_RESPONSE_MS}")
        try:
            with self._transaction() as session:
                rater = self._token(session, token, admin=False)
                pair = session.get(Pair, pair_id) if isinstance(pair_id, int) else None
                if pair is None or pair.rater_id != rater.id:
                    raise LabelError(404, "pair_not_issued", f"pair {pair_id}: not issued to this rater")
                project = self._lock_project(session, pair.project_id)
                standing = session.scalar(select(Vote.id).where(Vote.pair_id == pair.id, Vote.undone_at.is_(None)))
                if standing is not None:
                    raise LabelError(409, "already_voted", f"pair {pair_id}: already voted (vote {standing})")
                vote = Vote(pair_id=pair.id, project_id=project.id, rater_id=rater.id, choice=choice,
                            response_ms=response_ms)
                session.add(vote)
                if choice in OUTCOMES:
                    left, right = session.get(Image, pair.left_id), session.get(Image, pair.right_id)
                    left.elo, right.elo = elo_update(left.elo, right.elo, OUTCOMES[choice])
                session.flush()
                vote_id = vote.id
        except IntegrityError as error:  # a concurrent copy of the same vote won the race
            raise LabelError(409, "already_voted", f"pair {pair_id}: already voted") from error
        # Committed: the progress is read outside the project's lock, which is held as briefly as possible.
        return VoteReceipt(vote_id, pair_id, choice, self._read_progress(rater))

    def undo(self, token: str | None) -> IssuedPair:
        """Withdraws the rater's last standing vote (kept, marked undone) and issues its pair again.

        Elo is replayed from the remaining votes, so an undo leaves the ratings as if the vote had
        never been cast, whatever other raters voted since.
        """
        with self._transaction() as session:
            rater = self._token(session, token, admin=False)
            project = self._lock_project(session, rater.project_id)
            last = session.scalar(select(Vote).where(Vote.rater_id == rater.id, Vote.undone_at.is_(None))
                                  .order_by(Vote.id.desc()).limit(1))
            if last is None:
                raise LabelError(409, "nothing_to_undo", "no vote of yours to undo")
            last.undone_at = _now()
            session.flush()
            if last.choice in OUTCOMES:
                self._replay_elo(session, project)
            pair = session.get(Pair, last.pair_id)
            return IssuedPair(pair.id, pair.left_id, pair.right_id, self._progress(session, rater))

    def recompute_elo(self, project: str) -> None:
        """Recomputes every image's Elo from the raw votes (from the priors for model-seeded projects)."""
        with self._transaction() as session:
            found = self._project(session, project)
            self._replay_elo(session, self._lock_project(session, found.id))

    def _replay_elo(self, session: Session, project: Project) -> None:
        images = session.scalars(select(Image).where(Image.project_id == project.id).order_by(Image.id)).all()
        index = {image.id: i for i, image in enumerate(images)}
        first, second, outcome, _, _ = self._decided_votes(session, project.id, index)
        elo = elo_ratings(len(images), first, second, outcome, start=_start_ratings(project, images))
        for image, value in zip(images, elo):
            image.elo = float(value)

    @staticmethod
    def _decided_votes(session: Session, project_id: int, index: dict[int, int]
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Standing left/right/tie votes in their order: (first, second, outcome, rater id, response ms)."""
        rows = session.execute(
            select(Pair.left_id, Pair.right_id, Vote.choice, Vote.rater_id, Vote.response_ms)
            .join(Pair, Vote.pair_id == Pair.id)
            .where(Vote.project_id == project_id, Vote.undone_at.is_(None), Vote.choice.in_(tuple(OUTCOMES)))
            .order_by(Vote.id)).all()
        return (np.array([index[row.left_id] for row in rows], dtype=int),
                np.array([index[row.right_id] for row in rows], dtype=int),
                np.array([OUTCOMES[row.choice] for row in rows], dtype=float),
                np.array([row.rater_id for row in rows], dtype=int),
                np.array([np.nan if row.response_ms is None else row.response_ms for row in rows], dtype=float))

    # -- images ------------------------------------------------------------------------------------

    def image_bytes(self, token: str | None, image_id: int, kind: str = "face") -> bytes:
        """An image's JPEG for a rater of its project or an admin; 404 for any other image."""
        if kind not in ("face", "thumbnail"):
            raise LabelError(422, "invalid_parameter", f"kind: {kind!r} is not face or thumbnail")
        with self._sessions() as session:
            found = self._token(session, token, admin=None)
            image = session.get(Image, image_id)
            if image is None or (found.project_id is not None and image.project_id != found.project_id):
                raise LabelError(404, "not_found", f"image {image_id}: no such image in this token's project")
            return image.face if kind == "face" else image.thumbnail

    def image_names(self, project: str) -> dict[int, str]:
        """Image id -> name (the path it came from), in id order."""
        with self._sessions() as session:
            found = self._project(session, project)
            return dict(session.execute(select(Image.id, Image.name).where(Image.project_id == found.id)
                                        .order_by(Image.id)).all())

    def faces(self, project: str) -> Iterator[tuple[int, str, bytes]]:
        """(id, name, face JPEG) of each image, in id order, one at a time (for the export)."""
        for image_id in self.image_names(project):
            with self._sessions() as session:
                image = session.get(Image, image_id)
                yield image.id, image.name, image.face

    # -- ratings and raw votes (admin) -------------------------------------------------------------

    def ratings(self, project: str, seed: int = 0) -> ProjectRatings:
        """The Bradley-Terry fit over all standing votes, with Elo, counts, reliability and rater statistics."""
        with self._sessions() as session:
            found = self._project(session, project)
            images = session.execute(select(Image.id, Image.name, Image.elo).where(Image.project_id == found.id)
                                     .order_by(Image.id)).all()
            index = {row.id: i for i, row in enumerate(images)}
            first, second, outcome, rater_ids, response_ms = self._decided_votes(session, found.id, index)
            names = dict(session.execute(select(Token.id, Token.name).where(Token.project_id == found.id)).all())
            skips = session.execute(select(Vote.rater_id, func.count()).where(
                Vote.project_id == found.id, Vote.undone_at.is_(None), Vote.choice == "skip")
                .group_by(Vote.rater_id)).all()
        n = len(images)
        fit = fit_bradley_terry(n, first, second, outcome)
        low, high = fit.interval()
        wins = (np.bincount(first, weights=outcome, minlength=n)
                + np.bincount(second, weights=1 - outcome, minlength=n))
        votes = np.bincount(first, minlength=n) + np.bincount(second, minlength=n)
        tied = outcome == 0.5
        ties = np.bincount(first[tied], minlength=n) + np.bincount(second[tied], minlength=n)
        rows = [ImageRating(int(row.id), row.name, float(fit.scores[i]), float(fit.standard_errors[i]),
                            float(low[i]), float(high[i]), float(row.elo), int(votes[i]), float(wins[i]),
                            float(votes[i] - wins[i]), int(ties[i])) for i, row in enumerate(images)]
        rows.sort(key=lambda row: (-row.bt_score, row.image_id))
        reliability = split_half_reliability(n, first, second, outcome, seed=seed) if len(first) >= 4 else None
        raters = rater_statistics(np.array([names.get(r, str(r)) for r in rater_ids], dtype=object),
                                  first, second, outcome, response_ms, fit.scores) if len(first) else []
        skipped = {names.get(rater_id, str(rater_id)): count for rater_id, count in skips}
        for statistics in raters:
            statistics.skips = skipped.get(statistics.rater, 0)
        return ProjectRatings(project, rows, reliability, raters, len(first))

    def raw_votes(self, project: str) -> list[dict[str, Any]]:
        """Every vote, undone ones included, in order: the truth the ratings are derived from."""
        with self._sessions() as session:
            found = self._project(session, project)
            names = dict(session.execute(select(Token.id, Token.name).where(Token.project_id == found.id)).all())
            rows = session.execute(
                select(Vote, Pair).join(Pair, Vote.pair_id == Pair.id)
                .where(Vote.project_id == found.id).order_by(Vote.id)).all()
            return [{"vote_id": vote.id, "rater": names.get(vote.rater_id, str(vote.rater_id)), "pair_id": pair.id,
                     "left_id": pair.left_id, "right_id": pair.right_id, "choice": vote.choice,
                     "response_ms": vote.response_ms, "voted_at": _utc_text(vote.created_at),
                     "undone_at": _utc_text(vote.undone_at) if vote.undone_at else ""}
                    for vote, pair in rows]


def _utc_text(moment: datetime) -> str:
    """ISO 8601 in UTC (SQLite returns the stored UTC time without its zone)."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).isoformat()


def _settings(project: Project) -> ScheduleSettings:
    return ScheduleSettings(scheme=project.scheme, random_share=project.random_share,
                            votes_per_image=project.votes_per_image, cap_per_image=project.cap_per_image)


def _start_ratings(project: Project, images: list[Image]) -> np.ndarray:
    """Every image starts at :data:`ELO_START`, or at its prior's rating in a model-seeded project."""
    priors = [image.prior for image in images]
    if project.scheme == "model" and images and all(prior is not None for prior in priors):
        return prior_ratings(np.array(priors, dtype=float))
    return np.full(len(images), ELO_START)
