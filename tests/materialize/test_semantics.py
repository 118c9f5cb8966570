"""featureplane's engine picks the rows Feast's local engine picks, and writes them safely.

Each test materializes a small throwaway project with both engines into two Redis databases
and compares every key and field byte for byte: window bounds, the created-timestamp
tie-break, field mappings, folders of parts, tz-naive and nanosecond times, the offline-store
fallback; then the write side: newer stored events win, TTLs, ``skip_dedup``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, RepoConfig, ValueType
from feast.types import Float64, Int64, String
from google.protobuf.timestamp_pb2 import Timestamp

from featureplane.embedded.redis import EmbeddedRedis
from featureplane.feast_config import render
from featureplane.materialize import engine as engine_module
from featureplane.online import codec
from tests.support.settings import make_settings

OURS = {"type": "featureplane.materialize.engine.FeatureplaneEngine", "batch_rows": 4}
NOW = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
START, END = NOW - timedelta(days=1), NOW
Dump = dict[bytes, dict[bytes, bytes]]


@dataclass
class Project:
    tmp: Path
    urls: dict[str, str]  # "local" / "ours" -> a flushed Redis database

    def store(self, engine: str, view: FeatureView, **online: Any) -> FeatureStore:
        raw = render(make_settings(self.tmp / engine, self.urls[engine]), "semantics")
        raw["batch_engine"] = "local" if engine == "local" else OURS
        raw["online_store"].update(online)
        store = FeatureStore(config=RepoConfig(**raw))
        store.apply([ITEM, view])
        return store

    def both(self, view: FeatureView, start: datetime = START, end: datetime = END) -> Dump:
        """Materialize with both engines; their databases must be equal. Returns ours."""
        for engine in self.urls:
            self.store(engine, view).materialize(start, end)
        theirs, ours = self.dump("local"), self.dump("ours")
        assert ours == theirs
        return ours

    def dump(self, engine: str) -> Dump:
        with redis.Redis.from_url(self.urls[engine]) as client:
            return {key: client.hgetall(key) for key in client.scan_iter()}


@pytest.fixture
def project(redis_server: EmbeddedRedis, tmp_path: Path) -> Project:
    base = redis_server.url.rsplit("/", 1)[0]
    urls = {"local": f"{base}/9", "ours": f"{base}/10"}
    for url in urls.values():
        with redis.Redis.from_url(url) as client:
            client.flushdb()
    return Project(tmp_path, urls)


ITEM = Entity(name="item", join_keys=["item_id"], value_type=ValueType.INT64)


def _view(path: Path, **source: Any) -> FeatureView:
    return FeatureView(
        name="items",
        entities=[ITEM],
        ttl=timedelta(0),
        schema=[Field(name="price", dtype=Float64), Field(name="label", dtype=String)],
        source=FileSource(
            name="items_source", path=str(path), timestamp_field="event_timestamp", **source
        ),
        online=True,
    )


def _table(ids: list[int], times: list[datetime], **extra: list[Any]) -> pa.Table:
    columns = {
        "item_id": pa.array(ids, pa.int64()),
        "event_timestamp": pa.array(times, pa.timestamp("us", tz="UTC")),
        "price": pa.array([float(i) + j / 10 for j, i in enumerate(ids)], pa.float64()),
        "label": pa.array([f"row-{j}" for j in range(len(ids))], pa.string()),
    }
    columns.update({k: pa.array(v) for k, v in extra.items()})
    return pa.table(columns)


def _labels(dump: Dump) -> set[str]:
    """Which source rows were written (labels are row numbers)."""
    field = codec.feature_field("items", "label")
    return {codec.decode_value(fields[field]) for fields in dump.values()}


def test_window_includes_both_ends_like_feast(project: Project) -> None:
    times = [START - timedelta(microseconds=1), START, END, END + timedelta(microseconds=1)]
    path = project.tmp / "items.parquet"
    pq.write_table(_table([1, 2, 3, 4], times), path)
    assert _labels(project.both(_view(path))) == {"row-1", "row-2"}


def test_newest_event_wins_then_newest_created(project: Project) -> None:
    t = NOW - timedelta(hours=1)
    ids = [1, 1, 2, 2, 2, 3, 3]
    times = [t - timedelta(hours=1), t, t, t, t, t, t]
    created = [NOW, NOW - timedelta(days=1), NOW - timedelta(hours=2), NOW, None, None, NOW]
    path = project.tmp / "items.parquet"
    pq.write_table(
        _table(ids, times, created=pa.array(created, pa.timestamp("us", tz="UTC"))), path
    )
    view = _view(path, created_timestamp_column="created")
    assert _labels(project.both(view)) == {"row-1", "row-3", "row-6"}


def test_field_mapping_folders_naive_and_nanosecond_times(project: Project) -> None:
    """Source columns renamed by field_mapping, a folder of parts that differ in column order
    and columns, tz-naive nanosecond event times (UTC, as Feast reads them)."""
    folder = project.tmp / "parts"
    folder.mkdir()
    base = NOW.replace(tzinfo=None) - timedelta(hours=5)
    for part in range(3):
        ids = [part * 10 + i for i in range(5)] + [1]
        times = [base + timedelta(minutes=part * 7 + i, microseconds=i) for i in range(6)]
        table = pa.table(
            {
                "id": pa.array(ids, pa.int64()),
                "ts": pa.array(times, pa.timestamp("ns")),
                "cost": pa.array([float(i) for i in ids]),
                "name": pa.array([f"p{part}-{i}" for i in range(6)]),
            }
        )
        if part == 1:  # parts written at another time: other column order, an extra column
            table = table.select(["name", "cost", "ts", "id"]).append_column("extra", [ids])
        pq.write_table(table, folder / f"part-{part}.parquet")
    view = FeatureView(
        name="items",
        entities=[ITEM],
        ttl=timedelta(0),
        schema=[Field(name="price", dtype=Float64), Field(name="label", dtype=String)],
        source=FileSource(
            name="items_source",
            path=str(folder),
            timestamp_field="ts",
            field_mapping={"id": "item_id", "cost": "price", "name": "label"},
        ),
        online=True,
    )
    dump = project.both(view)
    assert len(dump) == 15  # ids 0-4, 10-14, 20-24; id 1 in every part, newest in the last
    assert "p2-5" in _labels(dump)
    assert not {"p0-5", "p1-5"} & _labels(dump)


# The Redis Cluster write path (batches split per primary) runs against a real cluster in
# tests/gateway/test_cluster.py, where the gateway's reads are checked against Feast's SDK.


def test_offline_store_fallback_writes_the_same(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sources the engine does not read itself go through Feast's offline store."""
    monkeypatch.setattr(engine_module, "local_parquet_path", lambda *_: None)
    path = project.tmp / "items.parquet"
    ids = [1, 2, 3, 1, 2, 5, 6, 7, 8, 9]
    times = [NOW - timedelta(minutes=m) for m in (9, 8, 7, 6, 50, 5, 4, 3, 2, 1)]
    pq.write_table(_table(ids, times), path)
    assert _labels(project.both(_view(path))) == {f"row-{i}" for i in (1, 2, 3, 5, 6, 7, 8, 9)}


def test_large_integers_with_nulls_stay_exact(project: Project) -> None:
    """Feast's local engine sends int columns with nulls through float64 (2**53 + 1 becomes
    2**53, 2**63 - 1 overflows); this engine reads Arrow integers as they are."""
    path = project.tmp / "items.parquet"
    values = [2**53 + 1, None, 2**63 - 1, -(2**63)]
    table = _table([1, 2, 3, 4], [NOW - timedelta(hours=1)] * 4)
    pq.write_table(table.append_column("big", pa.array(values, pa.int64())), path)
    view = FeatureView(
        name="items",
        entities=[ITEM],
        ttl=timedelta(0),
        schema=[Field(name="big", dtype=Int64)],
        source=FileSource(name="items_source", path=str(path), timestamp_field="event_timestamp"),
        online=True,
    )
    store = project.store("ours", view)
    store.materialize(START, END)
    got = store.get_online_features(["items:big"], [{"item_id": i} for i in (1, 2, 3, 4)])
    assert got.to_dict()["big"] == values


def test_stored_newer_events_are_kept_and_older_ones_replaced(project: Project) -> None:
    """Keys that exist switch the engine from one EXISTS per batch to HGETs: rows older than
    what is stored are skipped, newer ones and new keys written, in every batch."""
    old, new = NOW - timedelta(hours=3), NOW - timedelta(hours=1)
    first, second = project.tmp / "first.parquet", project.tmp / "second.parquet"
    # Stored first: even ids with the newer time, odd ids with the older one.
    ids = list(range(20))
    pq.write_table(_table(ids, [new if i % 2 == 0 else old for i in ids]), first)
    # Then every id 0-29, at the time in between: only odd ids and the new ones 20-29 win.
    middle = NOW - timedelta(hours=2)
    ids = list(range(30))
    pq.write_table(_table(ids, [middle] * 30), second)
    for engine in project.urls:
        project.store(engine, _view(first)).materialize(START, END)
        project.store(engine, _view(second)).materialize(START, END)
    ours = project.dump("ours")
    assert ours == project.dump("local")
    stamps = sorted(Timestamp.FromString(f[b"_ts:items"]).ToDatetime(UTC) for f in ours.values())
    assert stamps == sorted([new] * 10 + [middle] * 20)


def test_ttl_and_skip_dedup(project: Project) -> None:
    path = project.tmp / "items.parquet"
    pq.write_table(_table([1, 2, 3], [NOW - timedelta(hours=1)] * 3), path)
    store = project.store("ours", _view(path), key_ttl_seconds=3600, skip_dedup=True)
    store.materialize(START, END)
    store.materialize(START, END)  # skip_dedup rewrites: same bytes
    with redis.Redis.from_url(project.urls["ours"]) as client:
        keys = list(client.scan_iter())
        assert len(keys) == 3
        assert all(0 < client.ttl(k) <= 3600 for k in keys)
