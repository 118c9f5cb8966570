"""The tenant specification: what ``tenants/<name>/tenant.yaml`` may say.

One pydantic model tree; its JSON schema is generated into ``tenants/tenant.schema.json``
(`featureplane tenants schema`) and a test keeps that file current.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

# A tenant name doubles as a Kubernetes namespace suffix and a Feast project name.
TENANT_NAME_PATTERN = r"^[a-z][a-z0-9]{1,30}$"
# Feast project names: letters, digits and underscores, starting with a letter.
PROJECT_PATTERN = r"^[a-z][a-z0-9_]{1,62}$"
_QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|M|G|T)?$"

Quantity = Annotated[str, Field(pattern=_QUANTITY, examples=["500m", "2", "4Gi"])]
ObjectName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Owner(_Strict):
    """Someone accountable for the tenant: paged on SLA breaches, asked about changes."""

    name: str = Field(min_length=1)
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class Sla(_Strict):
    """Service-level targets the tenant's dashboard and alerts measure against."""

    latency_p99_ms: float = Field(gt=0, description="p99 of POST /get-online-features, in ms.")
    availability: float = Field(
        default=0.999, gt=0, lt=1, description="Target ratio of non-5xx answers, e.g. 0.999."
    )
    freshness_seconds: dict[ObjectName, Annotated[int, Field(gt=0)]] = Field(
        default_factory=dict,
        description="Per feature view: the largest acceptable now - newest event time, in seconds.",
    )


class Quotas(_Strict):
    """Per-tenant limits the gateway enforces."""

    requests_per_second: float = Field(default=100, gt=0)
    burst: int = Field(default=200, gt=0, description="Token-bucket capacity, in requests.")
    max_entities_per_request: int = Field(default=1000, gt=0)
    max_features_per_request: int = Field(default=200, gt=0)
    max_concurrent_requests: int = Field(default=64, gt=0)
    max_body_bytes: int = Field(default=1_048_576, gt=0)


class ResourceAmounts(_Strict):
    cpu: Quantity
    memory: Quantity


class Kubernetes(_Strict):
    """The tenant's namespace and its ResourceQuota / LimitRange."""

    namespace: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$",
        description="Defaults to fp-<tenant name>.",
    )
    requests: ResourceAmounts = ResourceAmounts(cpu="1", memory="2Gi")
    limits: ResourceAmounts = ResourceAmounts(cpu="2", memory="4Gi")


class Grant(_Strict):
    """Read-only sharing: ``tenants`` may read the named feature views and services."""

    tenants: list[Annotated[str, Field(pattern=TENANT_NAME_PATTERN)]] = Field(min_length=1)
    feature_views: list[ObjectName] = Field(default_factory=list)
    feature_services: list[ObjectName] = Field(default_factory=list)

    @model_validator(mode="after")
    def _names_something(self) -> Grant:
        if not self.feature_views and not self.feature_services:
            raise ValueError("a grant must name at least one feature view or feature service")
        return self


class TenantSpec(_Strict):
    """One tenant: ``tenants/<name>/tenant.yaml``."""

    name: str = Field(pattern=TENANT_NAME_PATTERN, description="Equals the folder name.")
    description: str = ""
    project: str | None = Field(
        default=None,
        pattern=PROJECT_PATTERN,
        description="Feast project in the shared registry. Defaults to the tenant name.",
    )
    owners: list[Owner] = Field(min_length=1)
    cost_centre: str = Field(min_length=1)
    sla: Sla
    quotas: Quotas = Quotas()
    kubernetes: Kubernetes = Kubernetes()
    sharing: list[Grant] = Field(default_factory=list)

    @property
    def feast_project(self) -> str:
        return self.project or self.name

    @property
    def namespace(self) -> str:
        return self.kubernetes.namespace or f"fp-{self.name}"

    def grants_to(self, tenant: str) -> tuple[frozenset[str], frozenset[str]]:
        """Feature views and feature services this tenant shares with ``tenant``."""
        views: set[str] = set()
        services: set[str] = set()
        for grant in self.sharing:
            if tenant in grant.tenants:
                views.update(grant.feature_views)
                services.update(grant.feature_services)
        return frozenset(views), frozenset(services)
