"""Who may change what in the shared registry: each tenant owns its Feast project, and only it.

The registry server (:mod:`featureplane.registry.server`) enforces this with Feast's own
machinery: Feast ``Permission`` objects with a ``RoleBasedPolicy``, evaluated by Feast's
enforcer for every RPC. What differs from stock Feast is where the permissions come from.
Stock Feast reads them from the registry (the request's project), which fails open three ways
here:

- `feast apply` is a full sync: a tenant's repo that does not define the platform's Permission
  objects deletes them, and a project with no permissions grants every authenticated user
  everything (``feast.permissions.enforcer.enforce_policy``);
- a project that does not exist yet has no permissions either, so anyone may create it,
  another tenant's name included;
- ``ApplyProject`` carries a Project message where the project name is expected, so Feast
  looks up the permissions of no project at all.

So :class:`OwnershipSecurityManager` (a Feast ``SecurityManager``) computes the permissions
from ``tenants/`` instead of reading them: the owner of project ``p`` holds the role
``featureplane:tenant:<owner>`` and every action on every object in ``p``; Project objects are
matched by name in every context; any other project (unknown, or none named) gets a
permission that grants nobody, so the default is deny. Permission objects that tenants write
into their own project are stored but not enforced.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from feast.feast_object import ALL_RESOURCE_TYPES
from feast.infra.registry.base_registry import BaseRegistry
from feast.permissions.action import ALL_ACTIONS
from feast.permissions.permission import Permission
from feast.permissions.policy import RoleBasedPolicy
from feast.permissions.security_manager import SecurityManager
from feast.project import Project

from featureplane.tenancy.catalog import TenantCatalog

log = logging.getLogger(__name__)

ROLE_PREFIX = "featureplane:tenant:"
_NON_PROJECT_TYPES = [t for t in ALL_RESOURCE_TYPES if t is not Project]


def tenant_role(tenant: str) -> str:
    """The Feast role a tenant's token carries (see :mod:`featureplane.registry.token_parser`)."""
    return ROLE_PREFIX + tenant


def owner_permissions(project: str, tenant: str) -> list[Permission]:
    """What the owner may do in its project: everything, on every object but the Project itself
    (judged by name, see :func:`project_permission`)."""
    return [
        Permission(
            name=f"featureplane-owner-{project}",
            types=_NON_PROJECT_TYPES,
            actions=ALL_ACTIONS,
            policy=RoleBasedPolicy(roles=[tenant_role(tenant)]),
        )
    ]


def project_permission(project: str, tenant: str) -> Permission:
    """The Project object named ``project`` belongs to its owner, whatever the request names."""
    return Permission(
        name=f"featureplane-project-{project}",
        types=[Project],
        name_patterns=[re.escape(project)],
        actions=ALL_ACTIONS,
        policy=RoleBasedPolicy(roles=[tenant_role(tenant)]),
    )


# Matches every object but Projects and grants nobody: a project no tenant owns is read-only
# for the platform's own tools (which hold the database credentials), and closed to tenants.
DENY_UNOWNED = Permission(
    name="featureplane-unowned-project",
    types=_NON_PROJECT_TYPES,
    actions=ALL_ACTIONS,
    policy=RoleBasedPolicy(roles=[]),
)


class OwnershipPolicy:
    """Project -> owning tenant, from ``tenants/``, reloaded at most every ``refresh_seconds``
    (the last good catalog stays in force when a reload fails)."""

    def __init__(
        self,
        load: Callable[[], TenantCatalog],
        refresh_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._refresh_seconds = refresh_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._owners: dict[str, str] = {}
        self._project_permissions: list[Permission] = []
        self._loaded_at = float("-inf")
        self._refresh(raise_errors=True)

    def _refresh(self, raise_errors: bool = False) -> None:
        try:
            catalog = self._load()
        except Exception:
            if raise_errors:
                raise
            log.exception("reloading tenants failed; keeping the previous ownership")
            self._loaded_at = self._clock()
            return
        owners = {spec.feast_project: spec.name for spec in catalog.values()}
        # One assignment each: readers in other threads see the old or the new, never a mix.
        self._project_permissions = [project_permission(p, t) for p, t in sorted(owners.items())]
        self._owners = owners
        self._loaded_at = self._clock()

    def _fresh(self) -> None:
        if self._clock() - self._loaded_at < self._refresh_seconds:
            return
        with self._lock:
            if self._clock() - self._loaded_at >= self._refresh_seconds:
                self._refresh()

    def owners(self) -> Mapping[str, str]:
        """Project -> owning tenant."""
        self._fresh()
        return self._owners

    def is_tenant(self, tenant: str) -> bool:
        return tenant in self.owners().values()

    def permissions_for(self, project: str | None) -> list[Permission]:
        """The permissions Feast evaluates for a request about ``project`` (None: no project
        named, e.g. ListProjects or Commit). Never empty: Feast grants everything on none."""
        owners = self.owners()
        owned = self._project_permissions
        tenant = owners.get(project) if project is not None else None
        if tenant is None:
            return [*owned, DENY_UNOWNED]
        return [*owned, *owner_permissions(project or "", tenant)]


def request_project(current: Any) -> str | None:
    """The project a request names: Feast's AuthInterceptor stores the request's ``project``
    field, a string for most RPCs but a Project message for ApplyProject."""
    if current is None or isinstance(current, str):
        return current
    spec = getattr(current, "spec", None)
    name = getattr(spec, "name", None)
    return name if isinstance(name, str) else None


class OwnershipSecurityManager(SecurityManager):  # type: ignore[misc]  # Feast is untyped
    """Feast's security manager with the permissions of :class:`OwnershipPolicy`."""

    def __init__(self, policy: OwnershipPolicy, registry: BaseRegistry) -> None:
        super().__init__(project="", registry=registry)
        self.policy = policy

    @property
    def permissions(self) -> list[Permission]:
        return self.policy.permissions_for(request_project(self._current_project.get()))
