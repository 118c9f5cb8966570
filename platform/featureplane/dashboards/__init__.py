"""Generators of the Grafana dashboards and Prometheus rules under the top-level dashboards/."""
