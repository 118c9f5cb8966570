"""Reading hash fields from the online store: the gateway's one I/O seam.

:class:`OnlineReader` is the extension point (one method that matters, ``read``).
:class:`RedisOnlineReader` is the real one: one pipelined round trip of HMGETs per request, on the
worker's :class:`SharedConnection`. :class:`ClusterOnlineReader` is its Redis Cluster twin, on a
:class:`ClusterConnection` (the HMGETs split by owning primary and sent to all of them at once;
it retries after redirections and failovers itself).
:class:`InMemoryOnlineReader` is the double for unit tests of the layers above.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from featureplane.errors import StoreUnavailableError
from featureplane.online.cluster import ClusterConnection
from featureplane.online.connection import ReplyError, SharedConnection
from featureplane.online.resp import pack_hmgets

HashRead = tuple[bytes, Sequence[bytes]]  # (key, fields): one HMGET


class OnlineReader(Protocol):
    async def read(self, commands: Sequence[HashRead]) -> list[list[bytes | None]]:
        """For each ``(key, fields)``, the stored values of ``fields`` (None where absent)."""
        ...

    async def ping(self) -> bool:
        """Whether the store answers now."""
        ...

    async def aclose(self) -> None: ...


class RedisOnlineReader:
    def __init__(self, connection: SharedConnection) -> None:
        self._connection = connection

    async def read(self, commands: Sequence[HashRead]) -> list[list[bytes | None]]:
        payload = pack_hmgets(commands)
        try:
            replies = await self._connection.execute_packed(payload, len(commands))
        except StoreUnavailableError:
            # Reads are idempotent: one retry after a short jittered pause rides out a dropped
            # connection (a Redis restart, a failover); a dead store fails fast on the breaker.
            await asyncio.sleep(random.uniform(0.005, 0.02))
            replies = await self._connection.execute_packed(payload, len(commands))
        return _checked(replies)

    async def ping(self) -> bool:
        try:
            (reply,) = await self._connection.execute([[b"PING"]])
        except StoreUnavailableError:
            return False
        return bool(reply == b"PONG")

    async def aclose(self) -> None:
        await self._connection.aclose()


class ClusterOnlineReader:
    """:class:`RedisOnlineReader` on a Redis Cluster (a separate class: the standalone read path
    stays free of cluster checks)."""

    def __init__(self, connection: ClusterConnection) -> None:
        self._connection = connection

    async def read(self, commands: Sequence[HashRead]) -> list[list[bytes | None]]:
        return _checked(await self._connection.read_hashes(commands))

    async def ping(self) -> bool:
        return await self._connection.ping()

    async def aclose(self) -> None:
        await self._connection.aclose()


def _checked(replies: list[Any]) -> list[list[bytes | None]]:
    for reply in replies:
        if isinstance(reply, ReplyError):
            raise StoreUnavailableError(f"online store refused a read: {reply}")
    return replies


class InMemoryOnlineReader:
    """A dict of hashes standing in for Redis in unit tests."""

    def __init__(self, data: Mapping[bytes, Mapping[bytes, bytes]] | None = None) -> None:
        self.data: dict[bytes, dict[bytes, bytes]] = {k: dict(v) for k, v in (data or {}).items()}
        self.available = True

    async def read(self, commands: Sequence[HashRead]) -> list[list[bytes | None]]:
        if not self.available:
            raise StoreUnavailableError("online store unavailable: InMemoryOnlineReader is down")
        return [[self.data.get(key, {}).get(f) for f in fields] for key, fields in commands]

    async def ping(self) -> bool:
        return self.available

    async def aclose(self) -> None:
        return None
