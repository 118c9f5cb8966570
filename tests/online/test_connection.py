"""The worker's shared Redis connection, against real redis-server processes."""

from __future__ import annotations

import asyncio
import random

import pytest

from featureplane.embedded.redis import EmbeddedRedis, free_port
from featureplane.errors import StoreUnavailableError
from featureplane.online.connection import BACKOFF_MAX, ReplyError, SharedConnection


def test_concurrent_callers_get_their_own_replies(redis_server: EmbeddedRedis) -> None:
    """Many coroutines share one connection; each gets exactly the replies to its commands."""

    async def run() -> None:
        connection = SharedConnection.from_url(redis_server.url)
        await connection.execute([[b"DEL", b"conn:test"]])

        async def caller(i: int) -> None:
            await asyncio.sleep(random.random() / 100)
            value = b"%d" % i
            replies = await connection.execute(
                [[b"HSET", b"conn:test", value, value], [b"HMGET", b"conn:test", value, b"nope"]]
            )
            assert replies == [1, [value, None]]

        await asyncio.gather(*(caller(i) for i in range(500)))
        (length,) = await connection.execute([[b"HLEN", b"conn:test"]])
        assert length == 500
        [error, ok] = await connection.execute([[b"NOSUCHCOMMAND"], [b"PING"]])
        assert isinstance(error, ReplyError)  # an error reply is a value, the next one is fine
        assert ok == b"PONG"
        await connection.aclose()

    asyncio.run(run())


def test_reconnects_after_a_restart_and_fails_cleanly_while_down() -> None:
    with EmbeddedRedis() as server:
        url = server.url
        port = server.port

        async def first() -> SharedConnection:
            connection = SharedConnection.from_url(url, timeout=0.5)
            assert await connection.execute([[b"PING"]]) == [b"PONG"]
            return connection

        loop = asyncio.new_event_loop()
        connection = loop.run_until_complete(first())
    # The server is gone: calls fail with a 503-kind error, promptly.
    with pytest.raises(StoreUnavailableError):
        loop.run_until_complete(connection.execute([[b"PING"]]))
    with EmbeddedRedis(port=port):  # back on the same address: the next call reconnects
        assert loop.run_until_complete(connection.execute([[b"PING"]])) == [b"PONG"]
        loop.run_until_complete(connection.aclose())
    loop.close()


def test_an_unanswered_call_times_out() -> None:
    """A stuck Redis (here: DEBUG SLEEP) fails the waiting call after the timeout and the
    connection is replaced."""

    async def run(url: str) -> None:
        connection = SharedConnection.from_url(url, timeout=0.2)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(StoreUnavailableError, match="no reply within"):
            await connection.execute([[b"DEBUG", b"SLEEP", b"1"]])
        assert loop.time() - started < 0.6
        await asyncio.sleep(1)
        assert await connection.execute([[b"PING"]]) == [b"PONG"]
        await connection.aclose()

    with EmbeddedRedis(extra_args=("--enable-debug-command", "yes")) as server:
        asyncio.run(run(server.url))


def test_url_parts_reach_the_server(redis_server: EmbeddedRedis) -> None:
    async def run() -> None:
        connection = SharedConnection.from_url(redis_server.url.rsplit("/", 1)[0] + "/3")
        await connection.execute([[b"SET", b"conn:db", b"3"]])
        (db3,) = await connection.execute([[b"EXISTS", b"conn:db"]])
        assert db3 == 1
        zero = SharedConnection.from_url(redis_server.url.rsplit("/", 1)[0] + "/0")
        assert await zero.execute([[b"EXISTS", b"conn:db"]]) == [0]  # SELECT 3 took effect
        wrong = SharedConnection.from_url(redis_server.url.replace("redis://", "redis://:nopass@"))
        with pytest.raises(StoreUnavailableError, match="refused"):
            await wrong.execute([[b"PING"]])
        for conn in (connection, zero, wrong):
            await conn.aclose()

    asyncio.run(run())


def test_a_dead_store_opens_the_circuit_then_it_closes_on_return() -> None:
    """While Redis is down, calls after a failed connect fail at once (no dial, no pile-up) for
    a growing, jittered backoff; when it is back the first call after the backoff reconnects."""

    async def run(port: int) -> None:
        connection = SharedConnection.from_url(f"redis://127.0.0.1:{port}/0", timeout=0.5)
        with pytest.raises(StoreUnavailableError, match="cannot connect"):
            await connection.execute([[b"PING"]])
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(StoreUnavailableError, match="failed connects"):
            await connection.execute([[b"PING"]])  # refused by the breaker, not by the socket
        assert loop.time() - started < 0.01
        for _ in range(2):  # more failures, each after a backoff of at most BACKOFF_MAX
            await asyncio.sleep(BACKOFF_MAX)
            with pytest.raises(StoreUnavailableError, match="cannot connect"):
                await connection.execute([[b"PING"]])
        with EmbeddedRedis(port=port):
            deadline = loop.time() + BACKOFF_MAX + 1
            while True:
                try:
                    assert await connection.execute([[b"PING"]]) == [b"PONG"]
                    break
                except StoreUnavailableError:
                    assert loop.time() < deadline, "did not recover after the backoff"
                    await asyncio.sleep(0.05)
            await connection.aclose()

    asyncio.run(run(free_port()))
