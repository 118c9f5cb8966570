"""Every PromQL expression the dashboards and the rules use, in one place.

:class:`Queries` builds them for one :class:`~featureplane.dashboards.config.DashboardConfig`
(the scrape job every selector is scoped to, the latency SLO's budget). Each expression takes a
tenant matcher (``tenant_is("fraud")`` in rules, ``tenant="$tenant"`` in dashboards,
:data:`ALL_TENANTS` for platform-wide views) and a range (``"5m"``, or Grafana's
``$__rate_interval``), so a panel and the alert that pages on the same signal read the same
expression.

Ratios of bad requests are written ``1 - good / all``, so they are ``0`` rather than absent while
nothing fails: an absent series blanks a panel and hides a tenant from a ``topk``.

Series the gateway computes at scrape time from shared state (tenant.yaml targets and limits,
materialization records in Redis, the registry, Redis itself) are the same on every gateway
replica, so they are aggregated with ``max``/``min``, never ``sum``.

The names here (metrics, recording rules, the serving route) are no settings: they are what the
gateway exports and the rules record.
"""

from __future__ import annotations

from dataclasses import dataclass

from featureplane.dashboards.config import DashboardConfig
from featureplane.observability.metrics import LATENCY_BUCKETS

SERVING_ROUTE = "/get-online-features"
ALL_TENANTS = 'tenant!="-"'  # "-" labels requests refused before authentication

REQUEST_RATE_RECORD = "featureplane:requests:rate5m"
P99_RECORD = "featureplane:request_latency_seconds:p99_5m"

_REQUESTS = "featureplane_request_duration_seconds_count"
_REQUEST_BUCKETS = "featureplane_request_duration_seconds_bucket"
_STORE_READ_BUCKETS = "featureplane_online_store_read_duration_seconds_bucket"


def label_is(label: str, value: str) -> str:
    return f'{label}="{value}"'


def tenant_is(name: str) -> str:
    return label_is("tenant", name)


def _sum(by: str) -> str:
    return f"sum by ({by})" if by else "sum"


def _sum_rate(series: str, window: str, by: str) -> str:
    return f"{_sum(by)} (rate({series}[{window}]))"


def _quantile(q: float, buckets: str, window: str, by: str) -> str:
    labels = f"{by}, le" if by else "le"
    return f"histogram_quantile({q:g}, sum by ({labels}) (rate({buckets}[{window}])))"


def latency_bucket(target_seconds: float) -> float:
    """The histogram bucket the latency SLO counts as fast enough.

    The target itself when it is a bucket boundary; otherwise the smallest boundary above it,
    which errs lenient (a 12 ms target is measured as 15 ms) rather than counting requests that
    met the target as slow.
    """
    for bound in LATENCY_BUCKETS:
        if bound >= target_seconds * (1 - 1e-9):
            return bound
    raise ValueError(
        f"a latency target of {target_seconds:g} s is beyond the largest histogram bucket "
        f"({LATENCY_BUCKETS[-1]:g} s)"
    )


def _le(bound: float) -> str:
    text = repr(float(bound))
    if text.endswith(".0"):  # the client writes "1.0"; Prometheus 3 stores it as "1"
        whole = text.removesuffix(".0")
        return f'le=~"{whole}|{whole}\\\\.0"'
    return label_is("le", text)


def top(k: int, expr: str) -> str:
    return f"topk({k}, {expr})"


def availability_errors_record(window: str) -> str:
    return f"featureplane:slo_availability_errors:ratio_rate{window}"


def latency_errors_record(window: str) -> str:
    return f"featureplane:slo_latency_errors:ratio_rate{window}"


@dataclass(frozen=True)
class Queries:
    """The expressions of one configuration."""

    config: DashboardConfig

    def selector(self, *matchers: str) -> str:
        """A series selector scoped to the gateways' job: ``{job="featureplane",<matchers>}``."""
        return "{" + ",".join([label_is("job", self.config.job), *matchers]) + "}"

    def _serving(self, tenant: str, *matchers: str) -> str:
        return self.selector(tenant, label_is("route", SERVING_ROUTE), *matchers)

    def tenant_names(self) -> str:
        """Grafana's variable query for the tenants that have sent feature requests."""
        return f"label_values({_REQUESTS}{self.selector(ALL_TENANTS)}, tenant)"

    # -- requests ----------------------------------------------------------------------------

    def request_rate(self, tenant: str, window: str, by: str = "tenant") -> str:
        """Requests per second on the serving route, every status included."""
        return _sum_rate(_REQUESTS + self._serving(tenant), window, by)

    def status_ratio(self, status_class: str, tenant: str, window: str, by: str = "tenant") -> str:
        """The fraction of serving-route requests answered with ``status_class`` (``"5xx"``...)."""
        others = _REQUESTS + self._serving(tenant, f'status_class!="{status_class}"')
        return f"1 - {_sum_rate(others, window, by)} / {self.request_rate(tenant, window, by)}"

    def availability(self, tenant: str, window: str, by: str = "tenant") -> str:
        """The non-5xx ratio: what ``sla.availability`` promises."""
        good = _REQUESTS + self._serving(tenant, 'status_class!="5xx"')
        return f"{_sum_rate(good, window, by)} / {self.request_rate(tenant, window, by)}"

    def errors_by_code(self, tenant: str, window: str) -> str:
        errors = "featureplane_request_errors_total" + self.selector(tenant)
        return _sum_rate(errors, window, "code")

    def latency_quantile(self, q: float, tenant: str, window: str, by: str = "tenant") -> str:
        """The ``q`` quantile of serving-route latency, in seconds."""
        return _quantile(q, _REQUEST_BUCKETS + self._serving(tenant), window, by)

    def latency_error_ratio(self, tenant: str, window: str, target_seconds: float) -> str:
        """The fraction of serving-route requests slower than ``target_seconds`` (see
        :func:`latency_bucket`)."""
        fast = _REQUEST_BUCKETS + self._serving(tenant, _le(latency_bucket(target_seconds)))
        return f"1 - {_sum_rate(fast, window, 'tenant')} / {self.request_rate(tenant, window)}"

    def entity_rows_rate(self, tenant: str, window: str, by: str = "tenant") -> str:
        return _sum_rate("featureplane_entity_rows_total" + self.selector(tenant), window, by)

    # -- SLO burn rates ----------------------------------------------------------------------

    def availability_burn_rate(self, tenant: str, window: str) -> str:
        """How many times faster than sustainable the availability budget is spent (1 = on
        budget)."""
        target = f"featureplane_sla_availability_ratio{self.selector(tenant)}"
        return (
            f"{availability_errors_record(window)}{{{tenant}}}"
            f" / on (tenant) (1 - max by (tenant) ({target}))"
        )

    def latency_burn_rate(self, tenant: str, window: str) -> str:
        budget = self.config.latency_slo_budget
        return f"{latency_errors_record(window)}{{{tenant}}} / {budget:g}"

    # -- targets and quotas (tenant.yaml, exported by the gateway) ---------------------------

    def latency_target(self, tenant: str) -> str:
        return f"max(featureplane_sla_latency_p99_seconds{self.selector(tenant)})"

    def availability_target(self, tenant: str) -> str:
        return f"max(featureplane_sla_availability_ratio{self.selector(tenant)})"

    def quota_limit(self, tenant: str, quota: str) -> str:
        return f"max(featureplane_quota_limit{self.selector(tenant, label_is('quota', quota))})"

    def inflight(self, tenant: str) -> str:
        """Requests being served now: each replica exports its workers' sum, so sum the
        replicas."""
        return f"sum(featureplane_quota_inflight_requests{self.selector(tenant)})"

    def quota_rejections(self, tenant: str, window: str, by: str) -> str:
        rejections = "featureplane_quota_rejections_total" + self.selector(tenant)
        return _sum_rate(rejections, window, by)

    # -- data: freshness and materialization -------------------------------------------------

    def freshness(self, tenant: str) -> str:
        series = f"featureplane_feature_freshness_seconds{self.selector(tenant)}"
        return f"max by (tenant, feature_view) ({series})"

    def freshness_target(self, tenant: str) -> str:
        series = f"featureplane_sla_freshness_seconds{self.selector(tenant)}"
        return f"max by (tenant, feature_view) ({series})"

    def freshness_breach(self, tenant: str) -> str:
        return f"{self.freshness(tenant)} > {self.freshness_target(tenant)}"

    def materialization_runs(self, tenant: str, window: str, *matchers: str) -> str:
        runs = f"featureplane_materialization_runs_total{self.selector(tenant, *matchers)}"
        return f"max by (tenant, feature_view, status) (increase({runs}[{window}]))"

    def materialization_failures(self, tenant: str, window: str) -> str:
        failed = self.materialization_runs(tenant, window, label_is("status", "failure"))
        return f"{failed} > 0"

    def since_last_materialization(self, tenant: str) -> str:
        last = "featureplane_materialization_last_success_timestamp_seconds" + self.selector(tenant)
        return f"time() - max by (feature_view) ({last})"

    def materialized_rows(self, tenant: str, window: str) -> str:
        rows = f"featureplane_materialization_rows_total{self.selector(tenant)}"
        return f"max by (feature_view) (increase({rows}[{window}]))"

    def materialization_duration(self, tenant: str) -> str:
        series = f"featureplane_materialization_duration_seconds{self.selector(tenant)}"
        return f"max by (feature_view) ({series})"

    # -- data: drift from the training reference ---------------------------------------------

    def drift(self, statistic: str, tenant: str) -> str:
        """The latest scored batch's ``psi`` or ``ks`` per feature."""
        series = f"featureplane_feature_drift_{statistic}{self.selector(tenant)}"
        return f"max by (tenant, feature_view, feature) ({series})"

    def drift_threshold(self, statistic: str, tenant: str) -> str:
        matchers = self.selector(tenant, label_is("statistic", statistic))
        return f"max by (tenant, feature_view, feature) (featureplane_drift_threshold{matchers})"

    def drift_breach(self, statistic: str, tenant: str) -> str:
        return f"{self.drift(statistic, tenant)} > {self.drift_threshold(statistic, tenant)}"

    # -- cost (featureplane.cost, exported by the gateway) -----------------------------------

    def cost_estimate(self, tenant: str) -> str:
        """Cost per month of what the tenant holds now (online bytes, CPU and memory quota)."""
        series = f"featureplane_cost_estimate{self.selector(tenant)}"
        return f"max by (tenant, item) ({series})"

    def online_bytes(self, tenant: str) -> str:
        """Estimated bytes of the tenant's online keys (sampled)."""
        return f"max by (tenant) (featureplane_cost_online_bytes{self.selector(tenant)})"

    # -- on-demand transformations ----------------------------------------------------------

    def transform_quantile(self, q: float, tenant: str, window: str, by: str = "tenant") -> str:
        """The ``q`` quantile of one call to a tenant's transform worker, in seconds."""
        buckets = "featureplane_transform_duration_seconds_bucket" + self.selector(tenant)
        return _quantile(q, buckets, window, by)

    def transform_failures(self, tenant: str, window: str, by: str) -> str:
        failures = "featureplane_transform_failures_total" + self.selector(tenant)
        return _sum_rate(failures, window, by)

    def transform_breakage(self, tenant: str, window: str) -> str:
        """Per tenant, transform calls over ``window`` its own code broke (not queueing)."""
        failures = "featureplane_transform_failures_total" + self.selector(tenant, 'reason!="busy"')
        return f"sum by (tenant) (increase({failures}[{window}])) > 0"

    # -- the online store and the registry ---------------------------------------------------

    def store_read_quantile(self, q: float, tenant: str, window: str, by: str = "tenant") -> str:
        """The ``q`` quantile of one pipelined online-store read, in seconds."""
        return _quantile(q, _STORE_READ_BUCKETS + self.selector(tenant), window, by)

    def store_up(self) -> str:
        """0 as soon as any replica cannot reach the online store."""
        return f"min(featureplane_online_store_up{self.selector()})"

    def gateway_down(self) -> str:
        """A gateway target Prometheus cannot scrape (or none at all)."""
        return f"up{self.selector()} == 0 or absent(up{self.selector()})"

    def store_down(self) -> str:
        return f"featureplane_online_store_up{self.selector()} == 0"

    def store_used_memory(self) -> str:
        return f"max(featureplane_online_store_used_memory_bytes{self.selector()})"

    def registry_age(self) -> str:
        """The oldest registry snapshot any replica is serving."""
        return f"max(featureplane_registry_age_seconds{self.selector()})"

    def registry_down(self) -> str:
        """A gateway serving its last registry snapshot because refreshes fail (or hang)."""
        return f"featureplane_registry_up{self.selector()} == 0"
