"""The real gateway (`featureplane serve`, 2 workers) against real Redis and the real registry.

Parity: for every sample feature view, random present and absent entities, the gateway answers
exactly what Feast's SDK (rendered as Feast's feature server renders it) answers, value for value.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from featureplane.embedded.gateway import GatewayProcess
from featureplane.feast_config import feature_store
from featureplane.online import codec
from featureplane.tenancy.credentials import CredentialStore
from tests.support.deployment import Deployment, entity_rows, feast_answer, feature_views
from tests.support.gateway import bearer, columns_by_name


def _post(http: httpx.Client, token: str, body: dict[str, Any]) -> httpx.Response:
    return http.post("/get-online-features", json=body, headers=bearer(token))


TENANTS = ["fraud", "recsys", "pricing"]


@pytest.mark.parametrize("tenant", TENANTS)
def test_every_feature_view_equals_feastfeast_answer(
    deployment: Deployment, http: httpx.Client, tenant: str
) -> None:
    views = feature_views(deployment, tenant)
    assert views, f"{tenant} has no feature views"
    for view in views:
        rows, absent = entity_rows(deployment, tenant, view, n_present=25, n_absent=5)
        features = [f"{view.name}:{f.name}" for f in view.features]
        columns = {k: [r[k] for r in rows] for k in view.join_keys}
        resp = _post(http, deployment.tokens[tenant], {"features": features, "entities": columns})
        assert resp.status_code == 200, resp.text
        ours = resp.json()
        theirs = feast_answer(deployment, tenant, features, rows)
        assert columns_by_name(ours) == columns_by_name(theirs), view.name
        assert sorted(ours["metadata"]["feature_names"]) == sorted(
            theirs["metadata"]["feature_names"]
        )
        # Statuses: NOT_FOUND exactly where Feast's Redis path says PRESENT with nulls and 1970.
        names = ours["metadata"]["feature_names"]
        for name, col in zip(names, ours["results"], strict=True):
            if name in view.join_keys:
                assert set(col["statuses"]) == {"PRESENT"}
                continue
            for i in range(len(rows)):
                if absent[i]:
                    assert col["statuses"][i] == "NOT_FOUND"
                    assert col["event_timestamps"][i] == codec.EPOCH
                    assert col["values"][i] is None
                else:
                    assert col["statuses"][i] in ("PRESENT", "NULL_VALUE")
                    assert col["event_timestamps"][i] != codec.EPOCH
                    assert (col["values"][i] is None) == (col["statuses"][i] == "NULL_VALUE")


def test_feature_service_and_full_names_equal_feastfeast_answer(
    deployment: Deployment, http: httpx.Client
) -> None:
    view = next(v for v in feature_views(deployment, "pricing") if v.name == "product_price")
    rows, _ = entity_rows(deployment, "pricing", view, n_present=10, n_absent=2)
    columns = {k: [r[k] for r in rows] for k in view.join_keys}
    store = feature_store(deployment.settings, deployment.catalog["pricing"])
    service = store.get_feature_service("pricing_model_v1")
    for full in (False, True):
        resp = _post(
            http,
            deployment.tokens["pricing"],
            {
                "feature_service": "pricing_model_v1",
                "entities": columns,
                "full_feature_names": full,
            },
        )
        assert resp.status_code == 200, resp.text
        assert columns_by_name(resp.json()) == columns_by_name(
            feast_answer(deployment, "pricing", service, rows, full)
        )
    names = resp.json()["metadata"]["feature_names"]
    assert "product_price__price" in names
    assert "product_demand__demand_forecast" in names


def test_newest_event_wins(deployment: Deployment, http: httpx.Client) -> None:
    """The fraud sample repeats a fifth of its accounts with an older row: the newer one wins."""
    table = deployment.tables["fraud"]["account_activity"].to_pylist()
    newest: dict[int, dict[str, Any]] = {}
    for row in table:
        if (
            row["account_id"] not in newest
            or row["event_timestamp"] > newest[row["account_id"]]["event_timestamp"]
        ):
            newest[row["account_id"]] = row
    ids = [1, 2, 3]
    assert sum(1 for r in table if r["account_id"] == 1) == 2
    resp = _post(
        http,
        deployment.tokens["fraud"],
        {"features": ["account_stats:txn_count_24h"], "entities": {"account_id": ids}},
    )
    col = resp.json()["results"][1]
    assert col["values"] == [newest[i]["txn_count_24h"] for i in ids]
    assert col["event_timestamps"] == [
        newest[i]["event_timestamp"].strftime("%Y-%m-%dT%H:%M:%S.%fZ").replace(".000000Z", "Z")
        for i in ids
    ]


def test_shared_feature_view_is_readable_only_by_the_grantee(
    deployment: Deployment, http: httpx.Client
) -> None:
    body = {
        "features": ["product_price:price"],
        "entities": {"store_id": [1], "sku": ["sku-00000"]},
    }
    shared = _post(http, deployment.tokens["recsys"], body)
    assert shared.status_code == 200, shared.text
    own = _post(http, deployment.tokens["pricing"], body)
    assert shared.json() == own.json()
    denied = _post(http, deployment.tokens["fraud"], body)
    assert denied.status_code == 403
    assert denied.json()["error"]["code"] == "forbidden"
    demand = {
        "features": ["product_demand:units_sold_7d"],
        "entities": {"store_id": [1], "sku": ["sku-00000"]},
    }
    assert _post(http, deployment.tokens["recsys"], demand).status_code == 403  # not granted
    service = {
        "feature_service": "pricing_model_v1",
        "entities": {"store_id": [1], "sku": ["sku-00000"]},
    }
    assert _post(http, deployment.tokens["recsys"], service).status_code == 403


@pytest.mark.parametrize(
    ("reader", "owner_view"),
    [
        ("fraud", "user_profile:sessions_7d"),
        ("recsys", "account_stats:txn_count_24h"),
        ("pricing", "account_stats:is_flagged"),
    ],
)
def test_foreign_views_are_forbidden(
    deployment: Deployment, http: httpx.Client, reader: str, owner_view: str
) -> None:
    resp = _post(
        http,
        deployment.tokens[reader],
        {"features": [owner_view], "entities": {"account_id": [1], "user_id": ["u000001"]}},
    )
    assert resp.status_code == 403
    assert owner_view.split(":")[0] in resp.json()["error"]["message"]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic abc"},
        {"Authorization": "Bearer fpt_0123456789ab_" + "x" * 43},
        {"Authorization": "Bearer nonsense"},
    ],
)
def test_missing_or_unknown_credentials_are_401(
    http: httpx.Client, headers: dict[str, str]
) -> None:
    resp = http.post(
        "/get-online-features",
        json={"features": ["account_stats:txn_count_24h"], "entities": {"account_id": [1]}},
        headers=headers,
    )
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "unauthenticated"
    assert resp.headers["www-authenticate"].startswith("Bearer")


def test_revoked_token_fails_at_once(deployment: Deployment, http: httpx.Client) -> None:
    with redis.Redis.from_url(deployment.settings.require_redis_url()) as client:
        store = CredentialStore(client, deployment.settings.pepper)
        issued = store.issue("fraud")
        body = {"features": ["account_stats:txn_count_24h"], "entities": {"account_id": [1]}}
        assert _post(http, issued.token, body).status_code == 200
        store.revoke(issued.id)
        assert _post(http, issued.token, body).status_code == 401


BAD_REQUESTS = [
    ({"features": ["nope:x"], "entities": {"account_id": [1]}}, 400, "unknown feature view 'nope'"),
    (
        {"features": ["account_stats:nope"], "entities": {"account_id": [1]}},
        400,
        "unknown feature 'nope' in feature view 'account_stats'",
    ),
    (
        {"features": ["account_stats"], "entities": {"account_id": [1]}},
        400,
        "not of the form 'feature_view:feature'",
    ),
    (
        {"features": ["account_stats:txn_count_24h"], "entities": {"user_id": [1]}},
        400,
        "missing join key values for 'account_id'",
    ),
    (
        {"features": ["account_stats:txn_count_24h"], "entities": {"account_id": ["abc"]}},
        400,
        "expected int64, got string 'abc'",
    ),
    (
        {"features": ["account_stats:txn_count_24h"], "entities": {"account_id": []}},
        400,
        "at least one entity row",
    ),
    ({"features": [], "entities": {"account_id": [1]}}, 400, "name at least one feature"),
    (
        {"feature_service": "nope", "entities": {"account_id": [1]}},
        400,
        "unknown feature service 'nope'",
    ),
    (
        {
            "features": ["account_stats:txn_count_24h", "account_stats:txn_count_24h"],
            "entities": {"account_id": [1]},
        },
        400,
        "requested more than once",
    ),
    ({"features": ["account_stats:txn_count_24h"]}, 422, "entities: Field required"),
    (
        {"features": "account_stats:txn_count_24h", "entities": {"account_id": [1]}},
        422,
        "features: Input should be a valid list",
    ),
    ([1, 2], 422, "not a get-online-features request"),
]


@pytest.mark.parametrize(("body", "status", "message"), BAD_REQUESTS)
def test_bad_requests_get_4xx_naming_the_problem(
    deployment: Deployment, http: httpx.Client, body: Any, status: int, message: str
) -> None:
    resp = _post(http, deployment.tokens["fraud"], body)
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/json"
    assert message in resp.json()["error"]["message"]


def test_not_json_and_wrong_content_type(deployment: Deployment, http: httpx.Client) -> None:
    headers = bearer(deployment.tokens["fraud"])
    resp = http.post(
        "/get-online-features",
        content=b"{not json",
        headers=headers | {"Content-Type": "application/json"},
    )
    assert resp.status_code == 400
    assert "not valid JSON" in resp.json()["error"]["message"]
    resp = http.post(
        "/get-online-features",
        content=b"a=b",
        headers=headers | {"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert resp.status_code == 415


def test_health_ready(http: httpx.Client) -> None:
    assert http.get("/health").json() == {"status": "ok"}
    ready = http.get("/ready")
    assert ready.status_code == 200
    assert ready.json()["checks"]["projects"] == ["fraud", "pricing", "recsys"]


def _request_count(http: httpx.Client, tenant: str) -> float:
    families = text_string_to_metric_families(http.get("/metrics").text)
    total = 0.0
    for family in families:
        if family.name != "featureplane_request_duration_seconds":
            continue
        for sample in family.samples:
            labels = sample.labels
            if (
                sample.name.endswith("_count")
                and labels["tenant"] == tenant
                and labels["route"] == "/get-online-features"
            ):
                total += sample.value
    return total


def test_metrics_are_per_tenant_sub_millisecond_and_merged_across_workers(
    deployment: Deployment, gateway: GatewayProcess, http: httpx.Client
) -> None:
    http.post("/get-online-features", json={"features": [], "entities": {}})  # a 401
    before = _request_count(http, "recsys")
    body = {"features": ["user_profile:sessions_7d"], "entities": {"user_id": ["u000001"]}}
    sent = 60
    with httpx.Client(
        base_url=gateway.base, timeout=10, limits=httpx.Limits(max_keepalive_connections=0)
    ) as fresh:
        for _ in range(sent):  # a new connection each time, so both workers take some
            assert _post(fresh, deployment.tokens["recsys"], body).status_code == 200
    deadline = time.monotonic() + 5
    while _request_count(http, "recsys") - before < sent and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _request_count(http, "recsys") - before == sent
    text = http.get("/metrics").text
    assert (
        'featureplane_request_duration_seconds_bucket{le="0.00025",route="/get-online-features",status_class="2xx",tenant="recsys"}'
        in text
    )
    assert (
        'featureplane_request_errors_total{code="unauthenticated",route="/get-online-features",tenant="-"}'
        in text
    )
    assert "featureplane_online_store_read_duration_seconds_bucket" in text
    # Computed at scrape time from tenant.yaml and the run records materialization left.
    assert 'featureplane_sla_latency_p99_seconds{tenant="recsys"} 0.05' in text
    assert (
        'featureplane_materialization_runs_total{feature_view="user_profile",status="success",tenant="recsys"}'
        in text
    )
    assert (
        'featureplane_feature_freshness_seconds{feature_view="account_stats",tenant="fraud"}'
        in text
    )
    assert "featureplane_online_store_up 1.0" in text
    freshness = {
        (s.labels["tenant"], s.labels["feature_view"]): s.value
        for family in text_string_to_metric_families(text)
        if family.name == "featureplane_feature_freshness_seconds"
        for s in family.samples
    }
    newest = max(
        r["event_timestamp"] for r in deployment.tables["fraud"]["account_activity"].to_pylist()
    )
    assert abs(freshness[("fraud", "account_stats")] - (time.time() - newest.timestamp())) < 5
    histogram_files = list(gateway.metrics_dir.glob("histogram_*.db"))
    assert len(histogram_files) >= 2, "both workers should have recorded requests"


def test_the_feature_route_is_documented_and_only_takes_post(http: httpx.Client) -> None:
    """The route is served before FastAPI's routing, yet /docs' schema describes it, and other
    methods get a JSON 405."""
    schema = http.get("/openapi.json").json()
    operation = schema["paths"]["/get-online-features"]["post"]
    assert set(operation["responses"]) >= {"200", "400", "401", "403", "413", "429", "503"}
    assert "GetOnlineFeaturesRequest" in str(operation["requestBody"])
    assert {"/health", "/ready", "/metrics"} <= set(schema["paths"])
    refused = http.get("/get-online-features")
    assert refused.status_code == 405
    assert refused.headers["allow"] == "POST"
    assert refused.json()["error"]["code"] == "method_not_allowed"
