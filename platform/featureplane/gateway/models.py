"""Request and response models of the gateway, in the shapes of Feast's feature server.

They document the API (``/openapi.json``) and validate the requests the hot path's own checks do
not vouch for (see ``features._parse``); answers are built as plain dicts, and
``tests/gateway/test_schema_fuzz.py`` checks the running gateway's answers against these models.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

# JSON values a join key can take: integers for int32/int64/unix_timestamp keys (decimal strings
# are accepted too), strings for string keys, base64 strings for bytes keys. Validated against the
# key's type by codec.coerce_key_value (400 naming the entity), not here: pydantic's lax mode
# would turn true or 1.0 into 1.
EntityValue = Annotated[Any, WithJsonSchema({"anyOf": [{"type": "integer"}, {"type": "string"}]})]


class GetOnlineFeaturesRequest(BaseModel):
    """Feast's ``GetOnlineFeaturesRequest``: column-oriented entities, features or a service.

    Unknown fields are ignored, as Feast's feature server ignores them; a key given twice keeps
    its last value (as Python's and FastAPI's JSON parsers do)."""

    model_config = ConfigDict(extra="ignore")

    entities: dict[str, list[EntityValue]] = Field(
        description='Join key -> one value per entity row, e.g. {"account_id": [1, 2]}. Rows '
        "are answered in order, a repeated entity once per row."
    )
    feature_service: str | None = None
    features: list[str] = Field(default_factory=list, description='"feature_view:feature" refs.')
    project: str | None = Field(
        default=None,
        description="featureplane extension: the project to read, your own or one sharing the "
        "named objects with you. Default: your own, else the one project that shares them.",
    )
    full_feature_names: bool = False
    include_feature_view_version_metadata: bool = False


# Feast's FieldStatus names (feast.protos.feast.serving.ServingService_pb2.FieldStatus).
FieldStatus = Literal["INVALID", "PRESENT", "NULL_VALUE", "NOT_FOUND", "OUTSIDE_MAX_AGE"]


class FeatureVector(BaseModel):
    """One column: a join key's echoed values, or one feature's values, per entity row."""

    values: list[Any]
    statuses: list[FieldStatus]
    event_timestamps: list[str] = Field(
        description='RFC 3339 event time per row; "1970-01-01T00:00:00Z" when not found.'
    )


class ResponseMetadata(BaseModel):
    feature_names: list[str]


class GetOnlineFeaturesResponse(BaseModel):
    """Feast's feature-server answer: one column per join key, then one per feature."""

    metadata: ResponseMetadata
    results: list[FeatureVector]


class InvalidField(BaseModel):
    field: str = Field(description='Dotted path of the offending field; "<body>" for the body.')
    problem: str


class ErrorDetail(BaseModel):
    code: str = Field(
        description="unauthenticated, forbidden, bad_request, invalid_request, "
        "unsupported_media_type, payload_too_large, quota_exceeded, method_not_allowed, "
        "store_unavailable."
    )
    message: str = Field(description="What is wrong, naming the field or quota at fault.")
    details: list[InvalidField] | None = Field(default=None, description="422: every problem.")
    quota: str | None = Field(default=None, description="413/429: the quota spent.")
    limit: float | None = Field(default=None, description="413/429: that quota's limit.")


class ErrorResponse(BaseModel):
    error: ErrorDetail


class ReadyResponse(BaseModel):
    """``GET /ready``: ``ready`` or ``degraded`` (200), ``not_ready`` (503)."""

    status: Literal["ready", "degraded", "not_ready"]
    checks: dict[str, Any]
