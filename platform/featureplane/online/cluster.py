"""The request path's connection to a Redis Cluster: one :class:`SharedConnection` per primary.

:class:`ClusterConnection` has :class:`SharedConnection`'s interface (``execute``) plus
``read_hashes`` for the reader's HMGETs. Every command the gateway sends names one key, or
several under one hash tag (the quota script's ``{tenant}`` keys), so each goes whole to the
primary owning its slot (``CRC16(hash tag or key) % 16384``, redis-py's ``key_slot``). A call's
commands are grouped per primary, each group packed and written to that primary's shared
connection, the groups awaited together, and the replies put back in the callers' order: one
round trip per call, as on a standalone Redis, whatever the number of primaries involved.

The slot map comes from ``CLUSTER SLOTS``, asked of any node that answers (the known primaries,
then the seeds, then the replicas last seen). It is refreshed when a reply says the map is
wrong or the cluster is changing (``MOVED``, ``ASK``, ``CLUSTERDOWN``, ``TRYAGAIN``) or a
primary cannot be reached; concurrent callers share one refresh, and refreshes are at least
:data:`REFRESH_INTERVAL` apart, so a dead primary is not asked about on every request.

Retries: the commands that failed are sent again once, after the refresh — ``MOVED`` to the
node it names, ``ASK`` with ``ASKING`` to the node it names. Reads (``HMGET``, ``PING``…) are
idempotent and retried after any failure. Anything else (the quota reservation's ``EVALSHA``)
is retried only when it certainly did not run: a redirection or ``CLUSTERDOWN``/``TRYAGAIN``
reply (Redis refused it before running it) or a :class:`NotSentError` (the connection failed
before the command was written). A reservation lost with its connection is not retried: it
may have run, and running it twice would take quota twice; the caller gets the error (503) and
the lost reservation expires with its lease.

When a primary dies, requests touching its slots fail (503 ``store_unavailable``, immediately
once its circuit breaker is open) until a replica is promoted (about the cluster's
``cluster-node-timeout`` plus an election) and the next refresh sees it. Once the other nodes
mark it failed, Redis itself (``cluster-require-full-coverage yes``, the default) answers
``CLUSTERDOWN`` for every slot until the promotion, so then every request fails; bounded by the
same window.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

from featureplane.errors import StoreUnavailableError
from featureplane.online.connection import NotSentError, ReplyError, SharedConnection
from featureplane.online.resp import Command, pack_all, pack_hmgets
from featureplane.online.slots import SLOTS, command_key, key_slot, slot_owners
from featureplane.online.urls import Address, RedisUrl

REFRESH_INTERVAL = 0.1  # seconds between slot-map refreshes, at least
_IDEMPOTENT = frozenset({b"HMGET", b"HGET", b"HGETALL", b"GET", b"EXISTS", b"PING"})
_RETRYABLE = ("MOVED ", "ASK ", "CLUSTERDOWN", "TRYAGAIN")

HashRead = tuple[bytes, Sequence[bytes]]


def _retryable(reply: Any) -> bool:
    return isinstance(reply, ReplyError) and str(reply).startswith(_RETRYABLE)


class ClusterConnection:
    """Multiplexed connections to every primary of a Redis Cluster (see the module docstring)."""

    def __init__(self, url: RedisUrl, timeout: float = 1.0) -> None:
        self._url = url
        self._timeout = timeout
        self._seeds: list[Address] = list(url.nodes)
        self._replicas: list[Address] = []
        self._nodes: dict[Address, SharedConnection] = {}
        self._owners: list[Address | None] = [None] * SLOTS  # slot -> primary
        self._primaries: list[Address] = []
        self._refreshed_at = -REFRESH_INTERVAL
        self._refreshing: asyncio.Task[None] | None = None

    @classmethod
    def from_url(cls, url: str, timeout: float = 1.0) -> ClusterConnection:
        """FEATUREPLANE_REDIS_URL's cluster form: ``redis://[auth@]host:port[,host:port…]``."""
        return cls(RedisUrl.parse(url, cluster=True), timeout)

    def _node(self, address: Address) -> SharedConnection:
        node = self._nodes.get(address)
        if node is None:
            host, port = address
            node = self._nodes[address] = SharedConnection(
                host,
                port,
                username=self._url.username,
                password=self._url.password,
                tls=self._url.tls,
                timeout=self._timeout,
            )
        return node

    # -- the request path ------------------------------------------------------------------

    async def execute(self, commands: Sequence[Command]) -> list[Any]:
        """Every command's reply, in order; each command goes to the primary of its key."""
        keys = [command_key(c) for c in commands]
        retry = [c[0].upper() in _IDEMPOTENT for c in commands]
        return await self._run(keys, retry, lambda idx: pack_all([commands[i] for i in idx]))

    async def read_hashes(self, reads: Sequence[HashRead]) -> list[Any]:
        """``HMGET key fields…`` for each read, in order (the reader's batch)."""
        keys: list[bytes | None] = [key for key, _ in reads]
        return await self._run(
            keys, [True] * len(reads), lambda idx: pack_hmgets([reads[i] for i in idx])
        )

    async def _run(
        self,
        keys: Sequence[bytes | None],
        idempotent: Sequence[bool],
        pack: Callable[[list[int]], bytes],
    ) -> list[Any]:
        if not self._primaries:
            await self._refresh()
        replies: list[Any] = [None] * len(keys)
        failed: dict[int, StoreUnavailableError | ReplyError] = {}
        await self._send_groups(self._group(keys), pack, replies, failed)
        if not failed:
            return replies
        # Retry what may be retried, once, on a fresh map (see the module docstring).
        await self._refresh()
        again = [
            i
            for i, why in failed.items()
            if idempotent[i] or _retryable(why) or isinstance(why, NotSentError)
        ]
        redirected: dict[int, tuple[Address, bool]] = {}  # -> (node, needs ASKING)
        for i in again:
            why = failed[i]
            if isinstance(why, ReplyError) and str(why).startswith(("MOVED ", "ASK ")):
                kind, slot, where = str(why).split(" ")
                host, _, port = where.rpartition(":")
                node = (host or "127.0.0.1", int(port))
                redirected[i] = (node, kind == "ASK")
                if kind == "MOVED":  # the slot's new owner, before any refresh says so
                    self._owners[int(slot)] = node
        groups = self._group(keys, [i for i in again if i not in redirected])
        for i, target in redirected.items():
            groups.setdefault(target, []).append(i)
        retried: dict[int, StoreUnavailableError | ReplyError] = {}
        await self._send_groups(groups, pack, replies, retried)
        for i, why in failed.items():
            if i not in again or i in retried:
                cause = retried.get(i, why)
                if not isinstance(cause, ReplyError):  # (hiredis' ReplyError is an exception)
                    raise cause
                replies[i] = cause  # an error reply: the caller reports it
        return replies

    def _group(
        self, keys: Sequence[bytes | None], only: Sequence[int] | None = None
    ) -> dict[tuple[Address, bool], list[int]]:
        """Command indices by (owning primary, needs ASKING)."""
        owners, fallback = self._owners, self._primaries[0] if self._primaries else None
        groups: dict[tuple[Address, bool], list[int]] = {}
        for i in range(len(keys)) if only is None else only:
            key = keys[i]
            owner = owners[key_slot(key)] if key is not None else fallback
            if owner is None:  # no node serves the slot (yet): Redis would say CLUSTERDOWN
                owner = fallback
            if owner is None:
                raise NotSentError("online store unavailable: no Redis Cluster node answers")
            groups.setdefault((owner, False), []).append(i)
        return groups

    async def _send_groups(
        self,
        groups: dict[tuple[Address, bool], list[int]],
        pack: Callable[[list[int]], bytes],
        replies: list[Any],
        failed: dict[int, StoreUnavailableError | ReplyError],
    ) -> None:
        async def send(address: Address, asking: bool, idx: list[int]) -> None:
            node = self._node(address)
            # One write for the group; after ASK, one ASKING before each command (it holds for
            # the next command only), so commands go one by one.
            batches = [[i] for i in idx] if asking else [idx]
            for n, batch in enumerate(batches):
                payload = pack(batch)
                if asking:
                    payload = pack_all([[b"ASKING"]]) + payload
                try:
                    got = await node.execute_packed(payload, len(batch) + asking)
                except StoreUnavailableError as exc:
                    for later in batches[n:]:  # what ran before keeps its reply
                        for i in later:
                            failed[i] = exc
                    return
                for i, reply in zip(batch, got[asking:], strict=True):
                    replies[i] = reply
            for i in idx:
                if _retryable(replies[i]):
                    failed[i] = replies[i]

        if len(groups) == 1:  # the usual case of a small request: no task
            ((address, asking), idx) = next(iter(groups.items()))
            await send(address, asking, idx)
        else:
            await asyncio.gather(*(send(a, asking, idx) for (a, asking), idx in groups.items()))

    # -- the slot map ----------------------------------------------------------------------

    async def _refresh(self) -> None:
        """Reload the slot map: shared by concurrent callers, at most every REFRESH_INTERVAL
        (the first time at once), so a dead cluster is not dialled on every request."""
        task = self._refreshing
        if task is None:
            if time.monotonic() - self._refreshed_at < REFRESH_INTERVAL:
                return
            task = self._refreshing = asyncio.create_task(self._load_slots())
            task.add_done_callback(self._refreshed)
        await asyncio.shield(task)  # a cancelled caller leaves the refresh to the others

    def _refreshed(self, task: asyncio.Task[None]) -> None:
        if self._refreshing is task:
            self._refreshing = None
        if not task.cancelled():
            task.exception()  # retrieved even when every caller gave up waiting

    async def _load_slots(self) -> None:
        self._refreshed_at = time.monotonic()
        candidates = list(dict.fromkeys([*self._primaries, *self._seeds, *self._replicas]))
        reason = "no node configured"
        for address in candidates:
            try:
                (reply,) = await self._node(address).execute([[b"CLUSTER", b"SLOTS"]])
            except StoreUnavailableError as exc:
                reason = str(exc)
                continue
            if isinstance(reply, ReplyError) or not reply:
                reason = f"{address[0]}:{address[1]} answered CLUSTER SLOTS with {reply!r}"
                continue
            self._apply(reply, address[0])
            return
        if not self._primaries:
            raise NotSentError(f"online store unavailable: no Redis Cluster node answers: {reason}")

    def _apply(self, reply: list[Any], asked_host: str) -> None:
        replicas: dict[Address, None] = {}

        def address(node: list[Any]) -> Address:
            host = node[0].decode() if isinstance(node[0], bytes) else str(node[0])
            return (host or asked_host, int(node[1]))  # "": the node we asked

        for _, _, _, *others in reply:
            for other in others:
                replicas[address(other)] = None
        self._owners, self._primaries = slot_owners(
            (int(start), int(end), address(primary)) for start, end, primary, *_ in reply
        )
        self._replicas = list(replicas)

    # -- health --------------------------------------------------------------------------

    def covered(self) -> bool:
        """Whether the slot map assigns every slot."""
        return bool(self._primaries) and all(o is not None for o in self._owners)

    async def ping(self) -> bool:
        """Whether every slot is served: each primary of a full slot map answers PING."""
        try:
            if not self._primaries:
                await self._refresh()
            ok = await self._ping_primaries()
            if not ok:  # maybe a failover since: look again before answering
                await self._refresh()
                ok = await self._ping_primaries()
        except StoreUnavailableError:
            return False
        return ok and self.covered()

    async def _ping_primaries(self) -> bool:
        async def one(address: Address) -> bool:
            try:
                (reply,) = await self._node(address).execute([[b"PING"]])
            except StoreUnavailableError:
                return False
            return bool(reply == b"PONG")

        return all(await asyncio.gather(*(one(a) for a in self._primaries)))

    async def aclose(self) -> None:
        if self._refreshing is not None:
            self._refreshing.cancel()
        for node in self._nodes.values():
            await node.aclose()
