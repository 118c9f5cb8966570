"""Redis Cluster slot routing, shared by the gateway's connection and the batch engine.

A key lives in slot ``CRC16(hash tag or key) % 16384`` (redis-py's :func:`key_slot`); each slot
is served by one primary. Both sides turn what the cluster reports into one list, slot ->
primary, with :func:`slot_owners`, and route each command by :func:`command_key`.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from typing import TypeVar

from redis.crc import REDIS_CLUSTER_HASH_SLOTS as SLOTS
from redis.crc import key_slot

__all__ = ["SLOTS", "command_key", "key_slot", "slot_owners"]

Node = TypeVar("Node", bound=Hashable)


def command_key(command: Sequence[bytes]) -> bytes | None:
    """The key that routes a command (None: any node will do)."""
    name = command[0].upper()
    if name in (b"EVAL", b"EVALSHA", b"FCALL"):
        return command[3] if len(command) > 3 and command[2] != b"0" else None
    return command[1] if len(command) > 1 else None


def slot_owners(ranges: Iterable[tuple[int, int, Node]]) -> tuple[list[Node | None], list[Node]]:
    """From ``(first slot, last slot, primary)`` ranges: each slot's primary (None where no
    node serves it) and the primaries in the order first seen."""
    owners: list[Node | None] = [None] * SLOTS
    primaries: dict[Node, None] = {}
    for start, end, primary in ranges:
        primaries[primary] = None
        owners[start : end + 1] = [primary] * (end - start + 1)
    return owners, list(primaries)
