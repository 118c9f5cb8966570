"""A deployed platform: every sample tenant applied to a registry and materialized into Redis."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import pyarrow as pa
from feast.feature_server_utils import convert_response_to_dict

from featureplane.feast_config import close_registry, feature_store, open_registry
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


def _absent(value: Any, i: int) -> Any:
    return 10**12 + i if isinstance(value, int) else f"absent-{i}"


def entity_rows(
    deployment: Deployment, tenant: str, view: Any, n_present: int, n_absent: int
) -> tuple[list[dict[str, Any]], list[bool]]:
    """Random stored entity rows, some that are absent, and one duplicate; plus which are absent."""
    table = deployment.tables[tenant][view.batch_source.name]
    rows = table.select(view.join_keys).to_pylist()
    rng = random.Random(f"{tenant}/{view.name}")
    picked = [(row, False) for row in rng.sample(rows, n_present)]
    picked += [({k: _absent(v, i) for k, v in rows[0].items()}, True) for i in range(n_absent)]
    rng.shuffle(picked)
    picked.append(picked[0])  # a duplicated entity is answered once per row
    return [p[0] for p in picked], [p[1] for p in picked]


def feast_answer(
    deployment: Deployment,
    tenant: str,
    features: Any,
    rows: list[dict[str, Any]],
    full: bool = False,
) -> dict[str, Any]:
    """What Feast answers: the SDK's response rendered as Feast's feature server renders it."""
    store = feature_store(deployment.settings, deployment.catalog[tenant])
    response = store.get_online_features(
        features=features, entity_rows=rows, full_feature_names=full
    )
    return cast(dict[str, Any], convert_response_to_dict(response.proto))
