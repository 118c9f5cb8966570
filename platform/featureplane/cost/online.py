"""Online bytes: an estimate of what each tenant's keys take in Redis.

One SCAN of the keyspace (at most ``scan_limit`` keys; beyond that, counts are scaled by DBSIZE;
on a Redis Cluster the SCAN and DBSIZE cover every primary) attributes each feature key to the
tenant whose Feast project name ends it (longest project name first; ``featureplane:*`` control
keys are skipped), then ``MEMORY USAGE key SAMPLES 0`` on up to ``sample_size`` keys per tenant;
the sampled mean times the tenant's key count is the estimate. Keys of a tenant are alike (one
hash per entity), so it is close, but it is an estimate, not an accounting. The gateway
recomputes it at most every :data:`REFRESH_SECONDS`, in a thread (:class:`OnlineBytesCache`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import redis

from featureplane.tenancy.spec import TenantSpec

CONTROL_PREFIX = b"featureplane:"
REFRESH_SECONDS = 60.0


@dataclass(frozen=True)
class OnlineBytes:
    keys: int
    sampled: int
    bytes: float


def sample_online_bytes(
    client: redis.Redis,
    tenants: Sequence[TenantSpec],
    sample_size: int = 200,
    scan_limit: int = 1_000_000,
) -> dict[str, OnlineBytes]:
    """Estimated bytes of each tenant's online keys (see the module docstring)."""
    suffixes = sorted(
        ((spec.feast_project.encode(), spec.name) for spec in tenants),
        key=lambda pair: -len(pair[0]),
    )
    counts = {spec.name: 0 for spec in tenants}
    samples: dict[str, list[bytes]] = {spec.name: [] for spec in tenants}
    scanned = 0
    for key in client.scan_iter(count=1000):
        scanned += 1
        if not key.startswith(CONTROL_PREFIX):
            for suffix, tenant in suffixes:
                if key.endswith(suffix):
                    counts[tenant] += 1
                    if len(samples[tenant]) < sample_size:
                        samples[tenant].append(key)
                    break
        if scanned >= scan_limit:
            break
    scale = 1.0
    if scanned >= scan_limit:
        scale = max(1.0, float(_dbsize(client)) / scanned)
    pipe = client.pipeline(transaction=False)
    for tenant in counts:
        for key in samples[tenant]:
            pipe.execute_command("MEMORY USAGE", key, "SAMPLES", 0)
    sizes = iter(pipe.execute())
    found: dict[str, OnlineBytes] = {}
    for tenant, count in counts.items():
        measured = [float(next(sizes) or 0) for _ in samples[tenant]]
        mean = sum(measured) / len(measured) if measured else 0.0
        found[tenant] = OnlineBytes(round(count * scale), len(measured), mean * count * scale)
    return found


def _dbsize(client: redis.Redis) -> int:
    """Keys in the store: a cluster client answers for one node, so sum its primaries."""
    if isinstance(client, redis.Redis):
        return int(client.dbsize())
    sizes = client.dbsize(target_nodes="primaries")
    return sum(sizes.values()) if isinstance(sizes, dict) else int(sizes)


class OnlineBytesCache:
    """The gateway's cached estimate: recomputed in a thread at most every ``max_age``.

    It owns its Redis client: ``connect`` makes it at the first sampling, in that thread (a
    cluster client connects as it is made, and a gateway starts without a reachable store), and
    :meth:`aclose` closes it."""

    def __init__(
        self, connect: Callable[[], redis.Redis], max_age: float = REFRESH_SECONDS
    ) -> None:
        self._connect = connect
        self._client: redis.Redis | None = None
        self._max_age = max_age
        self._value: dict[str, OnlineBytes] | None = None
        self._at = 0.0
        self._task: asyncio.Task[dict[str, OnlineBytes]] | None = None

    async def get(self, tenants: Sequence[TenantSpec]) -> dict[str, OnlineBytes] | None:
        """The latest estimate; the first call waits for one, later ones never do."""
        if self._task is None and time.monotonic() - self._at >= self._max_age:
            self._task = asyncio.create_task(asyncio.to_thread(self._sample, list(tenants)))
            self._task.add_done_callback(self._done)
        if self._value is None and self._task is not None:
            await asyncio.wait([self._task])
        return self._value

    async def aclose(self) -> None:
        """Close the client, once a sampling in flight (whose thread uses it) has ended."""
        if self._task is not None:
            await asyncio.wait([self._task])
        if self._client is not None:
            self._client.close()
            self._client = None

    def _sample(self, tenants: list[TenantSpec]) -> dict[str, OnlineBytes]:
        if self._client is None:
            self._client = self._connect()
        return sample_online_bytes(self._client, tenants)

    def _done(self, task: asyncio.Task[dict[str, OnlineBytes]]) -> None:
        self._task = None
        self._at = time.monotonic()
        if not task.cancelled() and task.exception() is None:
            self._value = task.result()
