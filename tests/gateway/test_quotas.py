"""Quotas, against real Redis and real gateway processes.

Two gateway processes with two workers each share one Redis, as replicas would. The tenants
get small quotas (a copy of tenants/ with edited numbers) so the limits are reached quickly.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio as aioredis

from featureplane.embedded.gateway import GatewayProcess
from featureplane.embedded.redis import EmbeddedRedis
from featureplane.errors import QuotaExceededError
from featureplane.gateway.quotas import (
    InMemoryQuotaStore,
    RedisQuotaStore,
    slot_slack,
    token_batch,
)
from featureplane.online.connection import SharedConnection
from featureplane.tenancy.spec import Quotas
from tests.support.deployment import Deployment
from tests.support.gateway import bearer, start_gateway
from tests.support.load import paced
from tests.support.tenants import tenants_with_quotas

RATE = 40.0  # fraud's requests/s in this module
FRAUD_BODY = {"features": ["account_stats:txn_count_24h"], "entities": {"account_id": [1]}}
RECSYS_BODY = {"features": ["user_profile:sessions_7d"], "entities": {"user_id": ["u000001"]}}
PRICE_KEYS = {"store_id": [1], "sku": ["sku-00000"]}


def _quota_tenants(tmp: Path) -> Path:
    return tenants_with_quotas(
        tmp,
        {
            "fraud": {"requests_per_second": RATE, "burst": 5},
            "recsys": {"requests_per_second": 200, "burst": 50},
            "pricing": {
                "requests_per_second": 100, "burst": 100, "max_entities_per_request": 3,
                "max_features_per_request": 2, "max_body_bytes": 400, "max_concurrent_requests": 2,
            },
        },
    )  # fmt: skip


@pytest.fixture(scope="module")
def replicas(
    deployment: Deployment, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[GatewayProcess]]:
    tenants = _quota_tenants(tmp_path_factory.mktemp("quota-tenants"))
    settings = deployment.settings.model_copy(update={"tenants_dir": tenants})
    gateways: list[GatewayProcess] = []
    try:
        gateways.append(start_gateway(settings, workers=2))
        gateways.append(start_gateway(settings, workers=2))
        yield gateways
    finally:
        for gw in gateways:
            gw.stop()


def _post(base: str, token: str, body: Any, **kwargs: Any) -> httpx.Response:
    return httpx.post(
        f"{base}/get-online-features", json=body, headers=bearer(token), timeout=10, **kwargs
    )


# -- the quota stores themselves -----------------------------------------------------------


def test_in_memory_bucket_refills_at_the_rate() -> None:
    now = [0.0]
    store = InMemoryQuotaStore(clock=lambda: now[0])
    quotas = Quotas(requests_per_second=10, burst=3, max_concurrent_requests=100)

    async def run() -> None:
        for _ in range(3):
            await store.admit("t", quotas)
        with pytest.raises(QuotaExceededError) as excinfo:
            await store.admit("t", quotas)
        assert excinfo.value.headers["Retry-After"] == "1"
        now[0] += 0.1  # one token's worth
        await store.admit("t", quotas)
        with pytest.raises(QuotaExceededError):
            await store.admit("t", quotas)

    asyncio.run(run())


def test_redis_store_bucket_concurrency_and_bounded_state(redis_server: EmbeddedRedis) -> None:
    """Small limits are exact: one token and one slot per call, handed back on release."""
    quotas = Quotas(requests_per_second=20, burst=4, max_concurrent_requests=2)

    async def run() -> None:
        connection = SharedConnection.from_url(redis_server.url)
        client = aioredis.Redis.from_url(redis_server.url)
        try:
            store = RedisQuotaStore(connection, reservation_seconds=0.3)
            other = RedisQuotaStore(connection, reservation_seconds=0.3)  # another worker
            tenant = "unit-bucket"
            await client.delete(*store.keys(tenant))
            first = await store.admit(tenant, quotas)
            await other.admit(tenant, quotas)
            for worker in (store, other):  # two in flight already, one per worker
                with pytest.raises(QuotaExceededError) as excinfo:
                    await worker.admit(tenant, quotas)
                assert excinfo.value.quota == "max_concurrent_requests"
            await store.release(first)
            await other.admit(tenant, quotas)  # the slot went back to the shared table
            # Both slots are now held by `other` and never released...
            await asyncio.sleep(0.35)  # ...as if its process crashed: the reservation expires
            await store.admit(tenant, quotas)
            await store.admit(tenant, quotas)
            with pytest.raises(QuotaExceededError) as excinfo:
                await store.admit(tenant, quotas)
            assert excinfo.value.quota == "max_concurrent_requests"

            rate_only = Quotas(requests_per_second=20, burst=4, max_concurrent_requests=100)
            await client.delete(*store.keys(tenant))
            fresh = RedisQuotaStore(connection)
            for _ in range(4):
                await fresh.admit(tenant, rate_only)
            with pytest.raises(QuotaExceededError) as excinfo:
                await fresh.admit(tenant, rate_only)
            assert excinfo.value.quota == "requests_per_second"  # the burst is spent...
            await asyncio.sleep(0.06)  # ...and refills at 20/s
            await fresh.admit(tenant, rate_only)
            # State never grows without bound: both keys carry an expiry.
            for key in store.keys(tenant):
                assert 0 < await client.pttl(key) <= 6000
            assert all(
                k.startswith("featureplane:quota:{unit-bucket}:") for k in store.keys(tenant)
            )
        finally:
            await client.aclose()
            await connection.aclose()

    asyncio.run(run())


def test_redis_store_reserves_in_batches_without_exceeding_the_rate(
    redis_server: EmbeddedRedis,
) -> None:
    """High limits are reserved in batches (few script runs), and workers together still never
    admit more than the bucket holds plus its refill."""
    quotas = Quotas(requests_per_second=5000, burst=200, max_concurrent_requests=320)

    async def run() -> None:
        connection = SharedConnection.from_url(redis_server.url)
        client = aioredis.Redis.from_url(redis_server.url)
        tenant = "unit-batch"
        try:
            await client.delete(*RedisQuotaStore.keys(tenant))
            workers = [RedisQuotaStore(connection) for _ in range(3)]
            await workers[0].admit(tenant, quotas)
            slots = await client.hgetall(RedisQuotaStore.keys(tenant)[1])
            # in flight (1) + slack (320 // 32) slots, and 5000 x 20 ms = 100 tokens taken
            assert [int(v.split(b":")[0]) for v in slots.values()] == [1 + slot_slack(quotas)]
            assert token_batch(quotas) == 100
            left = float(await client.hget(RedisQuotaStore.keys(tenant)[0], "tokens"))
            assert 99 <= left <= 101  # 200 - 100, plus the few ms of refill since

            calls = 0
            execute = connection.execute

            async def counting(commands: Any) -> Any:
                nonlocal calls
                calls += 1
                return await execute(commands)

            connection.execute = counting  # type: ignore[method-assign]
            admitted = 1
            started = time.monotonic()
            while time.monotonic() - started < 0.5:
                for worker in workers:
                    try:
                        lease = await worker.admit(tenant, quotas)
                        await worker.release(lease)
                        admitted += 1
                    except QuotaExceededError:
                        await asyncio.sleep(0.001)
            elapsed = time.monotonic() - started
            assert admitted <= quotas.burst + quotas.requests_per_second * (elapsed + 0.01)
            assert admitted >= 0.8 * quotas.requests_per_second * elapsed  # no starvation
            assert calls <= admitted / 20  # batches, not a script run per request
        finally:
            await client.aclose()
            await connection.aclose()

    asyncio.run(run())


# -- through the gateway ---------------------------------------------------------------------


def test_rate_is_global_across_processes_and_workers(
    deployment: Deployment, replicas: list[GatewayProcess]
) -> None:
    """2 processes x 2 workers, driven at 3x the rate for 10 s: admitted = rate within ±10%."""
    seconds = 10.0
    result = asyncio.run(
        paced([g.base for g in replicas], deployment.tokens["fraud"], FRAUD_BODY, 3 * RATE, seconds)
    )
    assert not result.errors
    assert set(result.statuses) <= {200, 429}
    admitted_rate = result.statuses[200] / result.seconds
    assert abs(admitted_rate - RATE) <= 0.1 * RATE, (result.statuses, result.seconds)
    assert result.rate >= 2.5 * RATE  # the load really was over the quota


def test_429_names_the_quota_and_says_when_to_retry(
    deployment: Deployment, replicas: list[GatewayProcess]
) -> None:
    base = replicas[0].base
    burst = asyncio.run(paced([base], deployment.tokens["fraud"], FRAUD_BODY, 200, 0.5))
    assert burst.statuses[429] > 0, burst.statuses
    # One kept-alive client: far faster than the 40 req/s rate, so the bucket (at most 5
    # tokens) runs dry within a few calls.
    with httpx.Client(base_url=base, headers=bearer(deployment.tokens["fraud"])) as client:
        for _ in range(200):
            refused = client.post("/get-online-features", json=FRAUD_BODY, timeout=10)
            if refused.status_code == 429:
                break
    assert refused.status_code == 429, refused.text
    body = refused.json()["error"]
    assert body["code"] == "quota_exceeded"
    assert body["quota"] == "requests_per_second"
    assert body["limit"] == RATE
    assert int(refused.headers["Retry-After"]) >= 1
    metrics = httpx.get(f"{base}/metrics").text
    assert (
        'featureplane_quota_rejections_total{quota="requests_per_second",tenant="fraud"}' in metrics
    )
    assert 'featureplane_quota_limit{quota="requests_per_second",tenant="fraud"} 40.0' in metrics


def test_noisy_neighbour_does_not_starve_another_tenant(
    deployment: Deployment, replicas: list[GatewayProcess]
) -> None:
    """fraud floods at 10x its quota; recsys, within its own, sees no 429 and no error."""
    bases = [g.base for g in replicas]

    async def both() -> tuple[Any, Any]:
        flood = paced(
            bases, deployment.tokens["fraud"], FRAUD_BODY, 10 * RATE, 6.0, concurrency=128
        )
        calm = paced(bases, deployment.tokens["recsys"], RECSYS_BODY, 20, 6.0)
        return await asyncio.gather(flood, calm)

    flood, calm = asyncio.run(both())
    assert flood.rate >= 9 * RATE, f"the flood reached only {flood.rate:.0f}/s"
    assert flood.statuses[429] > flood.statuses[200]
    assert not calm.errors
    assert dict(calm.statuses) == {200: calm.sent}


@pytest.mark.parametrize(
    ("body", "quota", "limit"),
    [
        (
            {
                "features": ["product_price:price"],
                "entities": {"store_id": [1, 2, 3, 4], "sku": ["a"] * 4},
            },
            "max_entities_per_request",
            3,
        ),
        (
            {
                "features": [
                    "product_price:price",
                    "product_price:in_stock",
                    "product_price:discount_pct",
                ],
                "entities": PRICE_KEYS,
            },
            "max_features_per_request",
            2,
        ),
        (
            {"feature_service": "pricing_model_v1", "entities": PRICE_KEYS},
            "max_features_per_request",
            2,
        ),
        (
            {
                "features": ["product_price:price"],
                "entities": {"store_id": [1], "sku": ["x" * 500]},
            },
            "max_body_bytes",
            400,
        ),
    ],
)
def test_size_quotas_answer_413(
    deployment: Deployment,
    replicas: list[GatewayProcess],
    body: dict[str, Any],
    quota: str,
    limit: int,
) -> None:
    resp = _post(replicas[0].base, deployment.tokens["pricing"], body)
    assert resp.status_code == 413, resp.text
    assert resp.json()["error"] == resp.json()["error"] | {
        "code": "payload_too_large",
        "quota": quota,
        "limit": limit,
    }


def test_body_limit_holds_without_content_length(
    deployment: Deployment, replicas: list[GatewayProcess]
) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"features": ["product_price:price"], "entities": {"store_id": [1], "sku": ["'
        for _ in range(50):
            yield b"x" * 20
        yield b'"]}}'

    resp = httpx.post(
        f"{replicas[0].base}/get-online-features",
        content=chunks(),
        headers=bearer(deployment.tokens["pricing"]) | {"Content-Type": "application/json"},
    )
    assert resp.status_code == 413
    assert resp.json()["error"]["quota"] == "max_body_bytes"


def test_concurrency_is_shared_with_other_replicas(
    deployment: Deployment, replicas: list[GatewayProcess]
) -> None:
    """Slots reserved elsewhere (another replica's in-flight requests) count against the quota."""
    slots_key = RedisQuotaStore.keys("pricing")[1]
    body = {"features": ["product_price:price"], "entities": PRICE_KEYS}
    with redis.Redis.from_url(deployment.settings.require_redis_url()) as client:
        far_future = (int(client.time()[0]) + 60) * 1000
        client.hset(slots_key, mapping={"elsewhere-1": f"1:{far_future}"})
        client.hset(slots_key, mapping={"elsewhere-2": f"1:{far_future}"})
        try:
            resp = _post(replicas[1].base, deployment.tokens["pricing"], body)
            assert resp.status_code == 429
            assert resp.json()["error"]["quota"] == "max_concurrent_requests"
            client.hdel(slots_key, "elsewhere-1")
            assert _post(replicas[1].base, deployment.tokens["pricing"], body).status_code == 200
        finally:
            client.delete(slots_key)
