"""Prometheus recording and alerting rules, generated from the tenant catalog.

SLO alerts follow the multi-window, multi-burn-rate recipe of the Google SRE workbook
("Alerting on SLOs"): each alert needs a long window *and* a short one over the same burn rate,
so it fires fast on a real burn and resets fast once the burn stops. Availability spends
``1 - sla.availability``; latency spends 1%, the share of requests allowed above
``sla.latency_p99_ms``. Targets differ per tenant, so the SLO alerts (and the latency SLIs,
whose histogram bucket follows the target) are written out per tenant. The windows, burn rates,
latency budget and runbook location come from the
:class:`~featureplane.dashboards.config.DashboardConfig` the rules are rendered with.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

from featureplane.dashboards.config import DashboardConfig
from featureplane.dashboards.queries import (
    ALL_TENANTS,
    P99_RECORD,
    REQUEST_RATE_RECORD,
    Queries,
    availability_errors_record,
    latency_errors_record,
    tenant_is,
)
from featureplane.tenancy.catalog import TenantCatalog
from featureplane.tenancy.spec import TenantSpec


@dataclass(frozen=True)
class Slo:
    alert: str
    record: Callable[[str], str]  # window -> the recording rule of the error ratio over it
    budget: float
    failed: str  # what the requests that spend the budget did


def _runbook(config: DashboardConfig, alert: str) -> str:
    return f"{config.runbook_url}#{alert.lower()}"


def _recording_groups(catalog: TenantCatalog, config: DashboardConfig) -> list[dict[str, Any]]:
    q = Queries(config)
    requests = [
        {"record": REQUEST_RATE_RECORD, "expr": q.request_rate(ALL_TENANTS, "5m")},
        {"record": P99_RECORD, "expr": q.latency_quantile(0.99, ALL_TENANTS, "5m")},
    ]
    availability = [
        {"record": availability_errors_record(w), "expr": q.status_ratio("5xx", ALL_TENANTS, w)}
        for w in config.slo_windows
    ]
    latency = [
        {
            "record": latency_errors_record(w),
            "expr": q.latency_error_ratio(tenant_is(spec.name), w, spec.sla.latency_p99_ms / 1000),
            "labels": {"tenant": spec.name},  # one rule per tenant and window: keep them apart
        }
        for spec in catalog.values()
        for w in config.slo_windows
    ]
    return [
        {"name": "featureplane.requests", "rules": requests},
        {"name": "featureplane.slo.availability", "rules": availability},
        {"name": "featureplane.slo.latency", "rules": latency},
    ]


def _burn_alerts(spec: TenantSpec, slo: Slo, config: DashboardConfig) -> list[dict[str, Any]]:
    tenant = tenant_is(spec.name)
    rules = []
    for window in config.burn_windows:
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
            "runbook_url": _runbook(config, slo.alert),
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


def _slo_groups(catalog: TenantCatalog, config: DashboardConfig) -> list[dict[str, Any]]:
    groups = []
    for spec in catalog.values():
        availability = Slo(
            "FeatureplaneAvailabilityBudgetBurn",
            availability_errors_record,
            1 - spec.sla.availability,
            "failed with a 5xx",
        )
        latency = Slo(
            "FeatureplaneLatencyBudgetBurn",
            latency_errors_record,
            config.latency_slo_budget,
            f"took longer than {spec.sla.latency_p99_ms:g} ms",
        )
        rules = _burn_alerts(spec, availability, config) + _burn_alerts(spec, latency, config)
        groups.append({"name": f"featureplane.slo.alerts.{spec.name}", "rules": rules})
    return groups


def _platform_group(config: DashboardConfig) -> dict[str, Any]:
    q = Queries(config)
    freshness = "FeatureplaneFreshnessSLABreached"
    materialization = "FeatureplaneMaterializationFailed"
    store = "FeatureplaneOnlineStoreDown"
    scrape = "FeatureplaneGatewayDown"
    registry = "FeatureplaneRegistryUnavailable"
    transforms = "FeatureplaneTransformFailing"
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
                "runbook_url": _runbook(config, scrape),
            },
        },
        {
            "alert": freshness,
            "expr": q.freshness_breach(ALL_TENANTS),
            "for": "10m",
            "labels": {"severity": "page"},
            "annotations": {
                "summary": "{{ $labels.tenant }}/{{ $labels.feature_view }} is staler than "
                "its freshness SLA.",
                "description": "The newest event served online for {{ $labels.feature_view }} "
                "is {{ $value | humanizeDuration }} old, over tenant {{ $labels.tenant }}'s "
                "sla.freshness_seconds.",
                "runbook_url": _runbook(config, freshness),
            },
        },
        {
            "alert": materialization,
            "expr": q.materialization_failures(ALL_TENANTS, "1h"),
            "labels": {"severity": "ticket"},
            "annotations": {
                "summary": "Materialization of {{ $labels.tenant }}/{{ $labels.feature_view }} "
                "failed.",
                "description": '{{ $value | printf "%.0f" }} run(s) of '
                "{{ $labels.feature_view }} failed in the last hour; its online values age "
                "towards the freshness SLA.",
                "runbook_url": _runbook(config, materialization),
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
                "runbook_url": _runbook(config, store),
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
                "runbook_url": _runbook(config, registry),
            },
        },
        {
            "alert": transforms,
            "expr": q.transform_breakage(ALL_TENANTS, "10m"),
            "labels": {"severity": "ticket"},
            "annotations": {
                "summary": "On-demand feature views of {{ $labels.tenant }} are failing.",
                "description": '{{ $value | printf "%.0f" }} call(s) to the tenant\'s '
                "transform workers raised, timed out or lost their worker in 10 minutes: "
                "requests that use them are answered 500 or 504.",
                "runbook_url": _runbook(config, transforms),
            },
        },
        *_drift_alerts(config),
    ]
    return {"name": "featureplane.platform.alerts", "rules": rules}


def _drift_alerts(config: DashboardConfig) -> list[dict[str, Any]]:
    """A feature whose latest batch scores over its tenant.yaml threshold. The score changes
    only when a batch is materialized; ``for`` still keeps a threshold edit or a reference being
    retaken from paging on a single evaluation."""
    q = Queries(config)
    drift = "FeatureplaneFeatureDrift"
    statistics = {
        "psi": "population stability index",
        "ks": "two-sample Kolmogorov-Smirnov statistic",
    }
    return [
        {
            "alert": drift,
            "expr": q.drift_breach(statistic, ALL_TENANTS),
            "for": "15m",
            "labels": {"severity": "ticket", "statistic": statistic},
            "annotations": {
                "summary": "{{ $labels.tenant }}/{{ $labels.feature_view }}.{{ $labels.feature }} "
                "has drifted from its training reference.",
                "description": f"The latest materialized batch's {name} is "
                '{{ $value | printf "%.3f" }}, over tenant {{ $labels.tenant }}\'s '
                f"drift.{statistic} threshold.",
                "runbook_url": _runbook(config, drift),
            },
        }
        for statistic, name in statistics.items()
    ]


def rule_groups(catalog: TenantCatalog, config: DashboardConfig) -> dict[str, Any]:
    """The rule file's document, ``{"groups": [...]}``."""
    groups = [
        *_recording_groups(catalog, config),
        *_slo_groups(catalog, config),
        _platform_group(config),
    ]
    return {"groups": groups}


def render_rules(catalog: TenantCatalog, config: DashboardConfig) -> str:
    return yaml.safe_dump(rule_groups(catalog, config), sort_keys=False, width=1000)
