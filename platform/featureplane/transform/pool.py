"""Supervising tenants' transform workers from a gateway process.

Each gateway process owns, per tenant with on-demand feature views, ``transforms.workers``
worker processes (:mod:`featureplane.transform.worker`, forked by its zygote) that it starts
with itself and replaces when one times out, exits or stops answering. A worker that fails
again and again is restarted with exponential back-off, so a hostile tenant burns at most its
own workers' CPU. A free worker gets every call waiting at that moment as one batch (one round
trip for many concurrent requests), sized to fit the time limit at the calls' measured cost.
Calls wait for a worker at most the tenant's time limit, and at most ``transforms.queue`` of
them wait at once; past that a call is refused (503) at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from feast.protos.feast.serving.ServingService_pb2 import GetOnlineFeaturesResponse
from google.protobuf.message import DecodeError

from featureplane.errors import (
    TransformBusyError,
    TransformFailedError,
    TransformTimeoutError,
)
from featureplane.observability.metrics import (
    TRANSFORM_DURATION,
    TRANSFORM_FAILURES,
    TRANSFORM_RESTARTS,
    buffered_histogram,
)
from featureplane.transform.protocol import (
    ERROR,
    HEADER,
    MAX_REPLY_BYTES,
    OUTPUT,
    READY,
    TransformCall,
    WorkerLoad,
    encode_request,
    split_frames,
)
from featureplane.transform.zygote import Zygote

log = logging.getLogger("featureplane.transform")

START_TIMEOUT_SECONDS = 30.0  # loading the views (the zygote imported Feast already)
MAX_BACKOFF_SECONDS = 30.0
FAILURE_REASONS = ("raised", "timeout", "exited", "busy")
MAX_BATCH = 16  # calls sent to a worker at once
NICE, PENALTY_NICE = 5, 15  # CFS weights 335 and 36: about 9 to 1 between them


@dataclass(eq=False)
class _Slot:
    """A call waiting for a worker, then for its answer."""

    call: TransformCall
    views: str
    result: asyncio.Future[GetOnlineFeaturesResponse]
    expiry: asyncio.TimerHandle | None = None  # refuses the call if no worker takes it in time


def _settle(slots: list[_Slot], outcome: GetOnlineFeaturesResponse | BaseException) -> None:
    """Answer ``slots`` (those whose caller still waits)."""
    for slot in slots:
        if slot.result.done():  # answered already, or the caller went away (cancelled)
            continue
        if isinstance(outcome, BaseException):
            slot.result.set_exception(outcome)
        else:
            slot.result.set_result(outcome)


@dataclass(frozen=True)
class Limits:
    workers: int
    memory_mb: int
    timeout_seconds: float
    queue: int


class _Channel(asyncio.Protocol):
    """The gateway's end of a worker's socket: one request out, then one framed reply in. A
    protocol rather than streams: a reply costs one callback, not a reader task's wake-ups."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._reply: asyncio.Future[bytes] | None = None
        self._lost: BaseException | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a socket's: a Transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) < HEADER.size:
            return
        (size,) = HEADER.unpack_from(self._buffer)
        if size > MAX_REPLY_BYTES:
            self._fail(ConnectionError(f"a reply of {size} bytes, over {MAX_REPLY_BYTES}"))
        elif len(self._buffer) >= HEADER.size + size:
            with memoryview(self._buffer) as view:  # one copy of a reply (up to 64 MiB)
                reply = bytes(view[HEADER.size : HEADER.size + size])
            extra = len(self._buffer) > HEADER.size + size
            self._buffer.clear()
            if extra or self._reply is None or self._reply.done():  # nobody asked for it
                self._fail(ConnectionError("the worker answered what was not asked"))
            else:
                self._reply.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(ConnectionError(f"the worker's socket closed ({exc or 'end of file'})"))

    def _fail(self, exc: BaseException) -> None:
        self._lost = self._lost or exc
        if self._reply is not None and not self._reply.done():
            self._reply.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()

    def send(self, request: bytes) -> asyncio.Future[bytes]:
        """The reply to ``request``; one request at a time."""
        reply: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        if self._lost is not None or self.transport is None:
            reply.set_exception(self._lost or ConnectionError("not connected"))
            return reply
        self._reply = reply
        self.transport.write(request)
        return reply


class WorkerProcess:
    """One running worker; one request (a batch of calls, or a frame) at a time."""

    def __init__(self, zygote: Zygote, pid: int, channel: _Channel) -> None:
        self.zygote = zygote
        self.pid = pid
        self._channel = channel

    @classmethod
    async def start(
        cls, zygote: Zygote, load: WorkerLoad, memory_mb: int, nice: int
    ) -> WorkerProcess:
        pid, sock = await zygote.spawn(memory_mb, nice)
        try:
            loop = asyncio.get_running_loop()
            _, channel = await loop.create_unix_connection(_Channel, sock=sock)
        except BaseException:
            zygote.kill(pid)
            sock.close()
            raise
        worker = cls(zygote, pid, channel)
        try:
            reply = await worker.call(encode_request(load), START_TIMEOUT_SECONDS)
        except BaseException:
            worker.kill()
            raise
        if reply != READY:
            worker.kill()
            raise TransformFailedError(_text(reply))
        return worker

    async def call(self, request: bytes, timeout: float) -> bytes:
        """The worker's reply to ``request``; ``TimeoutError`` past ``timeout`` seconds,
        ``ConnectionError`` if it hangs up or answers out of turn."""
        async with asyncio.timeout(timeout):
            return await self._channel.send(request)

    def kill(self) -> None:
        self.zygote.kill(self.pid)
        if self._channel.transport is not None:
            self._channel.transport.abort()

    async def exit_code(self) -> int | None:
        return await self.zygote.exit_status(self.pid)


def describe(code: int | None) -> str:
    """How a worker ended, from its exit status (negative: the signal that killed it)."""
    return "was killed" if code is not None and code < 0 else f"exited with code {code}"


def _text(reply: bytes) -> str:
    body = reply[1:] if reply[:1] == ERROR else reply
    return body.decode("utf-8", "replace")


class TenantTransforms:
    """One tenant's workers in this gateway process."""

    def __init__(self, zygote: Zygote, tenant: str, load: WorkerLoad, limits: Limits) -> None:
        self.zygote = zygote
        self.tenant = tenant
        self.load = load
        self.limits = limits
        self._live: set[WorkerProcess] = set()
        self._starting: set[asyncio.Task[None]] = set()
        self._serving: set[asyncio.Task[None]] = set()  # one per live worker
        self._pending: deque[_Slot] = deque()
        self._work = asyncio.Event()  # set when a call is pending
        self._free = 0  # workers waiting for calls
        self._call_seconds = 0.001  # a call's measured cost (moving average), to size batches
        self._failures = 0  # consecutive, for the back-off
        self.last_error: str | None = None
        self._closed = False
        self._started = False
        self.settled = asyncio.Event()  # a first worker is up, or its start failed
        for reason in FAILURE_REASONS:  # every series from the start: rates of 0, not no data
            TRANSFORM_FAILURES.labels(tenant, reason)
        TRANSFORM_RESTARTS.labels(tenant)

    def start(self) -> None:
        for _ in range(self.limits.workers):
            self._spawn(0.0)

    @property
    def status(self) -> str:
        """``starting`` until a first worker is up, then ``ok``, or the last failure."""
        if not self._started:
            return self.last_error or "starting"
        return self.last_error or "ok"

    def _spawn(self, delay: float) -> None:
        if self._closed:
            return
        task = asyncio.create_task(self._start_one(delay))
        self._starting.add(task)
        task.add_done_callback(self._starting.discard)

    async def _start_one(self, delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            # A tenant whose workers time out or die gets replacements at the lowest useful
            # priority: under CPU contention its loops yield to other tenants' workers.
            nice = NICE if self._failures == 0 else PENALTY_NICE
            worker = await WorkerProcess.start(self.zygote, self.load, self.limits.memory_mb, nice)
        except Exception as exc:  # a view that cannot load: retry later, report meanwhile
            self.last_error = f"tenant {self.tenant!r}: transform worker did not start: {exc}"
            log.error("%s", self.last_error)
            self.settled.set()
            self._replace_later()
            return
        if self._closed:
            worker.kill()
            return
        self._live.add(worker)
        task = asyncio.create_task(self._serve(worker))
        self._serving.add(task)
        task.add_done_callback(self._serving.discard)
        self._started = True
        self.settled.set()

    def _replace_later(self) -> None:
        TRANSFORM_RESTARTS.labels(self.tenant).inc()
        delay = 0.0 if self._failures == 0 else min(MAX_BACKOFF_SECONDS, 0.5 * 2**self._failures)
        self._failures += 1
        self._spawn(delay)

    def _retire(self, worker: WorkerProcess) -> None:
        worker.kill()
        self._live.discard(worker)
        self._replace_later()

    async def run(self, call: TransformCall, views: str) -> GetOnlineFeaturesResponse:
        """``call`` computed by a worker; ``views`` names the ODFVs for error messages."""
        if self._closed:
            raise TransformBusyError(f"{views}: tenant {self.tenant!r}'s transform workers were "
                                     "replaced; retry")  # fmt: skip
        if len(self._pending) >= self.limits.queue and not self._free:
            TRANSFORM_FAILURES.labels(self.tenant, "busy").inc()
            raise TransformBusyError(
                f"{views}: {len(self._pending)} calls already wait for tenant {self.tenant!r}'s "
                f"transform workers (transforms.queue is {self.limits.queue})"
            )
        loop = asyncio.get_running_loop()
        slot = _Slot(call, views, loop.create_future())
        slot.expiry = loop.call_later(self.limits.timeout_seconds, self._expire, slot)
        self._pending.append(slot)
        self._work.set()
        try:
            return await slot.result
        except asyncio.CancelledError:  # the caller went away: a queued call is never sent
            self._withdraw(slot)
            raise

    def _withdraw(self, slot: _Slot) -> bool:
        """Take ``slot`` out of the queue; False if a worker has it already."""
        if slot.expiry is not None:
            slot.expiry.cancel()
        try:
            self._pending.remove(slot)
        except ValueError:
            return False
        return True

    def _expire(self, slot: _Slot) -> None:
        """No worker took ``slot`` within the time limit."""
        if not self._withdraw(slot):
            return
        TRANSFORM_FAILURES.labels(self.tenant, "busy").inc()
        detail = f"; last failure: {self.last_error}" if self.last_error else ""
        _settle([slot], TransformBusyError(
            f"{slot.views}: no transform worker of tenant {self.tenant!r} was free within "
            f"{self.limits.timeout_seconds:g} s{detail}"
        ))  # fmt: skip

    async def _serve(self, worker: WorkerProcess) -> None:
        """Hand ``worker`` every call waiting when it is free, as one batch: concurrent requests
        cost one round trip to the worker rather than one each. A batch is sized so it fits the
        time limit at the calls' measured cost. Ends when the worker is retired."""
        while True:
            self._free += 1
            try:
                while not self._pending:
                    self._work.clear()
                    await self._work.wait()
            finally:
                self._free -= 1
            fits = self.limits.timeout_seconds / (4 * self._call_seconds)
            size = max(1, min(MAX_BATCH, len(self._pending), int(fits)))
            batch = [self._pending.popleft() for _ in range(size)]
            for slot in batch:
                if slot.expiry is not None:
                    slot.expiry.cancel()
            try:
                if not await self._exchange(worker, batch):
                    return
            except BaseException:  # cancelled (shutdown, changed views): nobody waits forever
                _settle(batch, TransformFailedError(
                    f"{', '.join(dict.fromkeys(s.views for s in batch))}: the call was "
                    "interrupted (the gateway is shutting down, or the tenant's views changed)"
                ))  # fmt: skip
                raise

    async def _exchange(self, worker: WorkerProcess, batch: list[_Slot]) -> bool:
        """Run ``batch`` on ``worker`` and answer its calls; False if the worker was retired."""
        timeout = self.limits.timeout_seconds
        views = ", ".join(dict.fromkeys(slot.views for slot in batch))
        started = time.perf_counter()
        try:
            reply = await worker.call(encode_request(tuple(s.call for s in batch)), timeout)
        except TimeoutError:
            self._retire(worker)
            self._fail("timeout", f"{views}: no answer within the {timeout:g} s limit "
                       "(transforms.timeout_ms); the worker was replaced")  # fmt: skip
            _settle(batch, TransformTimeoutError(self.last_error or ""))
            return False
        except (ConnectionError, OSError):
            self._retire(worker)  # killed first: its exit status is then known at once
            code = await worker.exit_code()
            self._fail("exited", f"{views}: the transform worker {describe(code)}; it was replaced")
            _settle(batch, TransformFailedError(self.last_error or ""))
            return False
        except BaseException:  # cancelled mid-call: its reply would answer the next call
            self._retire(worker)
            raise
        elapsed = time.perf_counter() - started
        try:
            replies = split_frames(reply)
            if len(replies) != len(batch):
                raise ConnectionError(f"{len(replies)} answers to {len(batch)} calls")
        except ConnectionError as exc:  # a worker's answer is tenant-controlled bytes
            self._retire(worker)
            self._fail("raised", f"{views}: the transform worker answered malformed data "
                       f"({exc}); it was replaced")  # fmt: skip
            _settle(batch, TransformFailedError(self.last_error or ""))
            return False
        self._call_seconds += 0.2 * (elapsed / len(batch) - self._call_seconds)
        self._failures = 0
        histogram = buffered_histogram(TRANSFORM_DURATION, self.tenant)
        for slot, answer in zip(batch, replies, strict=True):
            histogram.observe(elapsed)
            if answer[:1] != OUTPUT:
                self._fail("raised", _text(answer))
                _settle([slot], TransformFailedError(self.last_error or ""))
                continue
            try:
                response = GetOnlineFeaturesResponse.FromString(answer[1:])
            except DecodeError:  # a worker's answer is tenant-controlled bytes
                self._fail("raised", f"{slot.views}: the transform worker's answer is malformed")
                _settle([slot], TransformFailedError(self.last_error or ""))
                continue
            self.last_error = None
            _settle([slot], response)
        return True

    def _fail(self, reason: str, message: str) -> None:
        TRANSFORM_FAILURES.labels(self.tenant, reason).inc()
        self.last_error = f"tenant {self.tenant!r}: {message}"

    async def aclose(self) -> None:
        self._closed = True
        tasks = [*self._starting, *self._serving]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)  # they close what they opened
        for slot in self._pending:
            if slot.expiry is not None:
                slot.expiry.cancel()
            _settle([slot], TransformBusyError(f"{slot.views}: tenant {self.tenant!r}'s transform "
                                               "workers were replaced; retry"))  # fmt: skip
        self._pending.clear()
        for worker in list(self._live):
            worker.kill()
        for worker in list(self._live):
            await worker.exit_code()
        self._live.clear()


def fingerprint(load: WorkerLoad, limits: Limits) -> str:
    return hashlib.sha256(repr((load.repo, load.version, limits)).encode()).hexdigest()


class TransformSupervisor:
    """Every tenant's workers in this gateway process, kept in step with the registry. When a
    tenant's views change, its old workers keep serving until the new ones are up."""

    def __init__(self) -> None:
        self._pools: dict[str, tuple[str, TenantTransforms]] = {}
        self._previous: dict[str, TenantTransforms] = {}
        self.zygote = Zygote()  # started by the first worker: no views, no Feast import

    def sync(self, wanted: Mapping[str, tuple[WorkerLoad, Limits]]) -> list[TenantTransforms]:
        """Start workers for tenants new in ``wanted`` or whose views or limits changed; returns
        the pools replaced (the caller closes them with :meth:`retire`)."""
        retired = []
        for tenant in set(self._pools) - set(wanted):
            retired.append(self._pools.pop(tenant)[1])
        for tenant, (load, limits) in wanted.items():
            mark = fingerprint(load, limits)
            current = self._pools.get(tenant)
            if current is not None and current[0] == mark:
                continue
            pool = TenantTransforms(self.zygote, tenant, load, limits)
            pool.start()
            self._pools[tenant] = (mark, pool)
            if current is not None:
                retired.append(current[1])
                self._previous[tenant] = current[1]
        return retired

    async def retire(self, pool: TenantTransforms) -> None:
        """Close ``pool`` once its replacement (if any) is up and its own calls are done."""
        entry = self._pools.get(pool.tenant)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while entry is not None and entry[1].status == "starting" and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        if self._previous.get(pool.tenant) is pool:
            del self._previous[pool.tenant]
        await asyncio.sleep(pool.limits.timeout_seconds + 1)
        await pool.aclose()

    async def settle(self, timeout: float = START_TIMEOUT_SECONDS) -> None:
        """Wait until every tenant's first worker is up or failed to start, at most ``timeout``:
        a gateway process that waits here before it accepts requests never answers an on-demand
        view with 503 because it has only just started."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                for pool in self.pools():
                    await pool.settled.wait()

    def get(self, tenant: str) -> TenantTransforms | None:
        entry = self._pools.get(tenant)
        if entry is None:
            return None
        previous = self._previous.get(tenant)
        return previous if previous is not None and entry[1].status == "starting" else entry[1]

    def pools(self) -> Iterable[TenantTransforms]:
        return (pool for _, pool in self._pools.values())

    async def aclose(self) -> None:
        for pool in [*self._previous.values(), *(p for _, p in self._pools.values())]:
            await pool.aclose()
        self._pools.clear()
        self._previous.clear()
        await self.zygote.aclose()
