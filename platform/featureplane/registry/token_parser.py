"""Feast's token parser plug-in for featureplane tokens: ``fpt_…`` bearer -> Feast ``User``.

Feast's remote registry client sends ``auth: {type: kubernetes, user_token: T}`` as
``authorization: Bearer T`` gRPC metadata; Feast's ``AuthInterceptor`` extracts it and asks the
server's ``TokenParser`` who it is. This one checks the token against the digests
`featureplane tenants issue-token` stored (:mod:`featureplane.tenancy.credentials`), on every
call, so a revocation or a rotation's expiry applies to the very next RPC. The user is the
tenant, with the single role :func:`featureplane.registry.permissions.tenant_role`.
"""

from __future__ import annotations

import time

import redis
from feast.permissions.auth.token_parser import TokenParser
from feast.permissions.user import User

from featureplane.errors import AuthenticationError, StoreUnavailableError
from featureplane.registry.permissions import OwnershipPolicy, tenant_role
from featureplane.tenancy.credentials import CRED_PREFIX, parse_token_id, verify

_UNKNOWN = "unknown, expired or revoked featureplane token"


class FeatureplaneTokenParser(TokenParser):  # type: ignore[misc]  # Feast is untyped
    def __init__(self, client: redis.Redis, pepper: bytes, policy: OwnershipPolicy) -> None:
        self._redis = client
        self._pepper = pepper
        self._policy = policy

    async def user_details_from_access_token(self, access_token: str) -> User:
        tenant = self.tenant_of(access_token)
        return User(username=tenant, roles=[tenant_role(tenant)])

    def tenant_of(self, token: str) -> str:
        """The tenant the token belongs to; AuthenticationError unless it is valid now."""
        token_id = parse_token_id(token)
        if token_id is None:
            raise AuthenticationError(_UNKNOWN)
        try:
            tenant, digest, expires = self._redis.hmget(
                CRED_PREFIX + token_id, ["tenant", "digest", "expires_at"]
            )
        except redis.RedisError as exc:
            raise StoreUnavailableError("credential store unavailable") from exc
        if tenant is None or digest is None or not verify(self._pepper, token, digest.decode()):
            raise AuthenticationError(_UNKNOWN)
        if expires is not None and float(expires) <= time.time():
            raise AuthenticationError(_UNKNOWN)
        name = str(tenant.decode())
        if not self._policy.is_tenant(name):  # offboarded: its tokens open nothing
            raise AuthenticationError(_UNKNOWN)
        return name
