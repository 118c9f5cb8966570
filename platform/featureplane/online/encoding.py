"""Arrow columns to Feast's online bytes and to Redis commands, a column at a time.

Produces exactly the bytes Feast's Redis store writes (tests compare them byte for byte):
serialized ``feast.types.Value`` protobufs for values, serialized ``google.protobuf.Timestamp``
for ``_ts:<view>``, and v3 entity keys. Nothing loops over rows in Python:

- narrow per-row parts — fixed-width numbers, varints, RESP headers, constants — are numpy byte
  matrices with a per-row mask (:class:`Ragged`): a varint is a ``(rows, longest)`` matrix of
  7-bit groups masked by each row's length, a double a structured array viewed as bytes;
  adjacent ones are glued in numpy;
- variable-length data (strings, bytes, types Feast converts) stays in Arrow, and Arrow's
  ``binary_join_element_wise`` joins the few parts left (its cost grows with parts x rows).

:class:`Rows` frames whole Redis commands (RESP) for every row of a batch this way, so a batch's
payload is one contiguous buffer. The common scalar types (int32, int64 and unix-seconds
integers, float, double, bool, string, bytes) have such fast paths; every other type goes
through Feast's own converter, fed as Feast's local engine feeds it: right by construction,
only slower.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from google.protobuf.timestamp_pb2 import Timestamp

from featureplane.online import codec

Bytes: TypeAlias = pa.LargeBinaryArray  # every function's per-row result
UInt8s: TypeAlias = npt.NDArray[np.uint8]
Int64s: TypeAlias = npt.NDArray[np.int64]
Bools: TypeAlias = npt.NDArray[np.bool_]

# feast.types.Value field numbers and wire types: tag = field << 3 | wire type.
_BYTES_TAG, _STRING_TAG = 0x0A, 0x12  # fields 1 and 2, length-delimited
_DOUBLE_TAG, _FLOAT_TAG = 0x29, 0x35  # fields 5 (fixed64) and 6 (fixed32)
_BOOL_TAG = 0x38  # field 7, varint
_VARINT_TAGS = {codec.INT32: 0x18, codec.INT64: 0x20, codec.UNIX_TIMESTAMP: 0x40}
_BOOL, _DOUBLE, _FLOAT = 7, 5, 6  # feast.value_type.ValueType numbers
_INT32_RANGE = (-(2**31), 2**31 - 1)

_VARINT_LIMITS = np.array([1 << (7 * k) for k in range(1, 10)], dtype=np.uint64)
_VARINT_SHIFTS = np.arange(0, 70, 7, dtype=np.uint64)
_POWERS_OF_TEN = np.array([10**k for k in range(19)], dtype=np.int64)
_EMPTY = pa.scalar(b"", pa.large_binary())


class Ragged:
    """Per-row bytes held in numpy: row i is ``matrix[i][mask[i]]`` (the whole row when
    ``mask`` is None). Narrow parts — numbers, headers, constants — are built and glued this
    way, with no per-row Python and no per-part pass over Arrow."""

    __slots__ = ("mask", "matrix")

    def __init__(self, matrix: UInt8s, mask: Bools | None = None) -> None:
        self.matrix = matrix
        self.mask = mask

    @classmethod
    def constant(cls, raw: bytes, rows: int) -> Ragged:
        return cls(np.broadcast_to(np.frombuffer(raw, dtype=np.uint8), (rows, len(raw))))

    @classmethod
    def prefixes(cls, matrix: UInt8s, lengths: npt.NDArray[Any]) -> Ragged:
        """Row i is the first ``lengths[i]`` bytes of ``matrix[i]``."""
        mask = np.arange(matrix.shape[1]) < lengths[:, None]
        return cls(matrix, None if mask.all() else mask)

    @classmethod
    def concat(cls, parts: Sequence[Ragged]) -> Ragged:
        if len(parts) == 1:
            return parts[0]
        matrix = np.hstack([p.matrix for p in parts])
        if all(p.mask is None for p in parts):
            return cls(matrix)
        masks = [np.ones(p.matrix.shape, np.bool_) if p.mask is None else p.mask for p in parts]
        return cls(matrix, np.hstack(masks))

    def lengths(self) -> Int64s:
        if self.mask is None:
            return np.full(self.matrix.shape[0], self.matrix.shape[1], dtype=np.int64)
        return self.mask.sum(axis=1, dtype=np.int64)  # type: ignore[no-any-return]

    def to_arrow(self) -> Bytes:
        data = self.matrix if self.mask is None else self.matrix[self.mask]
        return _from_parts(self.lengths(), np.ascontiguousarray(data))


# Per-row bytes: numpy-built, or an Arrow large_binary array. Pieces are concatenated row by
# row; a bytes piece is the same in every row.
Piece: TypeAlias = "Ragged | pa.Array"
Pieces: TypeAlias = Sequence["Ragged | pa.Array | bytes"]


def _offsets(lengths: npt.NDArray[Any]) -> Int64s:
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return offsets


def _from_parts(lengths: npt.NDArray[Any], data: UInt8s) -> Bytes:
    """A binary array from each row's length and all rows' bytes back to back."""
    buffers = [None, pa.py_buffer(_offsets(lengths)), pa.py_buffer(data)]
    return pa.Array.from_buffers(pa.large_binary(), len(lengths), buffers)


def join(pieces: Pieces, rows: int) -> Bytes:
    """Concatenate the pieces row by row.

    Each numpy piece is glued to the constants around it in numpy (narrow matrices: cheap),
    then Arrow's element-wise join puts the parts together. Gluing wide runs in numpy costs
    more than it saves: copies and masks of narrow columns are strided.
    """
    parts: list[pa.Array | pa.Scalar] = []
    group: list[Ragged | bytes] = []  # constants, then at most one numpy piece

    def close(suffix: bytes = b"") -> None:
        if suffix:
            group.append(suffix)
        if any(isinstance(p, Ragged) for p in group):
            glued = [Ragged.constant(p, rows) if isinstance(p, bytes) else p for p in group]
            parts.append(Ragged.concat(glued).to_arrow())
        elif group:  # constants only
            parts.append(pa.scalar(b"".join(group), pa.large_binary()))  # type: ignore[arg-type]
        group.clear()

    for piece in pieces:
        if isinstance(piece, bytes):
            group.append(piece)
        elif isinstance(piece, Ragged):
            if any(isinstance(p, Ragged) for p in group):
                close()
            group.append(piece)
        else:
            close()
            binary = piece.type == pa.large_binary()
            parts.append(piece if binary else piece.cast(pa.large_binary()))
    close()
    if len(parts) == 1 and isinstance(parts[0], pa.Array):
        return parts[0]
    if not any(isinstance(p, pa.Array) for p in parts):  # constants only
        parts.append(pa.nulls(rows, pa.large_binary()).fill_null(b""))
    return pc.binary_join_element_wise(*parts, _EMPTY)


def _lengths(pieces: Pieces, rows: int) -> Int64s:
    total = np.zeros(rows, dtype=np.int64)
    for piece in pieces:
        if isinstance(piece, bytes):
            total += len(piece)
        elif isinstance(piece, Ragged):
            total += piece.lengths()
        else:
            total += pc.binary_length(piece).to_numpy(zero_copy_only=False)
    return total


def _decimal(values: Int64s) -> Ragged | bytes:
    """Non-negative integers in ASCII decimal, as RESP headers need them (bytes when every row
    has the same, as for fixed-width values)."""
    if len(values) and values.min() == values.max():
        return b"%d" % values[0]
    digits = np.searchsorted(_POWERS_OF_TEN[1:], values, side="right") + 1
    width = int(digits.max()) if len(values) else 1
    position = np.arange(width)
    exponent = np.clip(digits[:, None] - 1 - position, 0, None)
    matrix = ((values[:, None] // _POWERS_OF_TEN[exponent]) % 10 + 48).astype(np.uint8)
    return Ragged.prefixes(matrix, digits)


def _varints(values: npt.NDArray[Any]) -> tuple[UInt8s, Int64s]:
    """Protobuf base-128 varints of int64s (negatives as 64-bit two's complement, 10 bytes):
    a ``(rows, longest)`` byte matrix and each row's length."""
    unsigned = np.ascontiguousarray(values, dtype=np.int64).view(np.uint64)
    lengths = np.searchsorted(_VARINT_LIMITS, unsigned, side="right") + 1
    width = int(lengths.max()) if len(lengths) else 1
    groups = ((unsigned[:, None] >> _VARINT_SHIFTS[:width]) & 0x7F).astype(np.uint8)
    groups[np.arange(width) < (lengths - 1)[:, None]] |= 0x80  # continuation bits
    return groups, lengths


def _tagged_varints(tag: int, values: npt.NDArray[Any], present: Bools) -> Ragged:
    """``tag + varint(value)`` per row, empty where not ``present``."""
    groups, lengths = _varints(values)
    matrix = np.empty((len(values), groups.shape[1] + 1), dtype=np.uint8)
    matrix[:, 0] = tag
    matrix[:, 1:] = groups
    return Ragged.prefixes(matrix, np.where(present, lengths + 1, 0))


def _fixed(tag: int, values: npt.NDArray[Any], dtype: str, present: Bools) -> Ragged:
    """``tag + little-endian value`` per row, empty where not ``present``."""
    packed = np.empty(len(values), dtype=[("tag", "u1"), ("v", dtype)])
    packed["tag"] = tag
    packed["v"] = values
    matrix = packed.view(np.uint8).reshape(len(values), packed.dtype.itemsize)
    if present.all():
        return Ragged(matrix)
    return Ragged(matrix, np.repeat(present[:, None], matrix.shape[1], axis=1))


def _length_delimited(tag: int, column: pa.Array) -> list[Piece]:
    """``tag + varint(len) + bytes`` per row (string and bytes Values); empty for nulls."""
    present = column.is_valid().to_numpy(zero_copy_only=False)
    raw = column.cast(pa.large_binary())
    if column.null_count:
        raw = raw.fill_null(b"")
    sizes = pc.binary_length(raw).to_numpy(zero_copy_only=False)
    return [_tagged_varints(tag, sizes, present), raw]


def _numbers(column: pa.Array, dtype: str) -> tuple[npt.NDArray[Any], Bools]:
    """A numeric column as numpy values and a mask of rows that hold a value."""
    present = column.is_valid().to_numpy(zero_copy_only=False)
    if pa.types.is_floating(column.type):  # Feast writes NaN as an empty Value too
        present &= ~pc.is_nan(column).fill_null(True).to_numpy(zero_copy_only=False)
    filler = False if pa.types.is_boolean(column.type) else 0
    filled = column.fill_null(filler) if column.null_count else column
    values = filled.to_numpy(zero_copy_only=False).astype(dtype, copy=False)
    return values, present


def _fast_value(column: pa.Array, value_type: int) -> list[Piece] | None:
    """The vectorized encoding of one scalar column, or None when the type has none."""
    kind = column.type
    if value_type in (_DOUBLE, _FLOAT) and pa.types.is_floating(kind):
        dtype, tag = ("<f8", _DOUBLE_TAG) if value_type == _DOUBLE else ("<f4", _FLOAT_TAG)
        values, present = _numbers(column, dtype)
        return [_fixed(tag, values, dtype, present)]
    if value_type in _VARINT_TAGS and pa.types.is_integer(kind):
        if pa.types.is_uint64(kind):  # values past 2**63 - 1: let Feast decide
            return None
        values, present = _numbers(column, "i8")
        if value_type == codec.INT32 and present.any():
            low, high = values[present].min(), values[present].max()
            if low < _INT32_RANGE[0] or high > _INT32_RANGE[1]:
                return None  # Feast's converter raises the error for out-of-range values
        return [_tagged_varints(_VARINT_TAGS[value_type], values, present)]
    if value_type == _BOOL and pa.types.is_boolean(kind):
        values, present = _numbers(column, "u1")
        return [_fixed(_BOOL_TAG, values, "u1", present)]
    if value_type == codec.STRING and (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        return _length_delimited(_STRING_TAG, column)
    if value_type == codec.BYTES and (pa.types.is_binary(kind) or pa.types.is_large_binary(kind)):
        return _length_delimited(_BYTES_TAG, column)
    return None


def value_pieces(column: pa.Array, value_type: int) -> list[Piece]:
    """One feature column as serialized ``Value`` protobufs (empty bytes for nulls), as pieces
    for :func:`join` or :meth:`Rows.command`."""
    fast = _fast_value(column, value_type)
    if fast is not None:
        return fast
    from feast.type_map import python_values_to_proto_values
    from feast.value_type import ValueType

    # Exactly what Feast's local engine passes its converter (NaN inside float lists, the
    # null-timestamp sentinel and all), so the bytes are Feast's.
    protos = python_values_to_proto_values(
        column.to_numpy(zero_copy_only=False), ValueType(value_type)
    )
    return [pa.array([p.SerializeToString() for p in protos], pa.large_binary())]


def values(column: pa.Array, value_type: int) -> Bytes:
    """One feature column as serialized ``Value`` protobufs (empty bytes for nulls)."""
    return join(value_pieces(column, value_type), len(column))


def timestamps(column: pa.Array) -> tuple[Ragged, Int64s]:
    """Event times as serialized ``Timestamp`` protobufs, and as nanoseconds for comparisons.

    Microsecond precision, as Feast's (it goes through Python datetimes).
    """
    micros = (
        pc.cast(column, pa.timestamp("us", tz="UTC"), safe=False)
        .cast(pa.int64())
        .to_numpy(zero_copy_only=False)
    )
    seconds, rest = np.divmod(micros, 1_000_000)
    nanos = rest * 1000
    encoded = Ragged.concat(
        [
            _tagged_varints(0x08, seconds, seconds != 0),  # proto3 leaves zero fields out
            _tagged_varints(0x10, nanos, nanos != 0),
        ]
    )
    return encoded, micros * 1000


def timestamp_nanos(stored: Sequence[bytes | None]) -> Int64s:
    """Stored ``_ts`` values back to nanoseconds (0 where absent or empty), vectorized.

    Reads the canonical layout (field 1 then field 2, each optional); anything else is parsed
    by protobuf.
    """
    column = pa.array(stored, pa.large_binary())
    n, width = len(column), 24
    lengths = pc.binary_length(column).fill_null(0).to_numpy(zero_copy_only=False)
    offsets = np.frombuffer(column.buffers()[1], dtype=np.int64)[: n + 1]
    data_buffer = column.buffers()[2]
    data = np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer else np.zeros(0, np.uint8)
    matrix = np.zeros((n, width + 11), dtype=np.uint8)  # room to read a varint past the end
    inside = np.arange(width) < np.minimum(lengths, width)[:, None]
    matrix[:, :width][inside] = data[(offsets[:-1, None] + np.arange(width))[inside]]
    rows = np.arange(n)
    position = np.zeros(n, dtype=np.int64)
    fields = []
    ok = lengths <= width
    for tag in (0x08, 0x10):
        has = (matrix[rows, position] == tag) & (position < lengths)
        window = matrix[rows[:, None], position[:, None] + 1 + np.arange(10)]
        ends = window < 0x80
        size = ends.argmax(axis=1) + 1
        ok &= ~has | ends.any(axis=1)
        used = np.arange(10) < size[:, None]
        value = (((window & 0x7F).astype(np.uint64) << _VARINT_SHIFTS) * used).sum(
            axis=1, dtype=np.uint64
        )
        fields.append(np.where(has, value, 0).view(np.int64))
        position = np.where(has, position + 1 + size, position)
    ok &= position == lengths
    nanos: Int64s = fields[0] * 1_000_000_000 + fields[1]
    for i in np.flatnonzero(~ok):  # not the canonical layout: let protobuf read it
        ts = Timestamp.FromString(stored[int(i)] or b"")
        nanos[i] = ts.seconds * 1_000_000_000 + ts.nanos
    return nanos


def _key_part(column: pa.Array, value_type: int) -> list[Piece] | None:
    """``u32le(type) u32le(len) raw`` per row for one join key, or None for no fast path."""
    kind = column.type
    if column.null_count:
        return None
    if value_type in (codec.INT64, codec.UNIX_TIMESTAMP, codec.INT32) and pa.types.is_integer(kind):
        dtype = "<i4" if value_type == codec.INT32 else "<i8"
        ints = column.to_numpy(zero_copy_only=False)
        if pa.types.is_uint64(kind) or (
            value_type == codec.INT32
            and len(ints)
            and (ints.min() < _INT32_RANGE[0] or ints.max() > _INT32_RANGE[1])
        ):
            return None
        packed = np.empty(len(ints), dtype=[("type", "<u4"), ("len", "<u4"), ("v", dtype)])
        packed["type"] = value_type
        packed["len"] = np.dtype(dtype).itemsize
        packed["v"] = ints
        return [Ragged(packed.view(np.uint8).reshape(len(ints), packed.dtype.itemsize))]
    textual = pa.types.is_string(kind) or pa.types.is_large_string(kind)
    binary = pa.types.is_binary(kind) or pa.types.is_large_binary(kind)
    if (value_type == codec.STRING and textual) or (value_type == codec.BYTES and binary):
        raw = column.cast(pa.large_binary())
        header = np.empty(len(raw), dtype=[("type", "<u4"), ("len", "<u4")])
        header["type"] = value_type
        header["len"] = pc.binary_length(raw).to_numpy(zero_copy_only=False)
        return [Ragged(header.view(np.uint8).reshape(len(raw), 8)), raw]
    return None


def key_pieces(
    columns: Sequence[pa.Array],
    key_types: Sequence[int],
    join_keys: Sequence[str],
    suffix: bytes,
) -> list[Piece | bytes]:
    """Redis keys: the v3 entity key of each row + the project, as pieces. ``join_keys`` (and
    ``columns`` and ``key_types`` with them) must be sorted by name, as v3 serializes them."""
    parts = [_key_part(c, t) for c, t in zip(columns, key_types, strict=True)]
    if any(p is None for p in parts):
        return [_feast_keys(columns, key_types, join_keys, suffix)]
    pieces: list[Piece | bytes] = [codec.key_names_prefix(join_keys)]
    for part in parts:
        pieces += part or []
    pieces.append(suffix)
    return pieces


def entity_keys(
    columns: Sequence[pa.Array],
    key_types: Sequence[int],
    join_keys: Sequence[str],
    suffix: bytes,
) -> Bytes:
    """The Redis key of each row (see :func:`key_pieces`)."""
    rows = len(columns[0]) if columns else 0
    return join(key_pieces(columns, key_types, join_keys, suffix), rows)


def _feast_keys(
    columns: Sequence[pa.Array], key_types: Sequence[int], join_keys: Sequence[str], suffix: bytes
) -> Bytes:
    """Keys through Feast's own converter and serializer, for key types without a fast path."""
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.type_map import python_values_to_proto_values
    from feast.value_type import ValueType

    converted = [
        python_values_to_proto_values(c.to_numpy(zero_copy_only=False), ValueType(t))
        for c, t in zip(columns, key_types, strict=True)
    ]
    keys = [
        serialize_entity_key(EntityKey(join_keys=list(join_keys), entity_values=list(row)), 3)
        + suffix
        for row in zip(*converted, strict=True)
    ]
    return pa.array(keys, pa.large_binary())


class Rows:
    """Redis commands (RESP) for every row of a batch at once: row i's commands back to back.

    Arguments are constants (the same in every row) or per-row pieces; constant parts, RESP
    headers and numpy-built pieces are glued in numpy, variable-length Arrow data (strings)
    joined by Arrow — no Python loop over rows.
    """

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self._parts: list[Piece | bytes] = []

    def _constant(self, raw: bytes) -> None:
        if self._parts and isinstance(self._parts[-1], bytes):
            self._parts[-1] += raw
        else:
            self._parts.append(raw)

    def bulk(self, pieces: Pieces) -> Rows:
        """One per-row bulk string (``$<length>\\r\\n<bytes>\\r\\n``) made of ``pieces``."""
        self._constant(b"$")
        length = _decimal(_lengths(pieces, self.rows))
        if isinstance(length, bytes):
            self._constant(length)
        else:
            self._parts.append(length)
        self._constant(b"\r\n")
        for piece in pieces:
            if isinstance(piece, bytes):
                self._constant(piece)
            else:
                self._parts.append(piece)
        self._constant(b"\r\n")
        return self

    def command(self, *arguments: bytes | Pieces) -> Rows:
        """One command per row; each argument is a constant or per-row pieces."""
        self._constant(b"*%d\r\n" % len(arguments))
        for argument in arguments:
            if isinstance(argument, bytes):
                self._constant(b"$%d\r\n%b\r\n" % (len(argument), argument))
            else:
                self.bulk(argument)
        return self

    def build(self) -> Bytes:
        return join(self._parts, self.rows)


def payload(rows: Bytes) -> memoryview:
    """Every row's bytes back to back: a view of the array's data buffer, no copy."""
    if len(rows) == 0:
        return memoryview(b"")
    offsets = np.frombuffer(rows.buffers()[1], dtype=np.int64)
    start, end = offsets[rows.offset], offsets[rows.offset + len(rows)]
    return memoryview(rows.buffers()[2])[start:end]
