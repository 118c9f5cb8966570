"""A tenant's workers as one gateway process drives them (featureplane.transform.pool), with a
real zygote and worker: concurrent calls share round trips, a call past the time limit
replaces its worker, a full queue refuses at once, and a caller that goes away while queued
leaves nothing behind."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from feast import Field, RequestSource
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64, Int64

from featureplane.errors import TransformBusyError, TransformTimeoutError
from featureplane.transform.pool import Limits, TenantTransforms
from featureplane.transform.protocol import Column, TransformCall, WorkerLoad
from featureplane.transform.zygote import Zygote

pause = RequestSource(name="pause", schema=[Field(name="sleep_ms", dtype=Int64)])


@on_demand_feature_view(  # type: ignore[untyped-decorator]
    sources=[pause], schema=[Field(name="slept", dtype=Float64)], mode="python", singleton=True
)
def sleepy(inputs: dict[str, Any]) -> dict[str, Any]:
    import time  # rebuilt from its source in the worker: no module globals

    time.sleep(inputs["sleep_ms"] / 1000)
    return {"slept": inputs["sleep_ms"] / 1000}


LOAD = WorkerLoad("p", None, (sleepy.to_proto().SerializeToString(),))


def _call(sleep_ms: int) -> TransformCall:
    return TransformCall(("sleepy",), ("sleepy:slept",), False,
                         (Column("sleep_ms", "value", [sleep_ms], 0),))  # fmt: skip


def _with_pool(scenario: Callable[[TenantTransforms], Awaitable[None]]) -> None:
    """``scenario`` run against one worker (time limit 0.6 s, queue of 2) in a fresh loop."""

    async def run() -> None:
        zygote = Zygote()
        pool = TenantTransforms(zygote, "t", LOAD, Limits(1, 512, 0.6, 2))
        pool.start()
        try:
            await pool.settled.wait()
            assert pool.status == "ok"
            await scenario(pool)
        finally:
            await pool.aclose()
            await zygote.aclose()

    asyncio.run(run())


def test_concurrent_calls_are_answered_each_with_its_own_value() -> None:
    _with_pool(_concurrent)


def test_a_full_queue_refuses_at_once_and_a_slow_call_times_out() -> None:
    _with_pool(_busy)


def test_a_caller_gone_while_queued_leaves_nothing_behind() -> None:
    _with_pool(_gone)


async def _concurrent(pool: TenantTransforms) -> None:
    # The queue holds 2; the free worker takes one, the next 2 wait and go as one batch.
    answers = await asyncio.gather(*(pool.run(_call(ms), "sleepy") for ms in (10, 20, 30)))
    assert [a.results[0].values[0].double_val for a in answers] == [0.01, 0.02, 0.03]


async def _busy(pool: TenantTransforms) -> None:
    busy = asyncio.create_task(pool.run(_call(500), "sleepy"))  # holds the only worker
    await asyncio.sleep(0.05)
    queued = [asyncio.create_task(pool.run(_call(1), "sleepy")) for _ in range(2)]
    await asyncio.sleep(0)
    with pytest.raises(
        TransformBusyError, match=r"2 calls already wait .* \(transforms.queue is 2\)"
    ):
        await pool.run(_call(1), "sleepy")
    assert (await busy).results[0].values[0].double_val == 0.5
    await asyncio.gather(*queued)  # the worker freed in time for them
    # A call past the 0.6 s limit: its worker is replaced, and the replacement answers.
    with pytest.raises(TransformTimeoutError, match=r"no answer within the 0\.6 s limit"):
        await pool.run(_call(900), "sleepy")
    answer = await pool.run(_call(1), "sleepy")
    assert answer.results[0].values[0].double_val == 0.001


async def _gone(pool: TenantTransforms) -> None:
    busy = asyncio.create_task(pool.run(_call(200), "sleepy"))
    await asyncio.sleep(0.05)
    gone = asyncio.create_task(pool.run(_call(5_000), "sleepy"))  # would time the worker out
    await asyncio.sleep(0.01)
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert not pool._pending
    await busy
    # Never sent: the worker is still the same, and answers at once.
    answer = await asyncio.wait_for(pool.run(_call(1), "sleepy"), 0.5)
    assert answer.results[0].values[0].double_val == 0.001
    assert pool.last_error is None
