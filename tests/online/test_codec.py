"""The gateway's reading of Feast's byte format, checked against Feast's own functions."""

from __future__ import annotations

import base64
import math
import random
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from feast.feature_server_utils import _timestamp_to_str, _value_to_native
from feast.infra.online_stores.helpers import _mmh3, _redis_key
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import (
    BoolList,
    BytesList,
    DoubleList,
    FloatList,
    Int32List,
    Int64List,
    StringList,
)
from feast.protos.feast.types.Value_pb2 import Value as V
from google.protobuf.timestamp_pb2 import Timestamp

from featureplane.errors import BadRequestError
from featureplane.online import codec


def _our_key(project: str, keys: dict[str, tuple[int, object]]) -> bytes:
    names = sorted(keys)
    return (
        codec.key_names_prefix(names)
        + b"".join(codec.coerce_key_value(k, *keys[k])[1] for k in names)
        + project.encode()
    )


@pytest.mark.parametrize(
    ("keys", "proto_values"),
    [
        ({"account_id": (codec.INT64, 123456)}, [V(int64_val=123456)]),
        ({"account_id": (codec.INT64, -47)}, [V(int64_val=-47)]),
        ({"n": (codec.INT32, 2**31 - 1)}, [V(int32_val=2**31 - 1)]),
        ({"user_id": (codec.STRING, "ü-123")}, [V(string_val="ü-123")]),
        (
            {"blob": (codec.BYTES, base64.b64encode(b"\x00\xff").decode())},
            [V(bytes_val=b"\x00\xff")],
        ),
        ({"at": (codec.UNIX_TIMESTAMP, 1_700_000_000)}, [V(unix_timestamp_val=1_700_000_000)]),
        (
            {"store_id": (codec.INT64, 7), "sku": (codec.STRING, "sku-00001")},
            [V(int64_val=7), V(string_val="sku-00001")],
        ),
    ],
)
def test_entity_keys_equal_feasts(
    keys: dict[str, tuple[int, object]], proto_values: list[V]
) -> None:
    entity_key = EntityKey(join_keys=list(keys), entity_values=proto_values)
    assert _our_key("scale", keys) == _redis_key("scale", entity_key, 3)


def test_feature_fields_equal_feasts() -> None:
    assert codec.feature_field("user_features", "f_float_0") == _mmh3("user_features:f_float_0")
    assert codec.feature_field("user_features", "f_float_0") == b"O)\x18\xe4"
    assert codec.timestamp_field("account_stats") == b"_ts:account_stats"


VALUES = [
    V(),
    V(null_val=0),  # type: ignore[arg-type]  # the Null enum's only value
    V(int32_val=-5),
    V(int64_val=2**62),
    V(int64_val=0),
    V(int64_val=-47),
    V(int64_val=-(2**63)),
    V(int32_val=2**31 - 1),
    V(int32_val=-(2**31)),
    V(double_val=0.0),
    V(double_val=-1.5e300),
    V(bool_val=False),
    V(string_val=""),
    V(string_val="x" * 300),
    V(double_val=0.1),
    V(double_val=math.nan),
    V(double_val=-math.inf),
    V(float_val=1.5),
    V(float_val=math.inf),
    V(bool_val=True),
    V(string_val="héllo"),
    V(bytes_val=b"\x00\x01\xfe"),
    V(unix_timestamp_val=1_700_000_000),
    V(int32_list_val=Int32List(val=[1, -2])),
    V(int64_list_val=Int64List(val=[3, 4])),
    V(double_list_val=DoubleList(val=[0.5, math.nan])),
    V(float_list_val=FloatList(val=[0.25])),
    V(bool_list_val=BoolList(val=[True, False])),
    V(string_list_val=StringList(val=["a", "b"])),
    V(bytes_list_val=BytesList(val=[b"x", b"\x00"])),
    V(string_list_val=StringList(val=[])),
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: v.WhichOneof("val") or "empty")
def test_values_render_as_feast_serve_does(value: V) -> None:
    ours = codec.decode_value(value.SerializeToString())
    theirs = _value_to_native(value)
    if isinstance(theirs, float) and math.isnan(theirs):  # pragma: no cover - NaN is a string
        pytest.fail("NaN must be rendered as a string")
    assert ours == theirs
    assert type(ours) is type(theirs)


@pytest.mark.parametrize("nanos", [0, 5_000_000, 123_000, 7])
def test_timestamps_render_as_feast_serve_does(nanos: int) -> None:
    ts = Timestamp(
        seconds=int(datetime(2026, 11, 27, 15, 30, 51, tzinfo=UTC).timestamp()), nanos=nanos
    )
    assert codec.timestamp_text(ts.SerializeToString()) == _timestamp_to_str(ts)
    assert codec.timestamp_text(Timestamp().SerializeToString()) == "1970-01-01T00:00:00Z"
    # The ttl check's reading: Feast's own (seconds + nanos / 1e9).
    assert codec.timestamp_seconds(ts.SerializeToString()) == ts.seconds + nanos / 1e9


def test_an_integer_for_a_string_key_is_its_digits_as_in_feast() -> None:
    assert codec.coerce_key_value("k", codec.STRING, 1001) == codec.coerce_key_value(
        "k", codec.STRING, "1001"
    )


@pytest.mark.parametrize(
    ("value_type", "value", "problem"),
    [
        (codec.INT64, "abc", "expected int64, got string 'abc'"),
        (codec.INT64, 1.5, "expected int64, got number"),
        (codec.INT64, True, "expected int64, got boolean"),
        (codec.INT64, None, "expected int64, got null"),
        (codec.INT64, 2**63, "out of range for int64"),
        (codec.INT32, 2**31, "out of range for int32"),
        (codec.STRING, 1.5, "expected string, got number"),
        (codec.STRING, True, "expected string, got boolean"),
        (codec.BYTES, "%%%", "not valid base64"),
    ],
)
def test_bad_key_values_are_named(value_type: int, value: object, problem: str) -> None:
    with pytest.raises(BadRequestError, match=problem):
        codec.coerce_key_value("k", value_type, value)


def test_numeric_strings_are_accepted_for_int_keys_as_feast_does() -> None:
    assert codec.coerce_key_value("k", codec.INT64, "42")[0] == 42


def _column(value_type: int, rng: random.Random) -> list[bytes | None]:
    def small_or_any(bits: int) -> int:
        return rng.choice([rng.randrange(-(2**bits), 2**bits), rng.randrange(0, 1 << 21), 0])

    make: Callable[[], V] = {
        codec.DOUBLE: lambda: V(double_val=rng.choice([rng.uniform(-1e9, 1e9), math.nan, 0.0])),
        codec.FLOAT: lambda: V(float_val=rng.choice([rng.uniform(-1e3, 1e3), -math.inf])),
        codec.INT64: lambda: V(int64_val=small_or_any(63)),
        codec.INT32: lambda: V(int32_val=small_or_any(31)),
        codec.UNIX_TIMESTAMP: lambda: V(unix_timestamp_val=rng.randrange(0, 2_000_000_000)),
        codec.STRING: lambda: V(string_val=rng.choice(["", "a", "é" * rng.randrange(200)])),
    }[value_type]
    gaps = [None, b"", V().SerializeToString()]
    return [
        rng.choice(gaps) if rng.random() < 0.1 else make().SerializeToString()
        for _ in range(rng.randrange(1, 60))
    ]


@pytest.mark.parametrize(
    "value_type",
    [codec.DOUBLE, codec.FLOAT, codec.INT64, codec.INT32, codec.UNIX_TIMESTAMP, codec.STRING],
)
def test_column_decoding_equals_value_decoding(value_type: int) -> None:
    """decode_column's fast paths (one struct unpack, unrolled varints) change nothing: with
    and without gaps, nulls, non-finite floats, negative and multi-byte ints."""
    rng = random.Random(value_type)
    for _ in range(300):
        raws = _column(value_type, rng)
        if rng.random() < 0.5:  # also columns with no gaps, where the struct path applies
            raws = [r for r in raws if r] or [V(double_val=1.0).SerializeToString()]
        expected = [codec.decode_value(r) for r in raws]
        assert codec.decode_column(raws, value_type) == expected
        assert [type(v) for v in codec.decode_column(raws, value_type)] == [
            type(v) for v in expected
        ]


def test_feasts_null_timestamp_marker_reads_as_null() -> None:
    """Feast stores a null unix_timestamp as -2**63 and its SDK reads None: so does the gateway."""
    marker = V(unix_timestamp_val=codec.NULL_TIMESTAMP).SerializeToString()
    assert codec.decode_value(marker) is None
    assert codec.decode_column([marker, None], codec.UNIX_TIMESTAMP) == [None, None]
    listed = V(unix_timestamp_list_val=Int64List(val=[5, codec.NULL_TIMESTAMP]))
    assert codec.decode_value(listed.SerializeToString()) == [5, None]
    assert codec.decode_value(V(int64_val=codec.NULL_TIMESTAMP).SerializeToString()) == -(2**63)


def test_rare_value_kinds_render_as_feasts_server_renders_them() -> None:
    from feast.feature_server_utils import _value_to_native
    from feast.protos.feast.types.Value_pb2 import ScalarMap, Value, ZonedTimestamp

    for value in (
        Value(
            zoned_timestamp_val=ZonedTimestamp(unix_timestamp=1_700_000_000, zone="Europe/Paris")
        ),
        Value(zoned_timestamp_val=ZonedTimestamp(unix_timestamp=1_700_000_000, zone="+05:30")),
        Value(scalar_map_val=ScalarMap()),
    ):
        assert codec.native(value) == _value_to_native(value)
        assert codec.decode_value(value.SerializeToString()) == _value_to_native(value)
