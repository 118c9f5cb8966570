"""``POST /get-online-features``: Feast's feature-server route, for every tenant."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request, Response
from pydantic import ValidationError

from featureplane.errors import BadRequestError, InvalidRequestError, UnsupportedMediaTypeError
from featureplane.gateway.lookup import lookup
from featureplane.gateway.models import (
    ErrorResponse,
    GetOnlineFeaturesRequest,
    GetOnlineFeaturesResponse,
)
from featureplane.gateway.state import StateDep, TenantDep
from featureplane.observability.metrics import ENTITY_ROWS

router = APIRouter()

_ERRORS = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in {
        400: "Unknown feature view, feature or service; missing or mistyped join keys.",
        401: "No or unknown bearer token.",
        403: "The feature view or service belongs to a tenant that has not shared it with you.",
        415: "The body is not JSON.",
        422: "JSON, but not a get-online-features request.",
        503: "The online store is unavailable.",
    }.items()
}


def _parse(body: bytes, content_type: str | None) -> GetOnlineFeaturesRequest:
    if content_type and "json" not in content_type.split(";", 1)[0].lower():
        raise UnsupportedMediaTypeError(
            f"expected Content-Type application/json, got {content_type!r}"
        )
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequestError(f"the body is not valid JSON: {exc}") from None
    try:
        return GetOnlineFeaturesRequest.model_validate(payload)
    except ValidationError as exc:
        details: list[dict[str, object]] = [
            {"field": ".".join(str(p) for p in e["loc"]) or "<body>", "problem": e["msg"]}
            for e in exc.errors(include_url=False, include_input=False)
        ]
        summary = "; ".join(f"{d['field']}: {d['problem']}" for d in details[:5])
        raise InvalidRequestError(
            f"not a get-online-features request: {summary}", details
        ) from None


@router.post(
    "/get-online-features",
    response_model=GetOnlineFeaturesResponse,
    responses=_ERRORS,  # type: ignore[arg-type]
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": GetOnlineFeaturesRequest.model_json_schema()}
            },
        }
    },
)
async def get_online_features(request: Request, tenant: TenantDep, state: StateDep) -> Response:
    """Feature values for entity rows, in the shape of Feast's feature server."""
    parsed = _parse(await request.body(), request.headers.get("content-type"))
    payload = await lookup(state.catalog, state.reader, tenant, parsed)
    ENTITY_ROWS.labels(tenant.name).inc(len(payload["results"][0]["values"]))
    return Response(orjson.dumps(payload), media_type="application/json")
