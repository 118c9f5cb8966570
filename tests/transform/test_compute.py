"""The worker's computation (featureplane.transform.compute) against Feast's own path
(``_augment_response_with_on_demand_transforms`` over the response Feast builds), the oracle:
the same feature names and the same ``Value`` protos, for every scalar type with nulls and
NaN, lists, request data of every JSON type, full feature names, and views reading different
sources in one call."""

from __future__ import annotations

import math
import random
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped]  # no stubs pinned
import pytest
from feast import Entity, FeatureView, Field, FileSource, RequestSource
from feast.on_demand_feature_view import on_demand_feature_view
from feast.protos.feast.types.Value_pb2 import Value
from feast.type_map import feast_value_type_to_python_type, python_values_to_proto_values
from feast.types import Array, Bool, Float32, Float64, Int32, Int64, String
from feast.value_type import ValueType

from featureplane.transform import worker
from featureplane.transform.compute import _round_trip, compute, encode
from featureplane.transform.protocol import Column, TransformCall, WorkerLoad

account = Entity(name="account", join_keys=["account_id"], value_type=ValueType.INT64)
SCALARS = {"f64": Float64, "f32": Float32, "i64": Int64, "i32": Int32, "s": String, "b": Bool}
stats = FeatureView(
    name="stats",
    entities=[account],
    ttl=timedelta(days=1),
    schema=[Field(name=n, dtype=t) for n, t in SCALARS.items()]
    + [Field(name="nums", dtype=Array(Float64))],
    source=FileSource(name="stats_src", path="stats.parquet", timestamp_field="ts"),
)
other = FeatureView(
    name="other",
    entities=[account],
    ttl=timedelta(days=1),
    schema=[Field(name="score", dtype=Float64)],
    source=FileSource(name="other_src", path="other.parquet", timestamp_field="ts"),
)
request = RequestSource(name="req", schema=[Field(name="amount", dtype=Float64)])
OUT = [Field(name=f"out_{n}", dtype=t) for n, t in SCALARS.items()]
OUT += [Field(name="out_nums", dtype=Array(Float64)), Field(name="keys", dtype=Int64)]


@on_demand_feature_view(sources=[stats, request], schema=OUT, mode="python")  # type: ignore[untyped-decorator]
def every_type(inputs: dict[str, Any]) -> dict[str, Any]:
    # Rebuilt from its source in the worker: no module globals.
    out = {f"out_{n}": inputs[n] for n in ("f64", "f32", "i64", "i32", "s", "b")}
    out["out_nums"] = inputs["nums"]
    out["keys"] = [len(inputs.keys())] * len(inputs["f64"])  # which columns the UDF saw
    return out


@on_demand_feature_view(  # type: ignore[untyped-decorator]
    sources=[stats, request],
    schema=[Field(name="scaled", dtype=Float64), Field(name="label", dtype=String)],
    mode="python",
    singleton=True,
)
def one_row(inputs: dict[str, Any]) -> dict[str, Any]:
    f64, amount = inputs["f64"], inputs["amount"]
    scaled = None if f64 is None or amount is None else f64 * amount
    return {"scaled": scaled, "label": f"{inputs['s']}-{inputs['i64']}"}


@on_demand_feature_view(  # type: ignore[untyped-decorator]
    sources=[stats, request],
    schema=[
        Field(name="ratio", dtype=Float64),
        Field(name="big", dtype=Bool),
        Field(name="count", dtype=Int64),
        Field(name="small", dtype=Float32),
        Field(name="tag", dtype=String),
    ],
    mode="pandas",
)
def frame(inputs: pd.DataFrame) -> pd.DataFrame:
    ratio = inputs["amount"] / inputs["f64"]
    return pd.DataFrame({
        "ratio": ratio,
        "big": (ratio > 3).fillna(False),
        "count": inputs["i64"].astype("float64").fillna(0).astype("int64"),
        "small": inputs["f32"],
        "tag": inputs["s"],
    })  # fmt: skip


@on_demand_feature_view(sources=[other], schema=[Field(name="half", dtype=Float64)], mode="python")  # type: ignore[untyped-decorator]
def from_other(inputs: dict[str, Any]) -> dict[str, Any]:
    assert "f64" not in inputs  # Feast drops the features of views it does not read
    return {"half": [None if s is None else s / 2 for s in inputs["score"]]}


VIEWS = worker._load(
    WorkerLoad("p", None, tuple(v.to_proto().SerializeToString()
                                for v in (every_type, one_row, frame, from_other)))
)  # fmt: skip


def _stored(values: list[Any], value_type: ValueType) -> list[bytes | None]:
    protos = python_values_to_proto_values(values, value_type)
    return [
        None if v is None else p.SerializeToString() for v, p in zip(values, protos, strict=True)
    ]


def _columns(rng: random.Random, rows: int, full: bool) -> tuple[Column, ...]:
    def maybe(make: Any) -> list[Any]:
        return [None if rng.random() < 0.2 else make() for _ in range(rows)]

    stored = {
        "f64": (maybe(lambda: rng.choice([rng.uniform(-5, 5), 0.0])), ValueType.DOUBLE),
        "f32": (maybe(lambda: rng.uniform(-5, 5)), ValueType.FLOAT),
        "i64": (maybe(lambda: rng.randrange(-(2**40), 2**40)), ValueType.INT64),
        "i32": (maybe(lambda: rng.randrange(-1000, 1000)), ValueType.INT32),
        "s": (maybe(lambda: rng.choice(["", "é", "x" * 5])), ValueType.STRING),
        "b": (maybe(lambda: rng.random() < 0.5), ValueType.BOOL),
        "nums": (maybe(lambda: [rng.uniform(0, 1) for _ in range(3)]), ValueType.DOUBLE_LIST),
    }
    columns = [
        Column("account_id", "value", list(range(rows)), ValueType.INT64.value),
        Column("amount", "value", maybe(lambda: rng.uniform(1, 100)), 0),
    ]
    for name, (values, value_type) in stored.items():
        columns.append(Column(f"stats__{name}" if full else name, "feature",
                              _stored(values, value_type), 0))  # fmt: skip
    score = maybe(lambda: rng.uniform(0, 10))
    columns.append(Column("other__score" if full else "score", "feature",
                          _stored(score, ValueType.DOUBLE), 0))  # fmt: skip
    return tuple(columns)


def _same(ours: Any, feast: Any) -> None:
    assert list(ours.metadata.feature_names.val) == list(feast.metadata.feature_names.val)
    for mine, theirs in zip(ours.results, feast.results, strict=True):
        assert [m.SerializeToString() for m in mine.values] == [
            t.SerializeToString() for t in theirs.values
        ]


CASES = {
    "every type (python)": (("every_type",), [f"every_type:{f.name}" for f in OUT]),
    "singleton": (("one_row",), ["one_row:scaled", "one_row:label"]),
    "pandas": (("frame",), [f"frame:{f}" for f in ("ratio", "big", "count", "small", "tag")]),
    "two views, two sources": (
        ("every_type", "from_other"),
        ["every_type:keys", "from_other:half"],
    ),
}


@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize("rows", [1, 7])
@pytest.mark.parametrize("case", list(CASES))
def test_the_answer_is_feasts(case: str, rows: int, full: bool) -> None:
    views, refs = CASES[case]
    rng = random.Random(f"{case}{rows}{full}")
    for _ in range(5):
        if views == ("one_row",) and rows > 1:
            rows = 1  # Feast computes only a singleton view's first row; the worker splits rows
        call = TransformCall(views, tuple(refs), full, _columns(rng, rows, full))
        ours = worker._transform(VIEWS, call)  # compute's, or Feast's path where it defers
        _same(ours, worker._feast_transform(VIEWS, call))
        assert (compute(VIEWS, call) is None) == case.startswith(("pandas, then", "python, then"))


def test_the_udf_sees_what_feast_passes_it() -> None:
    call = TransformCall(("every_type",), ("every_type:keys",), False,
                         _columns(random.Random(1), 2, False))  # fmt: skip
    keys = compute(VIEWS, call)
    assert keys is not None
    assert keys.results[0].values[0].int64_val > 0
    _same(keys, worker._feast_transform(VIEWS, call))


REQUEST_VALUES: list[tuple[list[Any], int]] = [
    ([1, 2, None], 0),
    ([1.5, 2, None], 0),  # mixed: Feast makes them all DOUBLE
    ([2, 1.5], 0),  # inferred INT64 from the first: 1.5 truncated by Feast
    ([1.5, math.nan], 0),  # NaN becomes null
    (["a", "", None], 0),
    ([True, False, None], 0),
    ([None, None], 0),
    ([[1, 2], [3]], 0),
    ([2**62, -(2**62)], ValueType.INT64.value),
    ([7, -3], ValueType.INT32.value),
    (["sku-1"], ValueType.STRING.value),
    ([1.25], ValueType.FLOAT.value),  # float32 rounding, Feast's
]


@pytest.mark.parametrize(("values", "value_type"), REQUEST_VALUES)
def test_request_data_round_trips_as_in_feasts_response(values: list[Any], value_type: int) -> None:
    protos = python_values_to_proto_values(list(values), ValueType(value_type))
    expected = [feast_value_type_to_python_type(p) for p in protos]
    got = _round_trip(list(values), value_type)
    assert repr(got) == repr(expected)


@pytest.mark.parametrize(
    "values",
    [[2**63], [-(2**63) - 1]],
)
def test_an_int64_out_of_range_fails_as_in_feast(values: list[Any]) -> None:
    with pytest.raises(ValueError, match="out of range"):
        python_values_to_proto_values(values, ValueType.INT64)
    with pytest.raises(ValueError, match="out of range"):
        _round_trip(values, ValueType.INT64.value)


OUTPUTS: list[tuple[Any, ValueType]] = [
    ([1.5, None, math.nan, -0.0], ValueType.DOUBLE),
    (np.array([1.5, np.nan, 2.0]), ValueType.DOUBLE),
    ([1, 2.5], ValueType.DOUBLE),  # an int among doubles: Feast's way
    (np.array([1.5, np.nan], dtype=np.float32), ValueType.FLOAT),
    ([0.1, None], ValueType.FLOAT),
    (np.array([1, 2, 3]), ValueType.INT64),
    ([1, None, -(2**40)], ValueType.INT64),
    (np.array([1, 2], dtype=np.int32), ValueType.INT32),
    ([True, None], ValueType.BOOL),
    (np.array([True, False]), ValueType.BOOL),
    (np.array([True, None], dtype=object), ValueType.BOOL),
    (["a", None, ""], ValueType.STRING),
    (np.array(["a", "b"], dtype=object), ValueType.STRING),
    ([3, "x"], ValueType.STRING),  # Feast's str()
    ([None, None], ValueType.DOUBLE),
    ([], ValueType.INT64),
    ([[1.0, 2.0], None], ValueType.DOUBLE_LIST),
    ([1, 2], ValueType.UNKNOWN),
]


@pytest.mark.parametrize(("values", "value_type"), OUTPUTS)
def test_outputs_encode_as_feast_encodes_them(values: Any, value_type: ValueType) -> None:
    expected = python_values_to_proto_values(values, value_type)
    got = encode(values, value_type)
    assert [v.SerializeToString() for v in got] == [v.SerializeToString() for v in expected]
    assert all(isinstance(v, Value) for v in got)


def test_an_input_that_fails_to_convert_names_the_view() -> None:
    bad = Value(unix_timestamp_val=2**62).SerializeToString()  # past any datetime
    columns = (*_columns(random.Random(2), 1, False), Column("when", "feature", [bad], 0))
    call = TransformCall(("every_type",), ("every_type:keys",), False, columns)
    answer = worker._answer(VIEWS, call)
    assert answer.startswith(b"E")
    assert b"on-demand feature view 'every_type' raised" in answer
