"""A raw, pipelined Redis connection for bulk writes: whole-batch buffers out, replies counted.

redis-py's ``read_response`` costs microseconds per reply; a million HSETs would spend seconds
there. This borrows one connection from the client's pool (a Redis Cluster's writer opens one
per primary, from that node's client) (so AUTH, SELECT and TLS are
redis-py's) and writes prepared RESP buffers to its socket. Writes are not waited for: their
replies are checked just before the next replies the caller needs, so Redis executes one batch
while Python encodes the next. A write's reply (``HSET``, ``EXPIRE``: an integer, or an error)
is always one line, so those are counted by newlines, not parsed one by one; the replies the
caller reads are parsed by hiredis.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self

import hiredis
import numpy as np
import redis


class Pipeline:
    """One Redis node's connection used as a stream of commands and replies."""

    def __init__(self, client: redis.Redis) -> None:
        self._pool = client.connection_pool
        self._connection: Any = self._pool.get_connection()
        self._connection.connect()
        # Private in redis-py, but the only way to the socket it authenticated and selected.
        self._socket: Any = self._connection._sock
        self._reader = hiredis.Reader()
        self._unchecked = 0  # replies owed by sent writes, not read yet
        self._unparsed = b""  # received after the last write reply counted, not yet parsed

    def send(self, *payloads: memoryview | bytes) -> None:
        for payload in payloads:
            self._socket.sendall(payload)

    def sent_writes(self, replies: int) -> None:
        """Record that the last :meth:`send` owes ``replies`` replies nobody needs but errors."""
        self._unchecked += replies

    def read(self, count: int) -> list[Any]:
        """The next ``count`` replies, after checking those owed by earlier writes."""
        self._check_writes()
        if self._unparsed:
            self._reader.feed(self._unparsed)
            self._unparsed = b""
        replies = []
        for _ in range(count):
            reply = self._reader.gets()
            while reply is False:
                self._reader.feed(self._receive())
                reply = self._reader.gets()
            replies.append(reply)
        return replies

    def drain(self) -> None:
        """Wait for every write sent so far, raising the first error reply."""
        self._check_writes()

    def _check_writes(self) -> None:
        """Consume the lines owed by writes; the first error line becomes an exception."""
        left, data, failure = self._unchecked, self._unparsed, None
        while left:
            if not data or data.count(b"\n") == 0:
                data += self._receive()
                continue
            lines = data.count(b"\n")
            if lines <= left:
                cut = data.rindex(b"\n") + 1
                left -= lines
            else:  # the owed lines end inside this chunk
                newlines = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 0x0A)
                cut = int(newlines[left - 1]) + 1
                left = 0
            if failure is None and (data.startswith(b"-") or b"\n-" in data[:cut]):
                start = 0 if data.startswith(b"-") else data.index(b"\n-", 0, cut) + 1
                failure = data[start + 1 : data.index(b"\r", start)].decode(errors="replace")
            data = data[cut:]
        self._unchecked, self._unparsed = 0, data
        if failure is not None:
            raise redis.ResponseError(failure)

    def _receive(self) -> bytes:
        chunk: bytes = self._socket.recv(1 << 20)
        if not chunk:
            raise redis.ConnectionError("Redis closed the connection mid-pipeline")
        return chunk

    def close(self, clean: bool) -> None:
        """Return the connection to its pool, or drop it when replies may still be in flight."""
        if not clean:
            self._connection.disconnect()
        self._pool.release(self._connection)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close(clean=kind is None and self._unchecked == 0 and not self._unparsed)
