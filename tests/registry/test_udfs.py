"""The registry server never runs a tenant's UDF (featureplane.registry.udfs).

Feast 0.67's registry server rebuilds an applied on-demand view's UDF: it ``exec``s the source
text, or ``dill.loads`` the body when there is none. Here a tenant applies views whose source
and whose body each write a file when rebuilt, through the real `featureplane registry-server`
(the session's TLS server) with Feast's own remote registry client: the files never appear,
the rows hold exactly the bytes sent, and Feast's change detection still works on them.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd  # type: ignore[import-untyped]  # no stubs pinned
import pytest

from tests.support.registry_server import A, Platform, registry_db, remote_registry


class _Planted:
    """Pickles to a call of ``os.system``: what a hostile dill body does when loaded."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.system, (self.command,)


def _source(marker: Path, result: str = "inputs") -> str:
    return (
        "import pathlib\n"
        f"pathlib.Path({str(marker)!r}).write_text('ran')\n"
        "def hostile(inputs):\n"
        f"    return {result}\n"
    )


def _view(name: str, source: str, body: bytes | None = None) -> Any:
    """An on-demand view of tenant A, its UDF's source ``source`` (and body ``body``, when
    given, in place of the one dill makes), as Feast's client would send it."""
    from feast import Field, OnDemandFeatureView, RequestSource
    from feast.transformation.pandas_transformation import PandasTransformation
    from feast.types import Float64

    def hostile(inputs: pd.DataFrame) -> pd.DataFrame:
        return inputs

    request = RequestSource(name=f"{name}_request", schema=[Field(name="x", dtype=Float64)])
    view = OnDemandFeatureView(
        name=name,
        sources=[request],
        schema=[Field(name="y", dtype=Float64)],
        feature_transformation=PandasTransformation(udf=hostile, udf_string=source),
        mode="pandas",
    )
    if body is None:
        return view
    proto = view.to_proto()
    udf = proto.spec.feature_transformation.user_defined_function
    udf.body, udf.body_text = body, ""
    return OnDemandFeatureView.from_proto(proto, skip_udf=True)  # sends the proto as it is


def _stored(platform: Platform, name: str) -> Any:
    """The view's row in the registry file, parsed; None when there is none."""
    from feast.protos.feast.core.OnDemandFeatureView_pb2 import OnDemandFeatureView

    db = registry_db(platform)
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        row = conn.execute(
            "SELECT feature_view_proto FROM on_demand_feature_views "
            "WHERE project_id = ? AND feature_view_name = ?",
            (A, name),
        ).fetchone()
    return None if row is None else OnDemandFeatureView.FromString(row[0])


@pytest.fixture
def registry(ownership_platform: Platform) -> Iterator[Any]:
    client = remote_registry(ownership_platform, ownership_platform.tokens[A])
    yield client
    for name in ("planted_source", "planted_body"):
        if _stored(ownership_platform, name) is not None:
            client.delete_feature_view(name, A, commit=True)


def test_a_hostile_source_is_stored_not_run(
    ownership_platform: Platform, registry: Any, tmp_path: Path
) -> None:
    marker = tmp_path / "source-ran"
    view = _view("planted_source", _source(marker))
    sent = view.to_proto().spec.feature_transformation
    registry.apply_feature_view(view, A, commit=True)
    assert not marker.exists(), "the registry server ran the view's source"
    stored = _stored(ownership_platform, "planted_source")
    assert stored is not None
    assert stored.spec.feature_transformation == sent  # exactly the bytes sent
    updated = stored.meta.last_updated_timestamp

    registry.apply_feature_view(view, A, commit=True)  # unchanged: a no-op, as in Feast
    assert _stored(ownership_platform, "planted_source").meta.last_updated_timestamp == updated

    changed = _view("planted_source", _source(marker, result="inputs * 2"))
    registry.apply_feature_view(changed, A, commit=True)  # a changed UDF is recorded
    stored = _stored(ownership_platform, "planted_source")
    assert "inputs * 2" in stored.spec.feature_transformation.user_defined_function.body_text
    assert stored.meta.last_updated_timestamp != updated
    assert not marker.exists(), "the registry server ran the view's source"


def test_a_hostile_dill_body_is_stored_not_loaded(
    ownership_platform: Platform, registry: Any, tmp_path: Path
) -> None:
    marker = tmp_path / "body-ran"
    body = pickle.dumps(_Planted(f"touch {marker}"))
    view = _view("planted_body", "", body=body)
    registry.apply_feature_view(view, A, commit=True)
    assert not marker.exists(), "the registry server loaded the view's dill body"
    stored = _stored(ownership_platform, "planted_body")
    assert stored is not None
    assert stored.spec.feature_transformation.user_defined_function.body == body
    registry.delete_feature_view("planted_body", A, commit=True)
    assert _stored(ownership_platform, "planted_body") is None
    assert not marker.exists(), "the registry server loaded the view's dill body"


@pytest.mark.filterwarnings("ignore:Batch feature views are experimental:RuntimeWarning")
def test_a_batch_view_transformation_is_stored_not_run(
    ownership_platform: Platform, registry: Any, tmp_path: Path
) -> None:
    """A feature view carrying a transformation (Feast's BatchFeatureView) whose source writes
    a file when rebuilt: applying it never runs it in the server."""
    from feast import Entity, FeatureView, Field, FileSource, ValueType
    from feast.types import Float64, Int64

    marker = tmp_path / "batch-ran"
    rider = Entity(name="planted_rider", join_keys=["rider_id"], value_type=ValueType.INT64)
    source = FileSource(name="planted_trips", path="trips.parquet", timestamp_field="ts")
    plain = FeatureView(
        name="planted_batch", entities=[rider], source=source,
        schema=[Field(name="rider_id", dtype=Int64), Field(name="km", dtype=Float64)],
    )  # fmt: skip
    proto = plain.to_proto()
    udf = proto.spec.feature_transformation.user_defined_function
    udf.name, udf.body_text, udf.mode = "hostile", _source(marker), "python"
    view = FeatureView.from_proto(proto, skip_udf=True)  # sends the proto as it is
    try:
        registry.apply_feature_view(view, A, commit=True)
    except Exception as exc:  # Feast may refuse the view itself; what matters is the file
        print(f"apply refused: {type(exc).__name__}: {str(exc)[:200]}")
    finally:
        assert not marker.exists(), "the registry server ran the view's transformation"
        with contextlib.suppress(Exception):
            registry.delete_feature_view("planted_batch", A, commit=True)


def test_validation_references_are_refused_not_loaded(registry: Any, tmp_path: Path) -> None:
    from feast.protos.feast.core.ValidationProfile_pb2 import (
        GEValidationProfiler,
        ValidationReference,
    )

    marker = tmp_path / "profiler-ran"
    profiler = GEValidationProfiler.UserDefinedProfiler(
        body=pickle.dumps(_Planted(f"touch {marker}"))
    )
    proto = ValidationReference(
        name="planted_reference", reference_dataset_name="any", project=A,
        ge_profiler=GEValidationProfiler(profiler=profiler),
    )  # fmt: skip
    reference = SimpleNamespace(name="planted_reference", to_proto=lambda: proto)
    with pytest.raises(Exception, match="does not store validation references"):
        registry.apply_validation_reference(reference, A, commit=True)
    assert not marker.exists(), "the registry server loaded the profiler"
