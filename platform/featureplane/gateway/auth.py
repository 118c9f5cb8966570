"""Who is calling: ``Authorization: Bearer <token>`` -> tenant.

This is the header Feast's stock remote client sends when its feature_store.yaml has
``auth: {type: kubernetes, user_token: <token>}``. Two kinds of bearer are understood:

- featureplane tokens (``fpt_…``), checked against the digests `featureplane tenants
  issue-token` stored (:mod:`featureplane.tenancy.credentials`), in constant time. A token id's
  tenant and digest never change, so a worker keeps them after the first read and checks the
  secret locally; what can change (revocation, the expiry a rotation sets) is read again with
  every request, as one more command in the request's single pipelined round trip
  (:attr:`Identity.recheck`), and the data is only answered if that read still vouches;
- with ``FEATUREPLANE_KUBERNETES_AUTH``, a pod's ServiceAccount token, which the Kubernetes API
  vouches for (TokenReview); its namespace names the tenant.

An identity carries scopes (``read``, ``write``): a featureplane token's, chosen when it was
issued; a ServiceAccount's, from its tenant's ``kubernetes.service_accounts`` (``read`` for one
not named there). :func:`require_scope` refuses the rest with 403.

Tokens are never logged, put in metric labels or echoed in errors.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from featureplane.errors import AuthenticationError, ScopeError, StoreUnavailableError
from featureplane.gateway.reader import HashRead
from featureplane.online.connection import Connection, ReplyError
from featureplane.tenancy.credentials import (
    CRED_PREFIX,
    DEFAULT_SCOPES,
    is_featureplane_token,
    parse_token_id,
    stored_scopes,
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


@dataclass(frozen=True)
class Identity:
    """Who is calling, and how to confirm it with the request's own store read."""

    tenant: str
    recheck: HashRead | None = None  # read it with the data; pass the reply to ``confirm``
    scopes: frozenset[str] = frozenset(DEFAULT_SCOPES)  # a token's; see require_scope


_VERBS = {"read": "read features", "write": "push features"}


def require_scope(identity: Identity, scope: str) -> None:
    """403 unless ``identity`` may ``scope`` (``read``, ``write``)."""
    if scope not in identity.scopes:
        held = ", ".join(sorted(identity.scopes)) or "none"
        raise ScopeError(
            f"this credential may not {_VERBS[scope]} (its scopes: {held}); "
            f"issue a token with `--scope {scope}`"
        )


@dataclass(frozen=True)
class NamespaceAccess:
    """A tenant's namespace, as ServiceAccount tokens are mapped: its tenant, and the scopes
    of the ServiceAccounts its tenant.yaml names (any other may read)."""

    tenant: str
    service_accounts: Mapping[str, frozenset[str]]


class TokenVerifier(Protocol):
    async def identify(self, token: str) -> Identity:
        """The identity the bearer token stands for; AuthenticationError if none."""
        ...

    def confirm(self, identity: Identity, reply: list[bytes | None]) -> None:
        """Raise AuthenticationError unless the recheck's ``reply`` still vouches for it."""
        ...

    async def recheck(self, identity: Identity) -> None:
        """``confirm`` with a read of its own (for answers that carry no data read)."""
        ...


# What each request re-reads of a credential (a rotation's expiry, a revocation); its scopes,
# like its tenant and digest, never change, so only the first read fetches them.
_FIELDS = (b"tenant", b"digest", b"expires_at")
_FIRST_READ = (*_FIELDS, b"scopes")


class FeatureplaneTokens:
    _MAX_KNOWN = 100_000  # token ids remembered per worker (then forgotten and read again)

    def __init__(self, connection: Connection, pepper: bytes) -> None:
        self._connection = connection
        self._pepper = pepper
        # token id -> (tenant, digest, scopes)
        self._known: dict[str, tuple[str, bytes, frozenset[str]]] = {}
        self._verified: dict[str, str] = {}  # token -> its id, once its secret checked out

    async def identify(self, token: str) -> Identity:
        token_id = self._verified.get(token)
        if token_id is not None and (known := self._known.get(token_id)) is not None:
            # the usual case: no HMAC again
            return Identity(known[0], ((CRED_PREFIX + token_id).encode(), _FIELDS), known[2])
        token_id = parse_token_id(token)
        if token_id is None:
            raise AuthenticationError(_UNKNOWN)
        key = (CRED_PREFIX + token_id).encode()
        known = self._known.get(token_id)
        if known is None:
            (reply,) = await self._connection.execute([[b"HMGET", key, *_FIRST_READ]])
            if isinstance(reply, ReplyError):
                raise StoreUnavailableError("credential store unavailable")
            tenant = self._check(token_id, token, reply[:3])
            if len(self._known) >= self._MAX_KNOWN:
                self._known.clear()
                self._verified.clear()
            scopes = frozenset(stored_scopes(reply[3]))
            self._known[token_id] = (tenant, reply[1], scopes)
            self._verified[token] = token_id
            return Identity(tenant, None, scopes)  # read just now: nothing to confirm
        tenant, digest, scopes = known
        if not verify(self._pepper, token, digest.decode()):
            raise AuthenticationError(_UNKNOWN)
        self._verified[token] = token_id
        return Identity(tenant, (key, _FIELDS), scopes)

    def confirm(self, identity: Identity, reply: list[bytes | None]) -> None:
        if identity.recheck is None:
            return
        token_id = identity.recheck[0].decode()[len(CRED_PREFIX) :]
        tenant, digest, expires = reply
        known = self._known.get(token_id)
        if (
            tenant is None
            or known is None
            or (tenant.decode(), digest) != known[:2]
            or (expires is not None and float(expires) <= time.time())
        ):
            self._known.pop(token_id, None)
            raise AuthenticationError(_UNKNOWN)

    async def recheck(self, identity: Identity) -> None:
        if identity.recheck is None:
            return
        key, fields = identity.recheck
        (reply,) = await self._connection.execute([[b"HMGET", key, *fields]])
        if isinstance(reply, ReplyError):
            raise StoreUnavailableError("credential store unavailable")
        self.confirm(identity, reply)

    def _check(self, token_id: str, token: str, reply: list[bytes | None]) -> str:
        tenant, digest, expires = reply
        if tenant is None or digest is None or not verify(self._pepper, token, digest.decode()):
            raise AuthenticationError(_UNKNOWN)
        if expires is not None and float(expires) <= time.time():
            raise AuthenticationError(_UNKNOWN)
        return tenant.decode()


class ServiceAccountTokens:
    """Kubernetes ServiceAccount tokens via the TokenReview API (``authentication.k8s.io/v1``).

    ``api`` is a ``kubernetes.client.AuthenticationV1Api``; ``namespaces`` maps namespace ->
    :class:`NamespaceAccess` (read at each call, so registry refreshes apply). Positive reviews
    are cached for ``cache_seconds`` under a hash of the token, since a TokenReview per request
    would put the API server on the hot path.
    """

    _PREFIX = "system:serviceaccount:"

    def __init__(
        self,
        api: Any,
        namespaces: Callable[[], Mapping[str, NamespaceAccess]],
        audiences: Sequence[str] = (),
        cache_seconds: float = 60.0,
    ) -> None:
        self._api = api
        self._namespaces = namespaces
        self._audiences = list(audiences)
        self._cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, Identity]] = {}

    def _review(self, token: str) -> Any:
        from kubernetes.client import V1TokenReview, V1TokenReviewSpec

        spec = V1TokenReviewSpec(token=token, audiences=self._audiences or None)
        review = V1TokenReview(
            api_version="authentication.k8s.io/v1", kind="TokenReview", spec=spec
        )
        return self._api.create_token_review(review)

    def confirm(self, identity: Identity, reply: list[bytes | None]) -> None:
        return None  # TokenReview answers are cached for cache_seconds, not rechecked

    async def recheck(self, identity: Identity) -> None:
        return None

    async def identify(self, token: str) -> Identity:
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
        namespace, _, account = username[len(self._PREFIX) :].partition(":")
        access = self._namespaces().get(namespace)
        if access is None:
            raise AuthenticationError(f"namespace {namespace!r} belongs to no tenant")
        scopes = access.service_accounts.get(account, frozenset(DEFAULT_SCOPES))
        identity = Identity(access.tenant, None, scopes)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key] = (time.monotonic() + self._cache_seconds, identity)
        return identity


class Authenticator:
    """Routes a bearer token to the verifier for its kind."""

    def __init__(
        self, tokens: TokenVerifier, service_accounts: TokenVerifier | None = None
    ) -> None:
        self._tokens = tokens
        self._service_accounts = service_accounts

    async def authenticate(self, authorization: str | None) -> Identity:
        token = bearer_token(authorization)
        if is_featureplane_token(token) or self._service_accounts is None:
            return await self._tokens.identify(token)
        return await self._service_accounts.identify(token)

    # Only featureplane tokens ask for rechecks (Identity.recheck); they are the ones confirmed.
    def confirm(self, identity: Identity, reply: list[bytes | None]) -> None:
        self._tokens.confirm(identity, reply)

    async def recheck(self, identity: Identity) -> None:
        await self._tokens.recheck(identity)
