"""Request and response models of the gateway, in the shapes of Feast's feature server."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class GetOnlineFeaturesRequest(BaseModel):
    """Feast's ``GetOnlineFeaturesRequest``: column-oriented entities, features or a service."""

    model_config = ConfigDict(extra="ignore")

    entities: dict[str, list[Any]] = Field(
        description='Join key -> one value per entity row, e.g. {"account_id": [1, 2]}.'
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


class FeatureVector(BaseModel):
    values: list[Any]
    statuses: list[str]
    event_timestamps: list[str]


class ResponseMetadata(BaseModel):
    feature_names: list[str]


class GetOnlineFeaturesResponse(BaseModel):
    metadata: ResponseMetadata
    results: list[FeatureVector]


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorDetail
