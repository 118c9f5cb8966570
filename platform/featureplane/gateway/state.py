"""The gateway's long-lived resources, owned by the app's lifespan, and the dependency that
hands them to FastAPI routes (``StateDep``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import redis.asyncio as aioredis
from fastapi import Depends, Request
from feast.protos.feast.serving.ServingService_pb2 import GetOnlineFeaturesResponse

from featureplane.cost import CostSampler
from featureplane.errors import TransformBusyError
from featureplane.gateway.auth import Authenticator
from featureplane.gateway.featurelog import FeatureLog
from featureplane.gateway.lookup import Computation
from featureplane.gateway.plans import ReadPlans
from featureplane.gateway.quotas import QuotaStore
from featureplane.gateway.reader import OnlineReader
from featureplane.settings import Settings
from featureplane.transform.pool import TransformSupervisor


@dataclass
class GatewayState:
    settings: Settings
    plans: ReadPlans  # replaced wholesale on every registry refresh
    reader: OnlineReader
    authenticator: Authenticator
    quotas: QuotaStore
    control: aioredis.Redis  # the ops routes' client (run records, INFO), off the request path
    cost: CostSampler  # /metrics' cost gauges: online bytes (a Redis client of its own), prices
    transforms: TransformSupervisor  # tenants' sandboxed workers for on-demand feature views
    feature_log: FeatureLog  # answers of logged feature services, written in the background
    registry_error: str | None = None

    async def compute(self, computation: Computation) -> GetOnlineFeaturesResponse:
        """``computation`` run by its owner's transform workers."""
        owner = self.plans.tenants.by_project().get(computation.project)
        pool = self.transforms.get(owner.name) if owner is not None else None
        if pool is None:
            raise TransformBusyError(f"{computation.label}: no transform workers are running yet")
        return await pool.run(computation.call, computation.label)


async def get_state(request: Request) -> GatewayState:
    # async on purpose: FastAPI runs a sync dependency in a worker thread, a hop per request.
    state: GatewayState = request.app.state.gateway
    return state


StateDep = Annotated[GatewayState, Depends(get_state)]
