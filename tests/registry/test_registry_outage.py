"""The registry's PostgreSQL goes away under a serving gateway, and comes back.

What must hold (issue 8, item 4): reads keep answering 200 with the same values from the
gateway's last registry snapshot; /ready says ``degraded`` (still 200) naming the registry and
the snapshot's age, and ``featureplane_registry_up`` drops to 0; a gateway started during the
outage exits at once naming the registry; ``featureplane apply`` fails in one line naming the
registry (host:port, never the password) and writes nothing; once PostgreSQL is back, /ready is
``ready`` again by itself and apply works. The figures (success rate and p99 during the outage,
time to detect, time to recover) are printed (``pytest -s``).
"""

from __future__ import annotations

import gc
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from featureplane.embedded.gateway import GatewayProcess, settings_env
from featureplane.embedded.postgres import EmbeddedPostgres
from featureplane.embedded.redis import EmbeddedRedis
from featureplane.errors import FeatureplaneError, RegistryError
from featureplane.feast_config import check_registry, feast_registry_url
from featureplane.gateway.ops import registry_check, registry_stale_after
from featureplane.gateway.state import GatewayState
from featureplane.settings import Settings
from featureplane.tenancy.catalog import TenantCatalog
from tests.support.cli import run_cli
from tests.support.deployment import SAMPLE_ROWS
from tests.support.gateway import bearer, start_gateway
from tests.support.postgres import start_postgres
from tests.support.settings import make_settings

REFRESH_SECONDS = 1.0
PASSWORD = "s3cret-registry-pw"  # trust auth ignores it; it must never be printed
BODIES = {
    "fraud": {
        "features": ["account_stats:txn_count_24h", "account_stats:is_flagged"],
        "entities": {"account_id": [1, 2, 3, 999_999]},
    },
    "recsys": {
        "features": ["user_profile:favourite_genre", "user_profile:sessions_7d"],
        "entities": {"user_id": ["u000001", "u000002", "nobody"]},
    },
    "pricing": {
        "feature_service": "pricing_model_v1",
        "entities": {"store_id": [1, 2], "sku": ["sku-00000", "sku-00001"]},
    },
}


@dataclass
class Load:
    """Clients reading every tenant's features round-robin; every answer is kept as
    (start time, tenant, status, seconds, body)."""

    base: str
    tokens: dict[str, str]
    answers: list[tuple[float, str, int, float, Any]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        tenants = list(BODIES)
        with httpx.Client(base_url=self.base, timeout=10) as client:
            i = 0
            while not self.stop.is_set():
                tenant = tenants[i % len(tenants)]
                i += 1
                started = time.monotonic()
                try:
                    resp = client.post(
                        "/get-online-features",
                        json=BODIES[tenant],
                        headers=bearer(self.tokens[tenant]),
                    )
                    status, body = resp.status_code, resp.json()
                except (httpx.HTTPError, ValueError):
                    status, body = 0, None  # no (JSON) answer at all
                self.answers.append((started, tenant, status, time.monotonic() - started, body))
                time.sleep(0.01)


@dataclass
class Platform:
    settings: Settings
    postgres: EmbeddedPostgres
    tokens: dict[str, str]


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """The sample tenants deployed on a PostgreSQL registry and a Redis of their own (the
    outage must not disturb the session's shared deployment)."""
    from featureplane.demo import deploy_samples

    postgres = start_postgres()
    store = EmbeddedRedis().start()
    try:
        url = postgres.url.replace("featureplane@", f"featureplane:{PASSWORD}@")
        settings = make_settings(
            tmp_path_factory.mktemp("outage"),
            store.url,
            registry=url,
            registry_refresh_seconds=REFRESH_SECONDS,
        )
        catalog = TenantCatalog.load(settings.tenants_path, settings.feature_repo_path)
        now = datetime.now(UTC).replace(microsecond=0)
        # In-process Feast stores (materialization) never dispose of their registry engine: its
        # pooled PostgreSQL connection is only closed by the collector. Collect it here, quietly,
        # rather than at some later test's expense.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            deployed = deploy_samples(settings, catalog, SAMPLE_ROWS, now)
            gc.collect()
        yield Platform(settings, postgres, deployed.tokens)
    finally:
        store.stop()
        postgres.stop()


def _gateway(settings: Settings) -> GatewayProcess:
    with pytest.MonkeyPatch.context() as patch:  # GatewayProcess takes os.environ as it is now
        patch.setenv("FEATUREPLANE_REGISTRY_REFRESH_SECONDS", str(REFRESH_SECONDS))
        return start_gateway(settings, workers=2)


def _ready(base: str) -> tuple[int, dict[str, Any]]:
    resp = httpx.get(f"{base}/ready", timeout=5)
    return resp.status_code, resp.json()


def _registry_up(base: str) -> float:
    for family in text_string_to_metric_families(httpx.get(f"{base}/metrics", timeout=10).text):
        if family.name == "featureplane_registry_up":
            return float(family.samples[0].value)
    raise AssertionError("no featureplane_registry_up on /metrics")


def _wait_for(what: str, seconds: float, check: Any) -> float:
    """Poll ``check()`` until true; the time it took."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < seconds, f"{what}: not within {seconds:.0f} s"
        time.sleep(0.05)
    return time.monotonic() - started


def _registry_rows(postgres: EmbeddedPostgres) -> dict[str, list[str]]:
    """Every row of every table in the registry database, by table."""
    with psycopg.connect(postgres.url) as conn:
        tables = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
        ).fetchall()
        assert tables, "the registry database holds no tables"
        return {
            table: sorted(repr(r) for r in conn.execute(f'SELECT * FROM "{table}"').fetchall())
            for (table,) in tables  # names from pg_tables
        }


def _p99(seconds: list[float]) -> float:
    ordered = sorted(seconds)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


@pytest.mark.chaos
@pytest.mark.postgres
def test_registry_outage_is_ridden_out_and_recovered_by_itself(platform: Platform) -> None:
    settings, postgres = platform.settings, platform.postgres
    port = postgres.port
    gateway = _gateway(settings)
    load = Load(gateway.base, platform.tokens)
    threads = [threading.Thread(target=load.run) for _ in range(2)]
    try:
        status, body = _ready(gateway.base)
        assert (status, body["status"], body["checks"]["registry"]) == (200, "ready", "ok")
        assert _registry_up(gateway.base) == 1.0
        with httpx.Client(base_url=gateway.base, timeout=10) as client:
            reference = {
                t: client.post("/get-online-features", json=b, headers=bearer(platform.tokens[t]))
                for t, b in BODIES.items()
            }
        assert {t: r.status_code for t, r in reference.items()} == dict.fromkeys(BODIES, 200)
        expected = {t: r.json() for t, r in reference.items()}
        # Each worker's start-up writes to the registry (Feast records the reader's project):
        # take the reference once both are up.
        _wait_for(
            "both workers started",
            60,
            lambda: gateway.log.read_text().count("Application startup complete") >= 2,
        )
        before = _registry_rows(postgres)
        for thread in threads:
            thread.start()
        time.sleep(5.0)  # a baseline to compare the outage's latency with

        postgres.halt()  # SIGQUIT: PostgreSQL's immediate shutdown, as a crash
        stopped = time.monotonic()
        detect = _wait_for(
            "/ready degraded",
            REFRESH_SECONDS * 2 + 10,
            lambda: _ready(gateway.base)[1]["status"] == "degraded",
        )

        # A new gateway cannot start without a registry: it exits at once, naming it.
        starting = time.monotonic()
        with pytest.raises(FeatureplaneError, match="exited during start-up") as refused:
            _gateway(settings)
        start_refused = time.monotonic() - starting
        assert f"registry postgresql://featureplane@127.0.0.1:{port}/registry is unreachable" in (
            str(refused.value)
        )
        assert "Traceback" not in str(refused.value)

        # apply fails in one line naming the registry and the cause.
        applying = time.monotonic()
        applied = run_cli("apply", "fraud", env=settings_env(settings))
        apply_refused = time.monotonic() - applying
        quiet = time.monotonic()  # no more subprocesses competing for the CPU from here
        assert applied.returncode == 1, applied.stdout + applied.stderr
        message = applied.stderr.strip()
        assert message == (
            f"error: registry postgresql://featureplane@127.0.0.1:{port}/registry is "
            "unreachable: Connection refused"
        ), applied.stderr
        assert "Traceback" not in applied.stdout + applied.stderr

        # Ride out at least five refresh cycles in all (and 5 s with nothing else running), then
        # look at what /ready says.
        time.sleep(
            max(0.0, stopped + 6 * REFRESH_SECONDS - time.monotonic(), quiet + 5 - time.monotonic())
        )
        status, body = _ready(gateway.base)
        assert (status, body["status"], body["checks"]["online_store"]) == (200, "degraded", "ok")
        registry = body["checks"]["registry"]
        assert registry.startswith(
            f"unavailable: registry postgresql://featureplane@127.0.0.1:{port}/registry is "
            "unreachable: Connection refused; serving the snapshot of "
        ), registry
        assert body["checks"]["registry_age_seconds"] > 4 * REFRESH_SECONDS
        assert body["checks"]["projects"] == ["fraud", "pricing", "recsys"]
        for _ in range(4):  # either worker may answer the scrape: both are degraded
            assert _registry_up(gateway.base) == 0.0
        outage_seconds = time.monotonic() - stopped

        postgres.start()
        restarted = time.monotonic()
        recover = _wait_for(
            "/ready ready again",
            REFRESH_SECONDS * 2 + 15,
            lambda: _ready(gateway.base)[1]["status"] == "ready",
        )
        _wait_for("every worker refreshed", 10, lambda: _registry_up(gateway.base) == 1.0)
        time.sleep(0.5)
    finally:
        load.stop.set()
        for thread in threads:
            if thread.ident is not None:  # started
                thread.join(15)
        gateway.stop()

    # Nothing was written while it was down; apply works again.
    after = _registry_rows(postgres)
    changed = {
        t: (before.get(t), after.get(t)) for t in before | after if before.get(t) != after.get(t)
    }
    assert not changed, changed
    again = run_cli("apply", "fraud", env=settings_env(settings))
    assert again.returncode == 0, again.stdout + again.stderr
    check_registry(settings)

    down = [a for a in load.answers if stopped < a[0] < restarted]
    assert len(down) > 50, f"only {len(down)} reads during the outage"
    assert all(a[2] == 200 for a in load.answers), {a[2] for a in load.answers}
    assert all(a[4] == expected[a[1]] for a in load.answers), "an answer changed"
    log = gateway.log.read_text()
    assert "unhandled error" not in log
    assert "Traceback" not in log
    assert "registry refresh failed, serving the previous snapshot: registry postgresql://" in log
    everything = log + applied.stdout + applied.stderr + str(refused.value) + str(body)
    assert PASSWORD not in everything
    print(
        f"\nregistry outage of {outage_seconds:.1f} s (refresh every {REFRESH_SECONDS:g} s): "
        f"{len(down)} reads during it, {sum(a[2] == 200 for a in down) / len(down):.2%} answered "
        f"200 with unchanged values, p99 {_p99([a[3] for a in down]) * 1000:.1f} ms "
        f"(before: {_p99([a[3] for a in load.answers if a[0] < stopped]) * 1000:.1f} ms; "
        f"outage without the CLI and start-up subprocesses running beside it: "
        f"{_p99([a[3] for a in down if a[0] > quiet]) * 1000:.1f} ms); "
        f"/ready degraded {detect:.2f} s after the stop; a new gateway refused in "
        f"{start_refused:.1f} s, apply in {apply_refused:.1f} s (exit 1, one line); /ready "
        f"ready again {recover:.2f} s after PostgreSQL restarted"
    )


def test_a_silent_registry_fails_within_the_connect_timeout(tmp_path: Path) -> None:
    """A server that accepts TCP but never answers (a hung or blackholed database) costs one
    connect_timeout, not the kernel's or libpq's default of waiting for ever."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        settings = Settings(
            registry=f"postgresql://u:{PASSWORD}@127.0.0.1:{port}/registry?connect_timeout=1",
            data_dir=tmp_path,
        )
        started = time.monotonic()
        with pytest.raises(RegistryError) as failed:
            check_registry(settings)
        took = time.monotonic() - started
    assert str(failed.value) == (
        f"registry postgresql://u@127.0.0.1:{port}/registry is unreachable: "
        "connection timeout expired"
    )
    assert took < 5


def test_postgres_urls_get_timeouts_unless_they_set_their_own(tmp_path: Path) -> None:
    def url(registry: str) -> str:
        return feast_registry_url(Settings(registry=registry, data_dir=tmp_path))

    assert url("postgresql://u:p@db:5432/r") == (
        "postgresql+psycopg://u:p@db:5432/r?connect_timeout=5&tcp_user_timeout=15000"
    )
    assert url("postgresql://u@db/r?sslmode=require&connect_timeout=2") == (
        "postgresql+psycopg://u@db/r?sslmode=require&connect_timeout=2&tcp_user_timeout=15000"
    )
    assert url(str(tmp_path / "registry.db")) == f"sqlite:///{tmp_path / 'registry.db'}"


def test_a_refresh_that_hangs_counts_as_stale_without_an_error(tmp_path: Path) -> None:
    """No refresh error but no refresh either (one stuck on a silent database): after
    ``registry_stale_after`` the snapshot is reported stale, and healthy before that."""
    refresh = 10.0
    settings = Settings(registry_refresh_seconds=refresh, data_dir=tmp_path)
    now = time.time()

    def state(age: float, error: str | None = None) -> GatewayState:
        catalog = SimpleNamespace(loaded_at=now - age)
        fake = SimpleNamespace(settings=settings, plans=catalog, registry_error=error)
        return cast(GatewayState, fake)

    assert registry_stale_after(refresh) == 40.0
    assert registry_stale_after(60.0) == 180.0
    assert registry_check(state(39.0), now) == (True, "ok")
    assert registry_check(state(41.0), now) == (
        False,
        "stale: no refresh for 41 s; serving the last snapshot",
    )
    assert registry_check(state(12.0, "registry x is unreachable: y"), now) == (
        False,
        "unavailable: registry x is unreachable: y; serving the snapshot of 12 s ago",
    )
