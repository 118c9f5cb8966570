"""How a worker computes a call: Feast's transformation, without Feast's response machinery.

Feast computes on-demand views (``feast.utils._augment_response_with_on_demand_transforms``) by
building a ``GetOnlineFeaturesResponse`` of its inputs, turning it back into Python
(``OnlineResponse.to_dict`` / ``to_arrow``), calling the view's ``transform_dict`` /
``transform_arrow``, and turning the outputs into ``Value`` protos with
``python_values_to_proto_values``. The two conversions cost the worker most of a call (about 70%
for 100 rows of a pandas view), so :func:`compute` follows the same steps with the inputs
converted straight to what ``to_dict`` yields and the outputs encoded directly, for the types
where that is provably the same (scalars of the exact Python or NumPy type; nulls as Feast
treats them). Anything else goes through Feast's own functions, value for value, and views
with aggregations or in substrait mode, and calls mixing python and pandas views, through
Feast's whole path (``None`` here).
``tests/transform/test_compute.py`` checks both give the same answer, Feast's being the oracle.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np
import pyarrow as pa
from feast.online_response import _convert_uuids_for_arrow
from feast.protos.feast.serving.ServingService_pb2 import GetOnlineFeaturesResponse
from feast.protos.feast.types.Value_pb2 import Value
from feast.type_map import feast_value_type_to_python_type, python_values_to_proto_values
from feast.types import ComplexFeastType, PrimitiveFeastType
from feast.utils import _parse_feature_ref
from feast.value_type import ValueType

from featureplane.transform.protocol import Column, TransformCall

# Value fields whose Python value Feast's ``feast_value_type_to_python_type`` returns as is.
_PLAIN_FIELDS = frozenset(
    {"int32_val", "int64_val", "double_val", "float_val", "string_val", "bytes_val", "bool_val"}
)
_INT_RANGES = {ValueType.INT64: 2**63, ValueType.INT32: 2**31}
# A request value's Python type -> the ValueType Feast infers for it
_INFERRED = {int: ValueType.INT64, float: ValueType.DOUBLE, str: ValueType.STRING,
             bool: ValueType.BOOL}  # fmt: skip


def _stored(raw: bytes | None) -> Any:
    """A stored value as ``OnlineResponse.to_dict`` gives it."""
    if raw is None:
        return None
    value = Value.FromString(raw)
    field = value.WhichOneof("val")
    if field is None:
        return None
    if field in _PLAIN_FIELDS:
        return getattr(value, field)
    return feast_value_type_to_python_type(value)


def _round_trip(values: list[Any], value_type: int) -> list[Any]:
    """Request data or join keys as Feast has them after its response: the values made into
    protos of ``value_type`` (inferred when 0) and back. Identity where that is certain."""
    kind = ValueType(value_type)
    sample = next((v for v in values if v is not None), None)
    if sample is None:  # all null: Feast answers nulls
        return [None] * len(values)
    cls = type(sample)
    if kind == ValueType.UNKNOWN:
        kind = _INFERRED.get(cls, ValueType.UNKNOWN)
    if all(v is None or type(v) is cls for v in values):
        if cls is int and kind in _INT_RANGES:  # out of range, Feast raises: its way below
            bound = _INT_RANGES[kind]
            if all(v is None or -bound <= v < bound for v in values):
                return values
        elif (
            cls is not int
            and _INFERRED.get(cls) == kind
            and not (cls is float and any(v is not None and math.isnan(v) for v in values))
        ):  # (NaN becomes null in Feast: its way below)
            return values
    protos = python_values_to_proto_values(values, ValueType(value_type))
    return [feast_value_type_to_python_type(p) for p in protos]


def inputs(call: TransformCall) -> dict[str, list[Any]]:
    """The call's inputs as ``OnlineResponse(response).to_dict()`` gives them."""
    return {column.name: _column(column) for column in call.columns}


def _column(column: Column) -> list[Any]:
    if column.kind == "feature":
        return [_stored(raw) for raw in column.values]
    return _round_trip(list(column.values), column.value_type)


_FLOATS = (float, np.float64, np.float32)
# ValueType -> (Value field, the exact types encoded directly, conversion as Feast's)
_ENCODINGS: dict[ValueType, tuple[str, tuple[type, ...], Any]] = {
    ValueType.DOUBLE: ("double_val", (float, np.float64), float),
    ValueType.FLOAT: ("float_val", _FLOATS, float),
    ValueType.INT64: ("int64_val", (int, np.int64), int),
    ValueType.INT32: ("int32_val", (int, np.int32, np.int64), int),
    ValueType.STRING: ("string_val", (str,), str),
    ValueType.BOOL: ("bool_val", (bool, np.bool_), bool),
}


def encode(values: Any, value_type: ValueType) -> list[Value]:
    """``python_values_to_proto_values(values, value_type)``, directly where every value is
    null (None, or NaN as ``pd.isnull`` has it) or of one of the exact types Feast converts
    with a plain ``float`` / ``int`` / ``str`` / ``bool``."""
    encoding = _ENCODINGS.get(value_type)
    if encoding is not None:
        field, types, convert = encoding
        out: list[Value] = []
        for v in values:
            if v is None:
                out.append(Value())
            elif type(v) in types:
                if isinstance(v, _FLOATS) and v != v:
                    out.append(Value())  # NaN is null to Feast
                else:
                    out.append(Value(**{field: convert(v)}))
            else:
                break
        else:
            return out
    encoded: list[Value] = python_values_to_proto_values(values, value_type)
    return encoded


def _value_type(view: Any, feature: str) -> ValueType:
    """Feast's choice of type for an output feature: its schema's, else UNKNOWN (inferred)."""
    dtype = {f.name: f.dtype for f in view.schema}.get(feature)
    if isinstance(dtype, ComplexFeastType | PrimitiveFeastType):
        return dtype.to_value_type()
    if dtype is not None and not isinstance(dtype, ValueType):
        raise TypeError("Unexpected type for feature_type: <enum 'ValueType'>")  # Feast's text
    return ValueType.UNKNOWN


def compute(views: dict[str, Any], call: TransformCall) -> GetOnlineFeaturesResponse | None:
    """The ODFVs' outputs for ``call``, as Feast computes them (the same feature names and
    values); ``None`` for a call Feast's own path must compute: aggregations, substrait mode,
    and python and pandas views together (Feast converts its response again for the second
    mode, outputs of the views computed before included)."""
    requested = [views[name] for name in call.views]
    if any(view.aggregations or view.mode not in ("python", "pandas") for view in requested):
        return None
    if len({view.mode for view in requested if not view.write_to_online_store}) > 1:
        return None
    by_alias = {(v.projection.name_alias if v.projection else None) or v.name: v for v in requested}
    odfv_refs: dict[str, list[str]] = defaultdict(list)
    for ref in call.feature_refs:
        view_name, _, feature = _parse_feature_ref(ref)
        if view_name in by_alias:
            name = by_alias[view_name].projection.name_to_use()
            full = f"{name}__{feature}"
            odfv_refs[view_name].append(full if call.full_feature_names else feature)
    columns: dict[str, list[Any]] | None = None
    table: pa.Table | None = None
    out = GetOnlineFeaturesResponse()
    # ``odfv_name`` as in Feast's loop: the worker names a failing view from this frame.
    for odfv_name, wanted in odfv_refs.items():
        view = by_alias[odfv_name]
        if view.write_to_online_store:  # as Feast: stored views are read, not computed (the
            continue  # gateway serves them from the store and never sends them here)
        if columns is None:  # converted in the loop, as Feast does: a failure names the view
            columns = inputs(call)
        dropped = _undeclared(view, requested, call.feature_refs, by_alias)
        if view.mode == "python":
            outputs: Any = view.transform_dict(
                {k: v for k, v in columns.items() if k not in dropped}
            )
            names = list(outputs)
        else:
            if table is None:
                table = pa.Table.from_pydict(_convert_uuids_for_arrow(dict(columns)))
            selected = table.select([c for c in table.column_names if c not in dropped])
            outputs = view.transform_arrow(selected, call.full_feature_names)
            names = outputs.column_names
        for feature in (f for f in names if f in wanted):
            vector = outputs[feature]
            if view.mode == "python":
                vector = vector if isinstance(vector, list) else [vector]
            else:
                vector = vector.to_numpy()
            out.metadata.feature_names.val.append(feature)
            out.results.add().values.extend(encode(vector, _value_type(view, feature)))
    return out


def _undeclared(
    view: Any, requested: list[Any], refs: tuple[str, ...], by_alias: dict[str, Any]
) -> set[str]:
    """The columns Feast keeps from ``view``'s UDF: features of views it does not read (#6158)."""
    declared = {p.name for p in view.source_feature_view_projections.values()}
    dropped: set[str] = set()
    for ref in refs:
        ref_view, _, feature = _parse_feature_ref(ref)
        if ref_view not in by_alias and ref_view not in declared:
            dropped |= {feature, f"{ref_view}__{feature}"}
    for other in requested:
        for projection in other.source_feature_view_projections.values():
            if projection.name not in declared:
                for field in projection.features:
                    dropped |= {field.name, f"{projection.name}__{field.name}"}
    return dropped
