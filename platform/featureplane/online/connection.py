"""One Redis connection shared by every request of a worker (standalone Redis).

Redis answers the commands of a connection in order, so concurrent requests need neither a pool
nor a round trip each: :class:`SharedConnection` writes each caller's commands as they come,
queues the caller, and hands replies back in arrival order (hiredis parses them). Commands of
requests that arrive together leave in one TCP segment; on the request path this costs one write
and one future per call, against redis-py's pool checkout, retry wrapper and timeout context.

Failures are the caller's :class:`StoreUnavailableError`: a refused or lost connection fails
every queued call and the next call reconnects; a call unanswered for ``timeout`` seconds drops
the connection (a stuck Redis must not hold requests for ever). After a failed connect the
connection is a circuit breaker: calls fail at once, without dialling, for a backoff that doubles
with each consecutive failure (from 50 ms to 2 s, with jitter so workers and replicas do not
reconnect in lockstep); the first call after it tries again, and a success closes the circuit.
Error replies (``-ERR …``) come back as :class:`hiredis.ReplyError` values for the caller.
A failure before the caller's commands were written (no connection, the circuit open) is a
:class:`NotSentError`, so callers may retry even non-idempotent commands after it.

:class:`Connection` is what the request path needs of a connection; :class:`SharedConnection`
is the standalone one, :class:`featureplane.online.cluster.ClusterConnection` the Redis
Cluster one.
"""

from __future__ import annotations

import asyncio
import collections
import random
import ssl
from collections.abc import Sequence
from typing import Any, Protocol, cast

import hiredis

from featureplane.errors import StoreUnavailableError
from featureplane.online.resp import Command, pack_all
from featureplane.online.urls import RedisUrl

ReplyError = hiredis.ReplyError
BACKOFF_BASE, BACKOFF_MAX = 0.05, 2.0  # seconds the circuit stays open after failed connects


class NotSentError(StoreUnavailableError):
    """The store is unavailable and the call's commands never left (safe to retry anywhere)."""


class Connection(Protocol):
    async def execute(self, commands: Sequence[Command]) -> list[Any]:
        """Every command's reply, in order (error replies as :data:`ReplyError` values)."""
        ...

    async def aclose(self) -> None: ...


class _Call:
    __slots__ = ("deadline", "future", "left", "replies")

    def __init__(self, future: asyncio.Future[list[Any]], count: int, deadline: float) -> None:
        self.future = future
        self.left = count
        self.replies: list[Any] = []
        self.deadline = deadline


class _Protocol(asyncio.Protocol):
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.transport: asyncio.Transport | None = None
        self.calls: collections.deque[_Call] = collections.deque()
        self.reader = hiredis.Reader()
        self.closed = False
        self._watchdog: asyncio.TimerHandle | None = None
        self._outbox: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def send(self, payload: bytes, count: int) -> asyncio.Future[list[Any]]:
        loop = asyncio.get_running_loop()
        call = _Call(loop.create_future(), count, loop.time() + self.timeout)
        self.calls.append(call)
        # Calls made in the same event-loop turn (requests that arrived together) leave in one
        # write at the end of it: one syscall instead of one each.
        if not self._outbox:
            loop.call_soon(self._flush)
        self._outbox.append(payload)
        if self._watchdog is None:
            self._watchdog = loop.call_at(call.deadline, self._check_deadlines)
        return call.future

    def _flush(self) -> None:
        outbox, self._outbox = self._outbox, []
        if self.transport is not None and not self.closed:
            self.transport.write(outbox[0] if len(outbox) == 1 else b"".join(outbox))

    def data_received(self, data: bytes) -> None:
        reader, calls = self.reader, self.calls
        reader.feed(data)
        while (reply := reader.gets()) is not False:
            call = calls[0]
            call.replies.append(reply)
            call.left -= 1
            if not call.left:
                calls.popleft()
                if not call.future.done():  # the caller may have given up (cancelled)
                    call.future.set_result(call.replies)

    def _check_deadlines(self) -> None:
        self._watchdog = None
        if not self.calls:
            return
        loop = asyncio.get_running_loop()
        oldest = self.calls[0].deadline
        if oldest <= loop.time():
            self.abort(f"no reply within {self.timeout:g} s")
        else:
            self._watchdog = loop.call_at(oldest, self._check_deadlines)

    def abort(self, reason: str) -> None:
        if self.transport is not None:
            self.transport.abort()
        self._fail(reason)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(f"connection lost: {exc or 'closed by the server'}")

    def _fail(self, reason: str) -> None:
        self.closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        while self.calls:
            call = self.calls.popleft()
            if not call.future.done():
                call.future.set_exception(StoreUnavailableError(f"online store: {reason}"))


class SharedConnection:
    """A lazily (re)connected, multiplexed connection to one standalone Redis."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 6379,
        *,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        tls: bool = False,
        timeout: float = 1.0,
    ) -> None:
        self._address = (host, port)
        self._setup: list[Command] = []
        if password is not None:
            auth = [b"AUTH"] + ([username.encode()] if username else []) + [password.encode()]
            self._setup.append(auth)
        if db:
            self._setup.append([b"SELECT", str(db).encode()])
        self._tls = ssl.create_default_context() if tls else None
        self._timeout = timeout
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Lock | None = None
        self._failures = 0  # consecutive failed connects
        self._open_until = 0.0  # the circuit is open (calls fail at once) until then

    @classmethod
    def from_url(cls, url: str, timeout: float = 1.0) -> SharedConnection:
        """``redis://[[user]:password@]host[:port][/db]``, or ``rediss://`` for TLS."""
        return cls.to(RedisUrl.parse(url), timeout)

    @classmethod
    def to(cls, url: RedisUrl, timeout: float = 1.0) -> SharedConnection:
        """A connection to the (standalone) store ``url`` names."""
        host, port = url.nodes[0]
        return cls(
            host,
            port,
            db=url.db or 0,
            username=url.username,
            password=url.password,
            tls=url.tls,
            timeout=timeout,
        )

    async def execute(self, commands: Sequence[Command]) -> list[Any]:
        """Every command's reply, in order; the commands leave in one write."""
        return await self.execute_packed(pack_all(commands), len(commands))

    async def execute_packed(self, payload: bytes, count: int) -> list[Any]:
        """``execute`` for ``count`` commands the caller packed itself (see reader.py)."""
        protocol = self._protocol
        if protocol is None or protocol.closed:
            protocol = await self._connect()
        return await protocol.send(payload, count)

    async def _connect(self) -> _Protocol:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:  # one connect at a time; the others reuse it
            if self._protocol is not None and not self._protocol.closed:
                return self._protocol
            loop = asyncio.get_running_loop()
            wait = self._open_until - loop.time()
            if wait > 0:
                raise NotSentError(
                    f"online store unavailable: {self._failures} failed connects, "
                    f"next attempt in {wait * 1000:.0f} ms"
                )
            try:
                protocol = await self._dial(loop)
            except StoreUnavailableError:
                self._failures += 1
                backoff = min(BACKOFF_MAX, BACKOFF_BASE * 2 ** (self._failures - 1))
                self._open_until = loop.time() + backoff * random.uniform(0.5, 1.0)
                raise
            self._failures, self._open_until = 0, 0.0
            self._protocol = protocol
            return protocol

    async def _dial(self, loop: asyncio.AbstractEventLoop) -> _Protocol:
        host, port = self._address
        try:
            _, protocol = await asyncio.wait_for(
                loop.create_connection(lambda: _Protocol(self._timeout), host, port, ssl=self._tls),
                self._timeout,
            )
        except (OSError, TimeoutError) as exc:
            raise NotSentError(
                f"online store unavailable: cannot connect to {host}:{port} ({type(exc).__name__})"
            ) from exc
        if self._setup:
            try:
                replies = await protocol.send(pack_all(self._setup), len(self._setup))
            except StoreUnavailableError as exc:  # lost during set-up: the caller's never left
                raise NotSentError(str(exc)) from exc
            failed = [r for r in replies if isinstance(r, ReplyError)]
            if failed:
                protocol.abort("set-up refused")
                raise NotSentError(f"online store refused the connection: {failed[0]}")
        return protocol

    async def aclose(self) -> None:
        if self._protocol is not None:
            self._protocol.abort("closed")
            self._protocol = None
