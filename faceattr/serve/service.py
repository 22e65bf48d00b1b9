"""The model behind the API: admission (the bounded queue), safe decoding off the event loop,
micro-batched detection and network, and the decision policy a request asks for.

:class:`Service` is what the routes of :mod:`faceattr.serve.app` call; it knows nothing of HTTP
but the status and code of its refusals (:class:`~faceattr.serve.errors.ServiceError`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import io
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from PIL import Image

from faceattr.attributes import ATTRIBUTES, BEAUTY_RANGE
from faceattr.config import DECISION_POLICIES
from faceattr.errors import ConfigError, ImageError
from faceattr.evaluation.summary import headline_figures
from faceattr.explain.gradcam import BEAUTY_TARGET
from faceattr.explain.maps import check_targets, explain_photo
from faceattr.image import UPLOAD_FORMAT_NAMES, image_header, read_reduced
from faceattr.inference.annotate import annotate
from faceattr.inference.predictor import Predictor, rescale_faces
from faceattr.inference.results import FaceResult
from faceattr.serve.batcher import MicroBatcher
from faceattr.serve.errors import ServiceError
from faceattr.serve.metrics import ServiceMetrics
from faceattr.serve.settings import ServeSettings
from faceattr.version import __version__

logger = logging.getLogger(__name__)

#: Quality of the annotated JPEG answered by ``/v1/annotate``.
ANNOTATED_QUALITY = 90

#: Threads decoding uploads and encoding annotated images beside the inference thread.
DECODE_THREADS = 2

Answer = TypeVar("Answer")

#: Runs the network on one decoded image: its faces, in the image's pixels.
Runner = Callable[[np.ndarray], Awaitable[list[FaceResult]]]


@dataclass(frozen=True)
class Prediction:
    """The faces of one uploaded image.

    Attributes:
        faces: Best detector score first, boxes and landmarks in the full image's pixels.
        width: The upright image's width in pixels.
        height: Its height.
        decision: The policy that listed the faces' present attributes.
    """

    faces: list[FaceResult]
    width: int
    height: int
    decision: str

    def to_dict(self) -> dict[str, Any]:
        """The JSON answer of ``POST /v1/predict``."""
        return {"width": self.width, "height": self.height, "decision": self.decision,
                "faces": [face.to_dict() for face in self.faces]}


@dataclass(frozen=True)
class FaceMap:
    """The Grad-CAM map of one face of an uploaded image for one target, in its compact form.

    The map stays over the aligned crop the network saw; ``matrix`` puts it on the photo (a page
    draws it through the inverse warp), so the answer is a few kB whatever the photo's size.

    Attributes:
        face: The face's index in ``POST /v1/predict``'s answer (best detector score first).
        target: An attribute name or ``"beauty"``.
        score: The face's probability of the attribute, or its beauty score.
        box: The face's box in the full image's pixels.
        width: The upright image's width in pixels.
        height: Its height.
        crop_map: ``(S, S)`` float32 map over the crop, 0-1.
        matrix: ``(2, 3)`` warp from the full image's pixels to the map's (pixel ``i`` centred at ``i``).
        png: ``crop_map`` as an 8-bit greyscale PNG, 0-255 for 0-1 (what the answer carries).
    """

    face: int
    target: str
    score: float
    box: tuple[float, float, float, float]
    width: int
    height: int
    crop_map: np.ndarray = field(repr=False)
    matrix: np.ndarray = field(repr=False)
    png: bytes = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON answer of ``POST /v1/explain``."""
        return {"width": self.width, "height": self.height, "face": self.face, "target": self.target,
                "score": self.score, "box": list(self.box),
                "map": {"width": int(self.crop_map.shape[1]), "height": int(self.crop_map.shape[0]),
                        "png": base64.b64encode(self.png).decode("ascii"),
                        "matrix": [[float(value) for value in row] for row in self.matrix]}}


def sniff(data: bytes, max_pixels: int, min_side: int) -> None:
    """Refuses an upload from its header, before anything is decoded.

    The type comes from the bytes (PIL's magic-number detection), never from a file name.

    Raises:
        ServiceError: ``bad_request`` (empty), ``unsupported_media_type``, ``image_too_large``
            (more than ``max_pixels``: a decompression bomb needs only a header to claim
            gigapixels) or ``image_too_small`` (a side under ``min_side``, the smallest face the
            detector finds).

    >>> sniff(b"hello", 100, 1)
    Traceback (most recent call last):
    ...
    faceattr.serve.errors.ServiceError: upload: not an image of a supported type (JPEG, PNG, WebP, BMP, GIF, TIFF)
    """
    if not data:
        raise ServiceError(400, "bad_request", "upload: the image is empty (0 bytes)")
    try:
        kind, (width, height) = image_header(data)
    except Image.DecompressionBombError as error:  # over twice PIL's own limit: refused by PIL from the header
        raise ServiceError(413, "image_too_large", f"upload: {error}") from error
    if kind is None:
        raise ServiceError(415, "unsupported_media_type",
                           f"upload: not an image of a supported type ({UPLOAD_FORMAT_NAMES})")
    if width * height > max_pixels:
        raise ServiceError(413, "image_too_large", f"upload: {width}x{height} is {width * height:,} pixels, over "
                                                   f"the limit of {max_pixels:,}")
    if min(width, height) < min_side:
        raise ServiceError(422, "image_too_small", f"upload: {width}x{height} is smaller than the smallest face "
                                                   f"the detector finds ({min_side} px)")


class Service:
    """One loaded model serving requests: at most ``settings.max_queue`` in flight.

    Args:
        settings: The service's settings.
        predictor: A loaded predictor; ``None``: :meth:`start` loads ``settings.model``.
        metrics: Where to count; a new :class:`ServiceMetrics` when ``None``.
        runner: What runs the network on a decoded image; ``None``: this process's
            :class:`~faceattr.serve.batcher.MicroBatcher` (Ray Serve passes its ``@serve.batch`` method).
        runner_thread: The one-thread executor ``runner`` runs the model on: the model is built and
            warmed up there too (torch ran a model built on another thread about a third slower).
    """

    def __init__(self, settings: ServeSettings, predictor: Predictor | None = None,
                 metrics: ServiceMetrics | None = None, runner: Runner | None = None,
                 runner_thread: Executor | None = None):
        self.settings = settings
        self.predictor = predictor
        self.metrics = metrics or ServiceMetrics()
        self._runner = runner
        self._runner_thread = runner_thread
        self._batcher: MicroBatcher[np.ndarray, list[FaceResult]] | None = None
        self._pool = ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="faceattr-decode")
        self._in_flight = 0
        self._decoding = 0
        self.ready = False

    async def start(self) -> None:
        """Loads the model (unless given), warms it up, starts the micro-batcher; then :attr:`ready`."""
        loop = asyncio.get_running_loop()
        # MTCNN's first pass over an image size builds its pyramid; pay for it before the first request.
        warm_up = np.zeros((480, 640, 3), np.uint8)
        if self._runner is None:
            # The model is built on the inference thread itself: torch (OpenMP) ran a model built on
            # another thread about a third slower there (tools/benchmark_serve.py, 2 CPU cores).
            self._batcher = MicroBatcher(self.faces_of, self.settings.max_batch, self.settings.max_wait_ms / 1000,
                                         incoming=lambda: self._decoding, on_batch=self.metrics.batch_size.observe,
                                         setup=self._load)
            self._batcher.start()
            self._runner = self._batcher.run
            await self._batcher.run(warm_up)
        else:
            await loop.run_in_executor(self._runner_thread or self._pool, self._load)
            await loop.run_in_executor(self._runner_thread or self._pool, self.faces_of, [warm_up])
        self.ready = True
        logger.info("ready: %r", self.predictor)

    def _load(self) -> None:
        """Loads ``settings.model`` unless a predictor was given (blocking)."""
        if self.predictor is None:
            settings = self.settings
            self.predictor = Predictor(settings.model, device=settings.device, batch_size=max(settings.max_batch, 8),
                                       decision=settings.decision, max_pixels=settings.max_pixels,
                                       backend=settings.backend)

    async def stop(self) -> None:
        """Stops taking requests, finishes those in the batcher, frees the threads."""
        self.ready = False
        if self._batcher is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._batcher.stop)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def faces_of(self, arrays: Sequence[np.ndarray]) -> list[list[FaceResult]]:
        """Detection and the network over decoded images, in their own pixels (blocking)."""
        predictor = self._loaded
        return predictor.classify(arrays, predictor.detector.detect_batch(arrays))

    @property
    def _loaded(self) -> Predictor:
        if self.predictor is None:
            raise ServiceError(503, "not_ready", "the model is still loading")
        return self.predictor

    @contextlib.asynccontextmanager
    async def admitted(self, count: int = 1) -> AsyncIterator[None]:
        """A place in the bounded queue for ``count`` images, or a refusal.

        Raises:
            ServiceError: ``not_ready`` (503) before the model is loaded or while stopping;
                ``overloaded`` (429) when ``max_queue`` requests are already in flight.
        """
        if not self.ready:
            raise ServiceError(503, "not_ready", "the model is still loading or the service is stopping")
        if self._in_flight + count > self.settings.max_queue:
            raise ServiceError(429, "overloaded", f"{self._in_flight} requests in flight, the queue holds "
                                                  f"{self.settings.max_queue}; retry later")
        self._in_flight += count
        self.metrics.queue_depth.set(self._in_flight)
        try:
            yield
        finally:
            self._in_flight -= count
            self.metrics.queue_depth.set(self._in_flight)

    async def within_timeout(self, work: Awaitable[Answer]) -> Answer:
        """``work``'s result, or a refusal once it has taken ``settings.timeout_s``.

        Raises:
            ServiceError: ``timeout`` (504); the work is cancelled (an image still waiting for its
                batch is then skipped by the micro-batcher).
        """
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                return await work
        except TimeoutError:
            raise ServiceError(504, "timeout", f"the request took over {self.settings.timeout_s:g} s") from None

    def check_decision(self, decision: str | None, threshold: float | None) -> str:
        """The policy a request's ``decision`` and ``threshold`` name, checked before any work.

        Raises:
            ServiceError: ``invalid_parameter`` naming the parameter.
        """
        try:
            return self._loaded.resolve_decision(decision, threshold)[0]
        except ConfigError as error:
            raise ServiceError(422, "invalid_parameter", str(error)) from error

    async def predict_bytes(self, data: bytes, decision: str | None = None,
                            threshold: float | None = None) -> Prediction:
        """The faces in an uploaded image, their attributes listed by ``decision``.

        Raises:
            ServiceError: For every refusal (see :func:`sniff`, :meth:`admitted`,
                :meth:`check_decision`; ``invalid_image`` when it cannot be decoded).
        """
        policy = self.check_decision(decision, threshold)
        async with self.admitted():
            array, size, faces = await self._faces(data, decision, threshold)
        full = rescale_faces(faces, size[0] / array.shape[1], size[1] / array.shape[0])
        return Prediction(full, size[0], size[1], policy)

    async def annotate_bytes(self, data: bytes, decision: str | None = None, threshold: float | None = None,
                             top: int = 3) -> bytes:
        """The uploaded image with its faces drawn (boxes, landmarks, beauty, ``top`` attributes), as JPEG.

        Large JPEGs come back at the reduced size they were decoded at (see
        :func:`~faceattr.image.read_reduced`).
        """
        self.check_decision(decision, threshold)
        async with self.admitted():
            array, _, faces = await self._faces(data, decision, threshold)
            return await asyncio.get_running_loop().run_in_executor(self._pool, _jpeg, annotate(array, faces, top))

    def check_explainable(self, target: str) -> str:
        """``target`` checked, and this service checked to be able to explain it, before any work.

        Raises:
            ServiceError: ``unknown_target`` (422) naming it; ``explain_unavailable`` (501) when the
                model runs on ONNX Runtime, which has no gradients.
        """
        try:
            (checked,) = check_targets([target])
        except ConfigError as error:
            raise ServiceError(422, "unknown_target", f"target: {error}") from error
        backend = self._loaded.backend
        if backend != "torch":
            raise ServiceError(501, "explain_unavailable",
                               f"this service runs the model with the {backend} backend, which has no gradients: "
                               "Grad-CAM maps need a service started with --backend torch (and a .safetensors or "
                               "best.pt model)")
        return checked

    async def explain_bytes(self, data: bytes, face: int, target: str) -> FaceMap:
        """The Grad-CAM map of face ``face`` of an uploaded image for ``target``.

        Grad-CAM runs where the network does (:meth:`on_inference_thread`): alone, between the
        micro-batcher's batches, since its hook and gradients cannot share a batch.

        Args:
            data: The uploaded image.
            face: The face's index, as ``/v1/predict`` orders the faces.
            target: An attribute name or ``"beauty"``.

        Raises:
            ServiceError: For every refusal (:meth:`check_explainable`, :func:`sniff`,
                :meth:`admitted`; ``face_out_of_range`` when the image has no face ``face``).
        """
        checked = self.check_explainable(target)
        predictor = self._loaded
        async with self.admitted():
            array, size = await self._decode(data)
            self.metrics.images.inc()
            faces = await self.on_inference_thread(functools.partial(
                explain_photo, predictor, array, [checked], full_size=size, photo_maps=False))
            if not 0 <= face < len(faces):
                raise ServiceError(422, "face_out_of_range", f"face: {face} is not one of the image's faces "
                                                             f"(it has {len(faces)}, numbered from 0)")
            explained = faces[face]
            cam = explained.crop_maps[checked]
            png = await asyncio.get_running_loop().run_in_executor(self._pool, _png, cam)
        result = explained.face
        score = result.beauty if checked == BEAUTY_TARGET else result.probabilities[checked]
        return FaceMap(face, checked, float(score), result.box, size[0], size[1], cam, explained.matrix, png)

    async def on_inference_thread(self, function: Callable[[], Answer]) -> Answer:
        """``function()`` run where the network runs, never beside it: between the micro-batcher's
        batches, or on the runner's thread (Ray Serve); without either, on a decoding thread."""
        if self._batcher is not None:
            return await self._batcher.call(function)
        return await asyncio.get_running_loop().run_in_executor(self._runner_thread or self._pool, function)

    async def _faces(self, data: bytes, decision: str | None, threshold: float | None
                     ) -> tuple[np.ndarray, tuple[int, int], list[FaceResult]]:
        """An admitted upload decoded, its faces found (in the decoded array's pixels) and listed by
        ``decision``: the array, the full image's size and the faces."""
        array, size = await self._decode(data)
        faces = self._loaded.with_decision(await self._run(array), decision, threshold)
        self.metrics.faces.inc(len(faces))
        return array, size, faces

    async def _decode(self, data: bytes) -> tuple[np.ndarray, tuple[int, int]]:
        predictor = self._loaded
        self._decoding += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._pool, _decode, data, predictor.decode_side, self.settings.max_pixels,
                predictor.detector.min_face_size)
        finally:
            self._decoding -= 1

    async def _run(self, array: np.ndarray) -> list[FaceResult]:
        assert self._runner is not None, "start() first"
        self.metrics.images.inc()
        return await self._runner(array)

    def model_info(self) -> dict[str, Any]:
        """The answer of ``GET /v1/model``: what model this is, how it was validated, what it offers."""
        predictor = self._loaded
        return {
            "faceattr_version": __version__,
            "model": predictor.checkpoint.name if predictor.checkpoint else None,
            "backbone": predictor.model.model_args.get("backbone"),
            "input_size": predictor.image_size,
            "crop": list(predictor.crop),
            "backend": predictor.backend,
            "explain": predictor.backend == "torch",
            "device": str(predictor.device),
            "attributes": list(ATTRIBUTES),
            "beauty_range": list(BEAUTY_RANGE),
            "decision_policies": [p for p in DECISION_POLICIES
                                  if p == "probability" or p in predictor.fitted_thresholds],
            "default_decision": predictor.decision,
            "validation": headline_figures(predictor.metrics) if predictor.metrics else {},
            "limits": {"max_upload_mb": self.settings.max_upload_mb, "max_pixels": self.settings.max_pixels,
                       "max_batch_files": self.settings.max_batch_files, "timeout_s": self.settings.timeout_s,
                       "max_queue": self.settings.max_queue},
        }


def _decode(data: bytes, decode_side: int, max_pixels: int, min_side: int) -> tuple[np.ndarray, tuple[int, int]]:
    sniff(data, max_pixels, min_side)
    try:
        return read_reduced(data, decode_side, max_pixels)
    except ImageError as error:
        raise ServiceError(422, "invalid_image", f"upload: {str(error).removeprefix('<bytes>: ')}") from error


def _png(cam: np.ndarray) -> bytes:
    """A 0-1 map as an 8-bit greyscale PNG (0-255)."""
    buffer = io.BytesIO()
    Image.fromarray(np.round(np.clip(cam, 0.0, 1.0) * 255).astype(np.uint8), "L").save(buffer, "PNG")
    return buffer.getvalue()


def _jpeg(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG", quality=ANNOTATED_QUALITY)
    return buffer.getvalue()
