"""Materialization: landing -> offline Parquet -> Redis, incremental and idempotent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis

from featureplane.embedded.redis import EmbeddedRedis
from featureplane.feast_config import feature_store
from featureplane.materialize import runner
from featureplane.materialize.filesource import event_times
from featureplane.materialize.runner import materialize_tenant
from featureplane.offline import read_parts, write_part
from featureplane.online.clients import redis_client
from featureplane.registry.apply import apply_tenant
from featureplane.samples import generate, land
from featureplane.settings import Settings
from featureplane.sources import landing_dir, offline_dir
from featureplane.tenancy.catalog import TenantCatalog
from tests.support.settings import make_settings


def test_write_part_is_atomic_and_content_addressed(tmp_path: Path) -> None:
    import pyarrow as pa

    table = pa.table({"a": [1, 2, 3]})
    first = write_part(table, tmp_path)
    again = write_part(table, tmp_path)
    assert first == again
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temp file left behind
    assert read_parts(tmp_path) == table


def test_first_run_loads_everything_then_runs_incrementally(
    redis_server: EmbeddedRedis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path, redis_server.url.replace("/0", "/3"))
    spec = TenantCatalog.load(settings.tenants_path)["fraud"]
    apply_tenant(settings, spec)
    # Events up to 30 days old: older than the view's 7-day ttl, which Feast's own first
    # incremental run would skip.
    old_now = datetime.now(UTC) - timedelta(days=30)
    land(settings, spec, generate(settings, spec, 100, old_now))
    # One offline scan per source and one control client per run, however many views.
    scans: list[Path] = []
    clients: list[Settings] = []

    def counted_scan(path: Path, ts_field: str) -> pa.ChunkedArray | None:
        scans.append(path)
        return event_times(path, ts_field)

    def counted_client(settings: Settings) -> redis.Redis:
        clients.append(settings)
        return redis_client(settings)

    monkeypatch.setattr(runner, "event_times", counted_scan)
    monkeypatch.setattr(runner, "redis_client", counted_client)
    report = materialize_tenant(settings, spec)
    monkeypatch.undo()
    assert report.ingested["account_activity"].rows == 120
    assert len(scans) == len(report.ingested) == 1
    assert len(clients) == 1
    store = feature_store(settings, spec)
    got = store.get_online_features(
        features=["account_stats:txn_count_24h"],
        entity_rows=[{"account_id": i} for i in range(1, 101)],
    ).to_dict()
    assert None not in got["txn_count_24h"]

    offline = offline_dir(settings.data_path, spec.feast_project, "account_activity")
    parts = sorted(offline.glob("*.parquet"))
    assert len(parts) == 1
    assert not list(
        landing_dir(settings.data_path, spec.feast_project, "account_activity").glob("*.parquet")
    )

    # Nothing new: the next run ingests nothing and writes no part.
    again = materialize_tenant(settings, spec)
    assert again.ingested["account_activity"].rows == 0
    assert sorted(offline.glob("*.parquet")) == parts

    # A newer batch for the same accounts replaces their online values.
    newer = generate(settings, spec, 100, datetime.now(UTC))["account_activity"]
    pq.write_table(
        newer,
        landing_dir(settings.data_path, spec.feast_project, "account_activity") / "batch-2.parquet",
    )
    materialize_tenant(settings, spec)
    got = store.get_online_features(
        features=["account_stats:txn_count_24h"], entity_rows=[{"account_id": 1}]
    ).to_dict()
    newest = max(
        (r for r in newer.to_pylist() if r["account_id"] == 1), key=lambda r: r["event_timestamp"]
    )
    assert got["txn_count_24h"] == [newest["txn_count_24h"]]
    assert len(list(offline.glob("*.parquet"))) == 2
    merged = read_parts(offline)
    assert merged is not None
    assert merged.num_rows == 240
