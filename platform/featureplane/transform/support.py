"""Which on-demand feature views featureplane serves: the one rule that `plan` (lint rule
``unsupported``) and the gateway (a 400 naming the view) both state; and the batch feature views
it does not materialize."""

from __future__ import annotations

from typing import Any

from google.protobuf.json_format import MessageToDict

# A feature view with a transformation (Feast's BatchFeatureView): Feast's materialization runs
# the UDF in the materializing process, which holds the platform's credentials.
BATCH_TRANSFORMATION = (
    "featureplane does not run a feature view's transformation "
    "(an on-demand view with write_to_online_store=True is computed in a sandbox)"
)


def batch_refusal(spec: dict[str, Any]) -> str | None:
    """Why featureplane does not materialize the feature view whose spec is ``spec``."""
    return BATCH_TRANSFORMATION if spec.get("feature_transformation") else None


def odfv_refusal(odfv: Any) -> str | None:
    """:func:`refusal` of an on-demand view object (read with skip_udf)."""
    return refusal(MessageToDict(odfv.to_proto().spec, preserving_proto_field_name=True))


def refusal(spec: dict[str, Any]) -> str | None:
    """Why the gateway refuses the on-demand view whose spec is ``spec`` (its protobuf spec as
    ``MessageToDict(..., preserving_proto_field_name=True)``), if it does."""
    sources = (spec.get("sources") or {}).values()
    if spec.get("write_to_online_store"):
        # Materialization computes a stored view from its one source view's rows (Feast joins
        # several at each row's time: a retrieval that would decode every view's UDF).
        if any("request_data_source" in source for source in sources):
            return "write_to_online_store=True with request data (none at materialization)"
        views = sum(1 for source in sources if "request_data_source" not in source)
        if views != 1:
            return f"write_to_online_store=True over {views} feature views (one is supported)"
    if spec.get("aggregations"):
        return "it has aggregations"
    for name, source in (spec.get("sources") or {}).items():
        projection = source.get("feature_view_projection") or {}
        if projection.get("join_key_map") or projection.get("name_alias"):
            return f"it renames its source {name!r}"
    return None
