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
from featureplane.online import codec
from featureplane.tenancy.catalog import TenantCatalog
from featureplane.tenancy.spec import TenantSpec

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


@dataclass(frozen=True)
class ProjectPlan:
    project: str
    views: Mapping[str, ViewPlan]
    services: Mapping[str, tuple[tuple[str, tuple[str, ...]], ...]]
    on_demand: frozenset[str] = frozenset()


@dataclass(frozen=True)
class ViewRead:
    """One feature view's part of a request: the plan, which features, under which names."""

    plan: ViewPlan
    features: tuple[str, ...]
    prefix: str  # what full_feature_names puts in front: the view (or projection) name


def _value_type(dtype: Any) -> int:
    return int(dtype.to_value_type().value)


def compile_project(registry: BaseRegistry, project: str) -> ProjectPlan:
    entities = {
        e.join_key: int(e.value_type.value)
        for e in registry.list_entities(project, allow_cache=False)
    }
    views: dict[str, ViewPlan] = {}
    for fv in registry.list_feature_views(project, allow_cache=False):
        key_types = {c.name: _value_type(c.dtype) for c in fv.entity_columns}
        for join_key in fv.join_keys:
            key_types.setdefault(join_key, entities.get(join_key, 0))
        join_keys = tuple(sorted(fv.join_keys))
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
        )
    services = {
        fs.name: tuple(
            (p.name, tuple(f.name for f in p.features)) for p in fs.feature_view_projections
        )
        for fs in registry.list_feature_services(project, allow_cache=False)
    }
    odfvs = frozenset(
        v.name for v in registry.list_on_demand_feature_views(project, allow_cache=False)
    )
    return ProjectPlan(project, views, services, odfvs)


@dataclass(frozen=True)
class ReadPlans:
    tenants: TenantCatalog
    projects: Mapping[str, ProjectPlan]
    loaded_at: float = field(default_factory=time.time)
    # Model services ask for the same features again and again: remember what each distinct
    # request shape resolved to (this snapshot only; a refresh starts a new one).
    _resolved: dict[tuple[str, tuple[str, ...], str | None, str | None], list[ViewRead]] = field(
        default_factory=dict, repr=False, compare=False
    )

    @classmethod
    def load(cls, tenants: TenantCatalog, registry: BaseRegistry) -> ReadPlans:
        projects = {
            spec.feast_project: compile_project(registry, spec.feast_project)
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
            shared, present = (views, plan.views) if kind == "view" else (services, plan.services)
            if name in shared and name in present:
                found.append(plan)
        return found

    def _foreign(self, tenant: TenantSpec, name: str, kind: str) -> bool:
        return any(
            name in (plan.views if kind == "view" else plan.services)
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
        if name in (own.views if kind == "view" else own.services):
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
        if kind == "view" and name in own.on_demand:
            raise BadRequestError(f"on-demand feature view {name!r} is not served by the gateway")
        raise BadRequestError(f"unknown {label} {name!r} in project {own.project!r}")

    def _locate_shared(
        self, tenant: TenantSpec, name: str, kind: str, project: str, label: str
    ) -> ProjectPlan:
        plan = self.projects.get(project)
        owner = self.tenants.by_project().get(project)
        if plan is None or owner is None:
            raise BadRequestError(f"unknown project {project!r}")
        if name not in (plan.views if kind == "view" else plan.services):
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
    ) -> list[ViewRead]:
        """The views and features a request names, checked against what ``tenant`` may read."""
        key = (tenant.name, tuple(features), service, project)
        reads = self._resolved.get(key)
        if reads is None:
            reads = self._resolve(tenant, features, service, project)
            if len(self._resolved) >= 4096:
                self._resolved.clear()
            self._resolved[key] = reads
        return reads

    def _resolve(
        self,
        tenant: TenantSpec,
        features: Sequence[str],
        service: str | None,
        project: str | None,
    ) -> list[ViewRead]:
        if service:
            located = self._locate(tenant, service, "service", project)
            reads = []
            for view_name, feats in located.services[service]:
                plan = located.views.get(view_name)
                if plan is None:
                    raise BadRequestError(
                        f"feature service {service!r} uses {view_name!r}, which is not servable"
                    )
                reads.append(ViewRead(plan, feats or tuple(plan.fields), view_name))
            return reads
        if not features:
            raise BadRequestError("name at least one feature in 'features', or a 'feature_service'")
        grouped: dict[str, list[str]] = {}
        for ref in features:
            view_name, sep, feature = ref.partition(":")
            if not sep or not view_name or not feature or ":" in feature:
                raise BadRequestError(
                    f"feature reference {ref!r} is not of the form 'feature_view:feature'"
                )
            grouped.setdefault(view_name, []).append(feature)
        reads = []
        for view_name, requested in grouped.items():
            plan = self._locate(tenant, view_name, "view", project).views[view_name]
            for feature in requested:
                if feature not in plan.fields:
                    raise BadRequestError(
                        f"unknown feature {feature!r} in feature view {view_name!r}"
                    )
            reads.append(ViewRead(plan, tuple(requested), view_name))
        return reads
