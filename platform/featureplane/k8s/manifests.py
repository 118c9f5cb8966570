"""A tenant's Kubernetes objects, rendered from its tenant.yaml as plain API-shaped dicts.

Per tenant, in apply order: the Namespace (pod security ``restricted``), two ServiceAccounts
with a Role and RoleBinding each, a ResourceQuota and LimitRange from ``kubernetes.requests`` /
``kubernetes.limits``, and NetworkPolicies: deny everything, then allow only what the platform
needs. Every object is validated offline (kubernetes-validate, strict) before it is returned.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

import kubernetes_validate
import yaml
from kubernetes.utils import parse_quantity

from featureplane.errors import FeatureplaneError
from featureplane.tenancy.spec import TenantSpec

# The Kubernetes version the rendered objects are validated against (and whose pod security
# standard the namespace enforces).
KUBERNETES_VERSION = "1.31.0"
MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "featureplane"
TENANT_LABEL = "featureplane.io/tenant"
COST_CENTRE_LABEL = "featureplane.io/cost-centre"
# Namespaces of the platform itself (gateway, registry server, Prometheus) carry this label.
PLATFORM_LABEL = "featureplane.io/platform"
GATEWAY_PORT = 8080
REGISTRY_SERVER_PORT = 6570
# A container without its own requests/limits gets this share of the namespace's budget, so
# at least this many such containers fit in the quota.
DEFAULT_SHARE = 4
MEBIBYTE = 2**20

Manifest = dict[str, Any]


class ManifestError(FeatureplaneError):
    """A tenant's objects cannot be rendered, or one fails schema validation."""


def label_value(text: str) -> str:
    """``text`` made a valid label value: at most 63 of ``[A-Za-z0-9-_.]``, alphanumeric ends."""
    value = re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:63]
    return value.strip("-_.")


def labels(spec: TenantSpec) -> dict[str, str]:
    """The labels every object of the tenant carries."""
    return {MANAGED_BY: MANAGER, TENANT_LABEL: spec.name}


def _quantity(spec: TenantSpec, field: str, value: str) -> Decimal:
    try:
        amount = parse_quantity(value)
    except (ValueError, InvalidOperation):
        amount = None
    if amount is None or amount <= 0:
        raise ManifestError(
            f"tenant {spec.name}: kubernetes.{field}: {value!r} is not a positive Kubernetes "
            "quantity (e.g. 500m, 2, 4Gi)"
        )
    return Decimal(amount)


def _cpu(amount: Decimal) -> str:
    return f"{max(int(amount * 1000), 1)}m"


def _memory(amount: Decimal) -> str:
    mebibytes = int(amount) // MEBIBYTE
    return f"{mebibytes}Mi" if mebibytes else str(max(int(amount), 1))


def _container_defaults(spec: TenantSpec) -> dict[str, dict[str, str]]:
    """LimitRange defaults: 1/DEFAULT_SHARE of the quota's requests and limits; a container's
    limit may be at most the namespace's. Refuses requests above limits (no pod could run)."""
    k8s = spec.kubernetes
    amounts = {
        (kind, resource): _quantity(
            spec, f"{kind}.{resource}", getattr(getattr(k8s, kind), resource)
        )
        for kind in ("requests", "limits")
        for resource in ("cpu", "memory")
    }
    for resource in ("cpu", "memory"):
        if amounts["requests", resource] > amounts["limits", resource]:
            raise ManifestError(
                f"tenant {spec.name}: kubernetes.requests.{resource} "
                f"({getattr(k8s.requests, resource)}) exceeds kubernetes.limits.{resource} "
                f"({getattr(k8s.limits, resource)})"
            )
    share = Decimal(DEFAULT_SHARE)
    return {
        "defaultRequest": {
            "cpu": _cpu(amounts["requests", "cpu"] / share),
            "memory": _memory(amounts["requests", "memory"] / share),
        },
        "default": {
            "cpu": _cpu(amounts["limits", "cpu"] / share),
            "memory": _memory(amounts["limits", "memory"] / share),
        },
        "max": {"cpu": k8s.limits.cpu, "memory": k8s.limits.memory},
    }


def _object(api_version: str, kind: str, name: str, tenant: TenantSpec, **body: Any) -> Manifest:
    metadata: dict[str, Any] = {"name": name, "labels": labels(tenant)}
    if kind != "Namespace":
        metadata["namespace"] = tenant.namespace
    return {"apiVersion": api_version, "kind": kind, "metadata": metadata, **body}


def _namespace(spec: TenantSpec) -> Manifest:
    manifest = _object("v1", "Namespace", spec.namespace, spec)
    version = "v" + ".".join(KUBERNETES_VERSION.split(".")[:2])
    pod_security = "pod-security.kubernetes.io"
    manifest["metadata"]["labels"][COST_CENTRE_LABEL] = label_value(spec.cost_centre)
    for mode in ("enforce", "warn", "audit"):
        manifest["metadata"]["labels"][f"{pod_security}/{mode}"] = "restricted"
        manifest["metadata"]["labels"][f"{pod_security}/{mode}-version"] = version
    return manifest


def _access(spec: TenantSpec) -> list[Manifest]:
    """``<t>-ci`` deploys the tenant's workloads (CronJobs, Jobs, ConfigMaps) and watches them;
    ``<t>-reader`` (the identity the tenant's jobs run as, and read the gateway with) only reads.
    Neither may touch Secrets or Roles."""
    read = ["get", "list", "watch"]
    write = [*read, "create", "update", "patch", "delete"]
    rules = {
        "ci": [
            {"apiGroups": ["batch"], "resources": ["cronjobs", "jobs"], "verbs": write},
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": write},
            {"apiGroups": [""], "resources": ["pods", "pods/log", "events"], "verbs": read},
        ],
        "reader": [
            {"apiGroups": ["batch"], "resources": ["cronjobs", "jobs"], "verbs": read},
            {"apiGroups": [""], "resources": ["configmaps", "pods", "pods/log", "events"],
             "verbs": read},
        ],
    }  # fmt: skip
    objects: list[Manifest] = []
    for role, role_rules in rules.items():
        name = f"{spec.name}-{role}"
        rbac = "rbac.authorization.k8s.io"
        objects += [
            _object("v1", "ServiceAccount", name, spec),
            _object(f"{rbac}/v1", "Role", name, spec, rules=role_rules),
            _object(
                f"{rbac}/v1", "RoleBinding", name, spec,
                roleRef={"apiGroup": rbac, "kind": "Role", "name": name},
                subjects=[{"kind": "ServiceAccount", "name": name, "namespace": spec.namespace}],
            ),
        ]  # fmt: skip
    return objects


def _budget(spec: TenantSpec) -> list[Manifest]:
    k8s = spec.kubernetes
    hard = {
        "requests.cpu": k8s.requests.cpu,
        "requests.memory": k8s.requests.memory,
        "limits.cpu": k8s.limits.cpu,
        "limits.memory": k8s.limits.memory,
    }
    limit = {"type": "Container", **_container_defaults(spec)}
    return [
        _object("v1", "ResourceQuota", f"{spec.name}-quota", spec, spec={"hard": hard}),
        _object("v1", "LimitRange", f"{spec.name}-defaults", spec, spec={"limits": [limit]}),
    ]


def _network(spec: TenantSpec) -> list[Manifest]:
    """Deny all traffic, then: DNS (kube-dns in kube-system, port 53 UDP and TCP); the gateway
    (8080) and registry server (6570) in namespaces labelled ``featureplane.io/platform: "true"``;
    ingress from those namespaces on any port (Prometheus scraping the tenant's jobs)."""
    platform = {"namespaceSelector": {"matchLabels": {PLATFORM_LABEL: "true"}}}
    kube_dns = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
    }
    policies: dict[str, dict[str, Any]] = {
        "default-deny": {"policyTypes": ["Ingress", "Egress"]},
        "allow-dns": {
            "policyTypes": ["Egress"],
            "egress": [{"to": [kube_dns], "ports": [
                {"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53},
            ]}],
        },
        "allow-platform-egress": {
            "policyTypes": ["Egress"],
            "egress": [{"to": [platform], "ports": [
                {"protocol": "TCP", "port": GATEWAY_PORT},
                {"protocol": "TCP", "port": REGISTRY_SERVER_PORT},
            ]}],
        },
        "allow-platform-ingress": {"policyTypes": ["Ingress"], "ingress": [{"from": [platform]}]},
    }  # fmt: skip
    return [
        _object(
            "networking.k8s.io/v1", "NetworkPolicy", name, spec, spec={"podSelector": {}, **body}
        )
        for name, body in policies.items()
    ]


def validate(spec: TenantSpec, manifest: Manifest) -> None:
    """Strict offline schema validation; the error names tenant, kind, object and problem."""
    where = f"tenant {spec.name}: {manifest['kind']} {manifest['metadata']['name']}"
    try:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.absolute_path) or "<root>"
        raise ManifestError(f"{where}: {path}: {exc.message}") from exc
    except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as exc:
        raise ManifestError(f"{where}: {exc.message}") from exc


def render_tenant(spec: TenantSpec) -> list[Manifest]:
    """Every object of the tenant, in apply order, each validated."""
    manifests = [_namespace(spec), *_access(spec), *_budget(spec), *_network(spec)]
    for manifest in manifests:
        validate(spec, manifest)
    return manifests


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True  # shared lists (verbs) written out in full, never as &anchors


def to_yaml(manifests: list[Manifest]) -> str:
    """Multi-document YAML, keys in API order."""
    return yaml.dump_all(manifests, Dumper=_Dumper, sort_keys=False, explicit_start=True)
