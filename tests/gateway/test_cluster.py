"""Redis Cluster end to end: 3 primaries + 3 replicas on loopback (EmbeddedRedisCluster).

The sample tenants are materialized into the cluster by featureplane's engine (each batch split
per primary); the real gateway (`featureplane serve`, FEATUREPLANE_REDIS_TYPE=redis_cluster)
answers what Feast's SDK reads from the same cluster; tokens and quotas live there too. Then a
primary is SIGKILLed under steady load: the requests that fail are 503 store_unavailable (never
500), only until a replica is promoted, and all succeed again with the same values.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis
from feast.feature_server_utils import convert_response_to_dict
from redis.crc import key_slot

from featureplane.embedded.gateway import GatewayProcess
from featureplane.embedded.redis import EmbeddedRedisCluster, redis_server_binary
from featureplane.errors import ConfigError, QuotaExceededError, StoreUnavailableError
from featureplane.feast_config import feature_store
from featureplane.gateway.quotas import RedisQuotaStore
from featureplane.online.clients import redis_client
from featureplane.online.cluster import ClusterConnection
from featureplane.online.connection import NotSentError
from featureplane.tenancy.credentials import CredentialStore
from featureplane.tenancy.spec import Quotas
from tests.support.components import require
from tests.support.deployment import Deployment, deploy, feature_views
from tests.support.gateway import bearer, columns_by_name, start_gateway
from tests.support.settings import make_settings

TENANTS = ["fraud", "recsys", "pricing"]


class _FlakyNode:
    """A primary whose connection drops each first call (after sending), or refuses it."""

    def __init__(self, fail_with: type[StoreUnavailableError]) -> None:
        self.fail_with = fail_with
        self.calls = 0

    async def execute(self, commands: Any) -> list[Any]:
        slots = [[0, 16383, [b"127.0.0.1", 7000, b"id"]]]
        return [slots if c[0] == b"CLUSTER" else b"PONG" for c in commands]

    async def execute_packed(self, payload: bytes, count: int) -> list[Any]:
        self.calls += 1
        if self.calls == 1:
            raise self.fail_with("online store: connection lost")
        return [b"ok"] * count


@pytest.mark.parametrize(
    ("fail_with", "evalsha_retried"), [(StoreUnavailableError, False), (NotSentError, True)]
)
def test_a_quota_script_is_retried_only_if_it_certainly_did_not_run(
    monkeypatch: pytest.MonkeyPatch, fail_with: type[StoreUnavailableError], evalsha_retried: bool
) -> None:
    """A read is retried after any failure; EVALSHA only when it never left (NotSentError):
    lost with its connection, it may have run, and twice would take quota twice."""

    async def run() -> None:
        for command, retried in (
            ([b"HMGET", b"k", b"f"], True),
            ([b"EVALSHA", b"sha", b"2", b"{t}:a", b"{t}:b"], evalsha_retried),
        ):
            node = _FlakyNode(fail_with)
            conn = ClusterConnection.from_url("redis://127.0.0.1:7000")
            monkeypatch.setattr(conn, "_node", lambda _address, n=node: n)
            if retried:
                assert await conn.execute([command]) == [b"ok"]
            else:
                with pytest.raises(StoreUnavailableError):
                    await conn.execute([command])
            assert node.calls == (2 if retried else 1)

    asyncio.run(run())


@pytest.fixture(scope="module")
def cluster() -> Iterator[EmbeddedRedisCluster]:
    try:
        redis_server_binary()
    except ConfigError:
        require(False, "redis-server")
    require(shutil.which("redis-cli") is not None, "redis-cli (creates the cluster)")
    with EmbeddedRedisCluster(masters=3, replicas=1) as running:
        yield running


@pytest.fixture(scope="module")
def deployment(
    cluster: EmbeddedRedisCluster, tmp_path_factory: pytest.TempPathFactory
) -> Deployment:
    return deploy(
        make_settings(tmp_path_factory.mktemp("cluster"), cluster.url, redis_type="redis_cluster")
    )


@pytest.fixture(scope="module")
def gateway(deployment: Deployment) -> Iterator[GatewayProcess]:
    """The module's own gateway on the cluster (one worker); ``http`` (conftest) talks to it."""
    gw = start_gateway(deployment.settings, workers=1)
    try:
        yield gw
    finally:
        gw.stop()


def _request(deployment: Deployment, tenant: str, view: Any, n: int) -> dict[str, Any]:
    """The first ``n`` stored entities of ``view`` plus one absent one."""
    table = deployment.tables[tenant][view.batch_source.name]
    rows = table.select(view.join_keys).slice(0, n).to_pylist()
    absent = {k: (10**12 if isinstance(v, int) else "absent") for k, v in rows[0].items()}
    rows.append(absent)
    return {
        "features": [f"{view.name}:{f.name}" for f in view.features],
        "entities": {k: [r[k] for r in rows] for k in view.join_keys},
        "rows": rows,
    }


def _post(http: httpx.Client, token: str, request: dict[str, Any]) -> httpx.Response:
    body = {"features": request["features"], "entities": request["entities"]}
    return http.post("/get-online-features", json=body, headers=bearer(token))


def test_materialized_keys_are_spread_over_every_primary(
    cluster: EmbeddedRedisCluster, deployment: Deployment
) -> None:
    suffixes = [deployment.catalog[t].feast_project.encode() for t in TENANTS]
    per_node = {}
    for port in cluster.primaries():
        with redis.Redis(port=port) as node:
            keys = [k for k in node.scan_iter(count=1000) if k.endswith(tuple(suffixes))]
        per_node[port] = len(keys)
    assert len(per_node) == 3
    assert all(count > 50 for count in per_node.values()), per_node
    # The control plane's SCAN sees every primary's keys, not one node's.
    client = redis_client(deployment.settings)
    total = sum(1 for k in client.scan_iter(count=1000) if k.endswith(tuple(suffixes)))
    assert total == sum(per_node.values())


@pytest.mark.parametrize("tenant", TENANTS)
def test_gateway_answers_what_feast_reads_from_the_cluster(
    deployment: Deployment, http: httpx.Client, tenant: str
) -> None:
    store = feature_store(deployment.settings, deployment.catalog[tenant])
    for view in feature_views(deployment, tenant):
        request = _request(deployment, tenant, view, 30)
        resp = _post(http, deployment.tokens[tenant], request)
        assert resp.status_code == 200, resp.text
        theirs = store.get_online_features(
            features=request["features"], entity_rows=request["rows"]
        )
        expected = columns_by_name(convert_response_to_dict(theirs.proto))
        ours = columns_by_name(resp.json())
        assert ours == expected, view.name
        present = [v for k, v in ours.items() if k not in view.join_keys]
        assert any(v is not None for column in present for v in column[:-1]), view.name


def test_tokens_and_quotas_live_in_the_cluster(deployment: Deployment, http: httpx.Client) -> None:
    tenant = "pricing"
    view = feature_views(deployment, tenant)[0]
    request = _request(deployment, tenant, view, 5)
    client = redis_client(deployment.settings)
    creds = CredentialStore(client, deployment.settings.pepper)
    issued = creds.issue(tenant)
    assert _post(http, issued.token, request).status_code == 200
    assert issued.id in [c.id for c in creds.list(tenant)]
    creds.revoke(issued.id)
    revoked = _post(http, issued.token, request)
    assert revoked.status_code == 401, revoked.text
    # The gateway's reservations are the {tenant}-tagged keys, in one slot of the cluster.
    rate, slots = RedisQuotaStore.keys(tenant)
    assert client.exists(rate)
    assert key_slot(rate.encode()) == key_slot(slots.encode())

    async def exact_limits() -> None:
        connection = ClusterConnection.from_url(deployment.settings.require_redis_url())
        try:
            store = RedisQuotaStore(connection)
            quotas = Quotas(requests_per_second=5, burst=3, max_concurrent_requests=100)
            client.delete(*store.keys("unit-cluster"))
            for _ in range(3):
                await store.admit("unit-cluster", quotas)
            with pytest.raises(QuotaExceededError) as excinfo:
                await store.admit("unit-cluster", quotas)
            assert excinfo.value.quota == "requests_per_second"
        finally:
            await connection.aclose()

    asyncio.run(exact_limits())


def test_ready_and_metrics_see_the_whole_cluster(http: httpx.Client) -> None:
    ready = http.get("/ready")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["online_store"] == "ok"
    metrics = http.get("/metrics").text
    assert "featureplane_online_store_up 1.0" in metrics
    assert "featureplane_online_store_used_memory_bytes" in metrics  # summed over primaries
    assert 'featureplane_cost_online_bytes{tenant="fraud"' in metrics  # SCAN of every primary


def test_moved_and_ask_redirections_are_followed(deployment: Deployment) -> None:
    """A stale slot map (MOVED) and a slot being migrated (ASK) still read the right node,
    without waiting for a slot-map refresh."""
    client = redis_client(deployment.settings)
    moved, asked = b"featureplane:test:moved", b"featureplane:test:ask"
    client.hset(moved, "a", "1")

    async def run() -> None:
        conn = ClusterConnection.from_url(deployment.settings.require_redis_url())
        try:
            assert await conn.read_hashes([(moved, [b"a"])]) == [[b"1"]]  # loads the map
            conn._refreshed_at = time.monotonic() + 60  # no refresh: the redirection must do
            slot = key_slot(moved)
            owner = conn._owners[slot]
            conn._owners[slot] = next(p for p in conn._primaries if p != owner)
            assert await conn.read_hashes([(moved, [b"a"]), (moved, [b"b"])]) == [[b"1"], [None]]

            slot = key_slot(asked)
            source = conn._owners[slot]
            target = next(p for p in conn._primaries if p != source)
            ids = {}
            for address in (source, target):
                with redis.Redis(*address) as node:
                    ids[address] = node.execute_command("CLUSTER MYID")
            with redis.Redis(*target) as dst, redis.Redis(*source) as src:
                dst.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", ids[source])
                src.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", ids[target])
                try:
                    dst.execute_command("ASKING")
                    dst.hset(asked, "a", "2")  # only the importing node has it
                    assert await conn.execute([[b"HMGET", asked, b"a"]]) == [[b"2"]]
                finally:
                    dst.execute_command("ASKING")
                    dst.delete(asked)
                    for node in (src, dst):
                        node.execute_command("CLUSTER SETSLOT", slot, "STABLE")
        finally:
            await conn.aclose()

    asyncio.run(run())


@dataclass
class _Outcome:
    at: float  # monotonic, when the request ended
    status: int
    code: str | None
    ok_values: bool


def _load(
    base: str,
    token: str,
    request: dict[str, Any],
    expected: dict[str, list[Any]],
    stop: threading.Event,
    out: list[_Outcome],
) -> None:
    """Steady load: one request every ~5 ms, each outcome recorded."""
    with httpx.Client(base_url=base, timeout=5) as client:
        while not stop.is_set():
            resp = _post(client, token, request)
            body = resp.json()
            code = body.get("error", {}).get("code") if resp.status_code != 200 else None
            ok = resp.status_code == 200 and columns_by_name(body) == expected
            out.append(_Outcome(time.monotonic(), resp.status_code, code, ok))
            time.sleep(0.005)


@pytest.mark.chaos
def test_a_primary_killed_under_load_fails_503_then_recovers(
    cluster: EmbeddedRedisCluster, deployment: Deployment, gateway: GatewayProcess
) -> None:
    tenant = "fraud"
    view = feature_views(deployment, tenant)[0]
    request = _request(deployment, tenant, view, 40)  # 40 entities: keys on every primary
    token = deployment.tokens[tenant]
    with httpx.Client(base_url=gateway.base, timeout=5) as client:
        first = _post(client, token, request)
        assert first.status_code == 200, first.text
    expected = columns_by_name(first.json())

    outcomes: list[_Outcome] = []
    stop = threading.Event()
    loader = threading.Thread(
        target=_load, args=(gateway.base, token, request, expected, stop, outcomes)
    )
    loader.start()
    try:
        time.sleep(1.0)  # steady state first
        before = len(outcomes)
        victim = cluster.primaries()[0]
        survivor = next(n.port for n in cluster.nodes if n.port != victim)
        killed_at = time.monotonic()
        cluster.kill_node(victim)
        promoted_at = None
        while time.monotonic() - killed_at < 15:
            primaries = cluster.primaries(survivor)
            if victim not in primaries and len(primaries) == 3:
                promoted_at = time.monotonic()
                break
            time.sleep(0.02)
        assert promoted_at is not None, "no replica was promoted within 15 s"
        time.sleep(3.0)  # load after the promotion
    finally:
        stop.set()
        loader.join()

    during = outcomes[before:]
    failures = [o for o in during if o.status != 200]
    assert not [o for o in outcomes if o.status == 500], "a 500 during the failover"
    assert {(o.status, o.code) for o in failures} <= {(503, "store_unavailable")}
    assert all(o.ok_values for o in outcomes if o.status == 200), "a wrong value was served"
    last_failure = max((o.at for o in failures), default=killed_at)
    recovered = [o for o in during if o.status == 200 and o.at > last_failure]
    assert recovered, "no request succeeded after the failover"
    first_success = recovered[0].at
    first_failure = min((o.at for o in failures), default=killed_at)
    # Errors only inside the failover window: nothing fails once the promotion is seen + 2 s.
    assert last_failure <= promoted_at + 2.0, (last_failure - killed_at, promoted_at - killed_at)
    assert len(recovered) >= 20  # and then steadily, with the right values
    print(
        f"\nRedis Cluster failover under load: 1 primary SIGKILLed; {len(during)} requests, "
        f"{len(failures)} failed (all 503 store_unavailable, the first "
        f"{first_failure - killed_at:.2f} s after the kill); replica promoted after "
        f"{promoted_at - killed_at:.2f} s; first success after the last error "
        f"{first_success - killed_at:.2f} s after the kill; {len(recovered)} requests after, "
        "all 200 with the values from before"
    )
