"""Feast's stock remote online store, unchanged, talking to the gateway.

``online_store: {type: remote, path: <gateway>}`` with ``auth: {type: kubernetes, user_token: T}``
makes Feast send ``Authorization: Bearer T``; it must get what the local SDK gets.
"""

from __future__ import annotations

from typing import Any

import pytest
from feast import FeatureStore, RepoConfig

from featureplane.embedded.gateway import GatewayProcess
from featureplane.feast_config import feature_store, render
from tests.support.deployment import Deployment


def _remote_store(
    deployment: Deployment, gateway: GatewayProcess, tenant: str, token: str
) -> FeatureStore:
    spec = deployment.catalog[tenant]
    raw = render(deployment.settings, spec.feast_project)
    raw["online_store"] = {"type": "remote", "path": gateway.base}
    raw["auth"] = {"type": "kubernetes", "user_token": token}
    return FeatureStore(config=RepoConfig(**raw))


CASES: list[tuple[str, Any, list[dict[str, Any]]]] = [
    (
        "fraud",
        [
            "account_stats:txn_count_24h",
            "account_stats:chargeback_rate",
            "account_stats:is_flagged",
            "account_stats:days_since_signup",
        ],
        [{"account_id": 1}, {"account_id": 2}, {"account_id": 10**9}],
    ),
    (
        "recsys",
        [
            "user_profile:favourite_genre",
            "user_profile:taste_embedding",
            "user_profile:recent_item_ids",
            "user_item_affinity:affinity",
        ],
        # Users whose recent_item_ids are non-empty: Feast's remote client infers each value's
        # type from the value itself and cannot type an empty list (it raises TypeError),
        # whatever server it talks to. See docs/limits.md.
        [
            {"user_id": "u000004", "item_id": "i00001"},
            {"user_id": "u000005", "item_id": "i00003"},
            {"user_id": "nobody", "item_id": "i00001"},
        ],
    ),
]


@pytest.mark.parametrize(("tenant", "features", "rows"), CASES, ids=[c[0] for c in CASES])
def test_stock_remote_client_gets_what_the_sdk_gets(
    deployment: Deployment,
    gateway: GatewayProcess,
    tenant: str,
    features: list[str],
    rows: list[dict[str, Any]],
) -> None:
    if tenant == "recsys":
        profiles = {
            r["user_id"]: r for r in deployment.tables["recsys"]["user_activity"].to_pylist()
        }
        assert all(profiles[r["user_id"]]["recent_item_ids"] for r in rows[:2]), (
            "pick users with items"
        )
    remote = _remote_store(deployment, gateway, tenant, deployment.tokens[tenant])
    local = feature_store(deployment.settings, deployment.catalog[tenant])
    for full in (False, True):
        theirs = local.get_online_features(
            features=features, entity_rows=rows, full_feature_names=full
        ).to_dict()
        ours = remote.get_online_features(
            features=features, entity_rows=rows, full_feature_names=full
        ).to_dict()
        assert ours == theirs


def test_stock_remote_client_feature_service(
    deployment: Deployment, gateway: GatewayProcess
) -> None:
    remote = _remote_store(deployment, gateway, "pricing", deployment.tokens["pricing"])
    local = feature_store(deployment.settings, deployment.catalog["pricing"])
    rows = [{"store_id": 1, "sku": "sku-00000"}, {"store_id": 4, "sku": "sku-00003"}]
    service = local.get_feature_service("pricing_model_v1")
    assert (
        remote.get_online_features(features=service, entity_rows=rows).to_dict()
        == local.get_online_features(features=service, entity_rows=rows).to_dict()
    )


def test_stock_remote_client_pointed_at_another_project_gets_403(
    deployment: Deployment, gateway: GatewayProcess
) -> None:
    """A fraud engineer edits their feature_store.yaml to say ``project: pricing``: the client
    finds pricing's views in the registry, but the gateway refuses fraud's token for them."""
    remote = _remote_store(deployment, gateway, "pricing", deployment.tokens["fraud"])
    with pytest.raises(RuntimeError, match="403"):
        remote.get_online_features(
            features=["product_demand:units_sold_7d"],
            entity_rows=[{"store_id": 1, "sku": "sku-00000"}],
        )


def test_stock_remote_client_with_wrong_token_is_refused(
    deployment: Deployment, gateway: GatewayProcess
) -> None:
    remote = _remote_store(deployment, gateway, "fraud", "fpt_0123456789ab_" + "y" * 43)
    with pytest.raises(RuntimeError, match="401"):
        remote.get_online_features(
            features=["account_stats:txn_count_24h"], entity_rows=[{"account_id": 1}]
        )
