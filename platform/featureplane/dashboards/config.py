"""The one configuration of the dashboard and rule generators.

:class:`DashboardConfig` goes from the entry points of :mod:`featureplane.dashboards.artifacts`
(``render_all``, ``stale``, ``write_all``) down to every builder; its defaults are what the
committed files under the top-level dashboards/ are generated with, so ``featureplane dashboards
generate --check`` compares against ``DashboardConfig()``.

Not settings, and so not here: the names of metrics and recording rules (the contract with the
gateway and with Prometheus, see :mod:`featureplane.dashboards.queries`), Grafana's own
variables (``$__rate_interval``, ``$__range``), the panels' layout, and where the generated files
go (:mod:`featureplane.dashboards.artifacts`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BurnWindow:
    """One row of the SRE workbook's table: a long and a short window over one burn rate."""

    long: str
    short: str
    factor: float
    for_: str
    severity: str  # "page" or "ticket"


@dataclass(frozen=True)
class DashboardConfig:
    """Everything the Grafana dashboards, the Prometheus rules and the provisioning files are
    generated from, besides the tenant catalog."""

    # -- Prometheus -----------------------------------------------------------------------
    # The scrape job of the gateways: every selector is scoped to it. The Helm chart's
    # ServiceMonitor takes it from the Service's label, which must match.
    job: str = "featureplane"
    # The provisioned data source's URL (Grafana expands $VARIABLES in the file).
    prometheus_url: str = "http://localhost:9090"
    # The scrape interval, the data source's timeInterval: $__rate_interval is at least 4x it.
    scrape_interval: str = "15s"

    # -- Grafana --------------------------------------------------------------------------
    # The provisioned data source, which the dashboards' datasource variable selects by default.
    datasource_uid: str = "featureplane-prometheus"
    datasource_name: str = "Featureplane Prometheus"
    # Fixed, so links and bookmarks survive regeneration.
    tenant_sla_uid: str = "featureplane-tenant-sla"
    platform_overview_uid: str = "featureplane-platform-overview"
    time_from: str = "now-6h"  # the dashboards' default time range
    time_to: str = "now"
    refresh: str = "30s"  # the dashboards' auto-refresh
    # Where Grafana reads the dashboards from (mount dashboards/grafana/ there), and how often.
    dashboards_path: str = "/var/lib/grafana/dashboards/featureplane"
    provider_update_seconds: int = 30

    # -- SLOs and alerts ------------------------------------------------------------------
    # The windows of the SLO recording rules: every long and short window of burn_windows.
    slo_windows: tuple[str, ...] = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
    # The latency SLO reads "99% of requests within sla.latency_p99_ms": a 1% error budget.
    # (The availability budget is each tenant's 1 - sla.availability.)
    latency_slo_budget: float = 0.01
    # Multi-window, multi-burn-rate alerts: 2% of a 30-day budget spent in 1 h or 5% in 6 h
    # pages; 10% in 1 d or 3 d opens a ticket. `for` damps single-evaluation blips, as
    # kubernetes-mixin does. The burn-rate panel draws the page rates as its thresholds.
    burn_windows: tuple[BurnWindow, ...] = (
        BurnWindow("1h", "5m", 14.4, "2m", "page"),
        BurnWindow("6h", "30m", 6, "15m", "page"),
        BurnWindow("1d", "2h", 3, "1h", "ticket"),
        BurnWindow("3d", "6h", 1, "3h", "ticket"),
    )
    # Where `runbook_url` annotations point (anchor: the lower-cased alert name).
    runbook_url: str = "docs/runbooks.md"

    def __post_init__(self) -> None:
        recorded = set(self.slo_windows)
        missing = sorted({w for b in self.burn_windows for w in (b.long, b.short)} - recorded)
        if missing:
            raise ValueError(f"burn windows {missing} are not among slo_windows: add them")
