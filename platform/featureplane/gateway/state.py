"""The gateway's long-lived resources, owned by the app's lifespan, and the dependency that
hands them to FastAPI routes (``StateDep``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import redis.asyncio as aioredis
from fastapi import Depends, Request

from featureplane.cost import CostSampler
from featureplane.gateway.auth import Authenticator
from featureplane.gateway.plans import ReadPlans
from featureplane.gateway.quotas import QuotaStore
from featureplane.gateway.reader import OnlineReader
from featureplane.settings import Settings


@dataclass
class GatewayState:
    settings: Settings
    plans: ReadPlans  # replaced wholesale on every registry refresh
    reader: OnlineReader
    authenticator: Authenticator
    quotas: QuotaStore
    control: aioredis.Redis  # the ops routes' client (run records, INFO), off the request path
    cost: CostSampler  # /metrics' cost gauges: online bytes (a Redis client of its own), prices
    registry_error: str | None = None


async def get_state(request: Request) -> GatewayState:
    # async on purpose: FastAPI runs a sync dependency in a worker thread, a hop per request.
    state: GatewayState = request.app.state.gateway
    return state


StateDep = Annotated[GatewayState, Depends(get_state)]
