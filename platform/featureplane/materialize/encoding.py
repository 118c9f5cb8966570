"""Arrow columns to Feast's online bytes, a column at a time.

Produces exactly the bytes Feast's Redis store writes (tests compare them byte for byte):
serialized ``feast.types.Value`` protobufs for values, serialized ``google.protobuf.Timestamp``
for ``_ts:<view>``, and v3 entity keys. The common scalar types are encoded with numpy (one
``tobytes`` per column, then slicing); every other type goes through Feast's own converter, so
it is right by construction, only slower.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from featureplane.gateway import codec

# feast.types.Value field numbers and wire types: tag = field << 3 | wire type.
_DOUBLE, _FLOAT = 0x29, 0x35  # fields 5 (fixed64) and 6 (fixed32)
_INT32, _INT64, _BOOL, _UNIX = 0x18, 0x20, 0x38, 0x40  # varint fields 3, 4, 7, 8
_STRING = 0x12  # field 2, length-delimited
_VARINT_SMALL = [bytes([i]) for i in range(128)]


def varint(value: int) -> bytes:
    """Protobuf base-128 varint; negative numbers as their 64-bit two's complement."""
    if 0 <= value < 128:
        return _VARINT_SMALL[value]
    value &= 0xFFFFFFFFFFFFFFFF
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _fixed(tag: int, values: np.ndarray[Any, Any], dtype: str) -> list[bytes]:
    width = np.dtype(dtype).itemsize + 1
    packed = np.empty(len(values), dtype=[("tag", "u1"), ("v", dtype)])
    packed["tag"] = tag
    packed["v"] = values
    raw = packed.tobytes()
    return [raw[i : i + width] for i in range(0, len(raw), width)]


def _nulls(column: pa.Array) -> np.ndarray[Any, Any]:
    mask = column.is_null().to_numpy(zero_copy_only=False)
    if pa.types.is_floating(column.type):  # Feast turns NaN into an empty Value as well
        mask |= pc.is_nan(column).fill_null(False).to_numpy(zero_copy_only=False)
    return mask  # type: ignore[no-any-return]


def _apply_nulls(encoded: list[bytes], mask: np.ndarray[Any, Any]) -> list[bytes]:
    if mask.any():
        for i in np.flatnonzero(mask):
            encoded[i] = b""
    return encoded


def _scalar(column: pa.Array, value_type: int) -> list[bytes] | None:
    """The fast path for one scalar column, or None when the type has none."""
    mask = _nulls(column)
    if value_type == 5 and pa.types.is_floating(column.type):  # DOUBLE
        values = column.fill_null(0).to_numpy(zero_copy_only=False).astype("<f8")
        return _apply_nulls(_fixed(_DOUBLE, values, "<f8"), mask)
    if value_type == 6 and pa.types.is_floating(column.type):  # FLOAT
        values = column.fill_null(0).to_numpy(zero_copy_only=False).astype("<f4")
        return _apply_nulls(_fixed(_FLOAT, values, "<f4"), mask)
    if value_type in (3, 4) and pa.types.is_integer(column.type):  # INT32, INT64
        tag = bytes([_INT32 if value_type == 3 else _INT64])
        ints = column.fill_null(0).to_pylist()
        return _apply_nulls([tag + varint(v) for v in ints], mask)
    if value_type == 7 and pa.types.is_boolean(column.type):  # BOOL
        true, false = bytes([_BOOL, 1]), bytes([_BOOL, 0])
        flags = column.fill_null(False).to_numpy(zero_copy_only=False)
        return _apply_nulls([true if f else false for f in flags], mask)
    if value_type == 2 and (
        pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
    ):
        encoded = []
        for text in column.fill_null("").to_pylist():
            raw = text.encode()
            encoded.append(bytes([_STRING]) + varint(len(raw)) + raw)
        return _apply_nulls(encoded, mask)
    return None


def value_column(column: pa.Array, value_type: int) -> list[bytes]:
    """One feature column as serialized ``Value`` protobufs (empty bytes for nulls)."""
    fast = _scalar(column, value_type)
    if fast is not None:
        return fast
    from feast.type_map import python_values_to_proto_values
    from feast.value_type import ValueType

    values = column.to_pylist()
    protos = python_values_to_proto_values(values, ValueType(value_type))
    return [
        b"" if v is None else p.SerializeToString() for v, p in zip(values, protos, strict=True)
    ]


def timestamps(column: pa.Array) -> tuple[list[bytes], np.ndarray[Any, Any]]:
    """Event times as serialized ``Timestamp`` protobufs, and as nanoseconds for comparisons."""
    micros = (
        pc.cast(column, pa.timestamp("us", tz="UTC"))
        .cast(pa.int64())
        .to_numpy(zero_copy_only=False)
    )
    seconds, rest = np.divmod(micros, 1_000_000)
    encoded = []
    for s, us in zip(seconds.tolist(), rest.tolist(), strict=True):
        out = b"\x08" + varint(s) if s else b""
        encoded.append(out + b"\x10" + varint(us * 1000) if us else out)
    return encoded, micros * 1000


_KEY_ENCODERS: dict[int, Callable[[Any], bytes]] = {
    codec.INT64: lambda v: struct.pack("<IIq", codec.INT64, 8, v),
    codec.INT32: lambda v: struct.pack("<IIi", codec.INT32, 4, v),
    codec.UNIX_TIMESTAMP: lambda v: struct.pack("<IIq", codec.UNIX_TIMESTAMP, 8, v),
    codec.STRING: lambda v: struct.pack("<II", codec.STRING, len(b := v.encode())) + b,
    codec.BYTES: lambda v: struct.pack("<II", codec.BYTES, len(v)) + v,
}


def entity_keys(
    columns: Sequence[pa.Array], key_types: Sequence[int], prefix: bytes, suffix: bytes
) -> list[bytes]:
    """Redis keys: the v3 entity key of each row (join keys already sorted by name) + project."""
    parts = []
    for column, value_type in zip(columns, key_types, strict=True):
        encode = _KEY_ENCODERS[value_type]
        parts.append([encode(v) for v in column.to_pylist()])
    return [prefix + b"".join(row) + suffix for row in zip(*parts, strict=True)]
