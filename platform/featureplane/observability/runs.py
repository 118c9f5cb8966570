"""Materialization run records, kept in the control keyspace of the online Redis.

Materialization runs in short-lived processes (a CLI, a CronJob) that Prometheus never scrapes,
so each run adds to ``featureplane:runs:{tenant}`` (a hash: ``<view>|<field>``) and every gateway
exports the totals at scrape time. ``newest_event`` is the newest event time written online for
the view: freshness is now minus that, computed when Prometheus asks. Batches that failed the
view's expectation suite are counted per policy (``<view>|quality_failures_<policy>``).

Drift scores of the latest scored batch against the training reference live apart, in
``featureplane:drift:{tenant}:latest`` (``<view>|<feature>|<statistic>``): they are the latest
values, not totals, and taking a new reference drops them (:mod:`featureplane.quality.drift`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import redis
import redis.asyncio as aioredis

RUNS_PREFIX = "featureplane:runs:"
QUALITY_FAILURES = "quality_failures_"
DRIFT_PREFIX = "featureplane:drift:"


def runs_key(tenant: str) -> str:
    return f"{RUNS_PREFIX}{{{tenant}}}"


def drift_key(tenant: str) -> str:
    return f"{DRIFT_PREFIX}{{{tenant}}}:latest"


@dataclass
class ViewRuns:
    """What the records say about one feature view."""

    started: int = 0  # more than success + failure: runs in flight or killed
    success: int = 0
    failure: int = 0
    rows: int = 0
    duration_seconds: float = 0.0
    last_success: float | None = None
    newest_event: float | None = None
    quality_failures: dict[str, int] = field(default_factory=dict)  # policy -> failed batches


@dataclass
class TenantRuns:
    views: dict[str, ViewRuns] = field(default_factory=dict)
    # (view, feature) -> statistic ("psi", "ks") -> the latest scored batch's value
    drift: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)


def record_success(
    client: redis.Redis,
    tenant: str,
    view: str,
    rows: int,
    seconds: float,
    newest_event: float | None,
) -> None:
    key = runs_key(tenant)
    pipe = client.pipeline(transaction=True)
    pipe.hincrby(key, f"{view}|success", 1)
    pipe.hincrby(key, f"{view}|rows", rows)
    pipe.hset(
        key, mapping={f"{view}|duration_seconds": seconds, f"{view}|last_success": time.time()}
    )
    if newest_event is not None:
        # Only ever forward: a backfill of older data must not make a view look staler.
        pipe.eval(
            "local v = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0') "
            "if tonumber(ARGV[2]) > v then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end",
            1,
            key,
            f"{view}|newest_event",
            newest_event,
        )
    pipe.execute()


def record_start(client: redis.Redis, tenant: str, view: str) -> None:
    """Counted before the write: a run killed mid-way (SIGKILL records nothing else) shows as
    ``started`` exceeding ``success + failure``, never as a success."""
    client.hincrby(runs_key(tenant), f"{view}|started", 1)


def record_failure(client: redis.Redis, tenant: str, view: str, seconds: float) -> None:
    key = runs_key(tenant)
    pipe = client.pipeline(transaction=True)
    pipe.hincrby(key, f"{view}|failure", 1)
    pipe.hset(key, f"{view}|duration_seconds", seconds)
    pipe.execute()


def record_quality_failure(client: redis.Redis, tenant: str, view: str, policy: str) -> None:
    client.hincrby(runs_key(tenant), f"{view}|{QUALITY_FAILURES}{policy}", 1)


def record_drift(
    client: redis.Redis, tenant: str, scores: Mapping[tuple[str, str, str], float]
) -> None:
    """Latest values by (view, feature, statistic); a batch scored later overwrites."""
    if scores:
        client.hset(drift_key(tenant), mapping={"|".join(k): v for k, v in scores.items()})


def parse_drift(raw: Mapping[bytes, bytes]) -> dict[tuple[str, str], dict[str, float]]:
    drift: dict[tuple[str, str], dict[str, float]] = {}
    for name, value in raw.items():
        view, feature, statistic = name.decode().split("|")
        drift.setdefault((view, feature), {})[statistic] = float(value)
    return drift


def parse(raw: Mapping[bytes, bytes]) -> TenantRuns:
    runs = TenantRuns()
    for name, value in raw.items():
        view, _, attr = name.decode().rpartition("|")
        record = runs.views.setdefault(view, ViewRuns())
        number = float(value)
        if attr in ("started", "success", "failure", "rows"):
            setattr(record, attr, int(number))
        elif attr in ("duration_seconds", "last_success", "newest_event"):
            setattr(record, attr, number)
        elif attr.startswith(QUALITY_FAILURES):
            record.quality_failures[attr.removeprefix(QUALITY_FAILURES)] = int(number)
    return runs


async def read_all(client: aioredis.Redis, tenants: Iterable[str]) -> dict[str, TenantRuns]:
    names = list(tenants)
    async with client.pipeline(transaction=False) as pipe:
        for tenant in names:
            pipe.hgetall(runs_key(tenant))
            pipe.hgetall(drift_key(tenant))
        replies = await pipe.execute()
    recorded: dict[str, TenantRuns] = {}
    for tenant, reply, drift in zip(names, replies[::2], replies[1::2], strict=True):
        recorded[tenant] = parse(reply)
        recorded[tenant].drift = parse_drift(drift)
    return recorded
