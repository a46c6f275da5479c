"""Prometheus metrics and the access log: one registry per app, one JSON line per request."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from json.encoder import encode_basestring_ascii
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

access_log = logging.getLogger("zoo.serve.access")

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class Metrics:
    """The server's metrics; its own registry, so that two apps in one process do not collide.

    Access-log lines go to `write_access` where given (zoo serve: straight to stderr), else to
    the `zoo.serve.access` logger at INFO. The logging module's work per record (the caller's
    frame, thread and process names, the record, the handler's lock) was a fifth of zoo serve's
    event-loop time per request under load, for a line whose destination zoo serve fixes anyway.
    A writer that fails (stderr closed) is dropped, not the requests: their lines are lost.
    """

    def __init__(self, write_access: Callable[[str], object] | None = None) -> None:
        self.write_access = write_access
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
        if self.write_access is None and not access_log.isEnabledFor(logging.INFO):
            return
        line = access_line(ts=round(time.time(), 3), client=client, method=method, path=path, status=status,
                           ms=round(seconds * 1000, 2), model=model, endpoint=endpoint, received=received, sent=sent)
        if self.write_access is None:
            access_log.info(line)
            return
        try:
            self.write_access(line + "\n")
        except (OSError, ValueError):  # stderr closed or gone: no more access lines, the requests go on
            self.write_access = _dropped

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


def access_line(*, ts: float, client: str | None, method: str, path: str, status: int, ms: float,
                model: str | None, endpoint: str | None, received: int, sent: int) -> str:
    """One request's access-log line: the JSON object json.dumps writes for these fields, keys in this order.

    Written out here, strings escaped by json's own (C) encoder: json.dumps of a dict took 3 times as long.
    """
    return (f'{{"ts":{ts!r},"client":{_string(client)},"method":{_string(method)},"path":{_string(path)},'
            f'"status":{status},"ms":{ms!r},"model":{_string(model)},"endpoint":{_string(endpoint)},'
            f'"bytes_in":{received},"bytes_out":{sent}}}')


def _dropped(line: str) -> None:
    """Where access lines go once their writer failed."""


def _string(value: str | None) -> str:
    return "null" if value is None else str(encode_basestring_ascii(value))
