"""Every Prometheus metric featureplane exports, defined once.

Labels are bounded: ``tenant`` takes tenant names from tenants/ (or ``-`` before
authentication), ``route`` the route template, ``status_class`` 2xx/4xx/5xx, ``code`` the error
codes of :mod:`featureplane.errors`.

Multi-process: the gateway runs several uvicorn workers, so values live in
``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics`` merges them with a ``MultiProcessCollector``. That
variable must be set before ``prometheus_client`` is first imported, which importing Feast also
does (it points it at a temp dir of its own); `featureplane serve` sets it first thing.
"""

from __future__ import annotations

import os

from prometheus_client import REGISTRY as DEFAULT_REGISTRY
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

# From 0.25 ms: the gateway's p50 is well under a millisecond; Feast's smallest bucket is 5 ms.
LATENCY_BUCKETS = (
    0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075, 0.01,
    0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip

REQUEST_DURATION = Histogram(
    "featureplane_request_duration_seconds",
    "Gateway request latency, from the first byte in to the last byte out.",
    ["tenant", "route", "status_class"],
    buckets=LATENCY_BUCKETS,
)
REQUEST_ERRORS = Counter(
    "featureplane_request_errors_total",
    "Requests answered with an error, by cause.",
    ["tenant", "route", "code"],
)
STORE_READ_DURATION = Histogram(
    "featureplane_online_store_read_duration_seconds",
    "One pipelined online-store read (all HMGETs of a request).",
    ["tenant"],
    buckets=LATENCY_BUCKETS,
)
ENTITY_ROWS = Counter(
    "featureplane_entity_rows_total",
    "Entity rows read from the online store.",
    ["tenant"],
)

QUOTA_REJECTIONS = Counter(
    "featureplane_quota_rejections_total",
    "Requests refused by a quota (429 rate/concurrency, 413 size).",
    ["tenant", "quota"],
)
QUOTA_INFLIGHT = Gauge(
    "featureplane_quota_inflight_requests",
    "Requests of the tenant being served now (summed over live workers).",
    ["tenant"],
    multiprocess_mode="livesum",
)
QUOTA_TOKENS = Gauge(
    "featureplane_quota_rate_tokens",
    "Requests left in the tenant's shared token bucket after the latest admission.",
    ["tenant"],
    multiprocess_mode="livemostrecent",
)
QUOTA_LIMIT = Gauge(
    "featureplane_quota_limit",
    "The tenant's configured quotas (from tenant.yaml), for usage-versus-limit panels.",
    ["tenant", "quota"],
    multiprocess_mode="livemax",
)

UNAUTHENTICATED = "-"


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR")


def exposition() -> bytes:
    """The text exposition of every process's metrics."""
    path = multiprocess_dir()
    if not path:
        return generate_latest(DEFAULT_REGISTRY)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    return generate_latest(registry)


def mark_process_dead(pid: int) -> None:
    if multiprocess_dir():
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
