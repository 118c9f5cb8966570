"""Access control and credentials through the real gateway: explicit projects, sharing grants,
rotation with overlap, and tokens that never leak into logs, metrics or errors."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
import redis

from featureplane.embedded.gateway import GatewayProcess
from featureplane.tenancy.credentials import CRED_PREFIX, SCOPES, CredentialStore
from tests.support.deployment import Deployment
from tests.support.gateway import bearer

KEYS = {"store_id": [1], "sku": ["sku-00000"]}


def _post(http: httpx.Client, token: str, body: dict[str, Any]) -> httpx.Response:
    return http.post("/get-online-features", json=body, headers=bearer(token))


@pytest.mark.parametrize(
    ("reader", "body", "status"),
    [
        ("recsys", {"features": ["product_price:price"], "project": "pricing"}, 200),
        ("recsys", {"features": ["product_demand:units_sold_7d"], "project": "pricing"}, 403),
        ("recsys", {"feature_service": "pricing_model_v1", "project": "pricing"}, 403),
        ("fraud", {"features": ["product_price:price"], "project": "pricing"}, 403),
        ("pricing", {"features": ["product_price:price"], "project": "pricing"}, 200),
        ("pricing", {"feature_service": "pricing_model_v1", "project": "pricing"}, 200),
        ("recsys", {"features": ["product_price:price"], "project": "recsys"}, 400),
        ("recsys", {"features": ["product_price:price"], "project": "nowhere"}, 400),
    ],
)
def test_grants_allow_exactly_what_they_name(
    deployment: Deployment, http: httpx.Client, reader: str, body: dict[str, Any], status: int
) -> None:
    resp = _post(http, deployment.tokens[reader], body | {"entities": KEYS})
    assert resp.status_code == status, resp.text
    if status == 200:
        assert resp.json()["results"][-1]["statuses"] == ["PRESENT"]


def test_rotation_keeps_the_old_token_for_the_overlap_only(
    deployment: Deployment, http: httpx.Client
) -> None:
    body = {"features": ["account_stats:txn_count_24h"], "entities": {"account_id": [1]}}
    with redis.Redis.from_url(deployment.settings.require_redis_url()) as client:
        store = CredentialStore(client, deployment.settings.pepper)
        old = store.issue("fraud")
        new = store.rotate(old.id, overlap_seconds=2)
        assert new is not None
        assert new.tenant == "fraud"
        assert _post(http, old.token, body).status_code == 200
        assert _post(http, new.token, body).status_code == 200
        listed = {c.id: c for c in store.list("fraud")}
        assert listed[old.id].expires_at is not None
        assert listed[new.id].expires_at is None
        time.sleep(2.2)
        assert _post(http, old.token, body).status_code == 401
        assert _post(http, new.token, body).status_code == 200
        assert old.id not in {c.id for c in store.list("fraud")}
        immediate = store.rotate(new.id, overlap_seconds=0)
        assert immediate is not None
        assert _post(http, new.token, body).status_code == 401
        assert _post(http, immediate.token, body).status_code == 200


def test_a_token_reads_only_with_the_read_scope(deployment: Deployment, http: httpx.Client) -> None:
    body = {"features": ["account_stats:txn_count_24h"], "entities": {"account_id": [1]}}
    with redis.Redis.from_url(deployment.settings.require_redis_url()) as client:
        store = CredentialStore(client, deployment.settings.pepper)
        writer, both, legacy = (store.issue("fraud", s) for s in (("write",), SCOPES, ("read",)))
        client.hdel(CRED_PREFIX + legacy.id, "scopes")  # as issued before scopes existed
        refused = _post(http, writer.token, body)
        assert refused.status_code == 403
        error = refused.json()["error"]
        assert error["code"] == "insufficient_scope"
        assert "may not read features (its scopes: write)" in error["message"]
        assert _post(http, both.token, body).status_code == 200
        assert _post(http, legacy.token, body).status_code == 200  # old tokens keep reading
        store.revoke(writer.id)
        assert _post(http, writer.token, body).status_code == 401  # not 403: revoked is unknown


def test_tokens_never_leak(
    deployment: Deployment, gateway: GatewayProcess, http: httpx.Client
) -> None:
    body = {"features": ["product_demand:units_sold_7d"], "entities": KEYS}
    bad = "fpt_0123456789ab_" + "z" * 43
    answers = [
        _post(http, deployment.tokens["fraud"], body),  # 403
        _post(http, bad, body),  # 401
        _post(http, deployment.tokens["fraud"], {"features": ["x"], "entities": {}}),  # 400
    ]
    assert [a.status_code for a in answers] == [403, 401, 400]
    secrets = [*deployment.tokens.values(), bad]
    exposed = [a.text for a in answers] + [http.get("/metrics").text, gateway.log.read_text()]
    for text in exposed:
        for secret in secrets:
            assert secret not in text
            assert secret.split("_", 2)[-1] not in text  # the secret part (it may contain "_")
