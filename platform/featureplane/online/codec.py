"""Feast's online-store byte format, read directly (Feast 0.67, entity key serialization v3).

- Redis key: ``serialize_entity_key(v3) + project`` — ``u32le(n)``, then per join key (sorted by
  name) ``u32le(STRING=2) u32le(len) name``, then per value ``u32le(type) u32le(len) bytes``.
- Hash field of a feature: ``mmh3_32("<view>:<feature>")`` as 4 little-endian bytes.
- ``_ts:<view>``: a serialized ``google.protobuf.Timestamp`` (the event time).
- Values: serialized ``feast.types.Value`` protobufs, rendered as Feast's feature server does
  (non-finite floats as strings, bytes as base64).

Tests check every function here against Feast's own implementation.
"""

from __future__ import annotations

import base64
import math
import struct
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import mmh3
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from google.protobuf.timestamp_pb2 import Timestamp

from featureplane.errors import BadRequestError

# feast.value_type.ValueType numbers of the join-key types Feast can serialize (and two more).
BYTES, STRING, INT32, INT64, DOUBLE, FLOAT, UNIX_TIMESTAMP = 1, 2, 3, 4, 5, 6, 8
KEY_TYPES = frozenset({BYTES, STRING, INT32, INT64, UNIX_TIMESTAMP})
_TYPE_NAMES = {
    BYTES: "bytes",
    STRING: "string",
    INT32: "int32",
    INT64: "int64",
    UNIX_TIMESTAMP: "unix_timestamp",
}
_INT_RANGES = {
    INT32: (-(2**31), 2**31 - 1),
    INT64: (-(2**63), 2**63 - 1),
    UNIX_TIMESTAMP: (-(2**63), 2**63 - 1),
}
EPOCH = "1970-01-01T00:00:00Z"
# How Feast stores a null unix_timestamp (feast.type_map.NULL_TIMESTAMP_INT_VALUE, NaT as int);
# its SDK reads it back as None, so the gateway answers null too.
NULL_TIMESTAMP = -(2**63)
_NULL_TIMESTAMP_VARINT = 1 << 63  # the same, as the unsigned varint on the wire


def feature_field(view: str, feature: str) -> bytes:
    return struct.pack("<I", mmh3.hash(f"{view}:{feature}", seed=0, signed=False))


def timestamp_field(view: str) -> bytes:
    return f"_ts:{view}".encode()


def key_names_prefix(join_keys: Iterable[str]) -> bytes:
    """The join-key-name part of an entity key; ``join_keys`` must already be sorted."""
    names = list(join_keys)
    out = [struct.pack("<I", len(names))]
    for name in names:
        raw = name.encode()
        out.append(struct.pack("<II", STRING, len(raw)))
        out.append(raw)
    return b"".join(out)


def coerce_key_value(join_key: str, value_type: int, value: Any) -> tuple[Any, bytes]:
    """Validate one JSON join-key value: returns it as Feast would echo it, and its key bytes."""
    if value_type in _INT_RANGES:
        if isinstance(value, bool) or not isinstance(value, int | str):
            huge = isinstance(value, float) and abs(value) >= 2**63
            raise BadRequestError(
                f"entity {join_key!r}: expected {_TYPE_NAMES[value_type]}, got {shown(value)}"
                + (_HUGE_INT_HINT if huge else "")
            )
        if isinstance(value, str):
            try:
                value = int(value)
            except ValueError:
                raise BadRequestError(
                    f"entity {join_key!r}: expected {_TYPE_NAMES[value_type]}, got {shown(value)}"
                ) from None
        low, high = _INT_RANGES[value_type]
        if not low <= value <= high:
            raise BadRequestError(
                f"entity {join_key!r}: {shown(value)} is out of range for {_TYPE_NAMES[value_type]}"
            )
        raw = struct.pack("<i" if value_type == INT32 else "<q", value)
        return value, struct.pack("<II", value_type, len(raw)) + raw
    if value_type == STRING:
        # An integer is read as its digits, as Feast reads it (a label view's key is a string
        # when its entity has no value_type, and clients send the ids they have).
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise BadRequestError(f"entity {join_key!r}: expected string, got {shown(value)}")
        raw = value.encode()
        return value, struct.pack("<II", STRING, len(raw)) + raw
    if value_type == BYTES:
        if not isinstance(value, str):
            raise BadRequestError(
                f"entity {join_key!r}: expected base64 bytes, got {json_type(value)}"
            )
        try:
            raw = base64.b64decode(value, validate=True)
        except ValueError:
            raise BadRequestError(
                f"entity {join_key!r}: {shown(value)} is not valid base64"
            ) from None
        return value, struct.pack("<II", BYTES, len(raw)) + raw
    raise BadRequestError(f"entity {join_key!r}: value type {value_type} cannot be a join key")


_HUGE_INT_HINT = " (JSON integers beyond 64 bits are read as floating point)"
_SHOWN_CHARS = 80


def shown(value: Any) -> str:
    """A request value for an error message: its JSON type and, for a scalar, its value, cut
    short. Never the repr of a container: a deeply nested one would overflow the stack."""
    kind = json_type(value)
    if value is None or isinstance(value, list | dict):
        return kind
    text = repr(value)
    if len(text) > _SHOWN_CHARS:
        text = f"{text[:_SHOWN_CHARS]}... ({len(text)} characters)"
    return f"{kind} {text}"


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        list: "array",
        dict: "object",
    }.get(type(value), type(value).__name__)


@lru_cache(maxsize=65536)
def timestamp_text(raw: bytes) -> str:
    """A stored ``_ts`` field as RFC 3339, with the precision Feast's server uses."""
    ts = Timestamp.FromString(raw)
    if ts.seconds == 0 and ts.nanos == 0:
        return EPOCH
    base = datetime.fromtimestamp(ts.seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    nanos = ts.nanos
    if nanos == 0:
        return base + "Z"
    if nanos % 1_000_000 == 0:
        return f"{base}.{nanos // 1_000_000:03d}Z"
    if nanos % 1_000 == 0:
        return f"{base}.{nanos // 1_000:06d}Z"
    return f"{base}.{nanos:09d}Z"


@lru_cache(maxsize=65536)
def timestamp_seconds(raw: bytes) -> float:
    """A stored ``_ts`` field as seconds since the epoch, nanoseconds included (as Feast's own
    ttl check reads it)."""
    ts = Timestamp.FromString(raw)
    seconds: int = ts.seconds
    nanos: int = ts.nanos
    return seconds + nanos / 1e9


def _float(f: float) -> float | str:
    if math.isfinite(f):
        return f
    if math.isnan(f):
        return "NaN"
    return "Infinity" if f > 0 else "-Infinity"


_FLOATS = frozenset({"double_val", "float_val"})
_FLOAT_LISTS = frozenset({"double_list_val", "float_list_val", "double_set_val", "float_set_val"})
_BYTES_LISTS = frozenset({"bytes_list_val", "bytes_set_val"})


def native(value: ValueProto) -> Any:
    """A Value protobuf as the JSON-ready Python value Feast's feature server returns."""
    which = value.WhichOneof("val")
    if which is None or which == "null_val":
        return None
    if which in _FLOATS:
        return _float(getattr(value, which))
    if which in _FLOAT_LISTS:
        return [_float(f) for f in getattr(value, which).val]
    if which == "bytes_val":
        return base64.b64encode(value.bytes_val).decode("ascii")
    if which in _BYTES_LISTS:
        return [base64.b64encode(b).decode("ascii") for b in getattr(value, which).val]
    if which in ("list_val", "set_val"):
        return [native(v) for v in getattr(value, which).val]
    if which in ("map_val", "struct_val"):
        return {k: native(v) for k, v in getattr(value, which).val.items()}
    if which in ("map_list_val", "struct_list_val"):
        return [{k: native(v) for k, v in m.val.items()} for m in getattr(value, which).val]
    if which == "scalar_map_val":
        return None  # as Feast's feature server answers it (its keys are not strings)
    if which == "zoned_timestamp_val":
        from feast.feature_server_utils import _zoned_timestamp_to_str

        return _zoned_timestamp_to_str(value.zoned_timestamp_val)  # rare: Feast's own rendering
    if which in ("unix_timestamp_list_val", "unix_timestamp_set_val"):
        return [None if v == NULL_TIMESTAMP else v for v in getattr(value, which).val]
    if "_list_" in which or "_set_" in which:
        return list(getattr(value, which).val)
    if which == "unix_timestamp_val" and value.unix_timestamp_val == NULL_TIMESTAMP:
        return None
    return getattr(value, which)


_DOUBLE = struct.Struct("<d")
_FLOAT32 = struct.Struct("<f")
_VARINT_TAGS = frozenset({0x18, 0x20, 0x40})  # int32, int64, unix_timestamp


def _varint(raw: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = raw[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if byte < 0x80:
            return value, pos
        shift += 7


def _varint_value(raw: bytes | None) -> Any:
    """decode_value for an int32/int64/unix_timestamp column, unrolled for short varints."""
    if raw and raw[0] in _VARINT_TAGS:
        size = len(raw)
        if size == 2:
            return raw[1] if raw[1] < 0x80 else decode_value(raw)
        if size == 3 and raw[1] >= 0x80 and raw[2] < 0x80:
            return (raw[1] & 0x7F) | raw[2] << 7
        if size == 4 and raw[1] >= 0x80 and raw[2] >= 0x80 and raw[3] < 0x80:
            return (raw[1] & 0x7F) | (raw[2] & 0x7F) << 7 | raw[3] << 14
    return decode_value(raw)


@lru_cache(maxsize=64)
def _fixed_column(tag: int, code: str, rows: int) -> tuple[bytes, struct.Struct]:
    return bytes([tag]) * rows, struct.Struct("<" + ("x" + code) * rows)


_FIXED = {DOUBLE: (0x29, "d"), FLOAT: (0x35, "f")}
_VARINTS = frozenset({INT32, INT64, UNIX_TIMESTAMP})


def decode_column(raws: list[bytes | None], value_type: int) -> list[Any]:
    """``decode_value`` over one feature's values, faster when the type is known: a column of
    doubles or floats with no gaps is one ``struct`` unpack; ints skip the tag dispatch."""
    fixed = _FIXED.get(value_type)
    if fixed is not None and None not in raws:
        tag, code = fixed
        joined = b"".join(raws)  # type: ignore[arg-type]  # no None, checked above
        width = 9 if code == "d" else 5
        tags, layout = _fixed_column(tag, code, len(raws))
        if len(joined) == width * len(raws) and joined[::width] == tags:
            values = list(layout.unpack(joined))
            if all(map(math.isfinite, values)):
                return values
            return [_float(v) for v in values]
    if value_type in _VARINTS:
        return [_varint_value(raw) for raw in raws]
    return [decode_value(raw) for raw in raws]


def decode_value(raw: bytes | None) -> Any:
    """Stored bytes to a JSON-ready value; an absent or empty value is None.

    The scalar types that fill most feature rows are read straight from the wire format (one
    tag byte, then the payload); anything else, or anything unexpected, goes through protobuf.
    """
    if not raw:
        return None
    tag, size = raw[0], len(raw)
    if tag == 0x29 and size == 9:
        return _float(_DOUBLE.unpack_from(raw, 1)[0])
    if tag == 0x35 and size == 5:
        return _float(_FLOAT32.unpack_from(raw, 1)[0])
    if tag == 0x38 and size == 2 and raw[1] < 2:
        return raw[1] == 1
    if tag in _VARINT_TAGS and size <= 11:
        value, end = _varint(raw, 1)
        if end == size:
            if value == _NULL_TIMESTAMP_VARINT and tag == 0x40:
                return None  # Feast's marker of a null unix_timestamp
            return value - (1 << 64) if value >= 1 << 63 else value
    elif tag == 0x12:
        length, start = _varint(raw, 1)
        if start + length == size:
            return raw[start:].decode()
    return native(ValueProto.FromString(raw))
