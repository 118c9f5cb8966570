"""Faults under load, against real processes: the gateway's own Redis is SIGKILLed while four
clients keep calling, then a Redis comes back on the same port."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field

import httpx
import pytest
import redis

from featureplane.embedded.redis import EmbeddedRedis, free_port
from featureplane.gateway.app import create_app
from featureplane.online.connection import BACKOFF_MAX
from featureplane.tenancy.credentials import CRED_PREFIX, CredentialStore
from tests.support.deployment import Deployment
from tests.support.gateway import bearer, start_gateway

BODY = {"features": ["account_stats:txn_count_24h"], "entities": {"account_id": [1]}}


@dataclass
class Load:
    """Clients calling as fast as answered; every answer is kept as (time, status, seconds)."""

    base: str
    token: str
    answers: list[tuple[float, int, float]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(base_url=self.base, timeout=10) as client:
            while not self.stop.is_set():
                started = time.monotonic()
                try:
                    status = client.post(
                        "/get-online-features", json=BODY, headers=bearer(self.token)
                    ).status_code
                except httpx.HTTPError:
                    status = 0  # no HTTP answer at all
                self.answers.append((started, status, time.monotonic() - started))
                time.sleep(0.005)


@pytest.mark.chaos
def test_redis_killed_under_load_is_503_then_recovers_by_itself(deployment: Deployment) -> None:
    store = EmbeddedRedis().start()
    settings = deployment.settings.model_copy(update={"redis_url": store.url})
    with redis.Redis.from_url(store.url) as client:
        token = CredentialStore(client, settings.pepper).issue("fraud").token
        saved = {k: client.hgetall(k) for k in client.scan_iter(f"{CRED_PREFIX}*")}
    gateway = start_gateway(settings, workers=2)
    load = Load(gateway.base, token)
    threads = [threading.Thread(target=load.run) for _ in range(4)]
    back: EmbeddedRedis | None = None
    try:
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        assert store._proc is not None
        store._proc.kill()  # SIGKILL: no goodbye to the clients
        killed = time.monotonic()
        time.sleep(2.0)
        ready = httpx.get(f"{gateway.base}/ready", timeout=5)
        assert ready.status_code == 503
        assert ready.json()["checks"]["online_store"] == "unreachable"
        store.stop()
        restarting = time.monotonic()
        back = EmbeddedRedis(port=store.port).start()  # empty: restore the credential only
        with redis.Redis.from_url(back.url) as client:
            for key, fields in saved.items():
                client.hset(key, mapping=fields)
        restored = time.monotonic()
        deadline = time.monotonic() + 10
        while not any(t > restored and s == 200 for t, s, _ in load.answers):
            assert time.monotonic() < deadline, "the gateway did not recover"
            time.sleep(0.05)
        recovered = min(t for t, s, _ in load.answers if t > restored and s == 200)
        # Each worker has its own breaker: the last one may wait out a full backoff first.
        settled = restored + BACKOFF_MAX + 0.5
        time.sleep(max(0.0, settled + 0.5 - time.monotonic()))
    finally:
        load.stop.set()
        for thread in threads:
            thread.join(15)
        gateway.stop()
        if back is not None:
            back.stop()
        store.stop()

    statuses = {s for _, s, _ in load.answers}
    # Never a 500, never a dropped connection. 401 only while the new Redis was still empty
    # (its credential not restored yet): the token recheck refuses what the store no longer holds.
    assert statuses <= {200, 401, 503}, statuses
    assert all(killed < t < restored for t, s, _ in load.answers if s == 401)
    assert all(s == 200 for t, s, _ in load.answers if t < killed - 0.05)
    down = [(s, secs) for t, s, secs in load.answers if killed + 0.1 < t < restarting]
    assert down
    assert all(s == 503 for s, _ in down)
    assert max(secs for _, secs in down) < settings.redis_timeout_seconds + 0.5
    assert recovered - restored < 3.0  # at most one breaker backoff (2 s) and a reconnect
    after = [s for t, s, _ in load.answers if t > settled]
    assert after
    assert set(after) == {200}  # every worker is back
    last_error = max((t for t, s, _ in load.answers if s != 200), default=restored)
    print(
        f"\nRedis SIGKILLed under load: {len(down)} answers while down, all 503, slowest "
        f"{max(secs for _, secs in down) * 1000:.1f} ms; 200 again {recovered - restored:.2f} s "
        f"(every worker {max(0.0, last_error - restored):.2f} s) "
        f"after its data was back; {len(load.answers)} answers in all, none 500"
    )
    log = gateway.log.read_text()
    assert "unhandled error" not in log
    assert "died" not in log.lower()  # uvicorn reports a dead worker process


def test_a_cluster_with_no_reachable_node_is_not_ready_and_503(deployment: Deployment) -> None:
    """With redis_cluster configured and every seed refusing, the gateway still starts (its
    connections are lazy), /ready says not ready and a feature read is 503, never 500."""
    seeds = f"redis://127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
    settings = deployment.settings.model_copy(
        update={"redis_type": "redis_cluster", "redis_url": seeds}
    )
    app = create_app(settings)

    async def run() -> tuple[httpx.Response, httpx.Response]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
                ready = await client.get("/ready")
                read = await client.post(
                    "/get-online-features", json=BODY, headers=bearer(deployment.tokens["fraud"])
                )
        return ready, read

    ready, read = asyncio.run(run())
    assert ready.status_code == 503
    assert ready.json()["checks"]["online_store"] == "unreachable"
    assert read.status_code == 503, read.text
    assert read.json()["error"]["code"] == "store_unavailable"
