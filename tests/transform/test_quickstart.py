"""The repo `feast init` creates, unchanged, as a tenant: applied, materialized and served by the
gateway, on-demand feature views included, answering what the Feast SDK answers over the same
registry and Redis."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pandas as pd  # type: ignore[import-untyped]
import pytest
from feast import FeatureStore, RepoConfig
from feast.data_source import PushMode
from feast.feature_server_utils import convert_response_to_dict

from featureplane.embedded.gateway import GatewayProcess
from featureplane.embedded.redis import EmbeddedRedis
from featureplane.feast_config import feature_store, render
from featureplane.tenancy.catalog import load_spec
from tests.support.gateway import bearer, columns_by_name, start_gateway
from tests.support.quickstart import TENANT, issue_token, quickstart_tree
from tests.support.trees import Tree


@pytest.fixture(scope="module")
def quickstart(
    redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Tree, GatewayProcess, str]]:
    tree = quickstart_tree(tmp_path_factory.mktemp("quickstart"), redis_server.url)
    _push_labels(tree)
    token = issue_token(tree)
    gateway = start_gateway(tree.settings, workers=1)
    try:
        yield tree, gateway, token
    finally:
        gateway.stop()


def _push_labels(tree: Tree) -> None:
    """Labels for two drivers, written by Feast's own push (the gateway has no push yet)."""
    spec = load_spec(tree.settings.tenants_path / TENANT / "tenant.yaml")
    labels = pd.DataFrame(
        {
            "driver_id": ["1001", "1002"],
            "is_reliable": [1, 0],
            "quality_score": [0.9, 0.25],
            "reviewer_notes": ["steady", None],
            "labeler": ["ana", "bo"],
            "event_timestamp": [pd.Timestamp.now(tz="UTC")] * 2,
        }
    )
    feature_store(tree.settings, spec).push(
        "driver_quality_labels_push", labels, to=PushMode.ONLINE
    )


def _feast_serve_answer(
    tree: Tree, features: Any, entities: dict[str, list[Any]], full: bool
) -> dict[str, list[Any]]:
    """What `feast serve` answers over the same registry and Redis: the SDK's response, in the
    JSON encoding of Feast's feature server."""
    spec = load_spec(tree.settings.tenants_path / TENANT / "tenant.yaml")
    store = feature_store(tree.settings, spec)
    response = store.get_online_features(
        features=features, entity_rows=entities, full_feature_names=full
    )
    answer = convert_response_to_dict(response.proto)
    return columns_by_name(answer)


ENTITIES = {"driver_id": [1001, 1002, 1005, 999999], "val_to_add": [1, 2, 3, 4],
            "val_to_add_2": [10, 20, 30, 40]}  # fmt: skip

REQUESTS: list[tuple[str, dict[str, Any]]] = [
    ("odfv", {"features": ["transformed_conv_rate:conv_rate_plus_val1"]}),
    (
        "odfv-and-view",
        {
            "features": [
                "transformed_conv_rate:conv_rate_plus_val2",
                "driver_hourly_stats:conv_rate",
                "transformed_conv_rate:conv_rate_plus_val1",
            ]
        },
    ),
    (
        "label-view",
        {
            "features": [
                "driver_quality_labels:is_reliable",
                "driver_quality_labels:quality_score",
                "driver_quality_labels:reviewer_notes",
            ]
        },
    ),
    ("latest-ref", {"features": ["driver_hourly_stats@latest:conv_rate"]}),
    (
        "push-view-and-odfv",
        {
            "features": [
                "driver_hourly_stats_fresh:driver_profile",
                "transformed_conv_rate_fresh:conv_rate_plus_val1",
            ]
        },
    ),
    ("service-v1", {"feature_service": "driver_activity_v1"}),
    ("service-v2", {"feature_service": "driver_activity_v2"}),
    ("service-v3", {"feature_service": "driver_activity_v3"}),
]


@pytest.mark.parametrize("full", [False, True], ids=["short-names", "full-names"])
@pytest.mark.parametrize(("case", "request_body"), REQUESTS, ids=[c for c, _ in REQUESTS])
def test_answers_equal_the_feast_sdk(
    quickstart: tuple[Tree, GatewayProcess, str],
    case: str,
    request_body: dict[str, Any],
    full: bool,
) -> None:
    tree, gateway, token = quickstart
    body = {**request_body, "entities": ENTITIES, "full_feature_names": full}
    answer = httpx.post(f"{gateway.base}/get-online-features", json=body, headers=bearer(token))
    assert answer.status_code == 200, answer.text
    got = answer.json()
    if "feature_service" in request_body:
        spec = load_spec(tree.settings.tenants_path / TENANT / "tenant.yaml")
        features: Any = feature_store(tree.settings, spec).get_feature_service(
            request_body["feature_service"]
        )
    else:
        features = request_body["features"]
    expected = _feast_serve_answer(tree, features, ENTITIES, full)
    names = got["metadata"]["feature_names"]
    # Same names; Feast orders a whole view's features arbitrarily (a set inside).
    assert sorted(names) == sorted(expected), (case, names, list(expected))
    assert columns_by_name(got) == expected


def test_stock_remote_client_gets_odfvs_and_services(
    quickstart: tuple[Tree, GatewayProcess, str],
) -> None:
    """Feast's `online_store: {type: remote}` client, unchanged, against the gateway: on-demand
    views and every feature service of the quickstart, as the local SDK computes them."""
    tree, gateway, token = quickstart
    spec = load_spec(tree.settings.tenants_path / TENANT / "tenant.yaml")
    local = feature_store(tree.settings, spec)
    raw = render(tree.settings, spec.feast_project)
    raw["online_store"] = {"type": "remote", "path": gateway.base}
    raw["auth"] = {"type": "kubernetes", "user_token": token}
    remote = FeatureStore(config=RepoConfig(**raw))
    rows = [dict(zip(ENTITIES, v, strict=True)) for v in zip(*ENTITIES.values(), strict=True)][:3]
    asks: list[Any] = [
        ["transformed_conv_rate:conv_rate_plus_val1", "driver_hourly_stats:conv_rate"],
        local.get_feature_service("driver_activity_v1"),
        local.get_feature_service("driver_activity_v2"),
    ]
    for features in asks:
        for full in (False, True):
            theirs = local.get_online_features(
                features=features, entity_rows=rows, full_feature_names=full
            ).to_dict()
            ours = remote.get_online_features(
                features=features, entity_rows=rows, full_feature_names=full
            ).to_dict()
            # Feast's remote client leaves a Json value as the string `feast serve` sends (its
            # local SDK parses it): the same with any server; compare the parsed value.
            for name, values in ours.items():
                if name.endswith("driver_config"):
                    ours[name] = [None if v is None else json.loads(v) for v in values]
            assert ours == theirs, features


def test_a_pinned_version_is_refused_as_feast_refuses_it(
    quickstart: tuple[Tree, GatewayProcess, str],
) -> None:
    _, gateway, token = quickstart
    body = {"features": ["driver_hourly_stats@v1:conv_rate"], "entities": {"driver_id": [1001]}}
    answer = httpx.post(f"{gateway.base}/get-online-features", json=body, headers=bearer(token))
    assert answer.status_code == 400
    assert "online versioning is disabled" in answer.json()["error"]["message"]
