"""Per-tenant rate and concurrency quotas, shared by every worker and replica.

:class:`QuotaStore` is the extension point: ``admit`` one request (or raise
:class:`QuotaExceededError`), ``release`` it when done. :class:`RedisQuotaStore` keeps the state
in Redis and decides atomically in one Lua script per request — a token bucket
(``requests_per_second`` refill, ``burst`` capacity, clocked by the Redis server so every
process agrees) and a lease set for in-flight requests (a crashed worker's leases expire after
``lease_seconds``). Its keys (``featureplane:quota:{tenant}:…``) live apart from feature data,
share one hash slot per tenant (Redis Cluster) and expire when idle, so state never grows
without bound. :class:`InMemoryQuotaStore` is the single-process double for unit tests.
"""

from __future__ import annotations

import contextlib
import math
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from featureplane.errors import PayloadTooLargeError, QuotaExceededError, StoreUnavailableError
from featureplane.observability.metrics import QUOTA_INFLIGHT, QUOTA_REJECTIONS, QUOTA_TOKENS
from featureplane.observability.tracing import span
from featureplane.tenancy.spec import Quotas

KEY_PREFIX = "featureplane:quota:"


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


# KEYS: bucket hash, in-flight sorted set. ARGV: rate/s, burst, max in flight, lease ms, lease id.
# Returns {admitted (1/0), refusing quota, retry-after ms, tokens left x 1000}.
_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local max_inflight, lease_ms = tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[2]) >= max_inflight then
  return {0, 'max_concurrent_requests', 100, -1}
end
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens, ts = tonumber(b[1]), tonumber(b[2])
if tokens == nil or ts == nil then tokens, ts = burst, now end
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate / 1000)
local idle_ms = math.ceil(burst * 1000 / rate) + 1000
if tokens < 1 then
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now)
  redis.call('PEXPIRE', KEYS[1], idle_ms)
  local wait_ms = math.ceil((1 - tokens) * 1000 / rate)
  return {0, 'requests_per_second', wait_ms, math.floor(tokens * 1000)}
end
tokens = tokens - 1
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now)
redis.call('PEXPIRE', KEYS[1], idle_ms)
redis.call('ZADD', KEYS[2], now + lease_ms, ARGV[5])
redis.call('PEXPIRE', KEYS[2], lease_ms + 1000)
return {1, '', 0, math.floor(tokens * 1000)}
"""


class RedisQuotaStore:
    def __init__(self, client: aioredis.Redis, lease_seconds: float = 30.0) -> None:
        self._redis = client
        self._lease_ms = int(lease_seconds * 1000)
        self._script = client.register_script(_ADMIT)
        # Local fast path for floods: once the shared bucket said "empty until t", this worker
        # refuses the tenant until t without asking Redis. It never admits on its own, so the
        # global rate still holds; it only spares Redis and the CPU the cost of each refusal.
        self._empty_until: dict[str, float] = {}

    @staticmethod
    def keys(tenant: str) -> tuple[str, str]:
        # {tenant} is a hash tag: both keys of a tenant land in one Redis Cluster slot.
        return f"{KEY_PREFIX}{{{tenant}}}:rate", f"{KEY_PREFIX}{{{tenant}}}:inflight"

    async def admit(self, tenant: str, quotas: Quotas) -> Lease:
        empty_until = self._empty_until.get(tenant)
        if empty_until is not None:
            wait = empty_until - time.monotonic()
            if wait > 0:
                raise _reject(tenant, quotas, "requests_per_second", math.ceil(wait * 1000))
            del self._empty_until[tenant]
        lease = Lease(tenant, secrets.token_hex(8))
        args = [
            quotas.requests_per_second,
            quotas.burst,
            quotas.max_concurrent_requests,
            self._lease_ms,
            lease.id,
        ]
        try:
            admitted, quota, retry_ms, tokens_milli = await self._script(
                keys=self.keys(tenant), args=args
            )
        except (RedisError, OSError) as exc:
            raise StoreUnavailableError(f"quota store unavailable: {type(exc).__name__}") from exc
        if tokens_milli >= 0:
            QUOTA_TOKENS.labels(tenant).set(tokens_milli / 1000)
        if not admitted:
            refused = quota.decode() if isinstance(quota, bytes) else quota
            if refused == "requests_per_second":
                self._empty_until[tenant] = time.monotonic() + retry_ms / 1000
            raise _reject(tenant, quotas, refused, retry_ms)
        return lease

    async def release(self, lease: Lease) -> None:
        with contextlib.suppress(RedisError, OSError):  # the lease expires by itself anyway
            await self._redis.zrem(self.keys(lease.tenant)[1], lease.id)


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


@contextlib.asynccontextmanager
async def admitted(store: QuotaStore, tenant: str, quotas: Quotas) -> AsyncIterator[Lease]:
    """Hold a request's quota for the duration of the block; counts it as in flight."""
    with span("quota"):
        lease = await store.admit(tenant, quotas)
    gauge = QUOTA_INFLIGHT.labels(tenant)
    gauge.inc()
    try:
        yield lease
    finally:
        gauge.dec()
        await store.release(lease)
