"""A deployed platform: every sample tenant applied to a registry and materialized into Redis."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from featureplane.feast_config import close_registry, open_registry
from featureplane.settings import Settings
from featureplane.tenancy.catalog import TenantCatalog

SAMPLE_ROWS = 300


@dataclass
class Deployment:
    settings: Settings
    catalog: TenantCatalog
    tables: dict[str, dict[str, pa.Table]]  # tenant -> source -> the sample batch
    tokens: dict[str, str]
    now: datetime


def deploy(settings: Settings) -> Deployment:
    """All sample tenants applied to ``settings``' registry and materialized into its store."""
    from featureplane.demo import deploy_samples

    catalog = TenantCatalog.load(settings.tenants_path, settings.feature_repo_path)
    now = datetime.now(UTC).replace(microsecond=0)
    deployed = deploy_samples(settings, catalog, SAMPLE_ROWS, now)
    return Deployment(settings, catalog, deployed.tables, deployed.tokens, now)


def feature_views(deployment: Deployment, tenant: str) -> list[Any]:
    """The tenant's feature views, as the registry holds them."""
    registry = open_registry(deployment.settings)
    try:
        return list(registry.list_feature_views(deployment.catalog[tenant].feast_project))
    finally:
        close_registry(registry)
