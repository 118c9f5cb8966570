"""redis-py clients for the control plane (CLI, materialization, registry server, ops routes).

:meth:`featureplane.settings.Settings.redis_client` is the one way to get one: a
``redis.Redis`` for a standalone store, a :class:`ClusterClient` for a Redis Cluster
(``FEATUREPLANE_REDIS_TYPE=redis_cluster``), whose ``FEATUREPLANE_REDIS_URL`` lists seed nodes:
``redis://[user:password@]host:port[,host:port…]`` (``rediss://`` for TLS; any one live node is
enough, the others are fallbacks; no database number, a cluster has only database 0).

A cluster client is typed as ``redis.Redis``: it offers the same commands, routed by key slot.
What differs is multi-key work: ``MULTI`` cannot span slots and redis-py's cluster pipeline has
no ``EVAL``, so a *transactional* pipeline on a cluster runs its commands one by one (not
atomically). The control plane's transactions (a credential and its tenant index, a drift
reference and its scores, a view's run record) tolerate that: each command is idempotent or a
counter, and readers already skip what a half-done write leaves (a listed token without a
credential is dropped by ``tenants tokens``). The gateway's request path does not use these
clients (see :mod:`featureplane.online.cluster`).
"""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import unquote, urlsplit

import redis
import redis.asyncio as aioredis
import redis.asyncio.cluster as aiocluster
from redis.cluster import ClusterNode, RedisCluster

from featureplane.errors import ConfigError


class ClusterUrl:
    """A cluster ``FEATUREPLANE_REDIS_URL``: seed nodes plus the credentials and TLS of all."""

    def __init__(self, url: str) -> None:
        first, *others = [part.strip() for part in url.split(",") if part.strip()]
        parts = urlsplit(first)
        if parts.scheme not in ("redis", "rediss"):
            raise ConfigError(f"expected a redis:// or rediss:// URL, got {parts.scheme}://…")
        if parts.path.strip("/") not in ("", "0"):
            raise ConfigError("a Redis Cluster has only database 0: drop the /N from the URL")
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password is not None else None
        self.tls = parts.scheme == "rediss"
        self.nodes = [(parts.hostname or "127.0.0.1", parts.port or 6379)]
        for other in others:  # "host:port", or a whole URL (its credentials are the first's)
            address = urlsplit(other if "://" in other else f"redis://{other}")
            self.nodes.append((address.hostname or "127.0.0.1", address.port or 6379))

    def kwargs(self) -> dict[str, Any]:
        return {"username": self.username, "password": self.password, "ssl": self.tls}


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


def sync_client(url: str, cluster: bool, **kwargs: Any) -> redis.Redis:
    if not cluster:
        return redis.Redis.from_url(url, **kwargs)
    parsed = ClusterUrl(url)
    client = ClusterClient(
        startup_nodes=[ClusterNode(host, port) for host, port in parsed.nodes],
        **parsed.kwargs(),
        **kwargs,
    )
    return cast(redis.Redis, client)  # the same command API (module docstring)


def async_client(url: str, cluster: bool, **kwargs: Any) -> aioredis.Redis:
    if not cluster:
        return aioredis.Redis.from_url(url, **kwargs)
    parsed = ClusterUrl(url)
    client = aiocluster.RedisCluster(
        startup_nodes=[aiocluster.ClusterNode(host, port) for host, port in parsed.nodes],
        **parsed.kwargs(),
        **kwargs,
    )
    return cast(aioredis.Redis, client)
