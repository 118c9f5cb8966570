"""The tenant specification: what ``tenants/<name>/tenant.yaml`` may say.

One pydantic model tree; its JSON schema is generated into ``tenants/tenant.schema.json``
(`featureplane tenants schema`) and a test keeps that file current.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

# A tenant name doubles as a Kubernetes namespace suffix and a Feast project name.
TENANT_NAME_PATTERN = r"^[a-z][a-z0-9]{1,30}$"
# Feast project names: letters, digits and underscores, starting with a letter.
PROJECT_PATTERN = r"^[a-z][a-z0-9_]{1,62}$"
_QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|M|G|T)?$"
_OBJECT_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"

Quantity = Annotated[str, Field(pattern=_QUANTITY, examples=["500m", "2", "4Gi"])]
ObjectName = Annotated[str, Field(pattern=_OBJECT_NAME)]
# What a batch failing a feature view's expectation suite does: strict quarantines it (nothing
# of it is written or served), warn records the report and lets it through.
QualityPolicy = Literal["strict", "warn"]
# What a caller may do at the gateway (featureplane.tenancy.credentials.SCOPES).
Scope = Literal["read", "write"]
_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"


class _Strict(BaseModel):
    # strict: a YAML `burst: yes` (true) or `burst: "5"` is a mistake, not 1 or 5; an integer
    # is still a valid float. No .inf/.nan: no quota or target is infinite.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


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
        pattern=_DNS_LABEL,
        description="Defaults to fp-<tenant name>.",
    )
    requests: ResourceAmounts = ResourceAmounts(cpu="1", memory="2Gi")
    limits: ResourceAmounts = ResourceAmounts(cpu="2", memory="4Gi")
    service_accounts: dict[
        Annotated[str, Field(pattern=_DNS_LABEL)],
        Annotated[list[Scope], Field(min_length=1)],
    ] = Field(
        default_factory=dict,
        description="Scopes of the namespace's ServiceAccounts at the gateway (with "
        "FEATUREPLANE_KUBERNETES_AUTH), e.g. {ingest: [read, write]}; one not named may read.",
    )


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


class Quality(BaseModel):
    """Ingestion policy per feature view when a batch fails its expectation suite
    (``feature_repo/<tenant>/expectations/``): ``strict`` quarantines the batch, ``warn``
    records the report and ingests it. ``default`` covers the views not listed."""

    model_config = ConfigDict(
        extra="allow", frozen=True, json_schema_extra={"propertyNames": {"pattern": _OBJECT_NAME}}
    )
    # Every other key is a feature view name; its value, that view's policy.
    __pydantic_extra__: dict[str, QualityPolicy] = Field(init=False)

    default: QualityPolicy = Field(
        default="warn",
        description="Policy of the feature views not listed (and of a view named `default`).",
    )

    @model_validator(mode="after")
    def _keys_are_view_names(self) -> Quality:
        for name in self.views:
            if not re.match(_OBJECT_NAME, name):
                raise ValueError(f"{name!r} is not a feature view name")
        return self

    @property
    def views(self) -> dict[str, QualityPolicy]:
        """The per-view overrides."""
        return dict(self.model_extra or {})

    def policy(self, feature_view: str) -> QualityPolicy:
        return self.views.get(feature_view, self.default)


def _yaml_off(value: object) -> object:
    # PyYAML reads an unquoted `off` (YAML 1.1) as false: both mean off.
    return "off" if value is False else value


# Lint (`featureplane plan`): an error blocks the gate, a warning is printed, off is not reported.
LintLevel = Annotated[Literal["error", "warning", "off"], BeforeValidator(_yaml_off)]
# The rules of featureplane.registry.lint a tenant may set; `feast` (Feast itself refusing the
# repo) is not among them: nothing could be applied anyway.
LINT_RULES = (
    "description",
    "entity-owner",
    "entity-ref",
    "feature-doc",
    "module-name",
    "owner",
    "service-doc",
    "source-path",
    "ttl",
    "unique-name",
    "unsupported",
)


class Lint(BaseModel):
    """How strict lint of the tenant's repo is: ``default`` for every rule, and one entry per
    rule name (``error`` blocks `plan` and `apply`, ``warning`` is printed, ``off`` is not
    reported). Unset: each rule's platform severity (docs/governance.md)."""

    model_config = ConfigDict(
        extra="allow",
        frozen=True,
        json_schema_extra={
            "propertyNames": {"enum": ["default", *LINT_RULES]},
            "additionalProperties": {"enum": ["error", "warning", "off"]},
        },
    )
    # Every other key is a rule name; its value, that rule's severity.
    __pydantic_extra__: dict[str, LintLevel] = Field(init=False)

    default: LintLevel | None = Field(
        default=None,
        description="Severity of the rules not listed. Unset: each rule's platform severity.",
    )

    @model_validator(mode="after")
    def _keys_are_rules(self) -> Lint:
        for name in self.rules:
            if name not in LINT_RULES:
                raise ValueError(f"{name!r} is not a lint rule (rules: {', '.join(LINT_RULES)})")
        return self

    @property
    def rules(self) -> dict[str, LintLevel]:
        """The per-rule overrides."""
        return dict(self.model_extra or {})

    def level(self, rule: str, platform: LintLevel) -> LintLevel:
        """The effective severity of ``rule``: its entry, else ``default``, else ``platform``."""
        if rule not in LINT_RULES:
            return platform
        return self.rules.get(rule) or self.default or platform


class Transforms(_Strict):
    """The sandboxed worker processes that compute the tenant's on-demand feature views, per
    gateway process (docs/transforms.md)."""

    workers: int = Field(
        default=1, ge=1, le=32, description="Worker processes per gateway process."
    )
    memory_mb: int = Field(
        default=1024,
        ge=64,
        description="Address space each worker may map beyond what it shares with the zygote "
        "(Feast, pandas, pyarrow), in MiB.",
    )
    timeout_ms: int = Field(
        default=1000,
        gt=0,
        le=60_000,
        description="Longest a request waits for a free worker, and then for its answer (504).",
    )
    queue: int = Field(
        default=32, ge=0, description="Requests that may wait for a free worker; more get 503."
    )


class TtlCheck(_Strict):
    """Which of the tenant's feature views answer values older than their ttl as null with
    status ``OUTSIDE_MAX_AGE``. Off by default, as in Feast, whose Redis reads ignore ttl."""

    default: bool = Field(
        default=False, description="Whether the feature views not listed are checked."
    )
    views: dict[ObjectName, bool] = Field(
        default_factory=dict,
        description="Per feature view: checked (true) or not (false), overriding `default`. "
        "A view without a ttl (unset or 0) is never checked.",
    )

    def enabled(self, feature_view: str) -> bool:
        return self.views.get(feature_view, self.default)


class Serving(_Strict):
    """How the gateway answers reads of the tenant's feature views, whoever reads them (the
    tenant or one it shares them with)."""

    ttl_check: TtlCheck = Field(
        default=TtlCheck(),
        description="Answer values older than their feature view's ttl (now minus the stored "
        "event time) as null with status OUTSIDE_MAX_AGE.",
    )


DriftStatistic = Literal["psi", "ks"]
FeatureName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*$")]


class DriftLimits(_Strict):
    """One feature's thresholds; an unset one is the tenant's."""

    psi: float | None = Field(default=None, gt=0)
    ks: float | None = Field(default=None, gt=0, le=1)


class Drift(_Strict):
    """How far a materialized batch may drift from the training reference
    (`featureplane drift reference`) before the feature counts as drifted."""

    psi: float = Field(
        default=0.2,
        gt=0,
        description="Population stability index above which a feature has drifted "
        "(0.1: moderate, 0.2: significant shift).",
    )
    ks: float = Field(
        default=0.2,
        gt=0,
        le=1,
        description="Two-sample Kolmogorov-Smirnov statistic above which a numeric feature "
        "has drifted.",
    )
    min_rows: int = Field(
        default=100,
        ge=1,
        description="Batches with fewer rows are not scored: a few rows' PSI is noise.",
    )
    features: dict[FeatureName, DriftLimits] = Field(
        default_factory=dict,
        description="Per feature, as `<feature view>.<feature>`: thresholds of its own.",
    )

    def limit(self, feature_view: str, feature: str, statistic: DriftStatistic) -> float:
        own = self.features.get(f"{feature_view}.{feature}")
        value = getattr(own, statistic) if own is not None else None
        return float(value if value is not None else getattr(self, statistic))


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
    quality: Quality = Quality()
    drift: Drift = Drift()
    lint: Lint = Lint()
    transforms: Transforms = Transforms()
    serving: Serving = Field(
        default=Serving(), description="How the gateway answers reads of the tenant's views."
    )

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
