"""What a tenant uses: requests and entity rows served, rows materialized, online bytes held,
and the CPU/memory quota of its tenant.yaml.

Requests and entity rows are the gateway's own counters, read from its ``/metrics``; rows
materialized come from the run records in Redis; online bytes from
:mod:`featureplane.cost.online`; the quota from tenant.yaml (``kubernetes.requests``/``limits``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from featureplane.cost.online import OnlineBytes
from featureplane.tenancy.spec import TenantSpec

_UNITS = {
    "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
    "Ki": 1024.0, "Mi": 1024.0**2, "Gi": 1024.0**3, "Ti": 1024.0**4,
}  # fmt: skip


def quantity(text: str) -> float:
    """A Kubernetes quantity (``500m``, ``2``, ``4Gi``) as a number (cores, bytes)."""
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)(m|k|Ki|Mi|Gi|Ti|M|G|T)?", text)
    if match is None:
        raise ValueError(f"{text!r} is not a quantity")
    return float(match.group(1)) * _UNITS.get(match.group(2) or "", 1.0)


def quota(spec: TenantSpec) -> tuple[float, float, float, float]:
    """CPU requests, CPU limits (cores), memory requests, memory limits (bytes)."""
    k8s = spec.kubernetes
    return (
        quantity(k8s.requests.cpu),
        quantity(k8s.limits.cpu),
        quantity(k8s.requests.memory),
        quantity(k8s.limits.memory),
    )


@dataclass(frozen=True)
class Usage:
    """What one tenant used; ``None``: not measured (no gateway reachable)."""

    tenant: str
    cost_centre: str
    requests: float | None
    entity_rows: float | None
    rows_materialized: float
    online_bytes: float
    cpu_request_cores: float
    cpu_limit_cores: float
    memory_request_bytes: float
    memory_limit_bytes: float


def usage(
    specs: Sequence[TenantSpec],
    rows_materialized: Mapping[str, float],
    online: Mapping[str, OnlineBytes],
    served: Mapping[str, tuple[float, float]] | None,
) -> list[Usage]:
    """``served`` is None when no gateway answered: requests and entity rows are unknown."""
    found = []
    for spec in specs:
        cpu, cpu_limit, memory, memory_limit = quota(spec)
        counts = None if served is None else served.get(spec.name, (0.0, 0.0))
        found.append(
            Usage(
                spec.name,
                spec.cost_centre,
                None if counts is None else counts[0],
                None if counts is None else counts[1],
                rows_materialized.get(spec.name, 0.0),
                online[spec.name].bytes if spec.name in online else 0.0,
                cpu,
                cpu_limit,
                memory,
                memory_limit,
            )
        )
    return found


def gateway_counts(metrics_text: str) -> dict[str, tuple[float, float]]:
    """Requests and entity rows per tenant, from a gateway's ``/metrics`` text."""
    from prometheus_client.parser import text_string_to_metric_families

    found: dict[str, list[float]] = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            tenant = sample.labels.get("tenant", "-")
            if tenant == "-":
                continue
            if sample.name == "featureplane_request_duration_seconds_count":
                found.setdefault(tenant, [0.0, 0.0])[0] += sample.value
            elif sample.name == "featureplane_entity_rows_total":
                found.setdefault(tenant, [0.0, 0.0])[1] += sample.value
    return {tenant: (pair[0], pair[1]) for tenant, pair in found.items()}


def fetch_counts(gateway: str) -> dict[str, tuple[float, float]]:
    """Requests and entity rows per tenant since the gateway started, from its /metrics."""
    import httpx

    answer = httpx.get(gateway.rstrip("/") + "/metrics", timeout=5.0)
    answer.raise_for_status()
    return gateway_counts(answer.text)
