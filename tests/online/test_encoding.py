"""The column-wise encoders produce exactly what Feast's own converters produce."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import redis
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.type_map import python_values_to_proto_values
from feast.value_type import ValueType
from google.protobuf.timestamp_pb2 import Timestamp

from featureplane.embedded.redis import EmbeddedRedis
from featureplane.materialize.filesource import latest_mask
from featureplane.online import encoding
from featureplane.online.pipeline import Pipeline
from featureplane.online.resp import pack

RNG = np.random.default_rng(5)
N = 2000
INTS = np.concatenate(
    [
        np.arange(-300, 300),
        RNG.integers(-(2**63), 2**63 - 1, N, dtype=np.int64),
        [2**63 - 1, -(2**63), 2**31 - 1, -(2**31)],
        [1 << (7 * k) for k in range(1, 9)],
        [(1 << (7 * k)) - 1 for k in range(1, 9)],
    ]
).astype(np.int64)
INT32S = np.clip(INTS, -(2**31), 2**31 - 1).astype(np.int32)
FLOATS = np.concatenate([RNG.normal(0, 1e6, N), [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-310]])

CASES: list[tuple[str, pa.Array, ValueType]] = [
    ("int64", pa.array(INTS), ValueType.INT64),
    ("int32", pa.array(INT32S), ValueType.INT32),
    ("int32 in an int64 column", pa.array(INT32S.astype(np.int64)), ValueType.INT32),
    ("int64 from int32", pa.array(INT32S), ValueType.INT64),
    ("unix seconds", pa.array(INTS), ValueType.UNIX_TIMESTAMP),
    ("double", pa.array(FLOATS), ValueType.DOUBLE),
    ("float from double", pa.array(FLOATS), ValueType.FLOAT),
    ("float", pa.array(FLOATS.astype(np.float32)), ValueType.FLOAT),
    ("double nulls", pa.array([1.5, None, np.nan, None]), ValueType.DOUBLE),
    ("bool", pa.array(RNG.random(N) < 0.5), ValueType.BOOL),
    ("bool nulls", pa.array([True, None, False]), ValueType.BOOL),
    ("string", pa.array(["", "a", "ünï €" * 40, "x" * 200, None]), ValueType.STRING),
    ("large string", pa.array(["a", None, "b" * 130], pa.large_string()), ValueType.STRING),
    ("bytes", pa.array([b"", b"\x00", bytes(range(256)), None]), ValueType.BYTES),
    ("list of double", pa.array([[1.0, np.nan], None, []]), ValueType.DOUBLE_LIST),
    ("list of string", pa.array([["a"], None, [""]]), ValueType.STRING_LIST),
    (
        "timestamps",
        pa.array([datetime(2020, 1, 1, tzinfo=UTC), None], pa.timestamp("us", tz="UTC")),
        ValueType.UNIX_TIMESTAMP,
    ),
]


@pytest.mark.parametrize(
    ("column", "value_type"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_values_are_feasts_bytes(column: pa.Array, value_type: ValueType) -> None:
    # Feast's local engine feeds its converter numpy arrays, exactly like this.
    protos = python_values_to_proto_values(column.to_numpy(zero_copy_only=False), value_type)
    assert encoding.values(column, int(value_type.value)).to_pylist() == [
        p.SerializeToString() for p in protos
    ]


def test_int_nulls_are_empty_values() -> None:
    got = encoding.values(pa.array([7, None, -1]), int(ValueType.INT64.value)).to_pylist()
    assert got == [b"\x20\x07", b"", b"\x20" + b"\xff" * 9 + b"\x01"]


def _timestamp_bytes(moment: datetime) -> bytes:
    ts = Timestamp()
    ts.FromDatetime(moment)
    return bytes(ts.SerializeToString())


def test_timestamps_are_feasts_bytes_and_read_back() -> None:
    micros = np.concatenate([RNG.integers(-(2**41), 2**52, N), [0, 1, 999_999, 1_000_000, -1]])
    column = pa.array(micros, pa.timestamp("us", tz="UTC"))
    encoded, nanos = encoding.timestamps(column)
    expected = [_timestamp_bytes(m) for m in column.to_pylist()]
    assert encoded.to_arrow().to_pylist() == expected
    assert (nanos == micros * 1000).all()
    stored: list[bytes | None] = [*expected, None, b""]
    assert encoding.timestamp_nanos(stored).tolist() == [*(micros * 1000).tolist(), 0, 0]


def test_nanosecond_times_are_truncated_like_feasts() -> None:
    column = pa.array([1_700_000_000_123_456_789], pa.timestamp("ns"))  # tz-naive is UTC
    encoded, _ = encoding.timestamps(column)
    moment = datetime(2023, 11, 14, 22, 13, 20, 123456, tzinfo=UTC)
    assert encoded.to_arrow().to_pylist() == [_timestamp_bytes(moment)]


def test_stored_times_in_another_field_order_are_read_by_protobuf() -> None:
    odd = b"\x10\x07\x08\x05"  # nanos before seconds: valid protobuf, not Feast's layout
    long = Timestamp(seconds=5, nanos=7).SerializeToString() + b"\x08\x06"  # a repeated field
    assert encoding.timestamp_nanos([odd, long]).tolist() == [5_000_000_007, 6_000_000_007]


KEY_CASES: list[tuple[list[str], list[ValueType], list[pa.Array]]] = [
    (["id"], [ValueType.INT64], [pa.array(INTS[:500])]),
    (["id"], [ValueType.INT32], [pa.array(INT32S[:500])]),
    (["id"], [ValueType.STRING], [pa.array([f"k{i}ü" for i in range(50)] + [""])]),
    (["id"], [ValueType.BYTES], [pa.array([bytes([i]) * i for i in range(50)])]),
    (
        ["a_id", "b_id"],
        [ValueType.STRING, ValueType.INT64],
        [pa.array(["x", "yy", ""]), pa.array([1, -2, 2**40])],
    ),
    (
        ["when"],
        [ValueType.UNIX_TIMESTAMP],
        [pa.array([datetime(2020, 1, 1, tzinfo=UTC)], pa.timestamp("us", tz="UTC"))],
    ),
]


@pytest.mark.parametrize(("names", "types", "columns"), KEY_CASES)
def test_entity_keys_are_feasts(
    names: list[str], types: list[ValueType], columns: list[pa.Array]
) -> None:
    got = encoding.entity_keys(columns, [int(t.value) for t in types], names, b"proj").to_pylist()
    values = [
        python_values_to_proto_values(c.to_numpy(zero_copy_only=False), t)
        for c, t in zip(columns, types, strict=True)
    ]
    expected = [
        serialize_entity_key(EntityKey(join_keys=names, entity_values=list(row)), 3) + b"proj"
        for row in zip(*values, strict=True)
    ]
    assert got == expected


def test_rows_are_resp_commands() -> None:
    strings = pa.array([f"key-{i}" * (i % 7) for i in range(300)])
    ints = pa.array(INTS[:300])
    rows = encoding.Rows(300).command(
        b"HSET",
        encoding.value_pieces(strings, int(ValueType.STRING.value)),
        b"f1",
        encoding.value_pieces(ints, int(ValueType.INT64.value)),
        b"",
        [b"const-", strings, b"-tail"],
    )
    rows.command(b"EXPIRE", [strings], b"60")
    keys = encoding.values(strings, int(ValueType.STRING.value)).to_pylist()
    values = encoding.values(ints, int(ValueType.INT64.value)).to_pylist()
    expected = [
        pack([b"HSET", k, b"f1", v, b"", b"const-" + s.encode() + b"-tail"])
        + pack([b"EXPIRE", s.encode(), b"60"])
        for k, v, s in zip(keys, values, strings.to_pylist(), strict=True)
    ]
    built = rows.build()
    assert built.to_pylist() == expected
    assert bytes(encoding.payload(built.slice(10, 20))) == b"".join(expected[10:30])


def _reference_latest(rows: list[dict[str, Any]]) -> set[int]:
    """Latest row per key by (time, created; null created first), the later row on full ties."""
    best: dict[Any, int] = {}
    for i, row in enumerate(rows):
        rank = (row["t"], row["c"] is not None, row["c"] or 0)
        j = best.get(row["k"])
        if j is None or rank >= (rows[j]["t"], rows[j]["c"] is not None, rows[j]["c"] or 0):
            best[row["k"]] = i
    return set(best.values())


def test_latest_mask_matches_a_reference() -> None:
    rng = random.Random(3)
    rows = [
        {"k": rng.choice([1, 2, 3, None, 5]), "t": rng.randint(0, 4), "c": rng.choice([None, 1, 2])}
        for _ in range(400)
    ]
    table = pa.table(
        {
            "k": pa.array([r["k"] for r in rows], pa.int64()),
            "t": pa.array([r["t"] for r in rows], pa.int64()),
            "c": pa.array([r["c"] for r in rows], pa.int64()),
        }
    )
    mask = latest_mask(table, ["k"], ["t", "c"])
    assert mask is not None
    assert set(np.flatnonzero(mask).tolist()) == _reference_latest(rows)
    assert latest_mask(table.slice(0, 1), ["k"], ["t", "c"]) is None  # every row is latest


def test_pipeline_counts_write_replies_and_raises_errors(redis_server: EmbeddedRedis) -> None:
    url = redis_server.url.rsplit("/", 1)[0] + "/8"
    writes = [pack([b"HSET", b"h%d" % i, b"f", b"v"]) for i in range(30_000)]
    writes[20_000] = pack([b"HSET", b"plain", b"f", b"v"])  # a string key: WRONGTYPE
    with redis.Redis.from_url(url) as client:
        client.flushdb()
        client.set(b"plain", b"1")
        with Pipeline(client) as pipe:
            pipe.send(b"".join(writes))
            pipe.sent_writes(len(writes))
            with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
                pipe.drain()
            # Every reply was consumed: the next ones line up with their commands.
            pipe.send(b"".join(writes[:5]), pack([b"HGET", b"h1", b"f"]), pack([b"EXISTS", b"x"]))
            pipe.sent_writes(5)
            assert pipe.read(2) == [b"v", 0]
        assert client.dbsize() == 30_000  # the pool's connection still works


def test_window_bounds_are_rounded_into_the_columns_unit() -> None:
    from featureplane.materialize.filesource import _bound

    moment = datetime(2026, 1, 1, 0, 0, 0, 500_000, tzinfo=UTC)
    seconds = pa.timestamp("s", tz="UTC")
    assert _bound(moment, seconds, upper=False).as_py() == moment + timedelta(microseconds=500_000)
    assert _bound(moment, seconds, upper=True).as_py() == moment - timedelta(microseconds=500_000)
    naive = pa.timestamp("ns")
    assert _bound(moment, naive, upper=True).value == int(moment.timestamp() * 1e6) * 1000
