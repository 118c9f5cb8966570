"""The Redis protocol (RESP2) on the write side: commands packed straight to bytes.

redis-py's pipelines spend more time packing arguments than Redis spends running them; the
materialization engine and the gateway's connection pack with :func:`pack` instead.
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
