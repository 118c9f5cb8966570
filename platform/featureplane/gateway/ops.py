"""Operational routes: liveness, readiness and Prometheus metrics.

Readiness has three states (see :func:`ready`): ``ready``, ``degraded`` (serving the last
registry snapshot while the registry cannot be refreshed; still HTTP 200) and ``not_ready`` (503).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from redis.exceptions import RedisError

from featureplane import cost
from featureplane.gateway.models import ReadyResponse
from featureplane.gateway.state import GatewayState, StateDep
from featureplane.observability import runs
from featureplane.observability.metrics import (
    CostSnapshot,
    ScrapeSnapshot,
    TenantCost,
    exposition,
    flush,
    scrape_families,
)
from featureplane.tenancy.spec import TenantSpec

router = APIRouter()


@router.get("/health")
async def health() -> dict[str, str]:
    """Liveness: the process is up and serving HTTP."""
    return {"status": "ok"}


def registry_stale_after(refresh_seconds: float) -> float:
    """Snapshot age past which a refresh counts as lost even without an error (one hung on a
    silent database): three refresh periods, and at least one period plus the 30 s a refresh may
    take against libpq's connect and TCP timeouts."""
    return max(3 * refresh_seconds, refresh_seconds + 30)


def registry_check(state: GatewayState, now: float | None = None) -> tuple[bool, str]:
    """Whether the snapshot being served is current, and the readiness check's text for it."""
    age = (now or time.time()) - state.plans.loaded_at
    if state.registry_error is not None:
        return False, (
            f"unavailable: {state.registry_error}; serving the snapshot of {age:.0f} s ago"
        )
    if age > registry_stale_after(state.settings.registry_refresh_seconds):
        return False, f"stale: no refresh for {age:.0f} s; serving the last snapshot"
    return True, "ok"


_READY_EXAMPLE = {
    "status": "ready",
    "checks": {
        "online_store": "ok",
        "registry": "ok",
        "registry_age_seconds": 4.2,
        "projects": ["fraud", "pricing", "recsys"],
    },
}
_DEGRADED_EXAMPLE = {
    "status": "degraded",
    "checks": {
        "online_store": "ok",
        "registry": "unavailable: registry postgresql://featureplane@pg:5432/registry is "
        "unreachable: Connection refused; serving the snapshot of 95 s ago",
        "registry_age_seconds": 95.1,
        "projects": ["fraud", "pricing", "recsys"],
    },
}
_NOT_READY_EXAMPLE = {
    "status": "not_ready",
    "checks": {
        "online_store": "unreachable",
        "registry": "ok",
        "registry_age_seconds": 4.2,
        "projects": ["fraud", "pricing", "recsys"],
    },
}


@router.get(
    "/ready",
    responses={
        200: {
            "description": "Ready, or degraded: features are served (registry outages included)",
            "model": ReadyResponse,
            "content": {
                "application/json": {
                    "examples": {
                        "ready": {"value": _READY_EXAMPLE},
                        "degraded": {"value": _DEGRADED_EXAMPLE},
                    }
                }
            },
        },
        503: {
            "description": "Not ready: the online store does not answer (or no project loaded)",
            "model": ReadyResponse,
            "content": {"application/json": {"example": _NOT_READY_EXAMPLE}},
        },
    },
)
async def ready(state: StateDep) -> JSONResponse:
    """Readiness: whether this replica should receive feature traffic.

    - `ready` (200): the online store answers and the registry snapshot is current.
    - `degraded` (200): the online store answers but the registry cannot be refreshed (its
      database is down, or a refresh has not completed for `max(3 x refresh, refresh + 30 s)`).
      The replica serves its last registry snapshot: reads are exact for every feature view
      defined then; `checks.registry` names the failure and `checks.registry_age_seconds` how old
      the snapshot is. Deliberately still 200: a registry outage is a control-plane outage that
      hits every replica at once, and a 503 would make Kubernetes pull them all out of service
      while the data they serve is fine. It is alerted on instead
      (`featureplane_registry_up`, FeatureplaneRegistryUnavailable). It clears by itself at the
      first successful refresh.
    - `not_ready` (503): the online store does not answer (reads would be 503 anyway), no
      project is loaded, or a tenant's transform workers (on-demand feature views) have not
      started yet; `checks.transforms` says, per tenant, `ok`, `starting` or the last failure.

    A gateway cannot *start* without a registry: `featureplane serve` exits 1 naming the
    registry, so a new replica never comes up serving nothing.
    """
    store_ok = await state.reader.ping()
    plans = state.plans
    now = time.time()
    registry_ok, registry = registry_check(state, now)
    checks: dict[str, object] = {
        "online_store": "ok" if store_ok else "unreachable",
        "registry": registry,
        "registry_age_seconds": round(now - plans.loaded_at, 3),
        "projects": sorted(plans.projects),
    }
    pools = {pool.tenant: pool.status for pool in state.transforms.pools()}
    if pools:
        checks["transforms"] = pools
    starting = any(status == "starting" for status in pools.values())
    if not (store_ok and plans.projects) or starting:
        return JSONResponse({"status": "not_ready", "checks": checks}, 503)
    return JSONResponse({"status": "ready" if registry_ok else "degraded", "checks": checks}, 200)


async def _used_memory(state: GatewayState) -> float:
    """The store's ``used_memory``; a cluster's is the sum over its primaries."""
    if state.settings.redis_type != "redis_cluster":
        memory = await state.control.info("memory")
        return float(memory["used_memory"])
    per_node = await state.control.info("memory", target_nodes="primaries")
    return float(sum(node["used_memory"] for node in per_node.values()))


def _cost_snapshot(
    tenants: Sequence[TenantSpec],
    online: Mapping[str, cost.OnlineBytes] | None,
    prices: cost.Prices,
) -> CostSnapshot:
    """The ``featureplane_cost_*`` inputs: each tenant's quota (tenant.yaml), its online bytes
    when sampled, and the cost per month of what it holds."""
    found = {}
    for spec in tenants:
        cpu_request, cpu_limit, memory_request, memory_limit = cost.quota(spec)
        held = None if online is None else online.get(spec.name)
        found[spec.name] = TenantCost(
            cpu_request_cores=cpu_request,
            cpu_limit_cores=cpu_limit,
            memory_request_bytes=memory_request,
            memory_limit_bytes=memory_limit,
            monthly_cost=cost.monthly_holdings(spec, None if held is None else held.bytes, prices),
            online_bytes=None if held is None else held.bytes,
            online_keys=None if held is None else held.keys,
        )
    return CostSnapshot(prices.currency, found)


@router.get(
    "/metrics",
    response_class=Response,  # not JSON: documented below as the Prometheus text format
    responses={
        200: {
            "description": "Prometheus text exposition format 1.0.0",
            "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
        }
    },
)
async def metrics(state: StateDep) -> Response:
    """Prometheus text exposition, merged over every worker process, plus what is computed at
    scrape time (freshness, SLA targets, materialization runs, registry age and health, store
    health)."""
    plans = state.plans
    tenants = list(plans.tenants.values())
    try:
        recorded = await runs.read_all(state.control, [t.name for t in tenants])
        store_up, used = True, await _used_memory(state)
    except (RedisError, OSError):
        recorded, store_up, used = {}, False, None
    prices = state.cost.prices()  # read once; a bad file fails the scrape, naming file and field
    online = None
    if store_up:
        online = await state.cost.online_bytes(tenants)  # cached, recomputed in a thread every 60 s
    flush()  # this worker's buffered updates; the others flush every FLUSH_SECONDS
    snapshot = ScrapeSnapshot(
        tenants,
        recorded,
        time.time() - plans.loaded_at,
        store_up,
        used,
        cost=_cost_snapshot(tenants, online, prices),
        registry_up=registry_check(state)[0],
    )
    # Merging the workers' files takes milliseconds: off the event loop, so requests do not wait.
    body = await asyncio.to_thread(exposition, scrape_families(snapshot))
    return Response(body, media_type=CONTENT_TYPE_LATEST)
