"""Prometheus metrics of the service (``GET /metrics``).

- ``tripduration_http_requests_total{endpoint,method,status}``: every answer, refusals included; each label
  has a fixed set of values (:data:`ENDPOINTS` or ``other``, :data:`METHODS` or ``other``, :data:`STATUSES` or
  the status class), so no client can grow the number of series;
- ``tripduration_http_request_duration_seconds{endpoint}``: latency histogram (body read to last byte sent);
- ``tripduration_predictions_total``: trips predicted (a batch of 1,000 counts 1,000);
- ``tripduration_serving_model{name,version}``: 1 for the version being served, 0 for the versions served before;
- ``tripduration_model_reload_failures_total``: production versions the service refused to load.

With ``--workers N`` every worker is its own process: ``pipeline.py serve`` then points
``PROMETHEUS_MULTIPROC_DIR`` at a fresh temporary folder before any worker starts, each worker writes its
values there and ``/metrics`` (answered by whichever worker) adds them up with prometheus-client's
``MultiProcessCollector``. The model gauge uses ``livemax``: a version counts while a live worker serves it.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

ENDPOINTS = frozenset(
    {"/predict", "/health", "/model", "/metrics", "/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"}
)
#: every label value comes from a fixed set: a client choosing methods, paths or odd statuses cannot add series
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
STATUSES = frozenset({200, 400, 404, 405, 408, 411, 413, 422, 499, 500, 503})
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def endpoint_label(path: str) -> str:
    """The path of a known endpoint, else ``other`` (a scanner's paths must not grow the series without bound)."""
    return path if path in ENDPOINTS else "other"


def method_label(method: str) -> str:
    """A standard method, else ``other`` (HTTP lets a client invent any token: ``SCAN1``, ``SCAN2``...)."""
    return method if method in METHODS else "other"


def status_label(status: int) -> str:
    """A status the service answers with, else its class (``2xx`` .. ``5xx``; ``other`` outside 100..599)."""
    if status in STATUSES:
        return str(status)
    return f"{status // 100}xx" if 100 <= status <= 599 else "other"


class Metrics:
    """The service's metrics in their own registry (so that several apps in one test process do not clash)."""

    def __init__(self) -> None:
        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "tripduration_http_requests",
            "HTTP answers by endpoint and status",
            ["endpoint", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "tripduration_http_request_duration_seconds",
            "time from the request's start to its last byte sent",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.predictions = Counter("tripduration_predictions", "trips predicted", registry=r)
        self.model = Gauge(
            "tripduration_serving_model",
            "1 for the model version being served",
            ["name", "version"],
            multiprocess_mode="livemax",
            registry=r,
        )
        self.reload_failures = Counter(
            "tripduration_model_reload_failures", "production versions refused (sha256, unreadable, ...)", registry=r
        )
        self._served: tuple[str, str] | None = None

    def observe(self, path: str, method: str, status: int, seconds: float) -> None:
        endpoint = endpoint_label(path)
        self.requests.labels(endpoint, method_label(method), status_label(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def model_loaded(self, metadata: dict[str, Any]) -> None:
        served = (str(metadata.get("name")), str(metadata.get("version")))
        if self._served is not None and self._served != served:
            self.model.labels(*self._served).set(0)
        self.model.labels(*served).set(1)
        self._served = served

    def reload_failed(self, _message: str) -> None:
        self.reload_failures.inc()

    def exposition(self) -> tuple[bytes, str]:
        """The text format: this process's registry, or the sum over every worker in multiprocess mode."""
        if not self.multiprocess:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        collected = CollectorRegistry()
        multiprocess.MultiProcessCollector(collected)
        return generate_latest(collected), CONTENT_TYPE_LATEST

    def worker_exit(self) -> None:
        """Drop this worker's live gauges (multiprocess mode), so a dead worker's model version is not shown."""
        if self.multiprocess:
            multiprocess.mark_process_dead(os.getpid())
