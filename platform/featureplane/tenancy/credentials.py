"""Bearer tokens that identify a tenant at the gateway.

A token reads ``fpt_<id>_<secret>``. Only ``HMAC-SHA256(pepper, token)`` is kept, in the control
keyspace of the online Redis (``featureplane:cred:<id>``, apart from Feast's binary entity keys),
so every gateway worker and replica sees an issue, rotation or revocation on its next request.
The id makes lookup a single hash read and lets admins list, rotate and revoke tokens without
ever seeing a secret again.

A token carries scopes: ``read`` (get online features) and ``write`` (push features), chosen
when it is issued and kept by its rotations. A token issued before scopes existed has no
``scopes`` field and may read, as it always could, and not write.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import get_args

import redis

from featureplane.tenancy.spec import Scope

CRED_PREFIX = "featureplane:cred:"
TENANT_CREDS_PREFIX = "featureplane:creds:"
_TOKEN_PREFIX = "fpt_"
SCOPES: tuple[str, ...] = get_args(Scope)  # tenant.yaml's scopes are the same
DEFAULT_SCOPES = ("read",)  # a token issued without --scope, or before scopes existed


def parse_scopes(text: str) -> tuple[str, ...]:
    """``"read,write"`` -> ``("read", "write")``, in :data:`SCOPES` order; ValueError naming
    what is not a scope."""
    given = {part.strip() for part in text.split(",") if part.strip()}
    unknown = sorted(given - set(SCOPES))
    if unknown or not given:
        raise ValueError(
            f"scopes are a comma-separated subset of {', '.join(SCOPES)}; got {text!r}"
        )
    return tuple(scope for scope in SCOPES if scope in given)


def stored_scopes(raw: bytes | None) -> tuple[str, ...]:
    """The scopes a credential's ``scopes`` field grants (absent: :data:`DEFAULT_SCOPES`)."""
    if raw is None:
        return DEFAULT_SCOPES
    given = raw.decode().split(",")
    return tuple(scope for scope in SCOPES if scope in given)


@dataclass(frozen=True)
class IssuedToken:
    id: str
    tenant: str
    token: str
    created_at: str
    scopes: tuple[str, ...] = DEFAULT_SCOPES


@dataclass(frozen=True)
class CredentialInfo:
    id: str
    tenant: str
    created_at: str
    expires_at: str | None
    scopes: tuple[str, ...] = DEFAULT_SCOPES


def token_digest(pepper: bytes, token: str) -> str:
    return hmac.new(pepper, token.encode(), hashlib.sha256).hexdigest()


def is_featureplane_token(token: str) -> bool:
    return token.startswith(_TOKEN_PREFIX)


def parse_token_id(token: str) -> str | None:
    """The id part of a well-formed token, else None (checked before any store access)."""
    if not is_featureplane_token(token):
        return None
    token_id, sep, secret = token[len(_TOKEN_PREFIX) :].partition("_")
    if not sep or len(token_id) != 12 or not token_id.isalnum() or len(secret) < 32:
        return None
    return token_id


def verify(pepper: bytes, token: str, stored_digest: str) -> bool:
    return hmac.compare_digest(token_digest(pepper, token), stored_digest)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


class CredentialStore:
    """Issue, list, rotate and revoke tenant tokens (admin side; the gateway only reads)."""

    def __init__(self, client: redis.Redis, pepper: bytes) -> None:
        self._redis = client
        self._pepper = pepper

    def issue(self, tenant: str, scopes: tuple[str, ...] = DEFAULT_SCOPES) -> IssuedToken:
        scopes = parse_scopes(",".join(scopes))
        token_id = secrets.token_hex(6)
        token = f"{_TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
        created = _iso(time.time())
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(
            CRED_PREFIX + token_id,
            mapping={
                "tenant": tenant,
                "digest": token_digest(self._pepper, token),
                "created_at": created,
                "scopes": ",".join(scopes),
            },
        )
        pipe.sadd(TENANT_CREDS_PREFIX + tenant, token_id)
        pipe.execute()
        return IssuedToken(token_id, tenant, token, created, scopes)

    def tenant_of(self, token_id: str) -> str | None:
        raw = self._redis.hget(CRED_PREFIX + token_id, "tenant")
        return None if raw is None else str(raw.decode())

    def list(self, tenant: str) -> list[CredentialInfo]:
        ids = sorted(m.decode() for m in self._redis.smembers(TENANT_CREDS_PREFIX + tenant))
        infos = []
        stale = []
        for token_id in ids:
            data = self._redis.hgetall(CRED_PREFIX + token_id)
            if not data:  # expired after a rotation
                stale.append(token_id)
                continue
            expires = data.get(b"expires_at")
            infos.append(
                CredentialInfo(
                    token_id,
                    tenant,
                    data[b"created_at"].decode(),
                    _iso(float(expires)) if expires else None,
                    stored_scopes(data.get(b"scopes")),
                )
            )
        if stale:
            self._redis.srem(TENANT_CREDS_PREFIX + tenant, *stale)
        return infos

    def rotate(self, token_id: str, overlap_seconds: int) -> IssuedToken | None:
        """A new token for the same tenant and scopes; the old one keeps working for
        ``overlap_seconds``."""
        tenant, raw_scopes = self._redis.hmget(CRED_PREFIX + token_id, ["tenant", "scopes"])
        if tenant is None:
            return None
        issued = self.issue(tenant.decode(), stored_scopes(raw_scopes))
        if overlap_seconds <= 0:
            self.revoke(token_id)
            return issued
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(CRED_PREFIX + token_id, "expires_at", str(time.time() + overlap_seconds))
        pipe.expire(CRED_PREFIX + token_id, overlap_seconds)
        pipe.execute()
        return issued

    def revoke(self, token_id: str) -> str | None:
        """Delete a token; returns its tenant, or None if there was no such token."""
        tenant = self.tenant_of(token_id)
        if tenant is None:
            return None
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(CRED_PREFIX + token_id)
        pipe.srem(TENANT_CREDS_PREFIX + tenant, token_id)
        pipe.execute()
        return tenant
