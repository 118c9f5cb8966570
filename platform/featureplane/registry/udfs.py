"""Tenants' UDFs in the registry server: kept as the bytes they were sent, never run.

Feast 0.67 turns a stored or submitted view into an object with ``from_proto``, and that rebuilds
its UDF, running whatever the tenant sent: an on-demand view ``exec``s the UDF's source text
(``udf_rehydrate``) or falls back to ``dill.loads`` of its body; a stream view ``dill.loads``
its body; a batch feature view rebuilds its transformation the same way; a validation reference
``dill.loads`` its profiler. Feast's registry server does it on ``ApplyFeatureView``
(registry_server.py, the second ``from_proto`` without ``skip_udf``) and on the Get RPCs, and the
SQL registry does it to compare a view with its stored row. In featureplane's registry server
that process holds every tenant's registry and the token digests, so no tenant's code may run
there.

:func:`keep_udfs_inert` makes every decode of a view in this process behave as
``skip_udf=True``, which in Feast 0.67 keeps the transformation's proto and writes it back
unchanged; on-demand and stream views get a function of Feast's own class that only raises, so
Feast's comparisons keep working (they compare the UDF's source text): a changed UDF is still
recorded as a change and an unchanged one is still a no-op. Validation references are refused.

Only for processes that never compute features: the transform workers and the sealed plan/apply
child run tenant code on purpose, each confined to one tenant.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pandas as pd  # type: ignore[import-untyped]  # no stubs pinned
from feast.feature_view import FeatureView
from feast.on_demand_feature_view import OnDemandFeatureView
from feast.saved_dataset import ValidationReference
from feast.stream_feature_view import StreamFeatureView
from feast.transformation.pandas_transformation import PandasTransformation
from feast.transformation.python_transformation import PythonTransformation

_INSTALLED = "_featureplane_inert_udfs"


def _never_run(*args: Any, **kwargs: Any) -> pd.DataFrame:  # Feast checks the annotation
    raise RuntimeError("featureplane's registry server never runs tenant code")


def _inert_transformation(proto: Any, mode: str, singleton: bool) -> Any:
    """The transformation Feast would build from ``proto``, with ``_never_run`` as its function.
    None for kinds featureplane refuses anyway (substrait): the view then fails Feast's own
    validation on apply, which is what it would do in the gateway too."""
    if proto.WhichOneof("transformation") != "user_defined_function":
        return None
    udf = proto.user_defined_function
    # Feast compares by source text; a body-only UDF (written by older Feast) by its bytes.
    source = udf.body_text or f"# dill body sha256:{hashlib.sha256(udf.body).hexdigest()}"
    if mode == "python":
        return PythonTransformation(udf=_never_run, udf_string=source, singleton=singleton)
    if mode == "pandas":
        return PandasTransformation(udf=_never_run, udf_string=source)
    return None


def keep_udfs_inert() -> None:
    """Patch this process's Feast so no on-demand or stream view's UDF is ever rebuilt (above).
    Idempotent."""
    if getattr(OnDemandFeatureView, _INSTALLED, False):
        return
    odfv_from_proto = OnDemandFeatureView.__dict__["from_proto"].__func__
    sfv_from_proto = StreamFeatureView.__dict__["from_proto"].__func__

    def odfv(cls: type[OnDemandFeatureView], proto: Any, skip_udf: bool = False) -> Any:
        view = odfv_from_proto(cls, proto, skip_udf=True)
        if proto.spec.HasField("feature_transformation"):
            view.feature_transformation = _inert_transformation(
                proto.spec.feature_transformation, view.mode, view.singleton
            )
        return view

    def sfv(cls: type[StreamFeatureView], proto: Any, skip_udf: bool = False) -> Any:
        view = sfv_from_proto(cls, proto, skip_udf=True)
        if proto.spec.HasField("user_defined_function"):
            # Feast compares UDFs by code and source text: a change of the dill body alone (same
            # source) reads as no change here. featureplane serves no stream views.
            view.udf = _never_run
        return view

    # A feature view with a transformation (BatchFeatureView): Feast keeps the proto as is.
    fv_internal = FeatureView.__dict__["_from_proto_internal"].__func__

    def fv(cls: type[FeatureView], proto: Any, seen: Any, skip_udf: bool = False) -> Any:
        return fv_internal(cls, proto, seen, skip_udf=True)

    # A validation reference's profiler is a dill payload Feast can only rebuild by running
    # it, and its skip_udf form would lose it: refused, whole, beyond the permission check.
    vr_from_proto = ValidationReference.__dict__["from_proto"].__func__

    def vr(cls: type[ValidationReference], proto: Any, skip_udf: bool = False) -> Any:
        if not skip_udf:
            raise ValueError(
                "featureplane's registry server does not store validation references: their "
                "profiler is code it would have to run"
            )
        return vr_from_proto(cls, proto, skip_udf=True)

    OnDemandFeatureView.from_proto = classmethod(odfv)
    StreamFeatureView.from_proto = classmethod(sfv)
    FeatureView._from_proto_internal = classmethod(fv)
    ValidationReference.from_proto = classmethod(vr)
    setattr(OnDemandFeatureView, _INSTALLED, True)
