"""Reading hash fields from the online store: the gateway's one I/O seam.

:class:`OnlineReader` is the extension point (one method that matters, ``read``).
:class:`RedisOnlineReader` is the real one: one pipelined round trip of HMGETs per request.
:class:`InMemoryOnlineReader` is the double for unit tests of the layers above.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from featureplane.errors import StoreUnavailableError

HashRead = tuple[bytes, Sequence[bytes]]  # (key, fields)


class OnlineReader(Protocol):
    async def read(self, commands: Sequence[HashRead]) -> list[list[bytes | None]]:
        """For each ``(key, fields)``, the stored values of ``fields`` (None where absent)."""
        ...

    async def ping(self) -> bool:
        """Whether the store answers now."""
        ...

    async def aclose(self) -> None: ...


class RedisOnlineReader:
    def __init__(self, client: aioredis.Redis) -> None:
        self._redis = client

    @classmethod
    def from_url(cls, url: str, timeout: float) -> RedisOnlineReader:
        return cls(
            aioredis.Redis.from_url(
                url, socket_timeout=timeout, socket_connect_timeout=timeout, max_connections=256
            )
        )

    @property
    def client(self) -> aioredis.Redis:
        return self._redis

    async def read(self, commands: Sequence[HashRead]) -> list[list[bytes | None]]:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key, fields in commands:
                    pipe.hmget(key, fields)
                result: list[list[bytes | None]] = await pipe.execute()
                return result
        except (RedisError, OSError) as exc:
            raise StoreUnavailableError(f"online store unavailable: {type(exc).__name__}") from exc

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except (RedisError, OSError):
            return False

    async def aclose(self) -> None:
        await self._redis.aclose()


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
