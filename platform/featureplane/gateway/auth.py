"""Who is calling: ``Authorization: Bearer <token>`` -> tenant.

This is the header Feast's stock remote client sends when its feature_store.yaml has
``auth: {type: kubernetes, user_token: <token>}``. Two kinds of bearer are understood:

- featureplane tokens (``fpt_…``), checked against the digests `featureplane tenants
  issue-token` stored (:mod:`featureplane.tenancy.credentials`), in constant time;
- with ``FEATUREPLANE_KUBERNETES_AUTH``, a pod's ServiceAccount token, which the Kubernetes API
  vouches for (TokenReview); its namespace names the tenant.

Tokens are never logged, put in metric labels or echoed in errors.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from featureplane.errors import AuthenticationError, StoreUnavailableError
from featureplane.tenancy.credentials import (
    CRED_PREFIX,
    is_featureplane_token,
    parse_token_id,
    verify,
)

_UNKNOWN = "unknown, expired or revoked token"


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise AuthenticationError("missing credentials: send 'Authorization: Bearer <token>'")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthenticationError("the Authorization header must be 'Bearer <token>'")
    return token


class TokenVerifier(Protocol):
    async def tenant_for(self, token: str) -> str:
        """The tenant the bearer token belongs to; AuthenticationError if none."""
        ...


class FeatureplaneTokens:
    def __init__(self, client: aioredis.Redis, pepper: bytes) -> None:
        self._redis = client
        self._pepper = pepper

    async def tenant_for(self, token: str) -> str:
        token_id = parse_token_id(token)
        if token_id is None:
            raise AuthenticationError(_UNKNOWN)
        try:
            tenant, digest, expires = await self._redis.hmget(
                CRED_PREFIX + token_id, ["tenant", "digest", "expires_at"]
            )
        except (RedisError, OSError) as exc:
            raise StoreUnavailableError("credential store unavailable") from exc
        if tenant is None or digest is None or not verify(self._pepper, token, digest.decode()):
            raise AuthenticationError(_UNKNOWN)
        if expires is not None and float(expires) <= time.time():
            raise AuthenticationError(_UNKNOWN)
        return str(tenant.decode())


class ServiceAccountTokens:
    """Kubernetes ServiceAccount tokens via the TokenReview API (``authentication.k8s.io/v1``).

    ``api`` is a ``kubernetes.client.AuthenticationV1Api``; ``namespaces`` maps namespace ->
    tenant (read at each call, so registry refreshes apply). Positive reviews are cached for
    ``cache_seconds`` under a hash of the token, since a TokenReview per request would put the
    API server on the hot path.
    """

    _PREFIX = "system:serviceaccount:"

    def __init__(
        self,
        api: Any,
        namespaces: Callable[[], Mapping[str, str]],
        audiences: Sequence[str] = (),
        cache_seconds: float = 60.0,
    ) -> None:
        self._api = api
        self._namespaces = namespaces
        self._audiences = list(audiences)
        self._cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, str]] = {}

    def _review(self, token: str) -> Any:
        from kubernetes.client import V1TokenReview, V1TokenReviewSpec

        spec = V1TokenReviewSpec(token=token, audiences=self._audiences or None)
        review = V1TokenReview(
            api_version="authentication.k8s.io/v1", kind="TokenReview", spec=spec
        )
        return self._api.create_token_review(review)

    async def tenant_for(self, token: str) -> str:
        key = hashlib.sha256(token.encode()).hexdigest()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        try:
            review = await asyncio.to_thread(self._review, token)
        except Exception as exc:  # ApiException, urllib3 errors: the API server is unavailable
            raise StoreUnavailableError("Kubernetes TokenReview unavailable") from exc
        status = review.status
        if status is None or not status.authenticated or status.user is None:
            raise AuthenticationError("the Kubernetes API did not authenticate the token")
        username: str = status.user.username or ""
        if not username.startswith(self._PREFIX):
            raise AuthenticationError("the token is not a ServiceAccount token")
        namespace = username[len(self._PREFIX) :].split(":", 1)[0]
        tenant = self._namespaces().get(namespace)
        if tenant is None:
            raise AuthenticationError(f"namespace {namespace!r} belongs to no tenant")
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key] = (time.monotonic() + self._cache_seconds, tenant)
        return tenant


class Authenticator:
    """Routes a bearer token to the verifier for its kind."""

    def __init__(
        self, tokens: TokenVerifier, service_accounts: TokenVerifier | None = None
    ) -> None:
        self._tokens = tokens
        self._service_accounts = service_accounts

    async def authenticate(self, authorization: str | None) -> str:
        token = bearer_token(authorization)
        if is_featureplane_token(token) or self._service_accounts is None:
            return await self._tokens.tenant_for(token)
        return await self._service_accounts.tenant_for(token)
