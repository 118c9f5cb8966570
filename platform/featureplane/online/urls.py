"""``FEATUREPLANE_REDIS_URL``, parsed once for every client of the online store.

A standalone store is ``redis://[[user]:password@]host[:port][/db]`` (``rediss://`` for TLS). A
Redis Cluster (``FEATUREPLANE_REDIS_TYPE=redis_cluster``) lists seed nodes,
``redis://[user:password@]host:port[,host:port…]``: any one live node is enough, the others are
fallbacks; the first node's credentials and TLS apply to all; no database number (a cluster has
only database 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from featureplane.errors import ConfigError

Address = tuple[str, int]


@dataclass(frozen=True)
class RedisUrl:
    """The nodes, database, credentials and TLS of a ``FEATUREPLANE_REDIS_URL``."""

    nodes: tuple[Address, ...]  # one for a standalone store; the seeds of a cluster
    db: int | None  # as written in the URL (None: not given, database 0)
    username: str | None
    password: str | None
    tls: bool
    cluster: bool

    @classmethod
    def parse(cls, url: str, *, cluster: bool = False) -> RedisUrl:
        first, *others = [part.strip() for part in url.split(",") if part.strip()] or [""]
        parts = urlsplit(first)
        if parts.scheme not in ("redis", "rediss"):
            raise ConfigError(f"expected a redis:// or rediss:// URL, got {parts.scheme}://…")
        nodes = [(parts.hostname or "127.0.0.1", parts.port or 6379)]
        path = parts.path.strip("/")
        if cluster:
            if path not in ("", "0"):
                raise ConfigError("a Redis Cluster has only database 0: drop the /N from the URL")
            for other in others:  # "host:port", or a whole URL (its credentials are the first's)
                address = urlsplit(other if "://" in other else f"redis://{other}")
                nodes.append((address.hostname or "127.0.0.1", address.port or 6379))
        elif path and not path.isdigit():
            raise ConfigError(f"the Redis URL's database must be a number, got {path!r}")
        return cls(
            nodes=tuple(nodes),
            db=int(path) if path and not cluster else None,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
            tls=parts.scheme == "rediss",
            cluster=cluster,
        )

    def auth_kwargs(self) -> dict[str, Any]:
        """redis-py's keyword arguments for the credentials and TLS."""
        return {"username": self.username, "password": self.password, "ssl": self.tls}

    def feast_connection(self) -> str:
        """Feast's ``connection_string``: ``host:port[,host:port…],db=N,username=…,password=…,
        ssl=true`` (each option only when set; ``default`` is Redis' implicit user)."""
        parts = [f"{host}:{port}" for host, port in self.nodes]
        if self.db is not None:
            parts.append(f"db={self.db}")
        if self.username and self.username != "default":
            parts.append(f"username={self.username}")
        if self.password:
            parts.append(f"password={self.password}")
        if self.tls:
            parts.append("ssl=true")
        return ",".join(parts)
