"""Prometheus metrics and the access log: one registry per app, one JSON line per request."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

access_log = logging.getLogger("zoo.serve.access")

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class Metrics:
    """The server's metrics; its own registry, so that two apps in one process do not collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("zoo_requests", "Requests by model, endpoint and HTTP status.",
                                ["model", "endpoint", "status"], registry=r)
        self.latency = Histogram("zoo_request_duration_seconds", "Request latency, body read to response.",
                                 ["model", "endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("zoo_batch_size", "Rows per session run (dynamic batching).", ["model"],
                                    buckets=BATCH_BUCKETS, registry=r)
        self.queue_depth = Gauge("zoo_queue_depth", "Requests waiting for a session run.", ["model"], registry=r)
        self.loaded = Gauge("zoo_models_loaded", "Models loaded now.", registry=r)
        self.loads = Counter("zoo_model_loads", "Model loads by outcome (ok, error).", ["model", "outcome"],
                             registry=r)
        # Label sets are bounded: models are resolved names, endpoints and statuses are zoo's own.
        self._by_labels: dict[tuple[str | None, str | None, int], tuple[Any, Any]] = {}

    def render(self) -> tuple[bytes, str]:
        """The text exposition format, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def record(self, *, method: str, path: str, status: int, seconds: float, model: str | None,
               endpoint: str | None, client: str | None, received: int, sent: int) -> None:
        """Count one finished request and write its access-log line."""
        counter, histogram = self._children(model, endpoint, status)
        counter.inc()
        if histogram is not None:
            histogram.observe(seconds)
        if not access_log.isEnabledFor(logging.INFO):
            return
        line: dict[str, Any] = {"ts": round(time.time(), 3), "client": client, "method": method, "path": path,
                                "status": status, "ms": round(seconds * 1000, 2), "model": model,
                                "endpoint": endpoint, "bytes_in": received, "bytes_out": sent}
        access_log.info(json.dumps(line, separators=(",", ":")))

    def _children(self, model: str | None, endpoint: str | None, status: int) -> tuple[Any, Any]:
        """The request counter and latency histogram of one label set, looked up once (labels() locks)."""
        key = (model, endpoint, status)
        found = self._by_labels.get(key)
        if found is None:
            model_label = model or "-"  # only resolved names: a typo never becomes a label
            endpoint_label = endpoint or "other"
            found = (self.requests.labels(model_label, endpoint_label, str(status)),
                     None if endpoint is None else self.latency.labels(model_label, endpoint_label))
            self._by_labels[key] = found
        return found
