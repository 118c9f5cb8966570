"""Which on-demand feature views featureplane serves: the one rule that `plan` (lint rule
``unsupported``) and the gateway (a 400 naming the view) both state."""

from __future__ import annotations

from typing import Any


def refusal(spec: dict[str, Any]) -> str | None:
    """Why the gateway refuses the on-demand view whose spec is ``spec`` (its protobuf spec as
    ``MessageToDict(..., preserving_proto_field_name=True)``), if it does."""
    if spec.get("write_to_online_store"):
        return "write_to_online_store=True (stored transformations are not computed yet)"
    if spec.get("aggregations"):
        return "it has aggregations"
    for name, source in (spec.get("sources") or {}).items():
        projection = source.get("feature_view_projection") or {}
        if projection.get("join_key_map") or projection.get("name_alias"):
            return f"it renames its source {name!r}"
    return None
