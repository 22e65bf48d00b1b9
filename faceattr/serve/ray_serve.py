"""The service under Ray Serve: the same FastAPI app (:func:`~faceattr.serve.app.create_app`) on N replicas.

Each replica is a Ray actor running the whole app with its own model; Ray Serve's proxy spreads
the requests over them. In a replica the network is batched by ``@serve.batch`` instead of the
in-process :class:`~faceattr.serve.batcher.MicroBatcher`: the batch runs detection and the network
on one inference thread, as the plain service does. ``faceattr serve --ray`` runs it
(:func:`serve_on_ray`); ``ray_address=None`` starts a local Ray, ``"auto"`` joins the cluster of
this machine (``ray start --head`` first; other machines join it with ``ray start --address``).

>>> app = build_application(ServeSettings(), replicas=2)  # doctest: +SKIP
>>> serve.run(app, name="faceattr", route_prefix="/")  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from faceattr.bulk import RAY_EXTRA
from faceattr.inference.results import FaceResult
from faceattr.serve.app import create_app
from faceattr.serve.service import Service
from faceattr.serve.settings import ServeSettings

logger = logging.getLogger(__name__)

#: The Ray Serve application's name (``serve status`` shows it).
APP_NAME = "faceattr"


def replica_service(settings: ServeSettings) -> Service:
    """A :class:`Service` whose images go through detection and the network in ``@serve.batch`` batches.

    One batch runs at a time (``serve.batch``'s default), on one inference thread, so torch is
    never entered from two threads and the replica's event loop never waits on it.
    """
    from ray import serve

    inference = ThreadPoolExecutor(1, thread_name_prefix="faceattr-inference")

    @serve.batch(max_batch_size=settings.max_batch, batch_wait_timeout_s=settings.max_wait_ms / 1000)
    async def faces_in_batch(arrays: list[np.ndarray]) -> list[list[FaceResult]]:
        service.metrics.batch_size.observe(len(arrays))
        return await asyncio.get_running_loop().run_in_executor(inference, service.faces_of, arrays)

    service = Service(settings, runner=faces_in_batch, runner_thread=inference)
    return service


def build_application(settings: ServeSettings, replicas: int = 2) -> Any:
    """The Ray Serve application: ``replicas`` copies of the app, one CPU each.

    The app is built on each replica when it starts (``serve.ingress`` with a builder function),
    so nothing of a loaded model or its threads is ever pickled; its lifespan loads the model,
    and Ray Serve counts the replica ready only then.

    Args:
        settings: The service's settings (host and port are the proxy's, see :func:`serve_on_ray`).
        replicas: How many replicas.

    Returns:
        The bound application, for ``serve.run``.
    """
    from ray import serve

    def build_app() -> Any:
        return create_app(settings, replica_service(settings))

    # Each replica admits up to max_queue requests, as the plain service does; past that its own
    # Service answers 429, so the proxy does not queue requests the service would refuse.
    deployment = serve.deployment(serve.ingress(build_app)(), name=APP_NAME, num_replicas=replicas,
                                  ray_actor_options={"num_cpus": 1, "num_gpus": int(settings.device == "cuda")},
                                  max_ongoing_requests=settings.max_queue)
    return deployment.bind()


def _import_ray() -> tuple[Any, Any]:
    """``ray`` and ``ray.serve``, or an ImportError naming the extra to install."""
    try:
        import ray
        from ray import serve
    except ImportError as error:
        raise ImportError(f"faceattr serve --ray needs Ray: {RAY_EXTRA}") from error
    return ray, serve


def start_on_ray(settings: ServeSettings, replicas: int, ray_address: str | None = None,
                 num_cpus: int | None = None) -> None:
    """Starts Ray (or joins ``ray_address``), Serve's proxy on ``settings.host:port`` and the application.

    Returns when every replica has loaded its model. Where Ray already runs in this process it is used as it is.

    Args:
        settings: The service's settings.
        replicas: How many replicas.
        ray_address: ``None``: a local Ray of ``num_cpus`` CPUs (``replicas`` + 1 by default: the
            proxy and Serve's controller need a little); ``"auto"`` or an address: a running cluster.
        num_cpus: The local Ray's CPUs.

    Raises:
        ImportError: Ray is not installed (the message names the extra).
    """
    ray, serve = _import_ray()
    if not ray.is_initialized() and ray_address is None:
        ray.init(num_cpus=num_cpus or replicas + 1, include_dashboard=False, logging_level=logging.WARNING)
    elif not ray.is_initialized():
        ray.init(address=ray_address, logging_level=logging.WARNING)
    serve.start(http_options={"host": settings.host, "port": settings.port})
    serve.run(build_application(settings, replicas), name=APP_NAME, route_prefix="/")


def stop_on_ray(local: bool) -> None:
    """Stops what :func:`start_on_ray` started, then leaves Ray: on a local Ray, Serve and Ray themselves;
    on a cluster shared with others, only this application (the cluster goes on)."""
    import ray
    from ray import serve

    if not ray.is_initialized():
        return
    if local:
        serve.shutdown()
    else:
        serve.delete(APP_NAME)
    ray.shutdown()


def serve_on_ray(settings: ServeSettings, replicas: int, ray_address: str | None = None) -> None:
    """Runs the service on Ray Serve until Ctrl-C or SIGTERM, then shuts it down cleanly (:func:`stop_on_ray`)."""
    _import_ray()  # first: without Ray there is nothing to start or stop
    logging.basicConfig(format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    logging.getLogger("faceattr").setLevel(logging.INFO)  # readiness and the access log, as the plain service
    # SIGTERM (a service manager, `kill`) ends it as Ctrl-C does: through the clean shutdown below.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        start_on_ray(settings, replicas, ray_address)
        logger.info("ready: %d replicas on http://%s:%d (Ctrl-C stops them)", replicas, settings.host, settings.port)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        logger.info("stopping")
    finally:
        stop_on_ray(local=ray_address is None)
        logger.info("stopped")
