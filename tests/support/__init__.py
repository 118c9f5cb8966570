"""Importable test helpers, one noun per module (conftest.py files hold only fixtures and hooks).

- cli: ``run_cli``, the real `featureplane` command in a subprocess.
- chart: what the Helm chart carries from the repository (``python -m tests.support.chart``).
- components: ``require``, ``require_binary``: a missing component skips, or fails under CI.
- dashboards: the committed Grafana dashboards and their panel queries (``panel_queries``).
- deployment: ``Deployment``, ``deploy``, ``feature_views``: every sample tenant deployed.
- gateway: ``start_gateway``, ``bearer``, ``columns_by_name``: the real gateway and its answers.
- load: ``paced``, ``LoadResult``: a paced HTTP load generator for the quota tests.
- paths: ``ROOT``, the repository.
- postgres: ``start_postgres``, ``require_postgres``: a throwaway PostgreSQL.
- registry_server: ``start_platform``, ``apply_both``, ``Platform``: the TLS registry server.
- settings: ``make_settings``, Settings on the repository's tenants/ and feature_repo/.
- tenants: ``tenants_with_quotas``, a copy of tenants/ with other quotas.
- trees: ``Platform``, ``Tree``, ``cli``: one-tenant repo trees for governed plan/apply.
"""
