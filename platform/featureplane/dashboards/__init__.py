"""Generators of the Grafana dashboards and Prometheus rules under the top-level dashboards/.

- :mod:`~featureplane.dashboards.config`: :class:`DashboardConfig`, what they are generated with.
- :mod:`~featureplane.dashboards.queries`: every PromQL expression.
- :mod:`~featureplane.dashboards.grafana` and :mod:`~featureplane.dashboards.rules`: the
  dashboards and the rule file.
- :mod:`~featureplane.dashboards.artifacts`: every generated file, rendered, written or checked
  (`featureplane dashboards generate [--check]`).
"""

from featureplane.dashboards.config import DashboardConfig

__all__ = ["DashboardConfig"]
