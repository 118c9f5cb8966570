"""The shared registry on PostgreSQL: all three projects applied into one database
(``postgres_url``: tests/registry/conftest.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from featureplane.embedded.redis import EmbeddedRedis
from featureplane.feast_config import close_registry, open_registry
from featureplane.registry.apply import apply_tenant
from featureplane.tenancy.catalog import TenantCatalog
from tests.support.settings import make_settings


@pytest.mark.postgres
def test_postgres_registry_holds_every_project(
    postgres_url: str, redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, redis_server.url, registry=postgres_url)
    assert settings.registry_url.startswith("postgresql+psycopg://")
    catalog = TenantCatalog.load(settings.tenants_path, settings.feature_repo_path)
    for spec in catalog.values():
        apply_tenant(settings, spec)
    registry = open_registry(settings)
    try:
        _check_projects(registry)
    finally:
        close_registry(registry)


def _check_projects(registry: Any) -> None:
    projects = {p.name for p in registry.list_projects(allow_cache=False)}
    assert {"fraud", "recsys", "pricing"} <= projects
    views = {
        p: {fv.name for fv in registry.list_feature_views(p, allow_cache=False)}
        for p in ("fraud", "recsys", "pricing")
    }
    assert views == {
        "fraud": {"account_stats"},
        "recsys": {"user_profile", "user_item_affinity"},
        "pricing": {"product_price", "product_demand"},
    }
    assert [fs.name for fs in registry.list_feature_services("pricing", allow_cache=False)] == [
        "pricing_model_v1"
    ]
