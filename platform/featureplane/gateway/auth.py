"""Who is calling: ``Authorization: Bearer <token>`` -> tenant.

This is the header Feast's stock remote client sends when its feature_store.yaml has
``auth: {type: kubernetes, user_token: <token>}``. Tokens are checked against the digests
`featureplane tenants issue-token` stored (see :mod:`featureplane.tenancy.credentials`),
in constant time, and are never logged or echoed.
"""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from featureplane.errors import AuthenticationError, StoreUnavailableError
from featureplane.tenancy.credentials import CRED_PREFIX, parse_token_id, verify


class TokenAuthenticator:
    def __init__(self, client: aioredis.Redis, pepper: bytes) -> None:
        self._redis = client
        self._pepper = pepper

    async def authenticate(self, authorization: str | None) -> str:
        """The tenant name the credential belongs to; AuthenticationError otherwise."""
        if not authorization:
            raise AuthenticationError("missing credentials: send 'Authorization: Bearer <token>'")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthenticationError("the Authorization header must be 'Bearer <token>'")
        token_id = parse_token_id(token)
        if token_id is None:
            raise AuthenticationError("unknown or revoked token")
        try:
            stored = await self._redis.hmget(CRED_PREFIX + token_id, ["tenant", "digest"])
        except (RedisError, OSError) as exc:
            raise StoreUnavailableError("credential store unavailable") from exc
        tenant, digest = stored
        if tenant is None or digest is None or not verify(self._pepper, token, digest.decode()):
            raise AuthenticationError("unknown or revoked token")
        return str(tenant.decode())
