"""Server-side apply of rendered tenant objects, and pruning of removed tenants' namespaces.

Every object goes out as one ``PATCH`` with ``Content-Type: application/apply-patch+yaml``,
``fieldManager=featureplane`` and ``force=true``: the API server creates or updates it, so
applying twice sends the same requests. The typed clients of the ``kubernetes`` package build
the requests (no discovery round trips, unlike ``DynamicClient``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client

from featureplane.errors import FeatureplaneError
from featureplane.k8s.manifests import MANAGED_BY, MANAGER, TENANT_LABEL, Manifest

FIELD_MANAGER = "featureplane"
APPLY_PATCH = "application/apply-patch+yaml"

# kind -> (API class, patch method); the namespaced methods take namespace= as well.
_PATCHERS: dict[str, tuple[type[Any], str]] = {
    "Namespace": (client.CoreV1Api, "patch_namespace"),
    "ServiceAccount": (client.CoreV1Api, "patch_namespaced_service_account"),
    "ResourceQuota": (client.CoreV1Api, "patch_namespaced_resource_quota"),
    "LimitRange": (client.CoreV1Api, "patch_namespaced_limit_range"),
    "Role": (client.RbacAuthorizationV1Api, "patch_namespaced_role"),
    "RoleBinding": (client.RbacAuthorizationV1Api, "patch_namespaced_role_binding"),
    "NetworkPolicy": (client.NetworkingV1Api, "patch_namespaced_network_policy"),
}


class ClusterError(FeatureplaneError):
    """The cluster cannot be reached, or refused a request (names the object)."""


def api_client() -> client.ApiClient:
    """In-cluster configuration, else the local kubeconfig (as the gateway's TokenReview)."""
    from kubernetes import config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        try:
            config.load_kube_config()
        except (config.ConfigException, OSError) as exc:
            raise ClusterError(f"no in-cluster config and no usable kubeconfig: {exc}") from exc
    return client.ApiClient()


def _refused(what: str, exc: client.ApiException) -> ClusterError:
    return ClusterError(f"{what}: the API server answered {exc.status} {exc.reason}: {exc.body}")


@dataclass
class Applier:
    """Applies manifests through ``api``; ``dry_run`` sends ``dryRun=All`` (nothing persists)."""

    api: client.ApiClient
    dry_run: bool = False
    _apis: dict[type[Any], Any] = field(default_factory=dict, init=False)

    def _options(self) -> dict[str, Any]:
        return {"dry_run": "All"} if self.dry_run else {}

    def apply(self, manifest: Manifest) -> None:
        kind = manifest["kind"]
        api_class, method = _PATCHERS[kind]
        api = self._apis.setdefault(api_class, api_class(self.api))
        metadata = manifest["metadata"]
        namespace = {"namespace": metadata["namespace"]} if "namespace" in metadata else {}
        try:
            getattr(api, method)(
                name=metadata["name"],
                body=manifest,
                field_manager=FIELD_MANAGER,
                force=True,
                field_validation="Strict",
                _content_type=APPLY_PATCH,
                **namespace,
                **self._options(),
            )
        except client.ApiException as exc:
            tenant = metadata["labels"].get(TENANT_LABEL, "?")
            raise _refused(f"tenant {tenant}: apply {kind} {metadata['name']}", exc) from exc

    def apply_all(self, manifests: Iterable[Manifest]) -> int:
        count = 0
        for manifest in manifests:
            self.apply(manifest)
            count += 1
        return count

    def orphans(self, tenants: Iterable[str]) -> dict[str, str]:
        """Namespaces featureplane manages whose tenant is not in ``tenants``: name -> tenant."""
        known = set(tenants)
        core = self._apis.setdefault(client.CoreV1Api, client.CoreV1Api(self.api))
        try:
            listed = core.list_namespace(label_selector=f"{MANAGED_BY}={MANAGER}")
        except client.ApiException as exc:
            raise _refused("list featureplane namespaces", exc) from exc
        found: dict[str, str] = {}
        for namespace in listed.items:
            labels = namespace.metadata.labels or {}
            tenant = labels.get(TENANT_LABEL, "")
            if labels.get(MANAGED_BY) == MANAGER and tenant not in known:  # never trust a selector
                found[namespace.metadata.name] = tenant
        return found

    def prune(self, tenants: Iterable[str], delete: bool, say: Callable[[str], None]) -> list[str]:
        """Delete (``delete``) or only report the orphaned namespaces; returns their names."""
        orphans = self.orphans(tenants)
        core = self._apis.setdefault(client.CoreV1Api, client.CoreV1Api(self.api))
        for name, tenant in sorted(orphans.items()):
            if delete:
                try:
                    core.delete_namespace(name=name, **self._options())
                except client.ApiException as exc:
                    raise _refused(f"delete namespace {name}", exc) from exc
                say(f"deleted namespace {name} (tenant {tenant or '?'} is no longer in tenants/)")
            else:
                say(
                    f"namespace {name} belongs to tenant {tenant or '?'}, no longer in tenants/: "
                    "pass --prune to delete it"
                )
        return sorted(orphans)
