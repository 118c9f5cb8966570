"""Authentication: featureplane tokens against real Redis; ServiceAccount tokens through
TokenReview, on the kubernetes client's real request objects.

No API server runs here: the client's HTTP pool is replaced by a recorder that answers like the
API server, so the request the real ``AuthenticationV1Api`` builds is what is checked.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import redis
import urllib3
from kubernetes.client import ApiClient, AuthenticationV1Api, Configuration

from featureplane.embedded.redis import EmbeddedRedis
from featureplane.errors import AuthenticationError, ScopeError, StoreUnavailableError
from featureplane.gateway.auth import (
    Authenticator,
    FeatureplaneTokens,
    Identity,
    NamespaceAccess,
    ServiceAccountTokens,
    bearer_token,
    require_scope,
)
from featureplane.online.connection import SharedConnection
from featureplane.tenancy.credentials import CredentialStore


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


NAMESPACES = {
    "fp-fraud": NamespaceAccess("fraud", {"ingest": frozenset({"read", "write"})}),
    "fp-recsys": NamespaceAccess("recsys", {}),
}


def test_service_account_token_maps_to_its_namespace_tenant() -> None:
    pool = RecordingPool(_review(True, "system:serviceaccount:fp-fraud:scorer"))
    verifier = ServiceAccountTokens(
        _api(pool), lambda: NAMESPACES, ["featureplane"], cache_seconds=60
    )
    assert asyncio.run(verifier.identify("eyJhbGciOi.sa-token")).tenant == "fraud"
    assert asyncio.run(verifier.identify("eyJhbGciOi.sa-token")).tenant == "fraud"  # cached
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
    ("account", "scopes"),
    [("ingest", {"read", "write"}), ("scorer", {"read"})],  # one not named may read
)
def test_a_service_account_gets_the_scopes_its_tenant_names(account: str, scopes: set[str]) -> None:
    pool = RecordingPool(_review(True, f"system:serviceaccount:fp-fraud:{account}"))
    identity = asyncio.run(ServiceAccountTokens(_api(pool), lambda: NAMESPACES).identify("a.jwt"))
    assert identity.tenant == "fraud"
    assert identity.scopes == scopes


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
        asyncio.run(verifier.identify("some.jwt"))


def test_api_server_errors_are_503_not_401() -> None:
    verifier = ServiceAccountTokens(
        _api(RecordingPool({"kind": "Status"}, status=500)), lambda: NAMESPACES
    )
    with pytest.raises(StoreUnavailableError):
        asyncio.run(verifier.identify("some.jwt"))


class FixedTenant:
    def __init__(self, tenant: str) -> None:
        self.tenant = tenant
        self.seen: list[str] = []

    async def identify(self, token: str) -> Identity:
        self.seen.append(token)
        return Identity(self.tenant)

    def confirm(self, identity: Identity, reply: list[bytes | None]) -> None:
        return None

    async def recheck(self, identity: Identity) -> None:
        return None


def test_authenticator_routes_by_token_kind() -> None:
    tokens, accounts = FixedTenant("fraud"), FixedTenant("recsys")
    auth = Authenticator(tokens, accounts)
    assert asyncio.run(auth.authenticate("Bearer fpt_0123456789ab_" + "s" * 43)).tenant == "fraud"
    assert asyncio.run(auth.authenticate("Bearer eyJhbGciOi.jwt")).tenant == "recsys"
    assert len(tokens.seen) == len(accounts.seen) == 1
    without_k8s = Authenticator(tokens)
    assert (
        asyncio.run(without_k8s.authenticate("bearer eyJhbGciOi.jwt")).tenant == "fraud"
    )  # fpt rules apply


@pytest.mark.parametrize("header", [None, "", "Bearer", "Basic dXNlcjpwdw==", "Token abc"])
def test_malformed_authorization_headers(header: str | None) -> None:
    with pytest.raises(AuthenticationError):
        bearer_token(header)


def test_featureplane_tokens_are_rechecked_with_every_read(redis_server: EmbeddedRedis) -> None:
    """After the first read a token's tenant is known locally, but each request carries a
    recheck: a rotation's expiry or a revocation is refused on the very next request."""
    pepper = b"test-pepper"

    async def run() -> None:
        connection = SharedConnection.from_url(redis_server.url)
        with redis.Redis.from_url(redis_server.url) as client:
            store = CredentialStore(client, pepper)
            issued = store.issue("fraud")
            tokens = FeatureplaneTokens(connection, pepper)
            first = await tokens.identify(issued.token)
            assert first == Identity("fraud", None, frozenset({"read"}))  # nothing to recheck
            again = await tokens.identify(issued.token)
            assert again.tenant == "fraud"
            assert again.recheck is not None
            with pytest.raises(AuthenticationError):  # a wrong secret fails locally
                await tokens.identify(issued.token[:-4] + "AAAA")
            key, fields = again.recheck
            (reply,) = await connection.execute([[b"HMGET", key, *fields]])
            tokens.confirm(again, reply)  # still vouched for

            store.revoke(issued.id)
            (reply,) = await connection.execute([[b"HMGET", key, *fields]])
            with pytest.raises(AuthenticationError):
                tokens.confirm(again, reply)
            with pytest.raises(AuthenticationError):  # forgotten: read again, and refused
                await tokens.identify(issued.token)
        await connection.aclose()

    asyncio.run(run())


def test_a_token_carries_its_scopes_and_a_route_requires_one(redis_server: EmbeddedRedis) -> None:
    pepper = b"test-pepper"

    async def run() -> None:
        connection = SharedConnection.from_url(redis_server.url)
        with redis.Redis.from_url(redis_server.url) as client:
            store = CredentialStore(client, pepper)
            writer, both = store.issue("fraud", ("write",)), store.issue("fraud", ("read", "write"))
            tokens = FeatureplaneTokens(connection, pepper)
            for _ in range(2):  # read from Redis, then from what the worker remembers
                assert (await tokens.identify(writer.token)).scopes == {"write"}
                assert (await tokens.identify(both.token)).scopes == {"read", "write"}
            identity = await tokens.identify(writer.token)
            require_scope(identity, "write")
            with pytest.raises(ScopeError, match=r"may not read features \(its scopes: write\)"):
                require_scope(identity, "read")
        await connection.aclose()

    asyncio.run(run())
