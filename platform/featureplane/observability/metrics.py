"""Every Prometheus metric featureplane exports, defined once.

Labels are bounded: ``tenant`` takes tenant names from tenants/ (or ``-`` before
authentication), ``route`` the route template, ``status_class`` 2xx/4xx/5xx, ``code`` the error
codes of :mod:`featureplane.errors`, ``feature_view`` the registry's views, ``status`` Feast's four
field statuses, ``service`` the feature services that log.

Multi-process: the gateway runs several uvicorn workers, so values live in
``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics`` merges them with a ``MultiProcessCollector``. That
variable must be set before ``prometheus_client`` is first imported, which importing Feast also
does (it points it at a temp dir of its own); `featureplane serve` sets it first thing.
"""

from __future__ import annotations

import bisect
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar, cast

from prometheus_client import REGISTRY as DEFAULT_REGISTRY
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from featureplane.observability.runs import TenantRuns
from featureplane.tenancy.spec import DriftStatistic, TenantSpec

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
FEATURE_STATUS = Counter(
    "featureplane_feature_status_total",
    "Entity rows answered per feature view, by status (PRESENT, NULL_VALUE: a requested "
    "feature is null, NOT_FOUND, OUTSIDE_MAX_AGE: older than the view's ttl, when checked).",
    ["tenant", "feature_view", "status"],
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
TRANSFORM_DURATION = Histogram(
    "featureplane_transform_duration_seconds",
    "One call to a tenant's transform worker (its on-demand feature views of one request).",
    ["tenant"],
    buckets=LATENCY_BUCKETS,
)
TRANSFORM_FAILURES = Counter(
    "featureplane_transform_failures_total",
    "Transform calls that did not answer: raised (or out of memory), timeout, exited, busy.",
    ["tenant", "reason"],
)
TRANSFORM_RESTARTS = Counter(
    "featureplane_transform_worker_restarts_total",
    "Transform workers replaced after a timeout, an exit or a failed start.",
    ["tenant"],
)
FEATURE_LOG_ROWS = Counter(
    "featureplane_feature_log_rows_total",
    "Rows of served features written to a feature service's log (logging_config), by the "
    "service's owner.",
    ["tenant", "service"],
)
FEATURE_LOG_DROPPED_ROWS = Counter(
    "featureplane_feature_log_dropped_rows_total",
    "Sampled rows of a logged feature service that were not written: overflow (the worker's "
    "buffer was full), refused (a destination or type the gateway cannot write), error (the "
    "write failed).",
    ["tenant", "service", "reason"],
)
UNAUTHENTICATED = "-"


# -- buffered updates on the request path ------------------------------------------------------
# In multi-process mode every inc/observe takes a lock and writes an mmap'd file (3-4 us each, a
# tenth of a request's CPU). The request path adds to plain numbers instead, and flush() (every
# FLUSH_SECONDS, at scrape and at shutdown, by the gateway) moves them into the shared values:
# exposition lags by at most FLUSH_SECONDS.
FLUSH_SECONDS = 0.1


class BufferedCounter:
    """``inc`` kept in process until flushed (counters and the in-flight gauge)."""

    __slots__ = ("_child", "_pending")

    def __init__(self, child: Counter | Gauge) -> None:
        self._child = child
        self._pending = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self._pending += amount

    def dec(self, amount: float = 1.0) -> None:
        self._pending -= amount

    def flush(self) -> None:
        pending, self._pending = self._pending, 0.0
        if pending:
            self._child.inc(pending)


class BufferedHistogram:
    """``observe`` kept in process as bucket counts until flushed."""

    __slots__ = ("_bounds", "_child", "_counts", "_sum")

    def __init__(self, child: Histogram) -> None:
        self._child = child
        self._bounds: list[float] = child._upper_bounds
        self._counts = [0] * len(self._bounds)
        self._sum = 0.0

    def observe(self, amount: float) -> None:
        # Histogram.observe counts an observation in the first bucket whose bound is >= it.
        self._counts[bisect.bisect_left(self._bounds, amount)] += 1
        self._sum += amount

    def flush(self) -> None:
        # prometheus_client has no bulk observe: add to the child's (non-cumulative) bucket
        # values and sum directly, as Histogram.observe does. test_metrics pins the equivalence.
        counts, self._counts = self._counts, [0] * len(self._bounds)
        total, self._sum = self._sum, 0.0
        for value, count in zip(self._child._buckets, counts, strict=True):
            if count:
                value.inc(count)
        if any(counts):
            self._child._sum.inc(total)


_BUFFERS: dict[tuple[int, tuple[str, ...]], BufferedCounter | BufferedHistogram] = {}
_Buffer = TypeVar("_Buffer", BufferedCounter, BufferedHistogram)


def _buffer(
    kind: type[_Buffer], metric: Counter | Gauge | Histogram, labels: tuple[str, ...]
) -> _Buffer:
    key = (id(metric), labels)
    buffer = _BUFFERS.get(key)
    if buffer is None:
        buffer = _BUFFERS[key] = kind(metric.labels(*labels))  # type: ignore[arg-type]
    return cast(_Buffer, buffer)


def buffered_counter(metric: Counter | Gauge, *labels: str) -> BufferedCounter:
    """The buffered child of a counter (or of the in-flight gauge) for these labels."""
    return _buffer(BufferedCounter, metric, labels)


def buffered_histogram(metric: Histogram, *labels: str) -> BufferedHistogram:
    """The buffered child of a histogram for these labels."""
    return _buffer(BufferedHistogram, metric, labels)


def flush() -> None:
    """Move every buffered update of this process into the shared values."""
    for buffer in list(_BUFFERS.values()):
        buffer.flush()


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR")


# -- computed at scrape time ---------------------------------------------------------------
# These come from tenant.yaml, the registry snapshot and the run records in Redis, read when
# Prometheus scrapes, so they are exact whichever worker answers.


@dataclass(frozen=True)
class TenantCost:
    """One tenant's cost inputs held now, as plain numbers: what its ``featureplane_cost_*``
    series export. The gateway fills them from :mod:`featureplane.cost`."""

    cpu_request_cores: float  # tenant.yaml kubernetes.requests / limits
    cpu_limit_cores: float
    memory_request_bytes: float
    memory_limit_bytes: float
    monthly_cost: Mapping[str, float]  # cost per month of what is held, by item
    online_bytes: float | None = None  # None (both): the online keys are not sampled (yet)
    online_keys: int | None = None


@dataclass(frozen=True)
class CostSnapshot:
    """The inputs of the ``featureplane_cost_*`` families."""

    currency: str  # of ``monthly_cost``
    tenants: Mapping[str, TenantCost]  # exported in this order


@dataclass(frozen=True)
class ScrapeSnapshot:
    tenants: Sequence[TenantSpec]
    runs: Mapping[str, TenantRuns]
    registry_age_seconds: float
    store_up: bool
    store_used_memory_bytes: float | None
    now: float = field(default_factory=time.time)
    cost: CostSnapshot | None = None  # None: no featureplane_cost_* families
    registry_up: bool = True  # the snapshot is current (refreshes succeed)


def scrape_families(snap: ScrapeSnapshot) -> list[Metric]:
    def gauge(name: str, doc: str, labels: Sequence[str]) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, doc, labels=labels)

    freshness = gauge(
        "featureplane_feature_freshness_seconds",
        "Now minus the newest event time materialized online, per feature view.",
        ["tenant", "feature_view"],
    )
    sla_freshness = gauge(
        "featureplane_sla_freshness_seconds",
        "The freshness target of each feature view (tenant.yaml sla.freshness_seconds).",
        ["tenant", "feature_view"],
    )
    sla_latency = gauge(
        "featureplane_sla_latency_p99_seconds", "The tenant's p99 latency target.", ["tenant"]
    )
    sla_availability = gauge(
        "featureplane_sla_availability_ratio", "The tenant's availability target.", ["tenant"]
    )
    quota_limit = gauge(
        "featureplane_quota_limit",
        "The tenant's configured quotas (tenant.yaml).",
        ["tenant", "quota"],
    )
    runs = CounterMetricFamily(
        "featureplane_materialization_runs",
        "Materialization runs per feature view, by outcome.",
        labels=["tenant", "feature_view", "status"],
    )
    rows = CounterMetricFamily(
        "featureplane_materialization_rows",
        "Offline rows in the windows materialized online.",
        labels=["tenant", "feature_view"],
    )
    quality_failures = CounterMetricFamily(
        "featureplane_quality_failures",
        "Landed batches that failed a feature view's expectation suite, by the view's policy "
        "(strict: quarantined, never served; warn: reported and ingested).",
        labels=["tenant", "feature_view", "policy"],
    )
    duration = gauge(
        "featureplane_materialization_duration_seconds",
        "Duration of the latest materialization run.",
        ["tenant", "feature_view"],
    )
    last_success = gauge(
        "featureplane_materialization_last_success_timestamp_seconds",
        "When the latest successful materialization run ended.",
        ["tenant", "feature_view"],
    )
    drift_psi = gauge(
        "featureplane_feature_drift_psi",
        "Population stability index of the latest scored batch against the training reference.",
        ["tenant", "feature_view", "feature"],
    )
    drift_ks = gauge(
        "featureplane_feature_drift_ks",
        "Two-sample Kolmogorov-Smirnov statistic of the latest scored batch against the "
        "training reference (numeric features).",
        ["tenant", "feature_view", "feature"],
    )
    drift_threshold = gauge(
        "featureplane_drift_threshold",
        "Drift thresholds (tenant.yaml drift) of each scored feature.",
        ["tenant", "feature_view", "feature", "statistic"],
    )
    statistics: tuple[tuple[DriftStatistic, GaugeMetricFamily], ...] = (
        ("psi", drift_psi),
        ("ks", drift_ks),
    )
    for spec in snap.tenants:
        sla_latency.add_metric([spec.name], spec.sla.latency_p99_ms / 1000)
        sla_availability.add_metric([spec.name], spec.sla.availability)
        for view, seconds in spec.sla.freshness_seconds.items():
            sla_freshness.add_metric([spec.name, view], seconds)
        for quota, limit in spec.quotas.model_dump().items():
            quota_limit.add_metric([spec.name, quota], limit)
        for view, record in snap.runs.get(spec.name, TenantRuns()).views.items():
            runs.add_metric([spec.name, view, "success"], record.success)
            runs.add_metric([spec.name, view, "failure"], record.failure)
            rows.add_metric([spec.name, view], record.rows)
            # A zero for the view's current policy, so the first failure is an increase.
            failed = {spec.quality.policy(view): 0, **record.quality_failures}
            for policy, count in sorted(failed.items()):
                quality_failures.add_metric([spec.name, view, policy], count)
            duration.add_metric([spec.name, view], record.duration_seconds)
            if record.last_success is not None:
                last_success.add_metric([spec.name, view], record.last_success)
            if record.newest_event is not None:
                freshness.add_metric([spec.name, view], max(0.0, snap.now - record.newest_event))
        for (view, feature), values in snap.runs.get(spec.name, TenantRuns()).drift.items():
            for statistic, family in statistics:
                if statistic in values:
                    family.add_metric([spec.name, view, feature], values[statistic])
                    limit = spec.drift.limit(view, feature, statistic)
                    drift_threshold.add_metric([spec.name, view, feature, statistic], limit)
    registry_age = gauge(
        "featureplane_registry_age_seconds", "Age of the registry snapshot being served.", []
    )
    registry_age.add_metric([], snap.registry_age_seconds)
    registry_up = gauge(
        "featureplane_registry_up",
        "1 if the registry snapshot is current; 0 while refreshes fail (or hang) and the gateway "
        "serves its last snapshot.",
        [],
    )
    registry_up.add_metric([], 1.0 if snap.registry_up else 0.0)
    store_up = gauge("featureplane_online_store_up", "1 if the online store answered.", [])
    store_up.add_metric([], 1.0 if snap.store_up else 0.0)
    families: list[Metric] = [
        freshness, sla_freshness, sla_latency, sla_availability, quota_limit,
        runs, rows, quality_failures, duration, last_success, registry_age, registry_up, store_up,
        drift_psi, drift_ks, drift_threshold,
    ]  # fmt: skip
    if snap.store_used_memory_bytes is not None:
        memory = gauge(
            "featureplane_online_store_used_memory_bytes", "Redis used_memory (INFO memory).", []
        )
        memory.add_metric([], snap.store_used_memory_bytes)
        families.append(memory)
    if snap.cost is not None:
        families += _cost_families(snap.cost)
    return families


def _cost_families(cost: CostSnapshot) -> list[Metric]:
    """Cost inputs held now, per tenant."""
    online = GaugeMetricFamily(
        "featureplane_cost_online_bytes",
        "Estimated bytes of the tenant's online keys in Redis (sampled MEMORY USAGE x key count).",
        labels=["tenant"],
    )
    keys = GaugeMetricFamily(
        "featureplane_cost_online_keys", "The tenant's online keys in Redis.", labels=["tenant"]
    )
    cpu = GaugeMetricFamily(
        "featureplane_cost_quota_cpu_cores",
        "CPU quota (tenant.yaml kubernetes), by kind (requests, limits).",
        labels=["tenant", "kind"],
    )
    memory = GaugeMetricFamily(
        "featureplane_cost_quota_memory_bytes",
        "Memory quota (tenant.yaml kubernetes), by kind (requests, limits).",
        labels=["tenant", "kind"],
    )
    estimate = GaugeMetricFamily(
        "featureplane_cost_estimate",
        f"Cost per month of what the tenant holds now, in {cost.currency} "
        "(illustrative price model unless FEATUREPLANE_COST_PRICES is set).",
        labels=["tenant", "item"],
    )
    for tenant, held in cost.tenants.items():
        cpu.add_metric([tenant, "requests"], held.cpu_request_cores)
        cpu.add_metric([tenant, "limits"], held.cpu_limit_cores)
        memory.add_metric([tenant, "requests"], held.memory_request_bytes)
        memory.add_metric([tenant, "limits"], held.memory_limit_bytes)
        if held.online_bytes is not None:
            online.add_metric([tenant], held.online_bytes)
        if held.online_keys is not None:
            keys.add_metric([tenant], held.online_keys)
        for item, value in held.monthly_cost.items():
            estimate.add_metric([tenant, item], value)
    return [online, keys, cpu, memory, estimate]


class _Families(Collector):
    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self._families


def exposition(extra: Iterable[Metric] = ()) -> bytes:
    """The text exposition of every process's metrics, plus ``extra`` scrape-time families."""
    path = multiprocess_dir()
    registry = CollectorRegistry()
    if path:
        multiprocess.MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    else:
        registry.register(_Families(DEFAULT_REGISTRY.collect()))
    registry.register(_Families(extra))
    return generate_latest(registry)


def mark_process_dead(pid: int) -> None:
    if multiprocess_dir():
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
