"""The gateway's app factory.

``create_app(settings)`` builds the app; its lifespan owns the long-lived resources (the worker's
Redis connection — a :class:`SharedConnection`, or a :class:`ClusterConnection` with
``FEATUREPLANE_REDIS_TYPE=redis_cluster`` — the registry connection and the compiled
:class:`ReadPlans`, refreshed in the background). uvicorn starts it with
``factory=True``, once per worker.

:class:`GatewayApp` is FastAPI with one addition: paths in ``fast_routes`` (the feature route)
are plain ASGI apps called before FastAPI's middleware stack, with only the telemetry middleware
around them; everything else (ops routes, OpenAPI docs) is ordinary FastAPI.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from featureplane.cost import CostSampler
from featureplane.errors import GatewayError
from featureplane.feast_config import close_registry, open_registry, registry_failure
from featureplane.gateway import features, ops
from featureplane.gateway.auth import (
    Authenticator,
    FeatureplaneTokens,
    NamespaceAccess,
    ServiceAccountTokens,
)
from featureplane.gateway.featurelog import FeatureLog
from featureplane.gateway.plans import ReadPlans
from featureplane.gateway.quotas import QuotaStore, RedisQuotaStore, UnlimitedQuotaStore
from featureplane.gateway.reader import ClusterOnlineReader, OnlineReader, RedisOnlineReader
from featureplane.gateway.state import GatewayState
from featureplane.observability import metrics, tracing
from featureplane.observability.logging import configure_logging
from featureplane.observability.metrics import (
    REQUEST_ERRORS,
    UNAUTHENTICATED,
    mark_process_dead,
)
from featureplane.observability.middleware import RequestTelemetryMiddleware
from featureplane.online.clients import async_redis_client, shared_connection
from featureplane.online.cluster import ClusterConnection
from featureplane.settings import Settings
from featureplane.tenancy.catalog import TenantCatalog
from featureplane.tenancy.spec import TenantSpec
from featureplane.transform.pool import Limits, TransformSupervisor
from featureplane.transform.protocol import WorkerLoad

if TYPE_CHECKING:
    from feast.infra.registry.base_registry import BaseRegistry
    from opentelemetry.sdk.trace.export import SpanExporter

log = logging.getLogger("featureplane.gateway")


def _load_plans(settings: Settings, registry: BaseRegistry) -> ReadPlans:
    return ReadPlans.load(TenantCatalog.load(settings.tenants_path), registry)


def transform_loads(settings: Settings, plans: ReadPlans) -> dict[str, tuple[WorkerLoad, Limits]]:
    """What each tenant's transform workers load: the on-demand views the gateway serves."""
    wanted = {}
    for spec in plans.tenants.values():
        project = plans.projects.get(spec.feast_project)
        views = [v for v in project.on_demand.values() if not v.refused] if project else []
        if not views:
            continue
        repo = settings.feature_repo_path / spec.name
        version = ";".join(f"{v.name}@{v.updated}" for v in views)
        load = WorkerLoad(spec.feast_project, str(repo), tuple(v.proto for v in views), version)
        t = spec.transforms
        wanted[spec.name] = (load, Limits(t.workers, t.memory_mb, t.timeout_ms / 1000, t.queue))
    return wanted


def _sync_transforms(state: GatewayState) -> None:
    """Workers for the current plans; replaced ones close once their successors are up."""
    for pool in state.transforms.sync(transform_loads(state.settings, state.plans)):
        closing = asyncio.create_task(state.transforms.retire(pool))
        _closing.add(closing)
        closing.add_done_callback(_closing.discard)


_closing: set[asyncio.Task[None]] = set()  # strong references: the loop keeps only weak ones


def _access(spec: TenantSpec) -> NamespaceAccess:
    accounts = spec.kubernetes.service_accounts
    return NamespaceAccess(spec.name, {name: frozenset(s) for name, s in accounts.items()})


def _service_accounts(settings: Settings, state: GatewayState) -> ServiceAccountTokens:
    """TokenReview against the cluster the gateway runs in (or the local kubeconfig)."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return ServiceAccountTokens(
        client.AuthenticationV1Api(),
        lambda: {spec.namespace: _access(spec) for spec in state.plans.tenants.values()},
        settings.kubernetes_audiences,
        settings.kubernetes_auth_cache_seconds,
    )


async def _refresh_forever(state: GatewayState, registry: BaseRegistry) -> None:
    """Reload the read plans every ``registry_refresh_seconds``. A failed refresh keeps the last
    snapshot in service and sets ``state.registry_error`` (one line, no password), which /ready
    reports as ``degraded`` and /metrics as ``featureplane_registry_up 0``; the first refresh
    that succeeds clears it. Feast's engine pings pooled connections first, so a restarted
    database is picked up without a restart of the gateway."""
    while True:
        await asyncio.sleep(state.settings.registry_refresh_seconds)
        try:
            state.plans = await asyncio.to_thread(_load_plans, state.settings, registry)
            _sync_transforms(state)
        except Exception as exc:  # keep serving the last good snapshot whatever went wrong
            if state.registry_error is None:
                log.error(
                    "registry refresh failed, serving the previous snapshot: %s",
                    registry_failure(state.settings, exc),
                )
            state.registry_error = registry_failure(state.settings, exc)[:300]
            continue
        if state.registry_error is not None:
            log.warning("registry refreshed again after a failure: %s", state.registry_error)
            state.registry_error = None


class GatewayApp(FastAPI):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fast_routes: dict[str, ASGIApp] = {}
        self.documented_routes: list[APIRoute] = []  # the fast routes, for the OpenAPI schema

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            fast = self.fast_routes.get(scope["path"])
            if fast is not None:
                scope["app"] = self
                scope.setdefault("state", {})
                await fast(scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            self.openapi_schema = get_openapi(
                title=self.title,
                version=self.version,
                summary=self.summary,
                routes=[*self.documented_routes, *self.routes],
            )
        return self.openapi_schema


async def _flush_metrics_forever() -> None:
    while True:
        await asyncio.sleep(metrics.FLUSH_SECONDS)
        metrics.flush()


def create_app(
    settings: Settings | None = None,
    *,
    reader: OnlineReader | None = None,
    quotas: QuotaStore | None = None,
    span_exporter: SpanExporter | None = None,
) -> GatewayApp:
    settings = settings or Settings()
    configure_logging(settings.log_level, settings.log_json)
    tracing.configure_tracing(
        settings.service_name,
        settings.otlp_endpoint or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"),
        span_exporter,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.require_redis_url()  # before the registry: a missing URL is the first error
        registry = await asyncio.to_thread(open_registry, settings)
        plans = await asyncio.to_thread(_load_plans, settings, registry)
        timeout = settings.redis_timeout_seconds
        # The request path's connection, and the ops routes' client (run records, INFO).
        connection = shared_connection(settings)
        store_reader: OnlineReader = (
            ClusterOnlineReader(connection)
            if isinstance(connection, ClusterConnection)
            else RedisOnlineReader(connection)
        )
        control = async_redis_client(
            settings, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        cost = CostSampler.from_settings(settings)  # /metrics' cost gauges
        if quotas is not None:
            quota_store = quotas
        elif settings.quotas_enabled:
            quota_store = RedisQuotaStore(connection, settings.quota_lease_seconds)
        else:
            quota_store = UnlimitedQuotaStore()
        tokens = FeatureplaneTokens(connection, settings.pepper)
        state = GatewayState(
            settings=settings,
            plans=plans,
            reader=reader or store_reader,
            authenticator=Authenticator(tokens),
            quotas=quota_store,
            control=control,
            cost=cost,
            transforms=TransformSupervisor(),
            feature_log=FeatureLog(settings),
        )
        _sync_transforms(state)
        await state.transforms.settle()  # uvicorn accepts on this process only after start-up
        if settings.kubernetes_auth:
            state.authenticator = Authenticator(tokens, _service_accounts(settings, state))
        app.state.gateway = state
        refresher = asyncio.create_task(_refresh_forever(state, registry))
        flusher = asyncio.create_task(_flush_metrics_forever())
        logger = asyncio.create_task(state.feature_log.run())
        # Start-up objects (Feast, the registry, protobuf descriptors) never die: move them out
        # of the collector's sight so full collections stay short under load.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await state.feature_log.aclose(logger)  # writes what is still buffered
            for task in (refresher, flusher):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            metrics.flush()
            await state.transforms.aclose()
            await connection.aclose()
            await control.aclose()
            await cost.aclose()
            close_registry(registry)
            if reader is not None:
                await reader.aclose()
            mark_process_dead(os.getpid())

    app = GatewayApp(
        title="featureplane gateway",
        version="0.1.0",
        summary="Feast-compatible online features for every tenant.",
        lifespan=lifespan,
    )
    app.include_router(ops.router)
    endpoint = features.FeaturesEndpoint(app.state)
    app.fast_routes[features.PATH] = RequestTelemetryMiddleware(endpoint, settings.access_log)
    app.documented_routes.append(features.documented_route)

    @app.exception_handler(GatewayError)
    async def gateway_error(request: Request, exc: GatewayError) -> Response:
        route = getattr(request.scope.get("route"), "path", "unmatched")
        tenant = request.scope.get("state", {}).get("tenant", UNAUTHENTICATED)
        REQUEST_ERRORS.labels(tenant, route, exc.code).inc()
        return Response(
            features.error_body(exc),
            status_code=exc.status_code,
            headers=exc.headers,
            media_type="application/json",
        )

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        body = {
            "error": {"code": "internal_error", "message": "internal error; see the gateway log"}
        }
        return JSONResponse(body, status_code=500)

    app.add_middleware(RequestTelemetryMiddleware, access_log_enabled=settings.access_log)
    return app
