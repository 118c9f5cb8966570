"""What the gateway can serve: read plans compiled from the registry, and who may read them.

Everything a request needs — hash fields, timestamp field, key layout, value types, grants — is
computed here when the registry loads, never per request. A :class:`ReadPlans` is immutable;
a refresh builds a new one and swaps it in.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from featureplane.errors import BadRequestError, PermissionDeniedError
from featureplane.feast_config import tenant_views
from featureplane.gateway.logplans import ServiceLogging, compile_logging
from featureplane.online import codec
from featureplane.tenancy.catalog import TenantCatalog
from featureplane.tenancy.spec import TenantSpec
from featureplane.transform.support import odfv_refusal

if TYPE_CHECKING:
    from feast.infra.registry.base_registry import BaseRegistry


@dataclass(frozen=True)
class ViewPlan:
    """How to read one feature view of one project."""

    project: str
    name: str
    join_keys: tuple[str, ...]  # sorted, the order of the serialized entity key
    key_types: Mapping[str, int]
    key_prefix: bytes
    key_suffix: bytes  # the project name
    fields: Mapping[str, bytes]  # feature name -> hash field
    value_types: Mapping[str, int]  # feature name -> feast ValueType number
    ts_field: bytes
    ttl_seconds: int = 0  # the registry's ttl, as Feast counts it (whole seconds); 0: none
    # The ttl when the owner's tenant.yaml checks it on reads (serving.ttl_check), else 0: the
    # read path tests only this, so an unchecked view costs nothing.
    max_age: int = 0


@dataclass(frozen=True)
class OdfvPlan:
    """How to compute one on-demand feature view: its inputs, outputs and registry proto (which
    only the owner's transform workers ever unpickle)."""

    project: str
    name: str
    features: tuple[str, ...]
    sources: tuple[tuple[str, tuple[str, ...]], ...]  # (feature view, the features it passes)
    request_fields: tuple[str, ...]
    proto: bytes = field(repr=False)
    updated: str = ""  # the registry's last update of the view: a changed view restarts workers
    refused: str | None = None  # why the gateway does not serve it, in one line


@dataclass(frozen=True)
class ProjectPlan:
    project: str
    views: Mapping[str, ViewPlan]
    services: Mapping[str, tuple[tuple[str, tuple[str, ...]], ...]]
    on_demand: Mapping[str, OdfvPlan] = field(default_factory=dict)
    logging: Mapping[str, ServiceLogging] = field(default_factory=dict)  # services that log

    def has(self, kind: str, name: str) -> bool:
        if kind == "view":
            return name in self.views or name in self.on_demand
        return name in self.services


@dataclass(frozen=True)
class ViewRead:
    """One feature view's part of a request: the plan, which features, under which names."""

    plan: ViewPlan
    features: tuple[str, ...]
    prefix: str  # what full_feature_names puts in front: the view (or projection) name


@dataclass(frozen=True)
class TransformRead:
    """One on-demand feature view's part of a request."""

    plan: OdfvPlan
    features: tuple[str, ...]
    prefix: str


@dataclass(frozen=True)
class Resolution:
    """What a request names: stored views to answer, on-demand views to compute, and the stored
    views those need as input (read, passed to the transformation, not answered)."""

    reads: tuple[ViewRead, ...]
    transforms: tuple[TransformRead, ...] = ()
    inputs: tuple[ViewRead, ...] = ()


def _value_type(dtype: Any) -> int:
    return int(dtype.to_value_type().value)


def compile_project(
    registry: BaseRegistry, project: str, owner: TenantSpec | None = None
) -> ProjectPlan:
    """``project``'s read plans; ``owner`` (its tenant) says which views check their ttl."""
    entities = {
        e.join_key: int(e.value_type.value)
        for e in registry.list_entities(project, allow_cache=False)
    }
    views: dict[str, ViewPlan] = {}
    # Label views are read like feature views (Feast writes them by push, under their name).
    stored = [
        *tenant_views(registry, project),
        *registry.list_label_views(project, allow_cache=False),
    ]
    # skip_udf: the gateway never unpickles a tenant's function (that would run its code here).
    on_demand = registry.list_on_demand_feature_views(project, allow_cache=False, skip_udf=True)
    # A stored on-demand view (write_to_online_store) is read like a feature view: materialize
    # wrote its values under its name, as Feast's materialization does.
    written = [v for v in on_demand if v.write_to_online_store and _refusal(v) is None]
    for fv in [*stored, *written]:
        key_types = {c.name: _value_type(c.dtype) for c in fv.entity_columns}
        for join_key in fv.join_keys:
            key_types.setdefault(join_key, entities.get(join_key, 0))
        join_keys = tuple(sorted(fv.join_keys))
        ttl = int(fv.ttl.total_seconds()) if getattr(fv, "ttl", None) else 0
        checked = owner is not None and owner.serving.ttl_check.enabled(fv.name)
        views[fv.name] = ViewPlan(
            project=project,
            name=fv.name,
            join_keys=join_keys,
            key_types=key_types,
            key_prefix=codec.key_names_prefix(join_keys),
            key_suffix=project.encode(),
            fields={f.name: codec.feature_field(fv.name, f.name) for f in fv.features},
            value_types={f.name: _value_type(f.dtype) for f in fv.features},
            ts_field=codec.timestamp_field(fv.name),
            ttl_seconds=ttl,
            max_age=ttl if checked else 0,
        )
    feature_services = registry.list_feature_services(project, allow_cache=False)
    services = {
        fs.name: tuple(
            (p.name, tuple(f.name for f in p.features)) for p in fs.feature_view_projections
        )
        for fs in feature_services
    }
    odfvs = {v.name: _odfv_plan(project, v) for v in on_demand if v.name not in views}
    tenant = owner.name if owner is not None else project
    logging = compile_logging(project, tenant, feature_services, [*stored, *on_demand])
    return ProjectPlan(project, views, services, odfvs, logging)


def _odfv_plan(project: str, odfv: Any) -> OdfvPlan:
    sources = tuple(
        (p.name, tuple(f.name for f in p.features))
        for p in odfv.source_feature_view_projections.values()
    )
    return OdfvPlan(
        project=project,
        name=odfv.name,
        features=tuple(f.name for f in odfv.features),
        sources=sources,
        request_fields=tuple(odfv.get_request_data_schema()),
        proto=odfv.to_proto().SerializeToString(),
        # Not the bytes: Feast rebuilds a source projection in a varying order.
        updated=str(odfv.last_updated_timestamp),
        refused=_refusal(odfv),
    )


def _refusal(odfv: Any) -> str | None:
    reason = odfv_refusal(odfv)
    return (
        f"on-demand feature view {odfv.name!r} is not served by the gateway: {reason}"
        if reason
        else None
    )


def _unversioned(view: str) -> str:
    """``view@latest`` is ``view``; a pinned ``view@vN`` is refused as Feast refuses it while
    online versioning is off (featureplane serves the latest version of every view)."""
    name, at, version = view.partition("@")
    if not at or version == "latest":
        return name
    raise BadRequestError(
        f"Version-qualified ref {view!r} not supported: online versioning is disabled "
        "(featureplane serves the latest version of every feature view; use "
        f"'{name}' or '{name}@latest')"
    )


@dataclass(frozen=True)
class ReadPlans:
    tenants: TenantCatalog
    projects: Mapping[str, ProjectPlan]
    loaded_at: float = field(default_factory=time.time)
    # Model services ask for the same features again and again: remember what each distinct
    # request shape resolved to (this snapshot only; a refresh starts a new one).
    _resolved: dict[tuple[str, tuple[str, ...], str | None, str | None], Resolution] = field(
        default_factory=dict, repr=False, compare=False
    )

    @classmethod
    def load(cls, tenants: TenantCatalog, registry: BaseRegistry) -> ReadPlans:
        projects = {
            spec.feast_project: compile_project(registry, spec.feast_project, spec)
            for spec in tenants.values()
        }
        return cls(tenants, projects)

    def tenant(self, name: str) -> TenantSpec | None:
        """The tenant named ``name`` in this snapshot, if any (on the request path)."""
        return self.tenants.tenants.get(name)

    # -- resolution -------------------------------------------------------------------------

    def _own(self, tenant: TenantSpec) -> ProjectPlan:
        return self.projects.get(tenant.feast_project) or ProjectPlan(tenant.feast_project, {}, {})

    def _granted(self, tenant: TenantSpec, name: str, kind: str) -> list[ProjectPlan]:
        """Other tenants' projects that share the view (or service) ``name`` with ``tenant``."""
        found = []
        for owner in self.tenants.values():
            if owner.name == tenant.name:
                continue
            views, services = owner.grants_to(tenant.name)
            plan = self.projects.get(owner.feast_project)
            if plan is None:
                continue
            if name in (views if kind == "view" else services) and plan.has(kind, name):
                found.append(plan)
        return found

    def _foreign(self, tenant: TenantSpec, name: str, kind: str) -> bool:
        return any(
            plan.has(kind, name)
            for project, plan in self.projects.items()
            if project != tenant.feast_project
        )

    def _locate(
        self, tenant: TenantSpec, name: str, kind: str, project: str | None = None
    ) -> ProjectPlan:
        label = "feature view" if kind == "view" else "feature service"
        own = self._own(tenant)
        if project is not None and project != own.project:
            return self._locate_shared(tenant, name, kind, project, label)
        if own.has(kind, name):
            return own
        if project is None:
            granted = self._granted(tenant, name, kind)
            if len(granted) == 1:
                return granted[0]
            if len(granted) > 1:
                owners = ", ".join(sorted(p.project for p in granted))
                raise BadRequestError(
                    f"{label} {name!r} is shared with you by several projects ({owners}): "
                    "name one in 'project'"
                )
            if self._foreign(tenant, name, kind):
                raise PermissionDeniedError(f"tenant {tenant.name!r} may not read {label} {name!r}")
        raise BadRequestError(f"unknown {label} {name!r} in project {own.project!r}")

    def _locate_shared(
        self, tenant: TenantSpec, name: str, kind: str, project: str, label: str
    ) -> ProjectPlan:
        plan = self.projects.get(project)
        owner = self.tenants.by_project().get(project)
        if plan is None or owner is None:
            raise BadRequestError(f"unknown project {project!r}")
        if not plan.has(kind, name):
            raise BadRequestError(f"unknown {label} {name!r} in project {project!r}")
        views, services = owner.grants_to(tenant.name)
        if name not in (views if kind == "view" else services):
            raise PermissionDeniedError(
                f"tenant {tenant.name!r} may not read {label} {name!r} of project {project!r}"
            )
        return plan

    def resolve(
        self,
        tenant: TenantSpec,
        features: Sequence[str],
        service: str | None,
        project: str | None = None,
    ) -> Resolution:
        """The views and features a request names, checked against what ``tenant`` may read."""
        key = (tenant.name, tuple(features), service, project)
        resolution = self._resolved.get(key)
        if resolution is None:
            resolution = self._resolve(tenant, features, service, project)
            if len(self._resolved) >= 4096:
                self._resolved.clear()
            self._resolved[key] = resolution
        return resolution

    def _resolve(
        self,
        tenant: TenantSpec,
        features: Sequence[str],
        service: str | None,
        project: str | None,
    ) -> Resolution:
        named: list[tuple[ProjectPlan, str, tuple[str, ...]]] = []  # (project, view, features)
        if service:
            located = self._locate(tenant, service, "service", project)
            for view_name, feats in located.services[service]:
                if not located.has("view", view_name):
                    raise BadRequestError(
                        f"feature service {service!r} uses {view_name!r}, which is not servable"
                    )
                named.append((located, view_name, feats))
        else:
            if not features:
                raise BadRequestError(
                    "name at least one feature in 'features', or a 'feature_service'"
                )
            grouped: dict[str, list[str]] = {}
            for ref in features:
                view_name, sep, feature = ref.partition(":")
                if not sep or not view_name or not feature or ":" in feature:
                    raise BadRequestError(
                        f"feature reference {ref!r} is not of the form 'feature_view:feature'"
                    )
                grouped.setdefault(_unversioned(view_name), []).append(feature)
            for view_name, requested in grouped.items():
                located = self._locate(tenant, view_name, "view", project)
                named.append((located, view_name, tuple(requested)))
        reads: list[ViewRead] = []
        transforms: list[TransformRead] = []
        for located, view_name, feats in named:
            odfv = located.on_demand.get(view_name)
            known = odfv.features if odfv is not None else located.views[view_name].fields
            for feature in feats:
                if feature not in known:
                    raise BadRequestError(
                        f"unknown feature {feature!r} in feature view {view_name!r}"
                    )
            if odfv is None:
                view = located.views[view_name]
                reads.append(ViewRead(view, feats or tuple(view.fields), view_name))
                continue
            if odfv.refused:
                raise BadRequestError(odfv.refused)
            transforms.append(TransformRead(odfv, feats or odfv.features, view_name))
        return Resolution(tuple(reads), tuple(transforms), self._inputs(transforms))

    def _inputs(self, transforms: Sequence[TransformRead]) -> tuple[ViewRead, ...]:
        inputs: list[ViewRead] = []
        for t in transforms:
            views = self.projects[t.plan.project].views
            for source, feats in t.plan.sources:
                view = views.get(source)
                if view is None:
                    raise BadRequestError(
                        f"on-demand feature view {t.plan.name!r} reads {source!r}, which is "
                        "not served online"
                    )
                inputs.append(ViewRead(view, feats or tuple(view.fields), source))
        return tuple(inputs)
