"""Operational routes: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from redis.exceptions import RedisError

from featureplane.gateway.state import StateDep
from featureplane.observability import cost, runs
from featureplane.observability.metrics import (
    ScrapeSnapshot,
    exposition,
    flush,
    scrape_families,
)

router = APIRouter()


@router.get("/health")
async def health() -> dict[str, str]:
    """Liveness: the process is up and serving HTTP."""
    return {"status": "ok"}


@router.get("/ready")
async def ready(state: StateDep) -> JSONResponse:
    """Readiness: a registry snapshot is loaded and the online store answers."""
    store_ok = await state.reader.ping()
    catalog = state.catalog
    checks = {
        "online_store": "ok" if store_ok else "unreachable",
        "registry": "ok" if state.registry_error is None else f"stale: {state.registry_error}",
        "registry_age_seconds": round(time.time() - catalog.loaded_at, 3),
        "projects": sorted(catalog.projects),
    }
    status = 200 if store_ok and catalog.projects else 503
    return JSONResponse(
        {"status": "ready" if status == 200 else "not_ready", "checks": checks}, status
    )


@router.get("/metrics")
async def metrics(state: StateDep) -> Response:
    """Prometheus text exposition, merged over every worker process, plus what is computed at
    scrape time (freshness, SLA targets, materialization runs, registry age, store health)."""
    catalog = state.catalog
    tenants = list(catalog.tenants.values())
    try:
        recorded = await runs.read_all(state.control, [t.name for t in tenants])
        memory = await state.control.info("memory")
        store_up, used = True, float(memory["used_memory"])
    except (RedisError, OSError):
        recorded, store_up, used = {}, False, None
    settings = state.settings
    sampler, prices = cost.for_gateway(settings.require_redis_url(), settings.cost_prices)
    online = None
    if store_up and settings.redis_type == "redis":  # one SCAN cannot see a whole cluster
        online = await sampler.get(tenants)  # cached, recomputed in a thread every 60 s
    flush()  # this worker's buffered updates; the others flush every FLUSH_SECONDS
    snapshot = ScrapeSnapshot(
        tenants,
        recorded,
        time.time() - catalog.loaded_at,
        store_up,
        used,
        online_bytes=online,
        prices=prices,
    )
    # Merging the workers' files takes milliseconds: off the event loop, so requests do not wait.
    body = await asyncio.to_thread(exposition, scrape_families(snapshot))
    return Response(body, media_type=CONTENT_TYPE_LATEST)
