"""The two Grafana dashboards, built with grafana-foundation-sdk.

*Tenant SLA* is one tenant at a time (``$tenant``) against the targets of its tenant.yaml, which
the gateway exports as gauges so one dashboard serves every tenant. *Platform overview* puts
the tenants side by side with the shared machinery (online store, registry). Every expression
comes from :mod:`featureplane.dashboards.queries`; the data source, UIDs, time range and refresh
come from the :class:`~featureplane.dashboards.config.DashboardConfig` each builder is given.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from grafana_foundation_sdk.builders import bargauge, prometheus, stat, timeseries
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as builders
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as models

from featureplane.dashboards.config import BurnWindow, DashboardConfig
from featureplane.dashboards.queries import ALL_TENANTS, Queries, top

# Grafana's variables (the datasource and tenant ones are the dashboards' own) and the layout.
_DATASOURCE = models.DataSourceRef(type_val="prometheus", uid="${datasource}")
_TENANT = 'tenant="$tenant"'
_RATE = "$__rate_interval"
_RANGE = "$__range"
_TIMESERIES_HEIGHT = 8
_STAT_HEIGHT = 4


def _query(expr: str, legend: str, ref_id: str, *, instant: bool = False) -> prometheus.Dataquery:
    query = prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref_id)
    return query.instant() if instant else query.range()


def _timeseries(
    title: str, description: str, unit: str, *targets: prometheus.Dataquery, width: int = 12
) -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(_DATASOURCE)
        .targets(list(targets))
        .unit(unit)
        .span(width)
        .height(_TIMESERIES_HEIGHT)
        .legend(
            common_builders.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.LIST)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
        .tooltip(
            common_builders.VizTooltipOptions()
            .mode(common.TooltipDisplayMode.MULTI)
            .sort(common.SortOrder.DESCENDING)
        )
    )


def _with_target_line(panel: timeseries.Panel, ref_id: str) -> timeseries.Panel:
    """Draw the series of query ``ref_id`` (an SLA target or a quota) as a dashed red line."""
    return panel.override_by_query(
        ref_id,
        [
            models.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": "red"}),
            models.DynamicConfigValue(
                id_val="custom.lineStyle", value={"fill": "dash", "dash": [10, 10]}
            ),
        ],
    )


def _reduce_last() -> common_builders.ReduceDataOptions:
    return common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False)


def _stat(
    title: str, description: str, unit: str, target: prometheus.Dataquery, width: int = 6
) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(_DATASOURCE)
        .targets([target])
        .unit(unit)
        .span(width)
        .height(_STAT_HEIGHT)
        .graph_mode(common.BigValueGraphMode.NONE)
        .reduce_options(_reduce_last())
    )


def _bars(title: str, description: str, unit: str, target: prometheus.Dataquery) -> bargauge.Panel:
    return (
        bargauge.Panel()
        .title(title)
        .description(description)
        .datasource(_DATASOURCE)
        .targets([target])
        .unit(unit)
        .span(12)
        .height(_TIMESERIES_HEIGHT)
        .orientation(common.VizOrientation.HORIZONTAL)
        .display_mode(common.BarGaugeDisplayMode.GRADIENT)
        .reduce_options(_reduce_last())
    )


def _board(config: DashboardConfig, uid: str, title: str, description: str) -> builders.Dashboard:
    provisioned = models.VariableOption(
        selected=True, text=config.datasource_name, value=config.datasource_uid
    )
    datasource = (
        builders.DatasourceVariable("datasource")
        .label("Data source")
        .type("prometheus")
        .current(provisioned)
    )
    return (
        builders.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["featureplane"])
        .readonly()
        .time(config.time_from, config.time_to)
        .refresh(config.refresh)
        .tooltip(models.DashboardCursorSync.CROSSHAIR)
        .annotations([])
        .with_variable(datasource)
    )


def _numbered(board: builders.Dashboard) -> models.Dashboard:
    """The built dashboard with panel ids 1..n: Grafana keys panel links and state on them."""
    built = board.build()
    for number, panel in enumerate(built.panels or [], start=1):
        panel.id_val = number
    return built


def _spelled(window: str) -> str:
    """``1h`` as ``1 h``."""
    return re.sub(r"^([0-9]+)", r"\1 ", window)


def _burn_alerts(windows: Sequence[BurnWindow]) -> str:
    """What the burn-rate alerts page and open tickets at, for the panel's description."""

    def at(severity: str) -> str:
        return " and ".join(
            f"{w.factor:g} ({_spelled(w.long)})" for w in windows if w.severity == severity
        )

    return f"Pages at {at('page')}; tickets at {at('ticket')}."


def _burn_rates(q: Queries, windows: Sequence[BurnWindow]) -> list[prometheus.Dataquery]:
    """Both SLOs' burn rates over the long window of each paging alert."""
    longs = [w.long for w in windows if w.severity == "page"]
    rates = [
        (f"{slo} {window}", burn_rate(_TENANT, window))
        for slo, burn_rate in (
            ("availability", q.availability_burn_rate),
            ("latency", q.latency_burn_rate),
        )
        for window in longs
    ]
    return [_query(expr, legend, chr(ord("A") + i)) for i, (legend, expr) in enumerate(rates)]


def _burn_thresholds(windows: Sequence[BurnWindow]) -> list[models.Threshold]:
    """Green below the slowest paging burn rate, orange from it, red from the fastest."""
    pages = sorted({w.factor for w in windows if w.severity == "page"})
    steps = [models.Threshold(value=None, color="green")]
    steps += [models.Threshold(value=factor, color="orange") for factor in pages[:-1]]
    steps += [models.Threshold(value=factor, color="red") for factor in pages[-1:]]
    return steps


def tenant_sla(config: DashboardConfig) -> models.Dashboard:
    """One tenant against its SLA: latency, availability, budget burn, quotas, data freshness,
    drift and cost."""
    q = Queries(config)
    tenant = (
        builders.QueryVariable("tenant")
        .label("Tenant")
        .datasource(_DATASOURCE)
        .query(q.tenant_names())
        .refresh(models.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(models.VariableSort.ALPHABETICAL_ASC)
    )
    board = _board(
        config,
        config.tenant_sla_uid,
        "Featureplane / Tenant SLA",
        "One tenant's service level against the targets in its tenant.yaml.",
    ).with_variable(tenant)

    board.with_row(builders.Row("Service level over the time range"))
    board.with_panel(
        _stat(
            "Availability",
            "Share of feature requests not answered 5xx.",
            "percentunit",
            _query(q.availability(_TENANT, _RANGE), "availability", "A", instant=True),
            width=8,
        ).decimals(3)
    )
    board.with_panel(
        _stat(
            "p99 latency",
            "The p99 the SLA's latency_p99_ms bounds.",
            "s",
            _query(q.latency_quantile(0.99, _TENANT, _RANGE), "p99", "A", instant=True),
            width=8,
        )
    )
    board.with_panel(
        _stat(
            "Requests per second",
            "Feature requests per second, every status.",
            "reqps",
            _query(q.request_rate(_TENANT, _RANGE), "requests/s", "A", instant=True),
            width=8,
        )
    )

    board.with_row(builders.Row("Latency and availability"))
    latency = _timeseries(
        "Latency",
        "Percentiles of POST /get-online-features, measured in the gateway; the dashed line "
        "is the tenant's p99 target.",
        "s",
        _query(q.latency_quantile(0.5, _TENANT, _RATE), "p50", "A"),
        _query(q.latency_quantile(0.95, _TENANT, _RATE), "p95", "B"),
        _query(q.latency_quantile(0.99, _TENANT, _RATE), "p99", "C"),
        _query(q.latency_target(_TENANT), "p99 target", "target"),
    )
    board.with_panel(_with_target_line(latency, "target"))
    availability = _timeseries(
        "Availability",
        "Share of feature requests not answered 5xx; the dashed line is the target.",
        "percentunit",
        _query(q.availability(_TENANT, _RATE), "availability", "A"),
        _query(q.availability_target(_TENANT), "target", "target"),
    )
    board.with_panel(_with_target_line(availability, "target"))
    burn = (
        _timeseries(
            "Error-budget burn rate",
            "How many times faster than sustainable each error budget is spent (1 = exactly "
            f"on budget). {_burn_alerts(config.burn_windows)}",
            "x",
            *_burn_rates(q, config.burn_windows),
            width=24,
        )
        .thresholds(
            builders.ThresholdsConfig()
            .mode(models.ThresholdsMode.ABSOLUTE)
            .steps(_burn_thresholds(config.burn_windows))
        )
        .thresholds_style(
            common_builders.GraphThresholdsStyleConfig().mode(common.GraphTresholdsStyleMode.DASHED)
        )
    )
    board.with_panel(burn)

    board.with_row(builders.Row("Traffic and errors"))
    board.with_panel(
        _timeseries(
            "Requests by status",
            "Feature requests per second by status class.",
            "reqps",
            _query(q.request_rate(_TENANT, _RATE, by="status_class"), "{{status_class}}", "A"),
        )
    )
    board.with_panel(
        _timeseries(
            "Errors by code",
            "Error answers per second by featureplane error code (after authentication).",
            "reqps",
            _query(q.errors_by_code(_TENANT, _RATE), "{{code}}", "A"),
        )
    )

    board.with_row(builders.Row("On-demand feature views"))
    board.with_panel(
        _timeseries(
            "Transform call latency",
            "p50 and p99 of one call to the tenant's sandboxed transform worker.",
            "s",
            _query(q.transform_quantile(0.5, _TENANT, _RATE), "p50", "A"),
            _query(q.transform_quantile(0.99, _TENANT, _RATE), "p99", "B"),
            width=12,
        )
    )
    board.with_panel(
        _timeseries(
            "Transform failures",
            "Transform calls per second that did not answer, by reason (raised, timeout, "
            "exited, busy).",
            "reqps",
            _query(q.transform_failures(_TENANT, _RATE, by="reason"), "{{reason}}", "A"),
            width=12,
        )
    )

    board.with_row(builders.Row("Quotas"))
    concurrency = _timeseries(
        "Concurrency",
        "Requests in flight against max_concurrent_requests.",
        "short",
        _query(q.inflight(_TENANT), "in flight", "A"),
        _query(q.quota_limit(_TENANT, "max_concurrent_requests"), "limit", "target"),
        width=8,
    )
    board.with_panel(_with_target_line(concurrency, "target"))
    rate = _timeseries(
        "Request rate",
        "Requests per second against requests_per_second (bursts up to `burst` pass).",
        "reqps",
        _query(q.request_rate(_TENANT, _RATE), "requests/s", "A"),
        _query(q.quota_limit(_TENANT, "requests_per_second"), "limit", "target"),
        width=8,
    )
    board.with_panel(_with_target_line(rate, "target"))
    board.with_panel(
        _timeseries(
            "Quota rejections",
            "Requests refused per second, by the quota that refused them (429 and 413).",
            "reqps",
            _query(q.quota_rejections(_TENANT, _RATE, by="quota"), "{{quota}}", "A"),
            width=8,
        )
    )

    board.with_row(builders.Row("Freshness and materialization"))
    fresh = _timeseries(
        "Freshness",
        "Now minus the newest event time served online, per feature view; dashed: its SLA.",
        "s",
        _query(q.freshness(_TENANT), "{{feature_view}}", "A"),
        _query(q.freshness_target(_TENANT), "{{feature_view}} SLA", "target"),
    )
    board.with_panel(_with_target_line(fresh, "target"))
    board.with_panel(
        _bars(
            "Materialization runs in range",
            "Runs per feature view and outcome over the time range.",
            "short",
            _query(
                q.materialization_runs(_TENANT, _RANGE),
                "{{feature_view}} {{status}}",
                "A",
                instant=True,
            ),
        )
    )
    board.with_panel(
        _timeseries(
            "Since last successful materialization",
            "Time since each feature view's last successful run ended.",
            "s",
            _query(q.since_last_materialization(_TENANT), "{{feature_view}}", "A"),
            width=8,
        )
    )
    board.with_panel(
        _timeseries(
            "Rows materialized",
            "Offline rows materialized per feature view, per rate interval.",
            "short",
            _query(q.materialized_rows(_TENANT, _RATE), "{{feature_view}}", "A"),
            width=8,
        )
    )
    board.with_panel(
        _timeseries(
            "Last run duration",
            "Duration of each feature view's latest materialization run.",
            "s",
            _query(q.materialization_duration(_TENANT), "{{feature_view}}", "A"),
            width=8,
        )
    )

    board.with_row(builders.Row("Drift from the training reference"))
    for statistic, title, what in (
        ("psi", "Drift: PSI", "Population stability index"),
        ("ks", "Drift: KS", "Two-sample Kolmogorov-Smirnov statistic (numeric features)"),
    ):
        panel = _timeseries(
            title,
            f"{what} of each feature's latest materialized batch against the training reference "
            "(`featureplane drift reference`); dashed: its threshold (tenant.yaml drift).",
            "short",
            _query(q.drift(statistic, _TENANT), "{{feature_view}}.{{feature}}", "A"),
            _query(
                q.drift_threshold(statistic, _TENANT),
                "{{feature_view}}.{{feature}} threshold",
                "target",
            ),
        )
        board.with_panel(_with_target_line(panel, "target"))

    board.with_row(builders.Row("Cost"))
    board.with_panel(
        _bars(
            "Cost per month of holdings",
            "What the tenant holds now, priced per month (`featureplane cost report` adds "
            "requests, entity rows and rows materialized; prices: FEATUREPLANE_COST_PRICES, "
            "illustrative defaults).",
            "short",
            _query(q.cost_estimate(_TENANT), "{{item}}", "A", instant=True),
        )
    )
    board.with_panel(
        _timeseries(
            "Online bytes (estimated)",
            "The tenant's online keys in Redis: sampled MEMORY USAGE times the key count.",
            "bytes",
            _query(q.online_bytes(_TENANT), "{{tenant}}", "A"),
        )
    )
    return _numbered(board)


def platform_overview(config: DashboardConfig) -> models.Dashboard:
    """Every tenant side by side, the top talkers, and the shared online store and registry."""
    q = Queries(config)
    tenants = ALL_TENANTS
    board = _board(
        config,
        config.platform_overview_uid,
        "Featureplane / Platform overview",
        "All tenants side by side, and the shared online store and registry.",
    )

    board.with_row(builders.Row("Tenants"))
    board.with_panel(
        _timeseries(
            "Requests per second",
            "Feature requests per second by tenant.",
            "reqps",
            _query(q.request_rate(tenants, _RATE), "{{tenant}}", "A"),
            width=8,
        )
    )
    board.with_panel(
        _timeseries(
            "p99 latency",
            "p99 of POST /get-online-features by tenant.",
            "s",
            _query(q.latency_quantile(0.99, tenants, _RATE), "{{tenant}}", "A"),
            width=8,
        )
    )
    board.with_panel(
        _timeseries(
            "Error ratio",
            "Share of feature requests answered 5xx (spends the availability SLO) and 4xx "
            "(client errors and quota refusals), by tenant.",
            "percentunit",
            _query(q.status_ratio("5xx", tenants, _RATE), "{{tenant}} 5xx", "A"),
            _query(q.status_ratio("4xx", tenants, _RATE), "{{tenant}} 4xx", "B"),
            width=8,
        )
    )

    board.with_row(builders.Row("Top talkers over the time range"))
    board.with_panel(
        _bars(
            "By requests per second",
            "The five tenants sending the most feature requests.",
            "reqps",
            _query(top(5, q.request_rate(tenants, _RANGE)), "{{tenant}}", "A", instant=True),
        )
    )
    board.with_panel(
        _bars(
            "By entity rows per second",
            "The five tenants reading the most entity rows (a request may carry many).",
            "short",
            _query(top(5, q.entity_rows_rate(tenants, _RANGE)), "{{tenant}}", "A", instant=True),
        )
    )

    board.with_row(builders.Row("Online store and registry"))
    board.with_panel(
        _stat(
            "Online store",
            "1 when every gateway reaches the online store (Redis).",
            "bool_yes_no",
            _query(q.store_up(), "up", "A", instant=True),
            width=8,
        )
    )
    board.with_panel(
        _stat(
            "Online store memory",
            "Redis used_memory.",
            "bytes",
            _query(q.store_used_memory(), "used memory", "A", instant=True),
            width=8,
        )
    )
    board.with_panel(
        _stat(
            "Registry age",
            "Age of the oldest registry snapshot a gateway is serving.",
            "s",
            _query(q.registry_age(), "age", "A", instant=True),
            width=8,
        )
    )
    board.with_panel(
        _timeseries(
            "Online-store read latency",
            "p50 and p99 of one pipelined online-store read, by tenant.",
            "s",
            _query(q.store_read_quantile(0.5, tenants, _RATE), "{{tenant}} p50", "A"),
            _query(q.store_read_quantile(0.99, tenants, _RATE), "{{tenant}} p99", "B"),
        )
    )
    rejections = q.quota_rejections(tenants, _RATE, by="tenant, quota")
    board.with_panel(
        _timeseries(
            "Quota rejections",
            "Requests refused per second by tenant and quota.",
            "reqps",
            _query(rejections, "{{tenant}} {{quota}}", "A"),
        )
    )
    return _numbered(board)


def render(board: models.Dashboard) -> str:
    """The dashboard as Grafana's JSON model, keys sorted so diffs stay small."""
    return json.dumps(board, cls=JSONEncoder, indent=2, sort_keys=True) + "\n"
