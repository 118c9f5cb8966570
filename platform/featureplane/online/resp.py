"""Redis commands packed straight to RESP2 bytes, for the gateway's connections.

redis-py's pipelines spend more time packing arguments than Redis spends running them, so
:mod:`.connection` and :mod:`.cluster` send what :func:`pack_all` and :func:`pack_hmgets` build.
The batch engine frames whole batches column-wise instead (:class:`.encoding.Rows`).
"""

from __future__ import annotations

from collections.abc import Sequence

Command = Sequence[bytes]


def pack(command: Command) -> bytes:
    """One command as a RESP array of bulk strings."""
    return b"*%d\r\n" % len(command) + b"".join([b"$%d\r\n%b\r\n" % (len(p), p) for p in command])


def pack_all(commands: Sequence[Command]) -> bytes:
    """Several commands in one buffer: one write, one pipelined round trip."""
    return b"".join([pack(c) for c in commands])


def pack_hmgets(reads: Sequence[tuple[bytes, Sequence[bytes]]]) -> bytes:
    """``HMGET key field…`` for each ``(key, fields)``. Reads usually share one fields object
    (every entity of a feature view), so its bytes are built once, not once per key."""
    packed: dict[int, tuple[bytes, bytes]] = {}
    parts = []
    for key, fields in reads:
        head_tail = packed.get(id(fields))
        if head_tail is None:
            head_tail = packed[id(fields)] = (
                b"*%d\r\n$5\r\nHMGET\r\n" % (len(fields) + 2),
                b"".join([b"$%d\r\n%b\r\n" % (len(f), f) for f in fields]),
            )
        head, tail = head_tail
        parts.append(b"%b$%d\r\n%b\r\n%b" % (head, len(key), key, tail))
    return b"".join(parts)
