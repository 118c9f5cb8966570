"""A hostile tenant's on-demand feature views — one loops, one raises, one exits the process,
one allocates without bound, one reads its environment, one dials 127.0.0.1, one pries into the
gateway's /proc files — against the real gateway: each gets a JSON error naming the view (504
on timeout), its worker is replaced, the worker holds no secret and reaches neither the network
nor the gateway's environment, and another tenant's answers stay right with its p99 in bounds
(the figures are printed)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from featureplane.embedded.gateway import GatewayProcess
from featureplane.embedded.redis import EmbeddedRedis
from featureplane.transform.zygote import namespaces
from tests.support.components import require
from tests.support.gateway import bearer, columns_by_name, start_gateway
from tests.support.trees import OWNER, TENANT_YAML, Platform, Tree, cli

# Feast runs each UDF at apply on sample inputs (an Int64 request field is 1): the hostile
# branches take other values.
ROGUE = """
import os
from typing import Any

from feast import Field, RequestSource
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Int64, String

OWNER = "ml@example.com"
request = RequestSource(name="request", schema=[Field(name="x", dtype=Int64)])


def _view(name, dtype=Int64):
    return on_demand_feature_view(
        name=name, sources=[request], schema=[Field(name="y", dtype=dtype)], mode="python",
        description=f"hostile: {name}", owner=OWNER,
    )


@_view("loops")
def loops(inputs: dict[str, Any]) -> dict[str, Any]:
    while inputs["x"][0] == 7:
        pass
    return {"y": [x + 1 for x in inputs["x"]]}


@_view("raises")
def raises(inputs: dict[str, Any]) -> dict[str, Any]:
    if inputs["x"][0] == 7:
        raise ValueError("seven is not allowed")
    return {"y": inputs["x"]}


@_view("exits")
def exits(inputs: dict[str, Any]) -> dict[str, Any]:
    import os  # a UDF's imports go inside it: Feast ships the function, not its module

    if inputs["x"][0] == 7:
        os._exit(3)
    return {"y": inputs["x"]}


@_view("hogs")
def hogs(inputs: dict[str, Any]) -> dict[str, Any]:
    hoard = []
    while inputs["x"][0] == 7:
        hoard.append(bytes(256 * 2**20))
    return {"y": inputs["x"]}


@_view("peeks", String)
def peeks(inputs: dict[str, Any]) -> dict[str, Any]:
    import os

    return {"y": [repr(dict(os.environ)) for _ in inputs["x"]]}


@_view("dials", String)
def dials(inputs: dict[str, Any]) -> dict[str, Any]:
    import errno
    import socket

    out = []
    for port in inputs["x"]:  # a port on 127.0.0.1
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            out.append("connected")
        except OSError as exc:
            out.append(errno.errorcode.get(exc.errno or 0, type(exc).__name__))
    return {"y": out}


@_view("pries", String)
def pries(inputs: dict[str, Any]) -> dict[str, Any]:
    import json
    import os

    if inputs["x"][0] != 7:
        return {"y": ["" for _ in inputs["x"]]}
    with open(f"/proc/{os.getppid()}/stat") as stat:  # the zygote's parent: the gateway
        gateway = int(stat.read().rpartition(")")[2].split()[1])
    try:
        with open(f"/proc/{gateway}/environ", "rb") as environ:
            seen = environ.read().decode(errors="replace")
    except OSError as exc:
        seen = type(exc).__name__
    found = {"gateway": gateway, "environ": seen, "net": os.readlink("/proc/self/ns/net")}
    return {"y": [json.dumps(found) for _ in inputs["x"]]}
"""

CALM = """
from typing import Any

from feast import Field, RequestSource
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Int64

request = RequestSource(name="request", schema=[Field(name="x", dtype=Int64)])


@on_demand_feature_view(
    sources=[request], schema=[Field(name="doubled", dtype=Int64)], mode="python",
    description="x times two", owner="ml@example.com",
)
def double(inputs: dict[str, Any]) -> dict[str, Any]:
    return {"doubled": [x * 2 for x in inputs["x"]]}
"""

TIMEOUT_MS = 500


@pytest.fixture(scope="module")
def served(
    redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Tree, GatewayProcess, dict[str, str]]]:
    platform = Platform(tmp_path_factory.mktemp("isolation"), redis_server.url)
    limits = f"transforms: {{timeout_ms: {TIMEOUT_MS}, memory_mb: 256, queue: 4}}\n"
    tree = platform.tree("tree", "rogue", {"rogue.py": ROGUE}, tenant_yaml=limits)
    calm_repo = tree.settings.feature_repo_path / "calm"
    calm_repo.mkdir()
    (calm_repo / "calm.py").write_text(CALM)
    (tree.settings.tenants_path / "calm").mkdir()
    (tree.settings.tenants_path / "calm" / "tenant.yaml").write_text(
        TENANT_YAML.format(tenant="calm", owner=OWNER)
        + "quotas: {requests_per_second: 100000, burst: 100000}\n"
    )
    tokens = {}
    for tenant in ("rogue", "calm"):
        done = cli(tree, "apply", tenant)
        assert done.returncode == 0, done.stdout + done.stderr
        issued = cli(tree, "tenants", "issue-token", tenant)
        tokens[tenant] = issued.stdout.strip()
    gateway = start_gateway(tree.settings, workers=1)
    try:
        yield tree, gateway, tokens
    finally:
        gateway.stop()
        shutil.rmtree(tree.root, ignore_errors=True)


def _ask(
    gateway: GatewayProcess, token: str, view: str, x: int, feature: str = "y"
) -> httpx.Response:
    body = {"features": [f"{view}:{feature}"], "entities": {"x": [x]}}
    return httpx.post(
        f"{gateway.base}/get-online-features", json=body, headers=bearer(token), timeout=30
    )


def _recovered(gateway: GatewayProcess, token: str, view: str) -> float:
    """Seconds until ``view`` answers normally again (its worker replaced)."""
    started = time.perf_counter()
    while time.perf_counter() - started < 60:
        resp = _ask(gateway, token, view, 1)
        if resp.status_code == 200:
            return time.perf_counter() - started
        assert resp.status_code == 503, resp.text  # busy while the replacement starts
        time.sleep(0.2)
    raise AssertionError(f"{view} did not recover within 60 s")


@pytest.mark.parametrize(
    ("view", "status", "says"),
    [
        ("raises", 500, "raised ValueError: seven is not allowed"),
        ("loops", 504, f"no answer within the {TIMEOUT_MS / 1000:g} s limit"),
        ("exits", 500, "exited with code 3"),
        ("hogs", 500, "ran out of memory"),
    ],
)
def test_a_hostile_view_fails_alone_and_its_worker_is_replaced(
    served: tuple[Tree, GatewayProcess, dict[str, str]], view: str, status: int, says: str
) -> None:
    _, gateway, tokens = served
    started = time.perf_counter()
    resp = _ask(gateway, tokens["rogue"], view, 7)
    elapsed = time.perf_counter() - started
    assert resp.status_code == status, resp.text
    message = resp.json()["error"]["message"]
    assert f"on-demand feature view {view!r}" in message, message
    assert says in message, message
    assert elapsed < TIMEOUT_MS / 1000 + 2, f"{view} took {elapsed:.1f} s to fail"
    recovery = _recovered(gateway, tokens["rogue"], view)
    print(
        f"\n{view}: failed in {elapsed * 1000:.0f} ms ({status}); "
        f"answering again after {recovery:.1f} s"
    )
    assert _ask(gateway, tokens["calm"], "double", 21, "doubled").json()["results"][0][
        "values"
    ] == [42]


def test_calls_queued_behind_a_stuck_worker_time_out_and_the_tenant_recovers(
    served: tuple[Tree, GatewayProcess, dict[str, str]],
) -> None:
    """A second loop in a row: its worker's replacement backs off (1 s), so the tenant's calls
    queued behind it find no worker within the time limit: each is answered 503 busy (none
    hangs), and once a worker is back every call is answered normally."""
    _, gateway, tokens = served

    def ask(x: int) -> int:
        return _ask(gateway, tokens["rogue"], "loops", x).status_code

    assert ask(7) == 504  # replaced at once; the next replacement waits 0.5 s x 2
    with ThreadPoolExecutor(max_workers=4) as pool:
        stuck = pool.submit(ask, 7)
        time.sleep(0.05)  # the loop has the worker: the others queue behind it
        queued = [pool.submit(ask, 1) for _ in range(3)]
        assert stuck.result(timeout=20) == 504
        statuses = [q.result(timeout=20) for q in queued]
    assert 503 in statuses, statuses
    assert set(statuses) <= {503, 504}, statuses  # 504: sent in the loop's batch
    _recovered(gateway, tokens["rogue"], "loops")
    assert [ask(1) for _ in range(5)] == [200] * 5
    print(f"\nqueued behind a stuck worker: {statuses}")


def test_workers_hold_no_secret(served: tuple[Tree, GatewayProcess, dict[str, str]]) -> None:
    tree, gateway, tokens = served
    resp = _ask(gateway, tokens["rogue"], "peeks", 1)
    assert resp.status_code == 200, resp.text
    seen = resp.json()["results"][0]["values"][0]
    assert "FEATUREPLANE" not in seen
    for secret in (tree.settings.redis_url, tree.settings.registry_url or "", tokens["calm"]):
        if secret:
            assert secret not in seen
    assert set(eval(seen)) <= {  # a dict repr the test's own view produced
        "PATH", "LANG", "HOME", "FEAST_USAGE", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
        "PYTHONDONTWRITEBYTECODE", "LC_CTYPE",
        # set by importing Feast, inside the worker: a temp folder of its own
        "PROMETHEUS_MULTIPROC_DIR", "PROMETHEUS_MULTIPROCESS_DIR",
    }  # fmt: skip


def test_workers_reach_no_network_and_cannot_read_the_gateway(
    served: tuple[Tree, GatewayProcess, dict[str, str]], redis_server: EmbeddedRedis
) -> None:
    """The zygote, so every worker, runs in network and user namespaces of its own: no
    connection, not even to the Redis and the gateway listening on 127.0.0.1, and the gateway's
    /proc/<pid>/environ (its Redis URL) is closed to it although both run as one OS user."""
    require(bool(namespaces()), "unprivileged user namespaces (util-linux unshare)")
    tree, gateway, tokens = served
    for port in (redis_server.port, gateway.port):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()  # both do listen
        resp = _ask(gateway, tokens["rogue"], "dials", port)
        assert resp.status_code == 200, resp.text
        (seen,) = resp.json()["results"][0]["values"]
        assert seen == "ENETUNREACH", f"a worker dialling 127.0.0.1:{port}: {seen}"

    resp = _ask(gateway, tokens["rogue"], "pries", 7)
    assert resp.status_code == 200, resp.text
    found = json.loads(resp.json()["results"][0]["values"][0])
    assert found["environ"] == "PermissionError", found["environ"][:200]
    with open(f"/proc/{found['gateway']}/environ", "rb") as environ:  # the test may, as its user
        assert tree.settings.require_redis_url().encode() in environ.read()
    assert found["net"] != os.readlink("/proc/self/ns/net")
    assert found["net"] != os.readlink(f"/proc/{found['gateway']}/ns/net")
    print(f"\nworker: 127.0.0.1 unreachable, gateway environ refused, net {found['net']}")


def _latencies(gateway: GatewayProcess, token: str, n: int) -> list[float]:
    out = []
    with httpx.Client(base_url=gateway.base, headers=bearer(token), timeout=30) as client:
        for i in range(n):
            body = {"features": ["double:doubled"], "entities": {"x": [i]}}
            started = time.perf_counter()
            resp = client.post("/get-online-features", json=body)
            out.append(time.perf_counter() - started)
            assert resp.status_code == 200, resp.text
            assert columns_by_name(resp.json())["doubled"] == [2 * i]
    return out


def _p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100)[98] * 1000


def test_another_tenants_p99_is_unaffected(
    served: tuple[Tree, GatewayProcess, dict[str, str]],
) -> None:
    _, gateway, tokens = served
    _latencies(gateway, tokens["calm"], 50)  # warm
    quiet = _latencies(gateway, tokens["calm"], 400)
    stop = threading.Event()
    attacks: dict[str, int] = {}

    def attack() -> None:
        views = ["loops", "hogs", "exits", "raises"]
        i = 0
        while not stop.is_set():
            resp: Any = _ask(gateway, tokens["rogue"], views[i % len(views)], 7)
            attacks[str(resp.status_code)] = attacks.get(str(resp.status_code), 0) + 1
            i += 1

    attacker = threading.Thread(target=attack)
    attacker.start()
    try:
        time.sleep(1)
        loud = _latencies(gateway, tokens["calm"], 400)
    finally:
        stop.set()
        attacker.join()
    q50, l50 = statistics.median(quiet) * 1000, statistics.median(loud) * 1000
    q99, l99 = _p99(quiet), _p99(loud)
    print(
        f"\ncalm tenant, 400 sequential ODFV requests each: quiet p50 {q50:.2f} ms "
        f"p99 {q99:.2f} ms;"
        f" under attack p50 {l50:.2f} ms p99 {l99:.2f} ms; rogue answers {attacks}"
        f" (cpus: {os.cpu_count()})"
    )
    assert sum(attacks.values()) >= 4
    # Each replacement of a rogue worker costs a Feast import (~3.5 s of CPU, at nice 10) on a
    # machine whose two cores also run this client and the gateway: p99 moves by a few ms there.
    assert l50 <= 1.5 * q50 + 0.5, (q50, l50)
    assert l99 <= max(3 * q99, q99 + 25), (q99, l99)
