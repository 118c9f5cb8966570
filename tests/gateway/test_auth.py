"""ServiceAccount tokens through TokenReview, on the kubernetes client's real request objects.

No API server runs here: the client's HTTP pool is replaced by a recorder that answers like the
API server, so the request the real ``AuthenticationV1Api`` builds is what is checked.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import urllib3
from kubernetes.client import ApiClient, AuthenticationV1Api, Configuration

from featureplane.errors import AuthenticationError, StoreUnavailableError
from featureplane.gateway.auth import Authenticator, ServiceAccountTokens, bearer_token


class RecordingPool:
    """Stands in for urllib3's PoolManager inside the kubernetes client."""

    def __init__(self, answer: dict[str, Any], status: int = 201) -> None:
        self.answer = answer
        self.status = status
        self.requests: list[dict[str, Any]] = []

    def request(self, method: str, url: str, **kwargs: Any) -> urllib3.HTTPResponse:
        self.requests.append({"method": method, "url": url, **kwargs})
        return urllib3.HTTPResponse(
            body=json.dumps(self.answer).encode(),
            status=self.status,
            headers={"Content-Type": "application/json"},
            preload_content=False,
        )


def _api(pool: RecordingPool) -> AuthenticationV1Api:
    config = Configuration(host="https://kubernetes.default.svc")
    config.api_key = {"authorization": "Bearer gateway-sa-token"}
    client = ApiClient(config)
    client.rest_client.pool_manager = pool
    return AuthenticationV1Api(client)


def _review(authenticated: bool, username: str = "") -> dict[str, Any]:
    status: dict[str, Any] = {"authenticated": authenticated}
    if authenticated:
        status["user"] = {"username": username, "groups": ["system:serviceaccounts"]}
    # The API server echoes the spec back with the verdict in status.
    return {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": "echoed"},
        "status": status,
    }


NAMESPACES = {"fp-fraud": "fraud", "fp-recsys": "recsys"}


def test_service_account_token_maps_to_its_namespace_tenant() -> None:
    pool = RecordingPool(_review(True, "system:serviceaccount:fp-fraud:scorer"))
    verifier = ServiceAccountTokens(
        _api(pool), lambda: NAMESPACES, ["featureplane"], cache_seconds=60
    )
    assert asyncio.run(verifier.tenant_for("eyJhbGciOi.sa-token")) == "fraud"
    assert asyncio.run(verifier.tenant_for("eyJhbGciOi.sa-token")) == "fraud"  # cached
    assert len(pool.requests) == 1
    sent = pool.requests[0]
    assert sent["method"] == "POST"
    assert (
        sent["url"] == "https://kubernetes.default.svc/apis/authentication.k8s.io/v1/tokenreviews"
    )
    assert json.loads(sent["body"]) == {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"audiences": ["featureplane"], "token": "eyJhbGciOi.sa-token"},
    }
    assert sent["headers"]["authorization"] == "Bearer gateway-sa-token"


@pytest.mark.parametrize(
    ("review", "message"),
    [
        (_review(False), "did not authenticate"),
        (_review(True, "alice@example.com"), "not a ServiceAccount token"),
        (
            _review(True, "system:serviceaccount:kube-system:default"),
            "'kube-system' belongs to no tenant",
        ),
    ],
)
def test_refused_reviews_are_401(review: dict[str, Any], message: str) -> None:
    verifier = ServiceAccountTokens(_api(RecordingPool(review)), lambda: NAMESPACES)
    with pytest.raises(AuthenticationError, match=message):
        asyncio.run(verifier.tenant_for("some.jwt"))


def test_api_server_errors_are_503_not_401() -> None:
    verifier = ServiceAccountTokens(
        _api(RecordingPool({"kind": "Status"}, status=500)), lambda: NAMESPACES
    )
    with pytest.raises(StoreUnavailableError):
        asyncio.run(verifier.tenant_for("some.jwt"))


class FixedTenant:
    def __init__(self, tenant: str) -> None:
        self.tenant = tenant
        self.seen: list[str] = []

    async def tenant_for(self, token: str) -> str:
        self.seen.append(token)
        return self.tenant


def test_authenticator_routes_by_token_kind() -> None:
    tokens, accounts = FixedTenant("fraud"), FixedTenant("recsys")
    auth = Authenticator(tokens, accounts)
    assert asyncio.run(auth.authenticate("Bearer fpt_0123456789ab_" + "s" * 43)) == "fraud"
    assert asyncio.run(auth.authenticate("Bearer eyJhbGciOi.jwt")) == "recsys"
    assert len(tokens.seen) == len(accounts.seen) == 1
    without_k8s = Authenticator(tokens)
    assert (
        asyncio.run(without_k8s.authenticate("bearer eyJhbGciOi.jwt")) == "fraud"
    )  # fpt rules apply


@pytest.mark.parametrize("header", [None, "", "Bearer", "Basic dXNlcjpwdw==", "Token abc"])
def test_malformed_authorization_headers(header: str | None) -> None:
    with pytest.raises(AuthenticationError):
        bearer_token(header)
