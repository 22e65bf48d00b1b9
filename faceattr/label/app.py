"""The labelling tool's web app: the voting page, the leaderboard and their JSON API (``faceattr label serve``).

Routes (OpenAPI at ``/docs``); every token travels in ``Authorization: Bearer TOKEN``:

- Rater (a personal token): ``GET /api/me`` (who, which project, the question, the progress),
  ``POST /api/next`` (the pair to judge: the open one again until it is voted), ``POST /api/votes``
  (``{pair_id, choice, response_ms}``), ``POST /api/undo`` (takes the last vote back: its pair is open again).
- Images, by id only: ``GET /api/images/{id}?kind=face|thumbnail`` (a rater sees its project's
  images, an admin any).
- Admin (an admin token): ``GET /api/projects``, ``POST /api/projects`` (name, question, schedule
  settings), ``POST /api/projects/{name}/images`` (multipart ``files``: each sniffed from its bytes,
  held to the pixel and size limits, its face detected and aligned), ``POST /api/projects/{name}/raters``
  (-> ``{token, link}``), ``GET /api/projects/{name}/ratings`` (the leaderboard),
  ``GET /api/projects/{name}/labels.csv`` (the export's table) and ``GET /api/projects/{name}/export.zip``
  (the whole export: ``labels.csv``, ``votes.csv`` and the crops, as ``faceattr label export`` writes it).
- Pages: ``GET /vote`` (a rater's personal link is ``/vote#token=...``: the token is in the URL's
  fragment, which browsers never send, so it never reaches a server's or proxy's log) and
  ``GET /leaderboard#token=ADMIN&project=NAME``; ``GET /healthz``.

Every error is JSON ``{"error": {"code", "message"}}`` (:mod:`faceattr.label.errors`). Nothing a
client sends is ever used as a path.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
from fastapi import Depends, FastAPI, Query, Request
from fastapi import Path as PathParameter
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from faceattr.asgi import CountedBody, RecordedSend, declared_length, multipart_files
from faceattr.errors import ConfigError
from faceattr.image import PREDICTION_MAX_PIXELS, UPLOAD_FORMAT_NAMES, image_header
from faceattr.label.errors import LabelError
from faceattr.label.project import (
    FacePreparer,
    PreparedFace,
    export_archive,
    export_files,
)
from faceattr.label.schedule import ScheduleSettings
from faceattr.label.store import IssuedPair, LabelStore
from faceattr.version import __version__

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("faceattr.label.access")

#: The pages' files (package data).
PAGE_DIR = Path(__file__).resolve().parent / "page"

#: Headers of every answer: no page may frame this one, no type is guessed, no referrer leaves.
_SECURITY_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
                     (b"x-frame-options", b"DENY")]
#: The pages' policy: their own scripts and styles only; images are blob URLs made from fetched bytes.
_PAGE_POLICY = "default-src 'self'; img-src 'self' blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"


@dataclass(frozen=True)
class LabelServeSettings:
    """How ``faceattr label serve`` runs.

    Attributes:
        database: The store: a SQLite file path or any SQLAlchemy URL (``postgresql+psycopg://...``).
        host: Address to bind; loopback by default, so nothing outside the machine reaches it
            unless asked for (``0.0.0.0``).
        port: TCP port.
        public_url: The address raters reach the server at, the base of their personal links;
            ``None``: the address the admin's request came to.
        max_upload_mb: Largest image file in MiB.
        max_upload_files: Most image files in one upload request.
        max_json_kb: Largest body of any other request (JSON) in KiB.
        max_pixels: Largest image (width x height), checked from its header before decoding.
        align: Detect and align each uploaded face (``False``: the whole photo is what raters see).
        model: The model that finds the faces and gives model-seeded projects their priors
            (``None``: the installed default).
    """

    database: str = "labels.db"
    host: str = "127.0.0.1"
    port: int = 8100
    public_url: str | None = None
    max_upload_mb: float = 20.0
    max_upload_files: int = 50
    max_json_kb: float = 64.0
    max_pixels: int = PREDICTION_MAX_PIXELS
    align: bool = True
    model: str | None = None

    def __post_init__(self) -> None:
        for name in ("max_upload_files", "max_pixels"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name}: must be an integer of at least 1, got {value!r}")
        for name in ("max_upload_mb", "max_json_kb"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ConfigError(f"{name}: must be a positive number, got {value!r}")
        if not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise ConfigError(f"port: must be an integer from 0 to 65535, got {self.port!r}")
        if self.public_url is not None and not self.public_url.startswith(("http://", "https://")):
            raise ConfigError(f"public_url: must start with http:// or https://, got {self.public_url!r}")

    @property
    def max_upload_bytes(self) -> int:
        """The largest image file in bytes."""
        return int(self.max_upload_mb * 2**20)

    @property
    def max_json_bytes(self) -> int:
        """The largest JSON body in bytes."""
        return int(self.max_json_kb * 2**10)


class _Guard:
    """ASGI middleware: the body limit of each request, security headers and an access log without secrets.

    An upload may hold ``max_upload_files`` images of ``max_upload_mb`` each (plus the multipart
    framing); any other body is held to ``max_json_kb``. The access log has the method, the path
    (tokens are never in it: they travel in a header, and personal links keep them in the fragment),
    the status, the time and the bytes received.
    """

    def __init__(self, app: ASGIApp, settings: LabelServeSettings):
        self.app = app
        self.upload_limit = settings.max_upload_bytes * settings.max_upload_files + 2**16
        self.json_limit = settings.max_json_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        limit = self.upload_limit if path.startswith("/api/projects/") and path.endswith("/images") else self.json_limit
        started = time.perf_counter()
        body = CountedBody(receive, limit, lambda limit: LabelError(
            413, "payload_too_large", f"request: the body is over this route's limit of {limit:,} bytes"))
        answer = RecordedSend(send, _SECURITY_HEADERS)
        declared = declared_length(scope)
        if declared is not None and declared > limit:
            error = LabelError(413, "payload_too_large",
                               f"request: {declared:,} bytes declared, over this route's limit of {limit:,} bytes")
            await JSONResponse(error.body(), error.status, headers={"Connection": "close"})(scope, receive, answer)
        else:
            await self.app(scope, body, answer)
        access_logger.info("%s %s %s %d %.1fms %dB", (scope.get("client") or ("-",))[0], scope["method"], path,
                           answer.status, 1000 * (time.perf_counter() - started), body.received)


def sniff_image(data: bytes, name: str, max_bytes: int, max_pixels: int) -> None:
    """Refuses an uploaded file from its size and header, before anything is decoded.

    Raises:
        LabelError: 413 ``payload_too_large`` (over ``max_bytes``, or over ``max_pixels``: a
            decompression bomb needs only a header to claim gigapixels), 415
            ``unsupported_media_type`` (not an image of an accepted type, whatever its name says).

    >>> sniff_image(b"hello", "notes.jpg", 100, 100)
    Traceback (most recent call last):
    ...
    faceattr.label.errors.LabelError: notes.jpg: not an image of a supported type (JPEG, PNG, WebP, BMP, GIF, TIFF)
    """
    if len(data) > max_bytes:
        raise LabelError(413, "payload_too_large", f"{name}: {len(data):,} bytes, over the limit of {max_bytes:,}")
    try:
        kind, (width, height) = image_header(data)
    except Image.DecompressionBombError as error:  # over twice PIL's own limit: refused by PIL from the header
        raise LabelError(413, "payload_too_large", f"{name}: {error}") from error
    if kind is None:
        raise LabelError(415, "unsupported_media_type", f"{name}: not an image of a supported type ({UPLOAD_FORMAT_NAMES})")
    if width * height > max_pixels:
        raise LabelError(413, "payload_too_large",
                         f"{name}: {width}x{height} is {width * height:,} pixels, over the limit of {max_pixels:,}")


class ProjectRequest(BaseModel):
    """A new project: its name, the question raters answer, and how pairs are scheduled."""

    name: str = Field(min_length=1, max_length=100, description="unique; used in URLs and the export")
    question: str = Field(min_length=1, max_length=300, examples=["Which face is more attractive?"])
    settings: dict[str, Any] = Field(default_factory=dict,
                                     description="ScheduleSettings fields (scheme, random_share, votes_per_image, ...)"
                                                 "; the defaults where left out")


class RaterRequest(BaseModel):
    """A new rater of a project."""

    name: str = Field(min_length=1, max_length=100, description="shown to the admin in the raters' statistics")


class VoteRequest(BaseModel):
    """A rater's judgement of the pair it was issued."""

    pair_id: int = Field(description="from /api/next")
    choice: str = Field(description="left, right, tie or skip")
    response_ms: int = Field(description="milliseconds from both faces shown to the key press or tap")


_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"description": description, "content": {"application/json": {"example": {
        "error": {"code": code, "message": "..."}}}}}
    for status, code, description in (
        (401, "unauthorized", "missing or unknown token"), (403, "forbidden", "a rater token on an admin action"),
        (404, "not_found", "no such project or image, or not one this token may see"),
        (413, "payload_too_large", "request body or image too large"))}


def bearer_token(request: Request) -> str:
    """The token of ``Authorization: Bearer TOKEN``; 401 when there is none."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise LabelError(401, "unauthorized", "send your token as 'Authorization: Bearer TOKEN' "
                                              "(open your personal link: /vote#token=...)")
    return token.strip()


def _schedule_settings(values: dict[str, Any]) -> ScheduleSettings:
    known = {field.name for field in fields(ScheduleSettings)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise LabelError(422, "invalid_parameter",
                         f"settings: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    try:
        return ScheduleSettings(**values)
    except (ConfigError, TypeError, ValueError) as error:
        raise LabelError(422, "invalid_parameter", f"settings: {error}") from error


async def _uploads(request: Request, settings: LabelServeSettings) -> list[tuple[str, bytes]]:
    """The image files of a multipart upload (fields ``files``), each held to the limits and sniffed."""
    uploads = await multipart_files(request, settings.max_upload_files,
                                    lambda message: LabelError(400, "bad_request", message))
    files = []
    for number, upload in enumerate(uploads, 1):
        name = Path(upload.filename or f"upload-{number}").name  # a label only: never opened as a path
        data = await upload.read(settings.max_upload_bytes + 1)
        sniff_image(data, name, settings.max_upload_bytes, settings.max_pixels)
        files.append((name, data))
    return files


def _pair_answer(pair: IssuedPair | None, store: LabelStore, token: str) -> dict[str, Any]:
    """``{"pair": {pair_id, left_id, right_id} or null, "progress": {...}}``."""
    if pair is None:
        return {"pair": None, "progress": store.progress(token).to_dict()}
    answer = pair.to_dict()
    return {"progress": answer.pop("progress"), "pair": answer}


def _json_ready(value: Any) -> Any:
    """``value`` with numpy scalars as Python numbers and every NaN or infinite float (an agreement
    without decided votes) as ``None``: JSON has no NaN.

    >>> _json_ready({"agreement": float("nan"), "rows": [np.float32(1.5), float("inf")], "votes": np.int64(3)})
    {'agreement': None, 'rows': [1.5, None], 'votes': 3}
    """
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(item) for item in value]
    return value


def _download_name(project: str) -> str:
    """A project name as a file name in a Content-Disposition header: letters, digits, '-', '_' and '.' only."""
    return "".join(char if char.isascii() and (char.isalnum() or char in "-_.") else "_" for char in project) or "export"


def create_label_app(store: LabelStore, settings: LabelServeSettings | None = None) -> FastAPI:
    """The labelling tool's app over ``store``.

    Args:
        store: The database every route reads and writes (one transaction per call).
        settings: Limits and links; defaults when ``None`` (``settings.database`` is not opened
            here: ``store`` is).

    >>> from faceattr.label.store import LabelStore
    >>> app = create_label_app(LabelStore("sqlite://"))
    >>> sorted(path for path in app.openapi()["paths"] if not path.startswith("/api/projects"))
    ['/api/images/{image_id}', '/api/me', '/api/next', '/api/undo', '/api/votes', '/healthz']
    """
    settings = settings or LabelServeSettings()
    app = FastAPI(title="faceattr label", version=__version__,
                  description="Pairwise-vote labelling: raters choose the preferred of two faces; the votes "
                              "become Elo and Bradley-Terry scores. Tokens: 'Authorization: Bearer TOKEN'. "
                              "Errors are JSON: {\"error\": {\"code\", \"message\"}}.")
    app.state.store = store
    app.state.settings = settings
    app.add_middleware(_Guard, settings=settings)

    @app.exception_handler(LabelError)
    async def label_error(request: Request, error: LabelError) -> JSONResponse:
        return JSONResponse(error.body(), error.status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "bad_request")
        return JSONResponse(LabelError(error.status_code, code, str(error.detail)).body(), error.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid_parameter(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in item['loc'][1:]) or 'body'}: {item['msg']}"
                             for item in error.errors())
        return JSONResponse(LabelError(422, "invalid_parameter", problems).body(), 422)

    @app.exception_handler(Exception)
    async def internal(request: Request, error: Exception) -> JSONResponse:
        logger.exception("internal error on %s %s", request.method, request.url.path)
        return JSONResponse(LabelError(500, "internal", "internal error (see the server's log)").body(), 500)

    def rater_token(request: Request) -> str:
        token = bearer_token(request)
        store.rater(token)  # 401 for an unknown token
        return token

    def admin_token(request: Request) -> str:
        token = bearer_token(request)
        store.check_admin(token)  # 401 unknown, 403 a rater's
        return token

    rater = Depends(rater_token)
    admin = [Depends(admin_token)]
    # One preparer (its model loads on the first upload) used by one upload at a time: the
    # predictor is not shared between threads. It always scores the faces (that costs nothing
    # beyond finding them); only a model-seeded project keeps the score as the prior.
    preparer = FacePreparer(align=settings.align, prior="beauty" if settings.align else None, model=settings.model)
    preparing = threading.Lock()

    def prepare(data: bytes, file_name: str) -> PreparedFace:
        with preparing:
            return preparer.prepare(data, file_name)

    # ---- Rater -------------------------------------------------------------------------------------------------
    # Plain (sync) handlers: FastAPI runs them in its thread pool, so the store's blocking
    # transactions never hold up the event loop.

    @app.get("/api/me", responses=_ERROR_RESPONSES, summary="The rater, its project's question and the progress")
    def me(token: str = rater) -> dict[str, Any]:
        return {**store.rater(token).to_dict(), "progress": store.progress(token).to_dict()}

    @app.post("/api/next", responses=_ERROR_RESPONSES,
              summary="The pair to judge (the open one again until voted); pair null when the project is done")
    def next_pair(token: str = rater) -> dict[str, Any]:
        return _pair_answer(store.next_pair(token), store, token)

    @app.post("/api/votes", responses=_ERROR_RESPONSES,
              summary="A vote for the pair issued to this rater; once answered, it is committed")
    def vote(body: VoteRequest, token: str = rater) -> dict[str, Any]:
        return store.vote(token, body.pair_id, body.choice, body.response_ms).to_dict()

    @app.post("/api/undo", responses=_ERROR_RESPONSES, summary="Takes the rater's last vote back; its pair is open again")
    def undo(token: str = rater) -> dict[str, Any]:
        return _pair_answer(store.undo(token), store, token)

    @app.get("/api/images/{image_id}", responses=_ERROR_RESPONSES, response_class=Response,
             summary="An image of the token's project by id, as JPEG (the aligned face or its thumbnail)")
    def image(request: Request, image_id: int = PathParameter(ge=1, description="the image's id, as listed"),
              kind: Literal["face", "thumbnail"] = Query("face", description="face or thumbnail")) -> Response:
        jpeg = store.image_bytes(bearer_token(request), image_id, kind)
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    # ---- Admin -------------------------------------------------------------------------------------------------

    @app.get("/api/projects", dependencies=admin, responses=_ERROR_RESPONSES, summary="Every project")
    def projects() -> dict[str, Any]:
        return {"projects": [project.to_dict() for project in store.projects()]}

    @app.post("/api/projects", dependencies=admin, responses=_ERROR_RESPONSES, status_code=201,
              summary="A new project: name, question, schedule settings")
    def create_project(body: ProjectRequest) -> dict[str, Any]:
        return store.create_project(body.name, body.question, _schedule_settings(body.settings)).to_dict()

    @app.get("/api/projects/{name}", dependencies=admin, responses=_ERROR_RESPONSES, summary="One project")
    def project(name: str) -> dict[str, Any]:
        return store.project(name).to_dict()

    @app.post("/api/projects/{name}/images", dependencies=admin, responses=_ERROR_RESPONSES, status_code=201,
              openapi_extra={"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                  "type": "object", "properties": {"files": {"type": "array", "items": {
                      "type": "string", "format": "binary"}}}, "required": ["files"]}}}}},
              summary="Adds images: each checked, its face detected and aligned; all or none are added")
    async def add_images(request: Request, name: str) -> dict[str, Any]:
        project = await run_in_threadpool(store.project, name)  # 404 before reading a large body for nothing
        files = await _uploads(request, settings)
        taken = set((await run_in_threadpool(store.image_names, name)).values())
        names = [file_name for file_name, _ in files]
        clashes = sorted({file_name for file_name in names if file_name in taken or names.count(file_name) > 1})
        if clashes:
            raise LabelError(409, "image_exists", f"{', '.join(clashes)}: already in project {name!r} or sent "
                                                    "twice; rename the file(s)")
        # Every face is prepared before any is stored, so a photo without a face adds nothing.
        faces = [await run_in_threadpool(prepare, data, file_name) for file_name, data in files]
        seeded = project.settings.scheme == "model"
        added = []
        for file_name, face in zip(names, faces):
            image_id = await run_in_threadpool(store.add_image, name, file_name, face.face_jpeg, face.thumbnail_jpeg,
                                               face.prior if seeded else None)
            added.append({"id": image_id, "name": file_name, "faces_found": face.faces_found})
        if seeded:
            await run_in_threadpool(store.recompute_elo, name)  # the new priors are the images' starting Elo
        return {"added": added}

    @app.post("/api/projects/{name}/raters", dependencies=admin, responses=_ERROR_RESPONSES, status_code=201,
              summary="A new rater: its token and personal link (the token in the link's fragment)")
    def add_rater(request: Request, name: str, body: RaterRequest) -> dict[str, Any]:
        token = store.add_rater(name, body.name)
        base = settings.public_url or str(request.base_url)
        return {"name": body.name, "token": token, "link": f"{base.rstrip('/')}/vote#token={token}"}

    @app.get("/api/projects/{name}/ratings", dependencies=admin, responses=_ERROR_RESPONSES,
             summary="The leaderboard: Bradley-Terry and Elo per image, reliability, rater statistics")
    def ratings(name: str) -> Any:
        return _json_ready(store.ratings(name).to_dict())

    high_share = Query(0.25, gt=0, lt=1, description="share of the scored images marked high")
    min_votes = Query(5, ge=1, description="images with fewer votes get no score")

    @app.get("/api/projects/{name}/labels.csv", dependencies=admin, responses=_ERROR_RESPONSES,
             response_class=Response, summary="The export's labels.csv: one row per image, best first")
    def labels_csv(name: str, high_share: float = high_share, min_votes: int = min_votes) -> Response:
        _, table = next(export_files(store, name, high_share, min_votes))  # labels.csv comes first
        return Response(table, media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{_download_name(name)}.csv"'})

    @app.get("/api/projects/{name}/export.zip", dependencies=admin, responses=_ERROR_RESPONSES,
             response_class=Response, summary="The whole export: labels.csv, votes.csv and the crops")
    def export_zip(name: str, high_share: float = high_share, min_votes: int = min_votes) -> Response:
        return Response(export_archive(store, name, high_share, min_votes), media_type="application/zip",
                        headers={"Content-Disposition": f'attachment; filename="{_download_name(name)}.zip"'})

    # ---- Pages -------------------------------------------------------------------------------------------------

    def page(file_name: str) -> FileResponse:
        return FileResponse(PAGE_DIR / file_name, headers={"Cache-Control": "no-cache",
                                                          "Content-Security-Policy": _PAGE_POLICY})

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/vote")  # the browser keeps the fragment (the token) across the redirect

    @app.get("/vote", include_in_schema=False)
    async def vote_page() -> FileResponse:
        return page("index.html")

    @app.get("/leaderboard", include_in_schema=False)
    async def leaderboard_page() -> FileResponse:
        return page("leaderboard.html")

    @app.get("/healthz", summary="The process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.mount("/static", StaticFiles(directory=PAGE_DIR, check_dir=False), name="static")
    return app


def serve_labels(settings: LabelServeSettings, store: LabelStore | None = None) -> None:
    """Runs the labelling app under uvicorn until interrupted (Ctrl-C or SIGTERM finish the requests in flight).

    Args:
        settings: Where it listens, its limits, and the database (opened here unless ``store`` is given).
        store: An open store instead of ``settings.database``.
    """
    import uvicorn

    logging.basicConfig(format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    logging.getLogger("faceattr").setLevel(logging.INFO)  # the access log
    app = create_label_app(store or LabelStore(settings.database), settings)
    uvicorn.run(app, host=settings.host, port=settings.port, access_log=False, log_level="info",
                timeout_graceful_shutdown=10)
