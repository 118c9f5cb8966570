"""Value-type parity in both directions, for every Feast value type featureplane serves.

One throwaway Feast project holds a feature view with int32, int64, float, double, string,
bytes, bool and unix_timestamp features, a list of each, and nulls (plus NaN, infinities,
empty strings, bytes and lists, negative and extreme numbers, pre-1970 times). Feast's local
engine and featureplane's engine materialize it into two Redis databases; then:

(a) featureplane wrote -> Feast's SDK reads the source's values, and Feast's own bytes;
(b) Feast wrote -> the gateway's read path answers what Feast's SDK answers.
"""

from __future__ import annotations

import asyncio
import base64
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, RepoConfig, ValueType
from feast.feature_server_utils import convert_response_to_dict
from feast.types import (
    Array,
    Bool,
    Bytes,
    Float32,
    Float64,
    Int32,
    Int64,
    PrimitiveFeastType,
    String,
    UnixTimestamp,
)

from featureplane.embedded.redis import EmbeddedRedis
from featureplane.feast_config import render
from featureplane.gateway.lookup import FeatureRequest, prepare
from featureplane.gateway.plans import ReadPlans, compile_project
from featureplane.gateway.reader import RedisOnlineReader
from featureplane.online.codec import NULL_TIMESTAMP
from featureplane.online.connection import SharedConnection
from featureplane.tenancy.catalog import TenantCatalog
from featureplane.tenancy.spec import TenantSpec
from tests.support.gateway import columns_by_name
from tests.support.settings import make_settings

PROJECT = "types"
VIEW = "all_types"
ENGINES = {
    "local": "local",
    "featureplane": {"type": "featureplane.materialize.engine.FeatureplaneEngine", "batch_rows": 3},
}
NOW = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
NAN, INF = float("nan"), float("inf")


def _ts(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc,arg-type]  # year, month, day…


# Feature -> (Feast type, Arrow type, one value per entity row; None is null).
# Lists never hold null elements: Feast's local engine rejects them.
COLUMNS: dict[str, tuple[Any, pa.DataType, list[Any]]] = {
    "i32": (Int32, pa.int32(), [1, None, -5, 2**31 - 1, -(2**31), 0]),
    "i64": (Int64, pa.int64(), [2**40, None, -47, 2**53, -(2**53), 0]),
    "f32": (Float32, pa.float32(), [1.5, None, NAN, -0.0, INF, -2.25]),
    "f64": (Float64, pa.float64(), [1.25, None, INF, 1e300, NAN, -INF]),
    "s": (String, pa.string(), ["a", None, "", "ünï €", "x" * 300, "\n\t"]),
    "b": (Bytes, pa.binary(), [b"\x00\xff", None, b"", b"xyz", bytes(range(256)), b"\n"]),
    "bo": (Bool, pa.bool_(), [True, None, False, True, False, True]),
    "ts": (
        UnixTimestamp,
        pa.timestamp("us", tz="UTC"),
        [_ts(2026, 1, 2, 3, 4, 5), None, _ts(1960, 1, 1), _ts(1970, 1, 1), NOW, _ts(2100, 1, 1)],
    ),
    "li32": (Array(Int32), pa.list_(pa.int32()), [[1, 2], None, [], [-(2**31)], [0], [7] * 50]),
    "li64": (Array(Int64), pa.list_(pa.int64()), [[1, 2**40], None, [], [-1], [0], [2**62]]),
    "lf32": (Array(Float32), pa.list_(pa.float32()), [[1.5], None, [], [2.5, -3.5], [0.0], [INF]]),
    "lf64": (Array(Float64), pa.list_(pa.float64()), [[1.25], None, [], [NAN], [1e-300], [-INF]]),
    "ls": (Array(String), pa.list_(pa.string()), [["a", "b"], None, [], [""], ["ü"], ["x"] * 9]),
    "lb": (Array(Bytes), pa.list_(pa.binary()), [[b"a"], None, [], [b""], [b"\x00"], [b"\xff"]]),
    "lbo": (Array(Bool), pa.list_(pa.bool_()), [[True, False], None, [], [True], [False], []]),
    "lts": (
        Array(UnixTimestamp),
        pa.list_(pa.timestamp("us", tz="UTC")),
        [[NOW], None, [], [_ts(1960, 1, 1)], [_ts(2000, 1, 1), NOW], []],
    ),
}
IDS = [1, 2, 3, 4, 5, 6]
ABSENT = 99


def _source() -> pa.Table:
    """One row per entity, and for entity 1 an older row that must lose."""
    rows = len(IDS)
    data: dict[str, pa.Array] = {
        "item_id": pa.array([*IDS, 1], pa.int64()),
        "event_timestamp": pa.array(
            [NOW - timedelta(hours=i) for i in range(rows)] + [NOW - timedelta(days=2)],
            pa.timestamp("us", tz="UTC"),
        ),
    }
    for name, (_, kind, values) in COLUMNS.items():
        data[name] = pa.array([*values, values[3]], kind)
    return pa.table(data)


def _definitions(path: Path) -> tuple[Entity, FeatureView]:
    item = Entity(name="item", join_keys=["item_id"], value_type=ValueType.INT64)
    view = FeatureView(
        name=VIEW,
        entities=[item],
        ttl=timedelta(0),
        schema=[Field(name=n, dtype=t) for n, (t, _, _) in COLUMNS.items()],
        source=FileSource(
            name="all_types_source", path=str(path), timestamp_field="event_timestamp"
        ),
        online=True,
    )
    return item, view


@dataclass
class Materialized:
    stores: dict[str, FeatureStore]  # engine -> a store reading the Redis DB it wrote
    urls: dict[str, str]


@pytest.fixture(scope="module")
def materialized(
    redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory
) -> Materialized:
    tmp = tmp_path_factory.mktemp("types")
    source = tmp / "all_types.parquet"
    pq.write_table(_source(), source)
    base = redis_server.url.rsplit("/", 1)[0]
    urls = {"local": f"{base}/14", "featureplane": f"{base}/15"}
    stores: dict[str, FeatureStore] = {}
    for name, engine in ENGINES.items():
        with redis.Redis.from_url(urls[name]) as client:
            client.flushdb()
        raw = render(make_settings(tmp, urls[name]), PROJECT)
        raw["batch_engine"] = engine
        store = FeatureStore(config=RepoConfig(**raw))
        store.apply(list(_definitions(source)))
        used = type(store._get_provider().batch_engine).__name__
        assert used == ("LocalComputeEngine" if engine == "local" else "FeatureplaneEngine")
        store.materialize(NOW - timedelta(days=7), NOW)
        stores[name] = store
    return Materialized(stores, urls)


def _features() -> list[str]:
    return [f"{VIEW}:{name}" for name in COLUMNS]


def _sdk(store: FeatureStore) -> Any:
    return store.get_online_features(
        features=_features(), entity_rows=[{"item_id": i} for i in [*IDS, ABSENT]]
    )


def _comparable(value: Any) -> Any:
    """NaN equals NaN; everything else as is."""
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, list):
        return [_comparable(v) for v in value]
    return value


def _expected(name: str) -> list[Any]:
    """What Feast's SDK should return per entity: the newest row's value, NaN scalars as null,
    float32 values as float32 rounds them, timestamps as whole-second datetimes."""
    _, kind, values = COLUMNS[name]
    out = []
    for value in [*values, None]:  # the absent entity reads as null
        if name in ("f32", "f64") and value is not None and math.isnan(value):
            value = None
        out.append(value)
    if kind == pa.float32() or kind == pa.list_(pa.float32()):
        out = pa.array(out, kind).to_pylist()  # float32 round trip
    return [_comparable(v) for v in out]


def test_featureplane_writes_feasts_bytes(materialized: Materialized) -> None:
    def dump(url: str) -> dict[bytes, dict[bytes, bytes]]:
        with redis.Redis.from_url(url) as client:
            return {key: client.hgetall(key) for key in client.scan_iter()}

    theirs, ours = dump(materialized.urls["local"]), dump(materialized.urls["featureplane"])
    assert len(theirs) == len(IDS)
    assert ours == theirs


@pytest.mark.parametrize("name", list(COLUMNS))
def test_featureplane_writes_read_back_by_feasts_sdk(materialized: Materialized, name: str) -> None:
    """(a) Every type, nulls included, as the SDK reads it from what featureplane wrote."""
    got = _sdk(materialized.stores["featureplane"]).to_dict()
    assert [_comparable(v) for v in got[name]] == _expected(name)


def _gateway(store: FeatureStore, url: str) -> dict[str, Any]:
    spec = TenantSpec.model_validate(
        {
            "name": PROJECT,
            "owners": [{"name": "Types", "email": "types@example.com"}],
            "cost_centre": "CC-0000-TYPES",
            "sla": {"latency_p99_ms": 5},
        }
    )
    catalog = ReadPlans(
        TenantCatalog({PROJECT: spec}, Path()), {PROJECT: compile_project(store.registry, PROJECT)}
    )
    request = FeatureRequest(entities={"item_id": [*IDS, ABSENT]}, features=_features())
    prepared = prepare(catalog, spec, request)

    async def read() -> list[list[bytes | None]]:
        reader = RedisOnlineReader(SharedConnection.from_url(url))
        try:
            return await reader.read(prepared.commands)
        finally:
            await reader.aclose()

    return prepared.answer(asyncio.run(read()))


def test_gateway_reads_feasts_writes_as_feasts_server_renders_them(
    materialized: Materialized,
) -> None:
    """(b) Feast's local engine wrote; the gateway answers what Feast's feature server (the
    SDK's response, rendered by ``convert_response_to_dict``) answers, value for value — except
    that Feast's null-timestamp marker (-2**63) is answered as the null the SDK reads it as."""
    store = materialized.stores["local"]
    ours = columns_by_name(_gateway(store, materialized.urls["local"]))
    theirs = columns_by_name(convert_response_to_dict(_sdk(store).proto))
    assert ours.keys() == theirs.keys()
    for name in theirs:
        assert ours[name] == _marker_as_null(theirs[name]), name


def _marker_as_null(value: Any) -> Any:
    if isinstance(value, list):
        return [_marker_as_null(v) for v in value]
    return None if value == NULL_TIMESTAMP and type(value) is int else value


def _rendered(value: Any, dtype: Any) -> Any:
    """An SDK ``to_dict`` value as JSON renders it: bytes as base64, times as epoch seconds,
    non-finite floats as strings."""
    if value is None:
        return None
    if isinstance(value, list):
        item = dtype.base_type if not isinstance(dtype, PrimitiveFeastType) else dtype
        return [_rendered(v, item) for v in value]
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, datetime):
        return int(value.timestamp())
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


# Feast stores a null unix_timestamp as NULL_TIMESTAMP_INT_VALUE (-2**63) and its SDK reads it as
# None; the gateway answers null too (Feast's own feature server renders the integer).
@pytest.mark.parametrize("name", list(COLUMNS))
def test_gateway_values_equal_the_sdks(materialized: Materialized, name: str) -> None:
    """(b) Feast's local engine wrote; the gateway's values equal the SDK's own ``to_dict``."""
    store = materialized.stores["local"]
    ours = columns_by_name(_gateway(store, materialized.urls["local"]))
    sdk = _sdk(store).to_dict()
    assert ours[name] == [_rendered(v, COLUMNS[name][0]) for v in sdk[name]]
