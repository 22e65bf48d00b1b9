"""The service's Prometheus metrics, in a registry of their own (one per app, so tests and
several apps in one process do not share counters)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

#: Latency buckets in seconds: a 64 px face takes milliseconds, a 12-megapixel photo a second or more.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0)

#: Images per micro-batch.
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)


class ServiceMetrics:
    """Requests, latency, faces, errors by code, batch sizes and queue depth.

    >>> metrics = ServiceMetrics()
    >>> metrics.errors.labels(code="overloaded").inc()
    >>> b'faceattr_errors_total{code="overloaded"} 1.0' in metrics.exposition()
    True
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("faceattr_requests", "HTTP requests answered, by route, method and status",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("faceattr_request_seconds", "Time from a request's arrival to its answer",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.faces = Counter("faceattr_faces", "Faces found in the images answered", registry=self.registry)
        self.images = Counter("faceattr_images", "Images run through detection and the network",
                              registry=self.registry)
        self.errors = Counter("faceattr_errors", "Error answers, by error code", ["code"], registry=self.registry)
        self.batch_size = Histogram("faceattr_batch_size", "Images per micro-batch", buckets=BATCH_BUCKETS,
                                    registry=self.registry)
        self.queue_depth = Gauge("faceattr_queue_depth", "Requests in flight: decoding, waiting or running",
                                 registry=self.registry)
        self.stream_frames = Counter("faceattr_stream_frames", "Webcam frames received, by outcome",
                                     ["outcome"], registry=self.registry)

    def exposition(self) -> bytes:
        """The metrics in Prometheus' text format."""
        return generate_latest(self.registry)
