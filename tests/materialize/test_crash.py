"""SIGKILL `featureplane materialize` mid-run, rerun: the result equals one uninterrupted run.

The real CLI runs in a subprocess against throwaway Redis servers. One run of the same input into
a second Redis is the reference; every key and hash field is compared byte-for-byte, the offline
Parquet row for row. `pytest -s` prints the figures.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import redis

from featureplane.embedded.redis import EmbeddedRedis, redis_server_binary
from featureplane.errors import ConfigError
from featureplane.feast_config import feature_store
from featureplane.ingest.landing import read_pending
from featureplane.materialize.runner import materialize_tenant
from featureplane.observability import runs
from featureplane.offline import read_parts, write_part
from featureplane.registry.apply import apply_tenant
from featureplane.samples import generate, land
from featureplane.settings import Settings
from featureplane.sources import landing_dir, offline_dir
from featureplane.tenancy.catalog import TenantCatalog
from featureplane.tenancy.spec import TenantSpec
from tests.support.components import require
from tests.support.settings import make_settings

TENANT = "fraud"
SOURCE = "account_activity"
VIEW = "account_stats"
ACCOUNTS = 120_000  # keys online; the generator adds a fifth again as older rows offline
BATCHES = 4
CONTROL = b"featureplane:"  # run records: timings differ between any two runs


@pytest.fixture
def two_redis() -> Iterator[tuple[EmbeddedRedis, EmbeddedRedis]]:
    try:
        redis_server_binary()
    except ConfigError:
        require(False, "redis-server")
    with EmbeddedRedis() as reference, EmbeddedRedis() as crashed:
        yield reference, crashed


def cli_env(settings: Settings, redis_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEATUREPLANE_")}
    return env | {
        "FEATUREPLANE_REDIS_URL": redis_url,
        "FEATUREPLANE_DATA_DIR": str(settings.data_path),
        "FEATUREPLANE_TENANTS_DIR": str(settings.tenants_path),
        "FEATUREPLANE_FEATURE_REPO_DIR": str(settings.feature_repo_path),
    }


def materialize_cli(env: dict[str, str]) -> subprocess.Popen[bytes]:
    featureplane = Path(sys.executable).with_name("featureplane")
    return subprocess.Popen(
        [str(featureplane), "materialize", TENANT],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def run_to_completion(env: dict[str, str]) -> float:
    began = time.perf_counter()
    proc = materialize_cli(env)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out.decode()[-3000:]
    return time.perf_counter() - began


def kill_when(proc: subprocess.Popen[bytes], ready: Callable[[], bool], what: str) -> float:
    """SIGKILL ``proc`` as soon as ``ready()``; the seconds into the run it died."""
    began = time.perf_counter()
    while not ready():
        if proc.poll() is not None:
            out = proc.stdout.read().decode() if proc.stdout else ""
            pytest.fail(f"the run ended before {what} (rc {proc.returncode}): {out[-2000:]}")
        if time.perf_counter() - began > 90:
            proc.kill()
            pytest.fail(f"never reached {what}")
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    if proc.stdout:
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    return time.perf_counter() - began


def visible_parts(folder: Path) -> list[str]:
    """Part names a Parquet reader (Feast's, pyarrow.dataset's) would read."""
    return sorted(p.name for p in folder.glob("*.parquet") if not p.name.startswith((".", "_")))


Snapshot = dict[bytes, tuple[Any, int]]  # key -> (fields or DUMP, PTTL)


def snapshot(client: redis.Redis) -> Snapshot:
    """Every key: a hash as its fields, anything else as DUMP (the TTL besides)."""
    keys = sorted(client.scan_iter(count=10_000))
    content: Snapshot = {}
    for i in range(0, len(keys), 5_000):
        chunk = keys[i : i + 5_000]
        with client.pipeline(transaction=False) as pipe:
            for key in chunk:
                pipe.type(key)
                pipe.pttl(key)
            kinds = pipe.execute()
        with client.pipeline(transaction=False) as pipe:
            for key, kind in zip(chunk, kinds[::2], strict=True):
                pipe.hgetall(key) if kind == b"hash" else pipe.dump(key)
            values = pipe.execute()
        for key, value, ttl in zip(chunk, values, kinds[1::2], strict=True):
            content[key] = (value, ttl)
    return content


def sorted_rows(table: pa.Table) -> pa.Table:
    return table.sort_by([(c, "ascending") for c in ("account_id", "event_timestamp")])


@pytest.mark.chaos
def test_sigkill_mid_run_then_rerun_equals_one_uninterrupted_run(
    two_redis: tuple[EmbeddedRedis, EmbeddedRedis], tmp_path: Path
) -> None:
    reference_redis, crashed_redis = two_redis
    settings = make_settings(tmp_path / "data", reference_redis.url)
    spec = TenantCatalog.load(settings.tenants_path)[TENANT]
    apply_tenant(settings, spec)
    data = settings.data_path
    registry = data / "registry.db"
    pristine = tmp_path / "registry.pristine.db"
    shutil.copy(registry, pristine)

    table = generate(settings, spec, ACCOUNTS, datetime.now(UTC).replace(microsecond=0))[SOURCE]
    landing = landing_dir(data, spec.feast_project, SOURCE)
    assert table.num_rows % BATCHES == 0
    step = table.num_rows // BATCHES
    for i in range(BATCHES):
        write_part(table.slice(i * step, step), landing, "batch")
    landed = tmp_path / "landed"
    shutil.copytree(landing, landed)
    offline = offline_dir(data, spec.feast_project, SOURCE)

    # The reference: one uninterrupted run.
    began = time.perf_counter()  # in-process: the CLI's code path, without its start-up
    materialize_tenant(settings, spec)
    reference_seconds = time.perf_counter() - began
    reference_parts = visible_parts(offline)

    # The same input again, from scratch, into the other Redis.
    shutil.copy(pristine, registry)
    for folder in ("offline", "archive", "state", "landing"):
        shutil.rmtree(data / folder, ignore_errors=True)
    shutil.copytree(landed, landing)
    offline.mkdir(parents=True)
    env = cli_env(settings, crashed_redis.url)
    crashed = redis.Redis.from_url(crashed_redis.url)

    def landing_left() -> int:
        return len(list(landing.glob("*.parquet")))

    # Kill 1: during ingest, with some batches offline and some still landing.
    proc = materialize_cli(env)
    ingest_kill = kill_when(
        proc, lambda: 0 < landing_left() < BATCHES, "the ingest of the first batch"
    )
    ingested_then = BATCHES - landing_left()
    assert crashed.dbsize() == 0
    parts = visible_parts(offline)
    assert len(parts) in (ingested_then, ingested_then + 1)  # + the batch killed before its move
    assert set(parts) <= set(reference_parts)
    rows_seen = read_parts(offline)
    assert rows_seen is not None
    assert rows_seen.num_rows == step * len(parts)  # whole parts only: never a truncated one

    # Kill 2: mid-way through the Redis write.
    proc = materialize_cli(env)
    redis_kill = kill_when(
        proc, lambda: ACCOUNTS * 0.05 < crashed.dbsize() < ACCOUNTS * 0.7, "a partial Redis write"
    )
    keys_then = crashed.dbsize() - len(list(crashed.scan_iter(match=CONTROL + b"*")))
    assert ACCOUNTS * 0.05 < keys_then < ACCOUNTS  # not all keys: the kill landed mid-write
    recorded = runs.parse(crashed.hgetall(runs.runs_key(TENANT))).views[VIEW]
    assert (recorded.started, recorded.success) == (1, 0)  # killed: never reported a success
    assert read_pending(settings, spec.feast_project, SOURCE) is not None

    rerun_seconds = run_to_completion(env)

    # Online: every key and field equal; run records say one success after one killed start.
    ref, got = snapshot(redis.Redis.from_url(reference_redis.url)), snapshot(crashed)
    data_keys = {k for k in ref if not k.startswith(CONTROL)}
    assert {k for k in got if not k.startswith(CONTROL)} == data_keys
    assert len(data_keys) == ACCOUNTS
    mismatched = [k for k in data_keys if ref[k] != got[k]]
    assert not mismatched, f"{len(mismatched)} keys differ, e.g. {mismatched[:3]}"
    fields = sum(len(ref[k][0]) for k in data_keys)
    after = runs.parse(crashed.hgetall(runs.runs_key(TENANT))).views[VIEW]
    once = runs.parse(redis.Redis.from_url(reference_redis.url).hgetall(runs.runs_key(TENANT)))
    assert (after.started, after.success, after.failure) == (2, 1, 0)
    assert (after.rows, after.newest_event) == (
        once.views[VIEW].rows,
        once.views[VIEW].newest_event,
    )
    assert read_pending(settings, spec.feast_project, SOURCE) is None

    # Offline: exactly the landed rows, once each, in the reference run's parts.
    assert visible_parts(offline) == reference_parts
    assert len(reference_parts) == BATCHES
    assert not list(offline.glob(".tmp-*"))
    merged = read_parts(offline)
    assert merged is not None
    assert sorted_rows(merged).equals(sorted_rows(table))
    assert landing_left() == 0
    assert len(list((data / "archive" / spec.feast_project / SOURCE).glob("*.parquet"))) == BATCHES

    print(
        f"\n[crash] {table.num_rows} offline rows in {BATCHES} batches, {ACCOUNTS} keys online; "
        f"uninterrupted run {reference_seconds:.1f} s\n"
        f"[crash] kill 1 (ingest): SIGKILL at {ingest_kill:.2f} s, {ingested_then}/{BATCHES} "
        f"batches moved, {len(parts)} parts visible, 0 keys online\n"
        f"[crash] kill 2 (Redis write): SIGKILL at {redis_kill:.2f} s with {keys_then}/{ACCOUNTS} "
        f"keys written\n"
        f"[crash] rerun {rerun_seconds:.1f} s; compared {len(data_keys)} keys / {fields} hash "
        f"fields byte-for-byte: 0 differ; offline {merged.num_rows} rows == landed, "
        f"{len(reference_parts)} parts, no duplicates, no temporaries"
    )


def test_late_batch_ingested_by_a_killed_run_still_goes_online(
    redis_server: EmbeddedRedis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run dies after moving a batch of events older than the last run out of landing/:
    the rerun's window must still start at that batch's earliest event."""
    from feast import FeatureStore

    settings = make_settings(tmp_path, redis_server.url.replace("/0", "/5"))
    spec: TenantSpec = TenantCatalog.load(settings.tenants_path)[TENANT]
    apply_tenant(settings, spec)
    now = datetime.now(UTC).replace(microsecond=0)
    land(settings, spec, generate(settings, spec, 50, now))
    materialize_tenant(settings, spec)

    late = generate(settings, spec, 200, now - timedelta(days=2))[SOURCE]  # older than run 1
    late = late.filter(pa.compute.greater(late.column("account_id"), 50))  # new accounts only
    write_part(late, landing_dir(settings.data_path, spec.feast_project, SOURCE), "batch")

    def killed(*_args: object, **_kwargs: object) -> None:
        raise SystemExit(-9)  # dies after the ingest, before any online write

    with monkeypatch.context() as patch:
        patch.setattr(FeatureStore, "materialize", killed)
        with pytest.raises(SystemExit):
            materialize_tenant(settings, spec)
    assert not list(landing_dir(settings.data_path, spec.feast_project, SOURCE).glob("*.parquet"))
    assert read_pending(settings, spec.feast_project, SOURCE) is not None

    materialize_tenant(settings, spec)
    ids = sorted(set(late.column("account_id").to_pylist()))
    got = (
        feature_store(settings, spec)
        .get_online_features(
            features=[f"{VIEW}:txn_count_24h"], entity_rows=[{"account_id": i} for i in ids]
        )
        .to_dict()
    )
    assert None not in got["txn_count_24h"], "late rows ingested by the killed run never served"
    assert read_pending(settings, spec.feast_project, SOURCE) is None
