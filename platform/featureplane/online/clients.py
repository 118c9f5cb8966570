"""The one factory of online-store clients: every Redis client featureplane opens comes from here.

- :func:`redis_client` / :func:`async_redis_client`: redis-py clients for the control plane
  (CLI, materialization, registry server, the gateway's ops routes): a ``redis.Redis`` for a
  standalone store, a :class:`ClusterClient` for a Redis Cluster
  (``FEATUREPLANE_REDIS_TYPE=redis_cluster``; URL forms in :mod:`featureplane.online.urls`).
- :func:`shared_connection`: the gateway's request-path connection, multiplexed and parsed by
  hiredis (:class:`~featureplane.online.connection.SharedConnection`, or
  :class:`~featureplane.online.cluster.ClusterConnection` on a cluster).

A cluster client is typed as ``redis.Redis``: it offers the same commands, routed by key slot.
What differs is multi-key work: ``MULTI`` cannot span slots and redis-py's cluster pipeline has
no ``EVAL``, so a *transactional* pipeline on a cluster runs its commands one by one (not
atomically). The control plane's transactions (a credential and its tenant index, a drift
reference and its scores, a view's run record) tolerate that: each command is idempotent or a
counter, and readers already skip what a half-done write leaves (a listed token without a
credential is dropped by ``tenants tokens``).
"""

from __future__ import annotations

from typing import Any, cast

import redis
import redis.asyncio as aioredis
import redis.asyncio.cluster as aiocluster
from redis.cluster import ClusterNode, RedisCluster

from featureplane.online.cluster import ClusterConnection
from featureplane.online.connection import SharedConnection
from featureplane.online.urls import RedisUrl
from featureplane.settings import Settings


class _OneByOne:
    """A transactional pipeline on a cluster: queued calls run in order at ``execute``."""

    def __init__(self, client: RedisCluster) -> None:
        self._client = client
        self._queued: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        def queue(*args: Any, **kwargs: Any) -> _OneByOne:
            self._queued.append((name, args, kwargs))
            return self

        return queue

    def execute(self) -> list[Any]:
        queued, self._queued = self._queued, []
        return [getattr(self._client, name)(*args, **kwargs) for name, args, kwargs in queued]

    def __enter__(self) -> _OneByOne:
        return self

    def __exit__(self, *exc: object) -> None:
        self._queued = []


class ClusterClient(RedisCluster):  # type: ignore[misc]  # untyped for mypy here
    """redis-py's cluster client; transactional pipelines run one by one (module docstring)."""

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> Any:
        if transaction:
            return _OneByOne(self)
        return super().pipeline(transaction=transaction, shard_hint=shard_hint)


def _url(settings: Settings) -> RedisUrl:
    return RedisUrl.parse(settings.require_redis_url(), cluster=_cluster(settings))


def _cluster(settings: Settings) -> bool:
    return settings.redis_type == "redis_cluster"


def redis_client(settings: Settings, **kwargs: Any) -> redis.Redis:
    """The control plane's client of the online store; ``kwargs`` go to redis-py
    (``socket_timeout``, …). The caller owns it: close it (or use it as a context manager)."""
    parsed = _url(settings)  # a malformed URL is the same ConfigError for every client
    if not parsed.cluster:
        # from_url, not Redis(host=…): its pool-made connections fail at once when the store
        # is down, where the constructor's default Retry backs off for about 11 s.
        return redis.Redis.from_url(settings.require_redis_url(), **kwargs)
    client = ClusterClient(
        startup_nodes=[ClusterNode(host, port) for host, port in parsed.nodes],
        **parsed.auth_kwargs(),
        **kwargs,
    )
    return cast(redis.Redis, client)  # the same command API (module docstring)


def async_redis_client(settings: Settings, **kwargs: Any) -> aioredis.Redis:
    """:func:`redis_client` for asyncio (the gateway's ops routes)."""
    parsed = _url(settings)
    if not parsed.cluster:
        return aioredis.Redis.from_url(settings.require_redis_url(), **kwargs)  # as above
    client = aiocluster.RedisCluster(
        startup_nodes=[aiocluster.ClusterNode(host, port) for host, port in parsed.nodes],
        **parsed.auth_kwargs(),
        **kwargs,
    )
    return cast(aioredis.Redis, client)


def shared_connection(settings: Settings) -> SharedConnection | ClusterConnection:
    """The gateway worker's request-path connection (it connects lazily, on first use)."""
    parsed, timeout = _url(settings), settings.redis_timeout_seconds
    if parsed.cluster:
        return ClusterConnection(parsed, timeout)
    return SharedConnection.to(parsed, timeout)


def feast_connection_string(settings: Settings) -> str:
    """FEATUREPLANE_REDIS_URL in the form Feast's Redis online store reads."""
    return _url(settings).feast_connection()
