"""Prometheus recording and alerting rules, generated from the tenant catalog.

SLO alerts follow the multi-window, multi-burn-rate recipe of the Google SRE workbook
("Alerting on SLOs"): each alert needs a long window *and* a short one over the same burn rate,
so it fires fast on a real burn and resets fast once the burn stops. Availability spends
``1 - sla.availability``; latency spends 1%, the share of requests allowed above
``sla.latency_p99_ms``. Targets differ per tenant, so the SLO alerts (and the latency SLIs,
whose histogram bucket follows the target) are written out per tenant.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

from featureplane.dashboards import queries as q
from featureplane.tenancy.catalog import TenantCatalog
from featureplane.tenancy.spec import TenantSpec

# Where `runbook_url` annotations point (anchor: the lower-cased alert name).
RUNBOOK_URL = "docs/runbooks.md"


@dataclass(frozen=True)
class BurnWindow:
    """One row of the workbook's table: a long and a short window over one burn rate."""

    long: str
    short: str
    factor: float
    for_: str
    severity: str


# 2% of a 30-day budget spent in 1 h or 5% in 6 h pages; 10% in 1 d or 3 d opens a ticket.
# `for` damps single-evaluation blips, as kubernetes-mixin does.
BURN_WINDOWS = (
    BurnWindow("1h", "5m", 14.4, "2m", "page"),
    BurnWindow("6h", "30m", 6, "15m", "page"),
    BurnWindow("1d", "2h", 3, "1h", "ticket"),
    BurnWindow("3d", "6h", 1, "3h", "ticket"),
)


@dataclass(frozen=True)
class Slo:
    alert: str
    record: Callable[[str], str]  # window -> the recording rule of the error ratio over it
    budget: float
    failed: str  # what the requests that spend the budget did


def _runbook(alert: str) -> str:
    return f"{RUNBOOK_URL}#{alert.lower()}"


def _recording_groups(catalog: TenantCatalog) -> list[dict[str, Any]]:
    requests = [
        {"record": q.REQUEST_RATE_RECORD, "expr": q.request_rate(q.ALL_TENANTS, "5m")},
        {"record": q.P99_RECORD, "expr": q.latency_quantile(0.99, q.ALL_TENANTS, "5m")},
    ]
    availability = [
        {"record": q.availability_errors_record(w), "expr": q.status_ratio("5xx", q.ALL_TENANTS, w)}
        for w in q.SLO_WINDOWS
    ]
    latency = [
        {
            "record": q.latency_errors_record(w),
            "expr": q.latency_error_ratio(
                q.tenant_is(spec.name), w, spec.sla.latency_p99_ms / 1000
            ),
            "labels": {"tenant": spec.name},  # one rule per tenant and window: keep them apart
        }
        for spec in catalog.values()
        for w in q.SLO_WINDOWS
    ]
    return [
        {"name": "featureplane.requests", "rules": requests},
        {"name": "featureplane.slo.availability", "rules": availability},
        {"name": "featureplane.slo.latency", "rules": latency},
    ]


def _burn_alerts(spec: TenantSpec, slo: Slo) -> list[dict[str, Any]]:
    tenant = q.tenant_is(spec.name)
    rules = []
    for window in BURN_WINDOWS:
        over = f"> {window.factor:g} * {slo.budget:g}"
        expr = (
            f"{slo.record(window.long)}{{{tenant}}} {over}"
            f" and {slo.record(window.short)}{{{tenant}}} {over}"
        )
        labels = {
            "severity": window.severity,
            "tenant": spec.name,
            "long": window.long,
            "short": window.short,
        }
        annotations = {
            "summary": f"{spec.name} is spending its error budget {window.factor:g}x too fast.",
            "description": (
                f"{{{{ $value | humanizePercentage }}}} of {spec.name}'s requests over the last "
                f"{window.long} {slo.failed}, against a budget of {slo.budget:.2%}; the last "
                f"{window.short} agree. At this rate a 30-day budget lasts "
                f"{30 / window.factor:.1f} days."
            ),
            "runbook_url": _runbook(slo.alert),
        }
        rules.append(
            {
                "alert": slo.alert,
                "expr": expr,
                "for": window.for_,
                "labels": labels,
                "annotations": annotations,
            }
        )
    return rules


def _slo_groups(catalog: TenantCatalog) -> list[dict[str, Any]]:
    groups = []
    for spec in catalog.values():
        availability = Slo(
            "FeatureplaneAvailabilityBudgetBurn",
            q.availability_errors_record,
            1 - spec.sla.availability,
            "failed with a 5xx",
        )
        latency = Slo(
            "FeatureplaneLatencyBudgetBurn",
            q.latency_errors_record,
            q.LATENCY_SLO_BUDGET,
            f"took longer than {spec.sla.latency_p99_ms:g} ms",
        )
        rules = _burn_alerts(spec, availability) + _burn_alerts(spec, latency)
        groups.append({"name": f"featureplane.slo.alerts.{spec.name}", "rules": rules})
    return groups


def _platform_group() -> dict[str, Any]:
    freshness = "FeatureplaneFreshnessSLABreached"
    materialization = "FeatureplaneMaterializationFailed"
    store = "FeatureplaneOnlineStoreDown"
    scrape = "FeatureplaneGatewayDown"
    registry = "FeatureplaneRegistryUnavailable"
    rules = [
        {
            "alert": scrape,
            "expr": q.gateway_down(),
            "for": "2m",
            "labels": {"severity": "page"},
            "annotations": {
                "summary": "Prometheus cannot scrape gateway {{ $labels.instance }}.",
                "description": "No metrics from {{ $labels.instance }} for 2 minutes: it is down, "
                "or unreachable, and none of the other alerts can see it.",
                "runbook_url": _runbook(scrape),
            },
        },
        {
            "alert": freshness,
            "expr": q.freshness_breach(q.ALL_TENANTS),
            "for": "10m",
            "labels": {"severity": "page"},
            "annotations": {
                "summary": "{{ $labels.tenant }}/{{ $labels.feature_view }} is staler than "
                "its freshness SLA.",
                "description": "The newest event served online for {{ $labels.feature_view }} "
                "is {{ $value | humanizeDuration }} old, over tenant {{ $labels.tenant }}'s "
                "sla.freshness_seconds.",
                "runbook_url": _runbook(freshness),
            },
        },
        {
            "alert": materialization,
            "expr": q.materialization_failures(q.ALL_TENANTS, "1h"),
            "labels": {"severity": "ticket"},
            "annotations": {
                "summary": "Materialization of {{ $labels.tenant }}/{{ $labels.feature_view }} "
                "failed.",
                "description": '{{ $value | printf "%.0f" }} run(s) of '
                "{{ $labels.feature_view }} failed in the last hour; its online values age "
                "towards the freshness SLA.",
                "runbook_url": _runbook(materialization),
            },
        },
        {
            "alert": store,
            "expr": q.store_down(),
            "for": "2m",
            "labels": {"severity": "page"},
            "annotations": {
                "summary": "Gateway {{ $labels.instance }} cannot reach the online store.",
                "description": "Feature reads through {{ $labels.instance }} are answered "
                "503 (store_unavailable).",
                "runbook_url": _runbook(store),
            },
        },
        {
            # Reads go on from each replica's last snapshot, so this is no data-plane outage;
            # it pages all the same: applies fail, and a replica that restarts (deploy, node
            # drain, OOM) cannot start without a registry, so capacity drains away.
            "alert": registry,
            "expr": q.registry_down(),
            "for": "10m",
            "labels": {"severity": "page"},
            "annotations": {
                "summary": "Gateway {{ $labels.instance }} cannot refresh the Feast registry.",
                "description": "{{ $labels.instance }} serves its last registry snapshot "
                "(/ready says degraded): applies fail, new definitions are not served, and a "
                "gateway that restarts now cannot start.",
                "runbook_url": _runbook(registry),
            },
        },
        *_drift_alerts(),
    ]
    return {"name": "featureplane.platform.alerts", "rules": rules}


def _drift_alerts() -> list[dict[str, Any]]:
    """A feature whose latest batch scores over its tenant.yaml threshold. The score changes
    only when a batch is materialized; ``for`` still keeps a threshold edit or a reference being
    retaken from paging on a single evaluation."""
    drift = "FeatureplaneFeatureDrift"
    statistics = {
        "psi": "population stability index",
        "ks": "two-sample Kolmogorov-Smirnov statistic",
    }
    return [
        {
            "alert": drift,
            "expr": q.drift_breach(statistic, q.ALL_TENANTS),
            "for": "15m",
            "labels": {"severity": "ticket", "statistic": statistic},
            "annotations": {
                "summary": "{{ $labels.tenant }}/{{ $labels.feature_view }}.{{ $labels.feature }} "
                "has drifted from its training reference.",
                "description": f"The latest materialized batch's {name} is "
                '{{ $value | printf "%.3f" }}, over tenant {{ $labels.tenant }}\'s '
                f"drift.{statistic} threshold.",
                "runbook_url": _runbook(drift),
            },
        }
        for statistic, name in statistics.items()
    ]


def rule_groups(catalog: TenantCatalog) -> dict[str, Any]:
    """The rule file's document, ``{"groups": [...]}``."""
    return {"groups": [*_recording_groups(catalog), *_slo_groups(catalog), _platform_group()]}


def render_rules(catalog: TenantCatalog) -> str:
    return yaml.safe_dump(rule_groups(catalog), sort_keys=False, width=1000)
