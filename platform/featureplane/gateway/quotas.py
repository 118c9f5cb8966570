"""Per-tenant rate and concurrency quotas, shared by every worker and replica.

:class:`QuotaStore` is the extension point: ``admit`` one request (or raise
:class:`QuotaExceededError`), ``release`` it when done. :class:`RedisQuotaStore` keeps the
shared state in Redis, decided atomically by one Lua script: a token bucket
(``requests_per_second`` refill, ``burst`` capacity, clocked by the Redis server so every process
agrees) and a table of concurrency reservations, one per worker, that expire if the worker dies.

Asking Redis on every request would cost a round trip and a script run per request, so each
worker *reserves* in small batches and admits locally while its reservation lasts:

- rate: it takes up to 20 ms worth of tokens at a time (one token for tenants under 50
  requests/s, so those are exact), spent within a second or dropped. Tokens leave the shared
  bucket before they are spent, so the rate is never exceeded; an idle worker can strand at most
  one batch (under-admission, never over-admission).
- concurrency: it reserves its in-flight count plus a slack of ``max_concurrent_requests // 32``
  slots (none below 32, so small limits are exact) and hands back what it no longer needs. The
  reservations of all workers never add up to more than the limit.

The keys (``featureplane:quota:{tenant}:…``) live apart from feature data, share one hash slot
per tenant (Redis Cluster) and expire when idle, so state never grows without bound.
:class:`InMemoryQuotaStore` is the single-process double for unit tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from featureplane.errors import PayloadTooLargeError, QuotaExceededError, StoreUnavailableError
from featureplane.observability.metrics import QUOTA_REJECTIONS, QUOTA_TOKENS
from featureplane.online.connection import Connection, ReplyError
from featureplane.tenancy.spec import Quotas

KEY_PREFIX = "featureplane:quota:"
TOKEN_BATCH_SECONDS = 0.02  # how much of the rate a worker takes from the bucket at once
TOKEN_HOLD_SECONDS = 1.0  # prefetched tokens unspent after this are dropped
SLOT_SLACK_DIVISOR = 32  # spare concurrency a worker reserves: the limit // this
RESERVATION_SECONDS = 5.0  # a worker's reservation outlives it by at most this (crash)


@dataclass(frozen=True)
class Lease:
    tenant: str
    id: str


class QuotaStore(Protocol):
    async def admit(self, tenant: str, quotas: Quotas) -> Lease:
        """Take one request's worth of rate and concurrency, or raise QuotaExceededError."""
        ...

    async def release(self, lease: Lease) -> None:
        """Give the concurrency slot back (the rate token stays spent)."""
        ...


def _reject(tenant: str, quotas: Quotas, quota: str, retry_after_ms: int) -> QuotaExceededError:
    QUOTA_REJECTIONS.labels(tenant, quota).inc()
    retry_after = max(1, math.ceil(retry_after_ms / 1000))
    if quota == "requests_per_second":
        limit: float = quotas.requests_per_second
        message = (
            f"tenant {tenant!r} is over its rate quota of {limit:g} requests/s "
            f"(burst {quotas.burst})"
        )
    else:
        limit = quotas.max_concurrent_requests
        message = f"tenant {tenant!r} already has {limit} requests in flight, its concurrency quota"
    return QuotaExceededError(quota, limit, retry_after, message)


# KEYS: bucket hash {tokens, ts}; reservations hash {holder: "slots:expires_ms"}.
# ARGV: rate/s, burst, max in flight, holder, tokens wanted, slots wanted (in all), hold ms.
# Returns {tokens granted, slots now held, ms until the tokens wanted are there, tokens x 1000}.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate, burst, max_inflight = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local holder, want_tokens = ARGV[4], tonumber(ARGV[5])
local want_slots, hold_ms = tonumber(ARGV[6]), tonumber(ARGV[7])
local others = 0
local held = redis.call('HGETALL', KEYS[2])
for i = 1, #held, 2 do
  if held[i] ~= holder then
    local slots, expires = string.match(held[i + 1], '^(%d+):(%d+)$')
    if slots == nil or tonumber(expires) <= now then
      redis.call('HDEL', KEYS[2], held[i])
    else
      others = others + tonumber(slots)
    end
  end
end
local slots = math.max(0, math.min(want_slots, max_inflight - others))
if slots > 0 then
  redis.call('HSET', KEYS[2], holder, slots .. ':' .. (now + hold_ms))
  redis.call('PEXPIRE', KEYS[2], hold_ms + 1000)
else
  redis.call('HDEL', KEYS[2], holder)
end
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens, ts = tonumber(b[1]), tonumber(b[2])
if tokens == nil or ts == nil then tokens, ts = burst, now end
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate / 1000)
local granted = math.max(0, math.min(want_tokens, math.floor(tokens)))
tokens = tokens - granted
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
local wait_ms = 0
if granted < want_tokens then wait_ms = math.ceil((want_tokens - tokens) * 1000 / rate) end
return {granted, slots, wait_ms, math.floor(tokens * 1000)}
"""


@dataclass
class _Reservation:
    """What one worker holds of one tenant's quotas."""

    tokens: int = 0
    tokens_until: float = 0.0
    slots: int = 0
    inflight: int = 0
    renew_at: float = 0.0  # renew the slot reservation before Redis forgets it
    empty_until: float = 0.0  # the shared bucket said "empty until then": refuse locally
    quotas: Quotas = field(default_factory=Quotas)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def token_batch(quotas: Quotas) -> int:
    return max(1, min(int(quotas.requests_per_second * TOKEN_BATCH_SECONDS), quotas.burst))


def slot_slack(quotas: Quotas) -> int:
    return quotas.max_concurrent_requests // SLOT_SLACK_DIVISOR


class RedisQuotaStore:
    def __init__(
        self,
        connection: Connection,
        reservation_seconds: float = RESERVATION_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._connection = connection
        self._hold_ms = int(reservation_seconds * 1000)
        self._clock = clock
        self._holder = secrets.token_hex(8)  # this worker, in the reservations table
        self._local: dict[str, _Reservation] = {}
        self._sha = hashlib.sha1(_RESERVE.encode()).hexdigest().encode()

    @staticmethod
    def keys(tenant: str) -> tuple[str, str]:
        # {tenant} is a hash tag: both keys of a tenant land in one Redis Cluster slot.
        return f"{KEY_PREFIX}{{{tenant}}}:rate", f"{KEY_PREFIX}{{{tenant}}}:slots"

    async def admit(self, tenant: str, quotas: Quotas) -> Lease:
        local = self._local.get(tenant)
        if local is None:
            local = self._local[tenant] = _Reservation()
        local.quotas = quotas  # the latest tenant.yaml (release hands back by it)
        if not self._admit_locally(local, tenant, quotas):
            async with local.lock:  # one reservation call per tenant and worker at a time
                if not self._admit_locally(local, tenant, quotas):
                    now = self._clock()
                    fresh = local.tokens >= 1 and local.tokens_until > now
                    want = 0 if fresh else token_batch(quotas)
                    await self._reserve(
                        tenant, local, want, local.inflight + 1 + slot_slack(quotas)
                    )
                    self._take(local, tenant, quotas)
        return Lease(tenant, "")

    def _admit_locally(self, local: _Reservation, tenant: str, quotas: Quotas) -> bool:
        """Admit from this worker's reservation; False if it needs topping up first."""
        now = self._clock()
        has_tokens = local.tokens >= 1 and local.tokens_until > now
        if has_tokens and local.inflight < local.slots and local.renew_at > now:
            local.tokens -= 1
            local.inflight += 1
            return True
        if not has_tokens and local.empty_until > now:
            wait_ms = math.ceil((local.empty_until - now) * 1000)
            raise _reject(tenant, quotas, "requests_per_second", wait_ms)
        return False

    def _take(self, local: _Reservation, tenant: str, quotas: Quotas) -> None:
        """After a reservation call: admit with what it got, or refuse."""
        if local.inflight >= local.slots:
            raise _reject(tenant, quotas, "max_concurrent_requests", 100)
        if local.tokens < 1:
            raise _reject(tenant, quotas, "requests_per_second", 1000)
        local.tokens -= 1
        local.inflight += 1

    async def _reserve(self, tenant: str, local: _Reservation, tokens: int, slots: int) -> None:
        """Take ``tokens`` from the bucket and hold ``slots`` in all (one script run)."""
        quotas, now = local.quotas, self._clock()
        args = [
            quotas.requests_per_second, quotas.burst, quotas.max_concurrent_requests,
            self._holder, tokens, min(slots, quotas.max_concurrent_requests), self._hold_ms,
        ]  # fmt: skip
        keys = self.keys(tenant)
        head = [b"2", keys[0].encode(), keys[1].encode(), *(str(a).encode() for a in args)]
        (reply,) = await self._connection.execute([[b"EVALSHA", self._sha, *head]])
        if isinstance(reply, ReplyError) and str(reply).startswith("NOSCRIPT"):
            (reply,) = await self._connection.execute([[b"EVAL", _RESERVE.encode(), *head]])
        if isinstance(reply, ReplyError):
            raise StoreUnavailableError(f"quota store refused the reservation: {reply}")
        granted, held, wait_ms, tokens_milli = reply
        if tokens:
            local.tokens, local.tokens_until = granted, now + TOKEN_HOLD_SECONDS
        local.slots = held
        local.renew_at = now + self._hold_ms / 2000
        QUOTA_TOKENS.labels(tenant).set(tokens_milli / 1000)
        if granted < tokens:  # the bucket ran low: wait for a whole batch before asking again
            local.empty_until = now + wait_ms / 1000
            if not granted:
                raise _reject(tenant, quotas, "requests_per_second", wait_ms)

    async def release(self, lease: Lease) -> None:
        local = self._local[lease.tenant]
        local.inflight -= 1
        # Hand back what another worker may need; small limits (no slack) hand back at once.
        slack = slot_slack(local.quotas)
        if local.slots <= local.inflight + 2 * slack:
            return
        with contextlib.suppress(StoreUnavailableError):  # the reservation expires anyway
            async with local.lock:
                if local.slots > local.inflight + 2 * slack:
                    await self._reserve(lease.tenant, local, 0, local.inflight + slack)


class InMemoryQuotaStore:
    """The same decisions for one process, with an injectable clock (unit tests)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._inflight: dict[str, set[str]] = {}

    async def admit(self, tenant: str, quotas: Quotas) -> Lease:
        inflight = self._inflight.setdefault(tenant, set())
        if len(inflight) >= quotas.max_concurrent_requests:
            raise _reject(tenant, quotas, "max_concurrent_requests", 100)
        now = self._clock()
        tokens, last = self._buckets.get(tenant, (float(quotas.burst), now))
        tokens = min(quotas.burst, tokens + (now - last) * quotas.requests_per_second)
        if tokens < 1:
            self._buckets[tenant] = (tokens, now)
            raise _reject(
                tenant,
                quotas,
                "requests_per_second",
                math.ceil((1 - tokens) * 1000 / quotas.requests_per_second),
            )
        self._buckets[tenant] = (tokens - 1, now)
        lease = Lease(tenant, secrets.token_hex(8))
        inflight.add(lease.id)
        return lease

    async def release(self, lease: Lease) -> None:
        self._inflight.get(lease.tenant, set()).discard(lease.id)


class UnlimitedQuotaStore:
    """Admits everything (FEATUREPLANE_QUOTAS_ENABLED=false: benchmarks, single-tenant setups)."""

    async def admit(self, tenant: str, quotas: Quotas) -> Lease:
        return Lease(tenant, "")

    async def release(self, lease: Lease) -> None:
        return None


def too_large(tenant: str, quota: str, limit: int, message: str) -> PayloadTooLargeError:
    """A 413 for a size quota, counted like every other rejection."""
    QUOTA_REJECTIONS.labels(tenant, quota).inc()
    return PayloadTooLargeError(quota, limit, message)
