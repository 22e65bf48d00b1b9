"""The FastAPI app of ``faceattr serve``: the REST API, the page, health, readiness and metrics.

Routes (OpenAPI at ``/docs``):

- ``POST /v1/predict``: one image (multipart field ``file``, or the raw body) -> its faces as JSON;
  ``?decision=balanced|f1|probability`` and ``?threshold=`` choose the policy listing the present attributes.
- ``POST /v1/predict/batch``: several images (multipart fields ``files``) -> one result or error each.
- ``POST /v1/annotate``: one image -> the image with its faces drawn, as JPEG.
- ``POST /v1/explain?face=&target=``: one image -> the Grad-CAM map of one face for an attribute or
  beauty: the map over the face's aligned crop (a small PNG) and the warp that puts it on the photo.
- ``GET /v1/model``: backbone, input size, version, validation figures, decision policies, limits.
- ``GET /healthz`` (the process answers), ``GET /readyz`` (model loaded and warmed up),
  ``GET /metrics`` (Prometheus).
- ``GET /``: the web page (upload and live webcam), every asset served from the package.

Every error is JSON ``{"error": {"code", "message"}}`` (:mod:`faceattr.serve.errors`). Nothing a
client sends is ever used as a path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from faceattr.asgi import CountedBody, RecordedSend, declared_length, multipart_files
from faceattr.serve.auth import check_api_key
from faceattr.serve.errors import ServiceError
from faceattr.serve.service import Service
from faceattr.serve.settings import ServeSettings
from faceattr.serve.stream import router as stream_router
from faceattr.version import __version__

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("faceattr.serve.access")

#: The page's files (package data).
PAGE_DIR = Path(__file__).resolve().parent / "page"

#: Routes counted in the metrics under their own name; anything else is counted as ``other``,
#: so that scanners probing random paths cannot grow the metrics without bound.
METRIC_ROUTES = frozenset({"/", "/v1/predict", "/v1/predict/batch", "/v1/annotate", "/v1/explain", "/v1/model",
                           "/v1/stream",
                           "/healthz", "/readyz", "/metrics", "/docs", "/openapi.json"})

#: Most present attributes drawn per face by ``/v1/annotate``.
MAX_TOP = 40

_IMAGE_BODY = {"type": "string", "format": "binary"}
_ONE_IMAGE = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "properties": {"file": _IMAGE_BODY}, "required": ["file"]}},
    "application/octet-stream": {"schema": _IMAGE_BODY}, "image/jpeg": {"schema": _IMAGE_BODY},
    "image/png": {"schema": _IMAGE_BODY}}}}
_SEVERAL_IMAGES = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "properties": {"files": {"type": "array", "items": _IMAGE_BODY}}, "required": ["files"]}}}}}
_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"description": description, "content": {"application/json": {"example": {
        "error": {"code": code, "message": "..."}}}}}
    for status, code, description in (
        (401, "unauthorized", "missing or wrong API key"), (413, "payload_too_large", "upload or image too large"),
        (415, "unsupported_media_type", "not an image"), (422, "invalid_image", "bad image or parameter"),
        (429, "overloaded", "queue full: retry after Retry-After seconds"),
        (501, "explain_unavailable", "/v1/explain on a model without gradients (ONNX)"),
        (503, "not_ready", "model loading: retry after Retry-After seconds"), (504, "timeout", "request timed out"))}


class _Guard:
    """ASGI middleware: the body size limit, per-route metrics and an access log without content.

    The access log has the method, the path without its query string (which may hold the API
    key), the status, the time and the bytes received; never image content or headers.
    """

    def __init__(self, app: ASGIApp, settings: ServeSettings, service: Service):
        self.app = app
        self.settings = settings
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        route = path if path in METRIC_ROUTES else "/static" if path.startswith("/static/") else "other"
        limit = self.settings.max_upload_bytes * (self.settings.max_batch_files if path == "/v1/predict/batch"
                                                  else 1)
        started = time.perf_counter()
        body = CountedBody(receive, limit, lambda limit: ServiceError(
            413, "payload_too_large", f"upload: the request body is over the limit of {limit:,} bytes"))
        answer = RecordedSend(send)
        declared = declared_length(scope)
        if scope["type"] == "http" and declared is not None and declared > limit:
            error = ServiceError(413, "payload_too_large",
                                 f"upload: {declared:,} bytes declared, over the limit of {limit:,} bytes")
            self.service.metrics.errors.labels(code=error.code).inc()
            response = JSONResponse(error.body(), error.status, headers={"Connection": "close"})
            await response(scope, receive, answer)
        else:
            await self.app(scope, body if scope["type"] == "http" else receive, answer)
        elapsed = time.perf_counter() - started
        if scope["type"] == "http":
            metrics = self.service.metrics
            metrics.requests.labels(route=route, method=scope["method"], status=str(answer.status)).inc()
            metrics.latency.labels(route=route).observe(elapsed)
            access_logger.info("%s %s %s %d %.1fms %dB", (scope.get("client") or ("-",))[0], scope["method"],
                               path, answer.status, 1000 * elapsed, body.received)


def _error_response(service: Service, error: ServiceError) -> JSONResponse:
    service.metrics.errors.labels(code=error.code).inc()
    return JSONResponse(error.body(), error.status, headers=error.headers())


async def _read_one(request: Request) -> bytes:
    """The image of a request: the multipart field ``file``, or the whole raw body."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=8)
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ServiceError(400, "bad_request", "form: no file field named 'file'")
        return await upload.read()
    return await request.body()


def create_app(settings: ServeSettings | None = None, service: Service | None = None) -> FastAPI:
    """The service's app; the model loads when the app starts (its lifespan), not here.

    Args:
        settings: How it runs; defaults when ``None``.
        service: The model behind it (tests pass one with a loaded predictor; Ray Serve one
            with its own runner); ``None``: a :class:`Service` loading ``settings.model``.

    >>> app = create_app()
    >>> sorted(path for path in app.openapi()["paths"] if path.startswith("/v1"))[:3]
    ['/v1/annotate', '/v1/explain', '/v1/model']
    """
    settings = settings or ServeSettings()
    service = service or Service(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(title="faceattr", version=__version__, lifespan=lifespan,
                  description="Facial attributes (the 40 of CelebA) and a beauty score (1-5) for the faces in "
                              "photos. Errors are JSON: {\"error\": {\"code\", \"message\"}}.")
    app.state.settings = settings
    app.state.service = service
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["X-API-Key", "Authorization", "Content-Type"])
    app.add_middleware(_Guard, settings=settings, service=service)

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, error: ServiceError) -> JSONResponse:
        return _error_response(service, error)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "bad_request")
        return _error_response(service, ServiceError(error.status_code, code, str(error.detail)))

    @app.exception_handler(RequestValidationError)
    async def invalid_parameter(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in item['loc'][1:])}: {item['msg']}" for item in error.errors())
        return _error_response(service, ServiceError(422, "invalid_parameter", problems))

    @app.exception_handler(Exception)
    async def internal(request: Request, error: Exception) -> JSONResponse:
        logger.exception("internal error on %s %s", request.method, request.url.path)
        return _error_response(service, ServiceError(500, "internal", "internal error (see the server's log)"))

    decision_query = Query(None, description="balanced, f1 or probability; default: the model's")
    threshold_query = Query(None, gt=0, lt=1, description="the probability policy's cut-off (implies it)")
    protected = [Depends(check_api_key)]

    @app.post("/v1/predict", dependencies=protected, openapi_extra=_ONE_IMAGE, responses=_ERROR_RESPONSES,
              summary="The faces in one image, with their attributes and beauty")
    async def predict(request: Request, decision: str | None = decision_query,
                      threshold: float | None = threshold_query) -> JSONResponse:
        async def work() -> JSONResponse:
            prediction = await service.predict_bytes(await _read_one(request), decision, threshold)
            return JSONResponse(prediction.to_dict())
        return await service.within_timeout(work())

    @app.post("/v1/predict/batch", dependencies=protected, openapi_extra=_SEVERAL_IMAGES,
              responses=_ERROR_RESPONSES, summary="The faces in several images: one result or error each")
    async def predict_batch(request: Request, decision: str | None = decision_query,
                            threshold: float | None = threshold_query) -> JSONResponse:
        async def one(data: bytes) -> dict[str, Any]:
            try:
                return (await service.predict_bytes(data, decision, threshold)).to_dict()
            except ServiceError as error:
                service.metrics.errors.labels(code=error.code).inc()
                return error.body()

        async def work() -> JSONResponse:
            service.check_decision(decision, threshold)
            uploads = await multipart_files(request, settings.max_batch_files,
                                            lambda message: ServiceError(400, "bad_request", message))
            images = [await upload.read() for upload in uploads]
            return JSONResponse({"results": await asyncio.gather(*(one(data) for data in images))})
        return await service.within_timeout(work())

    @app.post("/v1/annotate", dependencies=protected, openapi_extra=_ONE_IMAGE, responses=_ERROR_RESPONSES,
              response_class=Response, summary="The image with its faces drawn, as JPEG")
    async def annotate(request: Request, decision: str | None = decision_query,
                       threshold: float | None = threshold_query,
                       top: int = Query(3, ge=0, le=MAX_TOP, description="present attributes drawn per face")
                       ) -> Response:
        async def work() -> Response:
            jpeg = await service.annotate_bytes(await _read_one(request), decision, threshold, top)
            return Response(jpeg, media_type="image/jpeg")
        return await service.within_timeout(work())

    @app.post("/v1/explain", dependencies=protected, openapi_extra=_ONE_IMAGE, responses=_ERROR_RESPONSES,
              summary="What the model looks at: one face's Grad-CAM map for an attribute or beauty")
    async def explain(request: Request,
                      target: str = Query(..., description="an attribute name (as in /v1/model) or beauty"),
                      face: int = Query(0, ge=0, description="the face's index in /v1/predict's answer")
                      ) -> JSONResponse:
        async def work() -> JSONResponse:
            return JSONResponse((await service.explain_bytes(await _read_one(request), face, target)).to_dict())
        return await service.within_timeout(work())

    @app.get("/v1/model", dependencies=protected, summary="The model: backbone, size, validation, policies")
    async def model() -> dict[str, Any]:
        return service.model_info()

    @app.get("/healthz", summary="The process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="The model is loaded and warmed up")
    async def readyz() -> JSONResponse:
        if not service.ready:
            raise ServiceError(503, "not_ready", "the model is still loading or the service is stopping")
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", summary="Prometheus metrics")
    async def metrics() -> Response:
        return Response(service.metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(PAGE_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    app.include_router(stream_router)
    app.mount("/static", StaticFiles(directory=PAGE_DIR, check_dir=False), name="static")
    return app


def serve(settings: ServeSettings) -> None:
    """Runs the service under uvicorn until interrupted (Ctrl-C or SIGTERM finish the requests in flight)."""
    import uvicorn

    logging.basicConfig(format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    logging.getLogger("faceattr").setLevel(logging.INFO)  # readiness and the access log
    # A webcam frame is held to the upload limit too (uvicorn's own WebSocket limit is 16 MiB).
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, access_log=False,
                log_level="info", timeout_graceful_shutdown=10, ws_max_size=settings.max_upload_bytes)
