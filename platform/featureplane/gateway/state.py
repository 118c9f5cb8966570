"""The gateway's long-lived resources, owned by the app's lifespan, and the dependencies that
hand them to routes (``StateDep``, ``TenantDep``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import redis.asyncio as aioredis
from fastapi import Depends, Request

from featureplane.errors import AuthenticationError
from featureplane.gateway.auth import Authenticator
from featureplane.gateway.catalog import ServingCatalog
from featureplane.gateway.quotas import QuotaStore
from featureplane.gateway.reader import OnlineReader
from featureplane.observability.tracing import span
from featureplane.settings import Settings
from featureplane.tenancy.spec import TenantSpec


@dataclass
class GatewayState:
    settings: Settings
    catalog: ServingCatalog  # replaced wholesale on every registry refresh
    reader: OnlineReader
    authenticator: Authenticator
    quotas: QuotaStore
    control: aioredis.Redis  # tokens, quota state, run records: apart from feature data
    registry_error: str | None = None


async def get_state(request: Request) -> GatewayState:
    # async on purpose: FastAPI runs a sync dependency in a worker thread, a hop per request.
    state: GatewayState = request.app.state.gateway
    return state


StateDep = Annotated[GatewayState, Depends(get_state)]


async def current_tenant(request: Request, state: StateDep) -> TenantSpec:
    with span("auth"):
        name = await state.authenticator.authenticate(request.headers.get("authorization"))
    spec = state.catalog.tenants.tenants.get(name)
    if spec is None:
        raise AuthenticationError("the token's tenant no longer exists")
    request.state.tenant = name  # the metrics middleware labels the request with it
    return spec


TenantDep = Annotated[TenantSpec, Depends(current_tenant)]
